//! AVX-512 column kernels: 16 entries of a column at a time.
//!
//! Per chunk: the 16-bit entries widen to 32-bit lanes, whose high bits are 16 distinct rows;
//! the codes index the table in registers (`vpermps` for 16 entries, `vpermt2ps` for 32, a gather
//! for 256); the products with `a_j` are added to the accumulators by gather, add, scatter. The
//! rows of one column are distinct, so the scatter never writes one address twice.
//!
//! Dense codes: a band's 128 rows as 8 registers of sums; per active column, four 64-byte loads
//! of the band's codes from byte offsets 0 to 3, each giving two registers' 16 codes (the low
//! nibble of every word's low byte, then the high one shifted down), index the table times
//! `a_j` in a register (`vpermps` reads the low 4 bits).
//!
//! Row chunks: 16 lanes, one row each, summed in a register, four chunks side by side. Per
//! window, its 16 activations in a register; per step the entries widen to 32-bit lanes, whose
//! low 4 bits pick each lane's activation (`vpermps`) and whose code, shifted down, indexes the
//! table as above. No gather but for 8-bit codes.

use super::{Active, chunk_end, chunk_start};
use crate::layout::{BAND_ROWS, BAND_WORDS, KernelKind, LANES, RowChunks, Slice, WINDOW_COLS};
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

/// Chunks a row group walks side by side (independent sums hide the adds' latency).
const ROW_GROUP: usize = 4;

/// One step of a row chunk at entry `at`: each lane's product with its activation in the window
/// `xw` is added to its sum.
///
/// # Safety
/// `at .. at + 16` lies inside the entries (and values); codes index inside `table` (`2^BITS`
/// entries).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn row_step<const BITS: u32>(
    rc: &RowChunks,
    table: &[f32],
    t: (__m512, __m512),
    xw: __m512,
    at: usize,
    sum: &mut __m512,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        let e = if BITS == 4 {
            _mm512_cvtepu8_epi32(_mm_loadu_si128(
                rc.narrow().as_ptr().add(at) as *const __m128i
            ))
        } else {
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                rc.wide().as_ptr().add(at) as *const __m256i
            ))
        };
        // vpermps and vpermt2ps read only the low 4 and 5 bits of each index.
        let a = _mm512_permutexvar_ps(e, xw);
        let code = _mm512_srli_epi32::<4>(e);
        let w = match BITS {
            0 => _mm512_loadu_ps(rc.values().as_ptr().add(at)),
            4 => _mm512_permutexvar_ps(code, t.0),
            5 => _mm512_permutex2var_ps(t.0, code, t.1),
            _ => _mm512_i32gather_ps::<4>(code, table.as_ptr()),
        };
        *sum = _mm512_add_ps(*sum, _mm512_mul_ps(w, a));
    }
}

/// `N` chunks from `first` walked side by side, window by window.
///
/// # Safety
/// As [`row_chunks`], for chunks `first .. first + N`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn row_group<const BITS: u32, const N: usize>(
    table: &[f32],
    t: (__m512, __m512),
    rc: &RowChunks,
    first: usize,
    x: &[f32],
    acc: &mut [f32],
) {
    let mut sums = [_mm512_setzero_ps(); N];
    let mut at: [usize; N] = std::array::from_fn(|i| rc.chunks()[first + i].0 as usize * LANES);
    let steps: [*const u8; N] = std::array::from_fn(|i| rc.window_steps(first + i).as_ptr());
    let windows = rc.windows();
    let last_mask: __mmask16 = match x.len() % WINDOW_COLS {
        0 => 0xFFFF,
        n => (1u16 << n) - 1,
    };
    // SAFETY: the window loads read x below x.len() (masked past it); each chunk's steps array
    // holds `windows` counts; the steps lie inside the entries (and values), entries decode to
    // columns below x.len() and codes inside the table (row-chunk invariants, checked when the
    // matrix was built).
    unsafe {
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum = _mm512_loadu_ps(chunk_start(rc, first + i, acc).as_ptr());
        }
        for w in 0..windows {
            let m = if w + 1 < windows { 0xFFFF } else { last_mask };
            let xw = _mm512_maskz_loadu_ps(m, x.as_ptr().add(w * WINDOW_COLS));
            let k: [usize; N] = std::array::from_fn(|i| *steps[i].add(w) as usize);
            let (both, most) = (k.iter().min().copied(), k.iter().max().copied());
            let (both, most) = (both.unwrap_or(0), most.unwrap_or(0));
            for _ in 0..both {
                for i in 0..N {
                    row_step::<BITS>(rc, table, t, xw, at[i], &mut sums[i]);
                    at[i] += LANES;
                }
            }
            for step in both..most {
                for i in 0..N {
                    if step < k[i] {
                        row_step::<BITS>(rc, table, t, xw, at[i], &mut sums[i]);
                        at[i] += LANES;
                    }
                }
            }
        }
        for (i, sum) in sums.iter().enumerate() {
            let mut end = [0.0f32; LANES];
            _mm512_storeu_ps(end.as_mut_ptr(), *sum);
            chunk_end(rc, first + i, &end, acc);
        }
    }
}

/// `BITS` = 0: weights from the chunks' values; otherwise codes of `BITS` bits into `table`.
/// Chunks go in groups of [`ROW_GROUP`], the last few one by one.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn row_chunks<const BITS: u32>(
    table: &[f32],
    rc: &RowChunks,
    range: Range<usize>,
    x: &[f32],
    acc: &mut [f32],
) {
    // SAFETY: table sizes per the contract; chunks inside `range` per the contract.
    unsafe {
        let t = table_registers::<BITS>(table);
        let mut c = range.start;
        while c + ROW_GROUP <= range.end {
            row_group::<BITS, ROW_GROUP>(table, t, rc, c, x, acc);
            c += ROW_GROUP;
        }
        while c < range.end {
            row_group::<BITS, 1>(table, t, rc, c, x, acc);
            c += 1;
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

/// `dense-code4`: band by band, the band's sums in registers across the active columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dense_codes(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let codes = slice.codes();
    let bands = slice.bands();
    let cols = slice.code_columns();
    let local = acc.len();
    // SAFETY: `dense-code4` tables hold 16 entries (layout invariant).
    let t = unsafe { _mm512_loadu_ps(table.as_ptr()) };
    // `p · 1 + s` rounds once, exactly as `p + s` does: the same bits, computed on the FMA
    // pipes. Half of each column's adds go there, so that they do not all queue on the add
    // pipes beside the permutes (13% faster on Zen 4). Opaque, so that it is not folded back
    // into an add.
    let one = _mm512_set1_ps(std::hint::black_box(1.0f32));
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
                let column = band.add(j as usize * BAND_WORDS) as *const u8;
                let lookup = |codes: __m512i| _mm512_permutexvar_ps(codes, products);
                // From byte offset o, the low nibbles of the words' low bytes are the codes of
                // rows 16·o .., their high nibbles those of rows 16·(o + 4) .. (`code_nibble`).
                for o in 0..4 {
                    let c = _mm512_loadu_si512(column.add(o) as *const _);
                    sums[o] = _mm512_add_ps(sums[o], lookup(c));
                    let p = lookup(_mm512_srli_epi32::<4>(c));
                    sums[o + 4] = _mm512_fmadd_ps(p, one, sums[o + 4]);
                }
            }
            for (k, sum) in sums.iter().enumerate() {
                _mm512_mask_storeu_ps(acc_ptr.add(row(k)), masks[k], *sum);
            }
        }
    }
}
