//! AVX-512 column kernels: 16 entries of a column at a time.
//!
//! Per chunk: the 16-bit entries widen to 32-bit lanes, whose high bits are 16 distinct rows;
//! the codes index the table in registers (`vpermps` for 16 entries, `vpermt2ps` for 32, a gather
//! for 256); the products with `a_j` are added to the accumulators by gather, add, scatter. The
//! rows of one column are distinct, so the scatter never writes one address twice.
//!
//! Dense codes: a band's 128 rows as 8 registers of sums; per active column, one 64-byte load
//! holds the band's codes, and each register's 16 codes (one nibble of every word, shifted
//! down) index the table times `a_j` in a register (`vpermps` reads the low 4 bits).
//!
//! Row chunks: 16 lanes, one row each, summed in a register; per step the 16-bit entries widen,
//! their deltas advance each lane's column, the codes index the table as above, and the
//! activations of the 16 columns are gathered. The chunk's sums start from and return to the
//! accumulators by gather and scatter (its rows are distinct).

use super::Active;
use crate::layout::{BAND_ROWS, BAND_WORDS, KernelKind, LANES, RowChunks, Slice};
use std::arch::x86_64::*;
use std::ops::Range;

variant_entry_points!("avx512f,avx512bw,avx512vl");

/// How many active columns ahead the column kernel prefetches, and how many of that column's
/// entries (a few cache lines: the rest follow in sequence).
const PREFETCH_AHEAD: usize = 4;
const PREFETCH_ENTRIES: usize = 128;

/// `BITS` = 0: weights from the slice's values; otherwise codes of `BITS` bits into `table`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn columns<const BITS: u32>(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries, values) = (slice.ptr(), slice.entries(), slice.values());
    let code_mask = _mm512_set1_epi32((1i32 << BITS) - 1);
    // SAFETY: table sizes per the contract.
    let (t_lo, t_hi) = unsafe { table_registers::<BITS>(table) };
    let acc_ptr = acc.as_mut_ptr();
    for (i, (&j, &a)) in active.index.iter().zip(&active.value).enumerate() {
        // The entries of a column a few active columns ahead, whose address the hardware
        // prefetcher cannot guess.
        if let Some(&ahead) = active.index.get(i + PREFETCH_AHEAD) {
            let (from, to) = (
                ptr[ahead as usize] as usize,
                ptr[ahead as usize + 1] as usize,
            );
            for at in (from..to.min(from + PREFETCH_ENTRIES)).step_by(32) {
                // SAFETY: `at` lies inside the entries (column range invariant).
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(entries.as_ptr().add(at) as *const i8);
                }
            }
        }
        let start = ptr[j as usize] as usize;
        let end = ptr[j as usize + 1] as usize;
        let av = _mm512_set1_ps(a);
        // The products of every table entry with a_j (each rounded once, as `w · a_j` is).
        let (p_lo, p_hi) = (_mm512_mul_ps(t_lo, av), _mm512_mul_ps(t_hi, av));
        let mut k = start;
        while k < end {
            let n = (end - k).min(16);
            let m: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
            // SAFETY: lanes k..k+n lie inside the entries (and values) by the column range
            // invariant; masked lanes are not read. The rows of the n lanes are distinct and
            // below acc.len() (layout invariant); masked lanes are neither gathered nor
            // scattered. Codes index inside the table.
            unsafe {
                let raw = _mm256_maskz_loadu_epi16(m, entries.as_ptr().add(k) as *const i16);
                let e = _mm512_cvtepu16_epi32(raw);
                let rows = _mm512_srli_epi32::<BITS>(e);
                // vpermps and vpermt2ps read only the low 4 and 5 bits of each index.
                let prod = match BITS {
                    0 => _mm512_mul_ps(_mm512_maskz_loadu_ps(m, values.as_ptr().add(k)), av),
                    4 => _mm512_permutexvar_ps(e, p_lo),
                    5 => _mm512_permutex2var_ps(p_lo, e, p_hi),
                    _ => _mm512_mul_ps(
                        _mm512_mask_i32gather_ps::<4>(
                            _mm512_setzero_ps(),
                            m,
                            _mm512_and_si512(e, code_mask),
                            table.as_ptr(),
                        ),
                        av,
                    ),
                };
                let y = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, rows, acc_ptr);
                _mm512_mask_i32scatter_ps::<4>(acc_ptr, m, rows, _mm512_add_ps(y, prod));
            }
            k += n;
        }
    }
}

