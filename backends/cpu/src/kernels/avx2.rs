//! AVX2 column kernels: 8 entries of a column at a time.
//!
//! Per chunk: the entries widen to 32-bit lanes, whose high bits are the rows; the weights come from the table in registers (two
//! `vpermps` and a blend for 16 entries, four and three blends for 32, a gather for 256) or from
//! the values; the products with `a_j` are computed 8 at a time and added to the accumulators
//! one by one (AVX2 has no scatter).
//!
//! Dense codes: a band's 128 rows in two halves of 8 registers of sums; per active column, four
//! 32-byte loads of the half's codes from byte offsets 0 to 3, each giving two registers' 8
//! codes (the low nibble of every word's low byte, then the high one shifted down), index the
//! table times `a_j` as above.
//!
//! Row chunks: each chunk's 16 lanes as two halves of 8, one row per lane summed in a register;
//! per window, its 16 activations in two registers; per step the entries widen, their low 4
//! bits pick each lane's activation (two `vpermps` and a blend) and their codes, shifted down,
//! the weight as above.

use super::{Active, chunk_end, chunk_start};
use crate::layout::{BAND_ROWS, BAND_WORDS, KernelKind, LANES, RowChunks, Slice, WINDOW_COLS};
use std::arch::x86_64::*;
use std::ops::Range;

variant_entry_points!("avx2,fma");

/// Table lookup of 8 codes (`BITS` = 4 or 5) held in registers as 8-entry blocks.
#[inline]
#[target_feature(enable = "avx2")]
fn lookup<const BITS: i32>(t: &[__m256; 4], codes: __m256i) -> __m256 {
    // Bit 3 of a code selects between blocks 0/1 (and 2/3); bit 4 between the pairs.
    let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(codes));
    let low = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t[0], codes),
        _mm256_permutevar8x32_ps(t[1], codes),
        bit3,
    );
    if BITS == 4 {
        return low;
    }
    let high = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t[2], codes),
        _mm256_permutevar8x32_ps(t[3], codes),
        bit3,
    );
    let bit4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(codes));
    _mm256_blendv_ps(low, high, bit4)
}

/// `BITS` = 0: weights from the slice's values; otherwise codes of `BITS` bits into `table`.
#[target_feature(enable = "avx2,fma")]
unsafe fn columns<const BITS: i32>(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries, values) = (slice.ptr(), slice.entries(), slice.values());
    let code_mask = _mm256_set1_epi32((1i32 << BITS) - 1);
    let mut blocks = [_mm256_setzero_ps(); 4];
    if BITS == 4 || BITS == 5 {
        for (b, block) in blocks.iter_mut().enumerate().take(1usize << (BITS - 3)) {
            // SAFETY: the table holds 2^BITS = 16 or 32 entries, so block b's 8 lie inside.
            *block = unsafe { _mm256_loadu_ps(table.as_ptr().add(8 * b)) };
        }
    }
    let mut rows_out = [0u32; 8];
    let mut prods = [0.0f32; 8];
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let start = ptr[j as usize] as usize;
        let end = ptr[j as usize + 1] as usize;
        let av = _mm256_set1_ps(a);
        let mut k = start;
        while k < end {
            let n = (end - k).min(8);
            let mut chunk = [0u16; 8];
            chunk[..n].copy_from_slice(&entries[k..k + n]);
            let mut weights = [0.0f32; 8];
            if BITS == 0 {
                weights[..n].copy_from_slice(&values[k..k + n]);
            }
            // SAFETY: loads read the local 8-element arrays; the gather reads `table` at codes
            // below 2^BITS (the code mask), inside the table.
            unsafe {
                let e = _mm256_cvtepu16_epi32(_mm_loadu_si128(chunk.as_ptr() as *const __m128i));
                let rows = _mm256_srli_epi32::<BITS>(e);
                let codes = _mm256_and_si256(e, code_mask);
                let w = match BITS {
                    0 => _mm256_loadu_ps(weights.as_ptr()),
                    4 | 5 => lookup::<BITS>(&blocks, codes),
                    _ => _mm256_i32gather_ps::<4>(table.as_ptr(), codes),
                };
                _mm256_storeu_si256(rows_out.as_mut_ptr() as *mut __m256i, rows);
                _mm256_storeu_ps(prods.as_mut_ptr(), _mm256_mul_ps(w, av));
            }
            for (&r, &p) in rows_out[..n].iter().zip(&prods[..n]) {
                acc[r as usize] += p;
            }
            k += n;
        }
    }
}

