//! AVX-512 column kernels: 16 entries of a column at a time.
//!
//! Per chunk: the 16-bit entries widen to 32-bit lanes; the deltas (plus one) are summed by a
//! four-step prefix sum onto the previous chunk's last row, giving 16 distinct, increasing rows;
//! the codes index the table in registers (`vpermps` for 16 entries, `vpermt2ps` for 32, a gather
//! for 256); the products with `a_j` are added to the accumulators by gather, add, scatter. The
//! rows of one column are distinct, so the scatter never writes one address twice.

use super::Active;
use crate::layout::{KernelKind, Slice};
use std::arch::x86_64::*;

/// # Safety
/// The CPU supports AVX-512 F, BW and VL; `slice` satisfies the layout invariants (every
/// column decodes to rows below `acc.len()`, column ranges lie inside the entries); every active
/// column is below the matrix's column count; `table` has `2^bits` entries for coded kinds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn accumulate(
    kind: KernelKind,
    table: &[f32],
    slice: &Slice,
    active: &Active,
    acc: &mut [f32],
) {
    // SAFETY (all calls below): forwarded from this function's contract.
    unsafe {
        match kind {
            KernelKind::Code4 => columns::<4>(table, slice, active, acc),
            KernelKind::Code5 => columns::<5>(table, slice, active, acc),
            KernelKind::Code8 => columns::<8>(table, slice, active, acc),
            KernelKind::SparseF32 => columns::<0>(table, slice, active, acc),
            KernelKind::DenseF32 => dense(slice, active, acc),
        }
    }
}

/// Inclusive prefix sum of 16 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn prefix_sum(x: __m512i) -> __m512i {
    let zero = _mm512_setzero_si512();
    // alignr(x, zero, 16 - k) shifts x up by k lanes, filling with zeros.
    let x = _mm512_add_epi32(x, _mm512_alignr_epi32::<15>(x, zero));
    let x = _mm512_add_epi32(x, _mm512_alignr_epi32::<14>(x, zero));
    let x = _mm512_add_epi32(x, _mm512_alignr_epi32::<12>(x, zero));
    _mm512_add_epi32(x, _mm512_alignr_epi32::<8>(x, zero))
}

/// `BITS` = 0: weights from the slice's values; otherwise codes of `BITS` bits into `table`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn columns<const BITS: u32>(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries, values) = (slice.ptr(), slice.entries(), slice.values());
    let code_mask = _mm512_set1_epi32((1i32 << BITS) - 1);
    let one = _mm512_set1_epi32(1);
    let last_lane = _mm512_set1_epi32(15);
    // SAFETY: table sizes per the contract: 16 or 32 entries for 4- and 5-bit codes.
    let (t_lo, t_hi) = unsafe {
        match BITS {
            4 => (_mm512_loadu_ps(table.as_ptr()), _mm512_setzero_ps()),
            5 => (
                _mm512_loadu_ps(table.as_ptr()),
                _mm512_loadu_ps(table.as_ptr().add(16)),
            ),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        }
    };
    let acc_ptr = acc.as_mut_ptr();
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let start = ptr[j as usize] as usize;
        let end = ptr[j as usize + 1] as usize;
        let av = _mm512_set1_ps(a);
        let mut base = _mm512_set1_epi32(-1);
        let mut k = start;
        while k < end {
            let n = (end - k).min(16);
            let m: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
            // SAFETY: lanes k..k+n lie inside the entries (and values) by the column range
            // invariant; masked lanes are not read. Rows decoded for the n lanes are distinct
            // and below acc.len() (layout invariant); masked lanes are neither gathered nor
            // scattered. Codes index inside the table.
            unsafe {
                let raw = _mm256_maskz_loadu_epi16(m, entries.as_ptr().add(k) as *const i16);
                let e = _mm512_cvtepu16_epi32(raw);
                let steps = _mm512_add_epi32(_mm512_srli_epi32::<BITS>(e), one);
                let rows = _mm512_add_epi32(base, prefix_sum(steps));
                base = _mm512_permutexvar_epi32(last_lane, rows);
                let w = match BITS {
                    0 => _mm512_maskz_loadu_ps(m, values.as_ptr().add(k)),
                    4 => _mm512_permutexvar_ps(_mm512_and_si512(e, code_mask), t_lo),
                    5 => _mm512_permutex2var_ps(t_lo, _mm512_and_si512(e, code_mask), t_hi),
                    _ => _mm512_mask_i32gather_ps::<4>(
                        _mm512_setzero_ps(),
                        m,
                        _mm512_and_si512(e, code_mask),
                        table.as_ptr(),
                    ),
                };
                let prod = _mm512_mul_ps(w, av);
                let y = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, rows, acc_ptr);
                _mm512_mask_i32scatter_ps::<4>(acc_ptr, m, rows, _mm512_add_ps(y, prod));
            }
            k += n;
        }
    }
}

/// Dense columns, 16 rows at a time: `acc += column_j · a_j` (multiply, then add).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dense(slice: &Slice, active: &Active, acc: &mut [f32]) {
    let local = acc.len();
    let values = slice.values();
    let acc_ptr = acc.as_mut_ptr();
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let column = &values[j as usize * local..(j as usize + 1) * local];
        let av = _mm512_set1_ps(a);
        let mut r = 0;
        while r < local {
            let n = (local - r).min(16);
            let m: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
            // SAFETY: lanes r..r+n lie inside `column` and `acc` (both `local` long); masked
            // lanes are not touched.
            unsafe {
                let w = _mm512_maskz_loadu_ps(m, column.as_ptr().add(r));
                let y = _mm512_maskz_loadu_ps(m, acc_ptr.add(r));
                _mm512_mask_storeu_ps(acc_ptr.add(r), m, _mm512_add_ps(y, _mm512_mul_ps(w, av)));
            }
            r += n;
        }
    }
}