/// The table of 4- or 5-bit codes in two registers (zeros for other widths).
///
/// # Safety
/// `table` holds `2^BITS` entries.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn table_registers<const BITS: u32>(table: &[f32]) -> (__m512, __m512) {
    // SAFETY: 16 or 32 entries for 4- and 5-bit codes, per the contract.
    unsafe {
        match BITS {
            4 => (_mm512_loadu_ps(table.as_ptr()), _mm512_setzero_ps()),
            5 => (
                _mm512_loadu_ps(table.as_ptr()),
                _mm512_loadu_ps(table.as_ptr().add(16)),
            ),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        }
    }
}

/// One step of a row chunk at entry `at`: each lane's column advances by its delta and its
/// product is added to its sum.
///
/// # Safety
/// `at .. at + 16` lies inside the entries (and values); the advanced columns are below
/// `x.len()`; codes index inside `table` (`2^BITS` entries).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn row_step<const BITS: u32>(
    rc: &RowChunks,
    table: &[f32],
    t: (__m512, __m512),
    x: &[f32],
    at: usize,
    col: &mut __m512i,
    sum: &mut __m512,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        let raw = _mm256_loadu_si256(rc.entries().as_ptr().add(at) as *const __m256i);
        let e = _mm512_cvtepu16_epi32(raw);
        *col = _mm512_add_epi32(*col, _mm512_srli_epi32::<BITS>(e));
        // vpermps and vpermt2ps read only the low 4 and 5 bits of each index.
        let w = match BITS {
            0 => _mm512_loadu_ps(rc.values().as_ptr().add(at)),
            4 => _mm512_permutexvar_ps(e, t.0),
            5 => _mm512_permutex2var_ps(t.0, e, t.1),
            _ => _mm512_i32gather_ps::<4>(
                _mm512_and_si512(e, _mm512_set1_epi32((1i32 << BITS) - 1)),
                table.as_ptr(),
            ),
        };
        let a = _mm512_i32gather_ps::<4>(*col, x.as_ptr());
        *sum = _mm512_add_ps(*sum, _mm512_mul_ps(w, a));
    }
}