/// `BITS` = 0: weights from the chunks' values; otherwise codes of `BITS` bits into `table`.
#[target_feature(enable = "avx2,fma")]
unsafe fn row_chunks<const BITS: i32>(
    table: &[f32],
    rc: &RowChunks,
    range: Range<usize>,
    x: &[f32],
    acc: &mut [f32],
) {
    let mut blocks = [_mm256_setzero_ps(); 4];
    if BITS == 4 || BITS == 5 {
        for (b, block) in blocks.iter_mut().enumerate().take(1usize << (BITS - 3)) {
            // SAFETY: the table holds 2^BITS = 16 or 32 entries, so block b's 8 lie inside.
            *block = unsafe { _mm256_loadu_ps(table.as_ptr().add(8 * b)) };
        }
    }
    let cols = x.len();
    for c in range {
        let mut start = chunk_start(rc, c, acc);
        let mut at = rc.chunks()[c].0 as usize * LANES;
        // SAFETY: the window loads read x below x.len() (the last window through a copy); the
        // steps lie inside the entries (and values), entries decode to columns below x.len()
        // and codes inside the table (row-chunk invariants, checked when the matrix was built).
        unsafe {
            let mut sums = [
                _mm256_loadu_ps(start.as_ptr()),
                _mm256_loadu_ps(start.as_ptr().add(8)),
            ];
            for (w, &steps) in rc.window_steps(c).iter().enumerate() {
                let from = w * WINDOW_COLS;
                let mut window = [0.0f32; WINDOW_COLS];
                let xp = if from + WINDOW_COLS <= cols {
                    x.as_ptr().add(from)
                } else {
                    window[..cols - from].copy_from_slice(&x[from..]);
                    window.as_ptr()
                };
                let xw = [
                    _mm256_loadu_ps(xp),
                    _mm256_loadu_ps(xp.add(8)),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                ];
                for _ in 0..steps {
                    for (half, sum) in sums.iter_mut().enumerate() {
                        let k = at + 8 * half;
                        let e = if BITS == 4 {
                            _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                                rc.narrow().as_ptr().add(k) as *const __m128i
                            ))
                        } else {
                            _mm256_cvtepu16_epi32(_mm_loadu_si128(
                                rc.wide().as_ptr().add(k) as *const __m128i
                            ))
                        };
                        // `lookup` reads only the low 4 bits of each column.
                        let a = lookup::<4>(&xw, e);
                        let codes = _mm256_srli_epi32::<4>(e);
                        let weight = match BITS {
                            0 => _mm256_loadu_ps(rc.values().as_ptr().add(k)),
                            4 | 5 => lookup::<BITS>(&blocks, codes),
                            _ => _mm256_i32gather_ps::<4>(table.as_ptr(), codes),
                        };
                        *sum = _mm256_add_ps(*sum, _mm256_mul_ps(weight, a));
                    }
                    at += LANES;
                }
            }
            _mm256_storeu_ps(start.as_mut_ptr(), sums[0]);
            _mm256_storeu_ps(start.as_mut_ptr().add(8), sums[1]);
        }
        chunk_end(rc, c, &start, acc);
    }
}

/// Dense columns, 8 rows at a time: `acc += column_j · a_j` (multiply, then add).
#[target_feature(enable = "avx2,fma")]
unsafe fn dense(slice: &Slice, active: &Active, acc: &mut [f32]) {
    let local = acc.len();
    let values = slice.values();
    let body = local - local % 8;
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let column = &values[j as usize * local..(j as usize + 1) * local];
        let av = _mm256_set1_ps(a);
        for r in (0..body).step_by(8) {
            // SAFETY: r + 8 <= body <= local, the length of `column` and `acc`.
            unsafe {
                let w = _mm256_loadu_ps(column.as_ptr().add(r));
                let y = _mm256_loadu_ps(acc.as_ptr().add(r));
                _mm256_storeu_ps(
                    acc.as_mut_ptr().add(r),
                    _mm256_add_ps(y, _mm256_mul_ps(w, av)),
                );
            }
        }
        for (y, &w) in acc[body..].iter_mut().zip(&column[body..]) {
            *y += w * a;
        }
    }
}

/// `dense-code4`: band by band and half by half, the sums in registers across the active columns.
#[target_feature(enable = "avx2,fma")]
unsafe fn dense_codes(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let codes = slice.codes();
    let bands = slice.bands();
    let cols = slice.code_columns();
    let local = acc.len();
    // SAFETY: `dense-code4` tables hold 16 entries (layout invariant).
    let (t0, t1) = unsafe {
        (
            _mm256_loadu_ps(table.as_ptr()),
            _mm256_loadu_ps(table.as_ptr().add(8)),
        )
    };
    for b in 0..bands {
        for half in 0..2 {
            // Register k sums rows `first(k) .. first(k) + 8` of the slice.
            let first = |k: usize| b * BAND_ROWS + k * BAND_WORDS + half * 8;
            let mut start = [[0.0f32; 8]; 8];
            for (k, lanes) in start.iter_mut().enumerate() {
                let from = first(k).min(local);
                let to = (first(k) + 8).min(local);
                lanes[..to - from].copy_from_slice(&acc[from..to]);
            }
            // SAFETY: the loads read `start`; the band's words for every active column
            // (below cols, checked by the caller) lie inside `codes` (layout invariant).
            unsafe {
                let mut sums: [__m256; 8] =
                    std::array::from_fn(|k| _mm256_loadu_ps(start[k].as_ptr()));
                let words = codes.as_ptr().add(b * cols * BAND_WORDS + half * 8);
                let zero = _mm256_setzero_ps();
                for (&j, &a) in active.index.iter().zip(&active.value) {
                    let av = _mm256_set1_ps(a);
                    let products = [_mm256_mul_ps(t0, av), _mm256_mul_ps(t1, av), zero, zero];
                    let column = words.add(j as usize * BAND_WORDS) as *const u8;
                    let lookup = |codes: __m256i| lookup::<4>(&products, codes);
                    // From byte offset o: rows 16·o .. in the low nibbles of the words' low
                    // bytes, rows 16·(o + 4) .. in their high nibbles (`code_nibble`).
                    for o in 0..4 {
                        let c = _mm256_loadu_si256(column.add(o) as *const _);
                        sums[o] = _mm256_add_ps(sums[o], lookup(c));
                        sums[o + 4] = _mm256_add_ps(sums[o + 4], lookup(_mm256_srli_epi32::<4>(c)));
                    }
                }
                for (k, sum) in sums.iter().enumerate() {
                    _mm256_storeu_ps(start[k].as_mut_ptr(), *sum);
                }
            }
            for (k, lanes) in start.iter().enumerate() {
                let from = first(k).min(local);
                let to = (first(k) + 8).min(local);
                acc[from..to].copy_from_slice(&lanes[..to - from]);
            }
        }
    }
}