/// `BITS` = 0: weights from the chunks' values; otherwise codes of `BITS` bits into `table`.
/// Chunks go in pairs (their steps interleaved) so that two sums advance at once.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn row_chunks<const BITS: u32>(
    table: &[f32],
    rc: &RowChunks,
    range: Range<usize>,
    x: &[f32],
    acc: &mut [f32],
) {
    let lane_rows = rc.lane_rows();
    // SAFETY: table sizes per the contract.
    let t = unsafe { table_registers::<BITS>(table) };
    let local = acc.len();
    let acc_ptr = acc.as_mut_ptr();
    let chunks = rc.chunks();
    let lanes_of = |c: usize| -> __mmask16 {
        let lanes = (local - c * LANES).min(LANES);
        if lanes == 16 {
            0xFFFF
        } else {
            (1u16 << lanes) - 1
        }
    };
    let mut c = range.start;
    while c < range.end {
        let pair = c + 1 < range.end;
        let (m0, m1) = (lanes_of(c), if pair { lanes_of(c + 1) } else { 0 });
        let (start0, steps0) = chunks[c];
        let (start1, steps1) = if pair { chunks[c + 1] } else { (0, 0) };
        // SAFETY: the chunks' 16 lane rows exist; lanes under the masks hold distinct rows
        // below acc.len(); steps lie inside the entries (and values); decoded columns are
        // below x.len(); codes index inside the table (all by the row-chunk invariants).
        unsafe {
            let rows0 = _mm512_loadu_si512(lane_rows.as_ptr().add(c * LANES) as *const _);
            let rows1 = if pair {
                _mm512_loadu_si512(lane_rows.as_ptr().add((c + 1) * LANES) as *const _)
            } else {
                _mm512_setzero_si512()
            };
            let mut sum0 = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m0, rows0, acc_ptr);
            let mut sum1 = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m1, rows1, acc_ptr);
            let (mut col0, mut col1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            let (mut at0, mut at1) = (start0 as usize, start1 as usize);
            let both = steps0.min(steps1);
            for _ in 0..both {
                row_step::<BITS>(rc, table, t, x, at0, &mut col0, &mut sum0);
                row_step::<BITS>(rc, table, t, x, at1, &mut col1, &mut sum1);
                at0 += LANES;
                at1 += LANES;
            }
            for _ in both..steps0 {
                row_step::<BITS>(rc, table, t, x, at0, &mut col0, &mut sum0);
                at0 += LANES;
            }
            for _ in both..steps1 {
                row_step::<BITS>(rc, table, t, x, at1, &mut col1, &mut sum1);
                at1 += LANES;
            }
            _mm512_mask_i32scatter_ps::<4>(acc_ptr, m0, rows0, sum0);
            _mm512_mask_i32scatter_ps::<4>(acc_ptr, m1, rows1, sum1);
        }
        c += 2;
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

/// `dense-code4`: band by band, the band's sums in registers across the active columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dense_codes(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let codes = slice.codes();
    let bands = slice.bands();
    let cols = slice.code_columns();
    let local = acc.len();
    // SAFETY: `dense-code4` tables hold 16 entries (layout invariant).
    let t = unsafe { _mm512_loadu_ps(table.as_ptr()) };
    for b in 0..bands {
        let masks: [__mmask16; 8] = std::array::from_fn(|k| {
            let first = b * BAND_ROWS + k * 16;
            match local.saturating_sub(first).min(16) {
                16 => 0xFFFF,
                n => (1u16 << n) - 1,
            }
        });
        let row = |k: usize| b * BAND_ROWS + k * 16;
        // SAFETY: masked lanes lie below acc.len(); the band's words for every active column
        // (below cols, checked by the caller) lie inside `codes` (layout invariant).
        unsafe {
            let acc_ptr = acc.as_mut_ptr();
            let mut sums: [__m512; 8] =
                std::array::from_fn(|k| _mm512_maskz_loadu_ps(masks[k], acc_ptr.add(row(k))));
            let band = codes.as_ptr().add(b * cols * BAND_WORDS);
            for (&j, &a) in active.index.iter().zip(&active.value) {
                let products = _mm512_mul_ps(t, _mm512_set1_ps(a));
                let c = _mm512_loadu_si512(band.add(j as usize * BAND_WORDS) as *const _);
                sums[0] = _mm512_add_ps(sums[0], _mm512_permutexvar_ps(c, products));
                let lookup = |shifted: __m512i| _mm512_permutexvar_ps(shifted, products);
                sums[1] = _mm512_add_ps(sums[1], lookup(_mm512_srli_epi32::<4>(c)));
                sums[2] = _mm512_add_ps(sums[2], lookup(_mm512_srli_epi32::<8>(c)));
                sums[3] = _mm512_add_ps(sums[3], lookup(_mm512_srli_epi32::<12>(c)));
                sums[4] = _mm512_add_ps(sums[4], lookup(_mm512_srli_epi32::<16>(c)));
                sums[5] = _mm512_add_ps(sums[5], lookup(_mm512_srli_epi32::<20>(c)));
                sums[6] = _mm512_add_ps(sums[6], lookup(_mm512_srli_epi32::<24>(c)));
                sums[7] = _mm512_add_ps(sums[7], lookup(_mm512_srli_epi32::<28>(c)));
            }
            for (k, sum) in sums.iter().enumerate() {
                _mm512_mask_storeu_ps(acc_ptr.add(row(k)), masks[k], *sum);
            }
        }
    }
}
