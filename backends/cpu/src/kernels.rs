//! The kernels: `acc[row] += w[row, j] · a_j` over one slice, columns `j` in increasing order.
//!
//! Two traversals of the same entries: [`accumulate`] walks the columns of the non-zero
//! activations (zero activations are never visited) and adds each product to its row's
//! accumulator; [`accumulate_rows`] walks the row chunks, [`LANES`] rows side by side, window by
//! window, looking each entry's activation up among its window's.
//!
//! Contract: every variant (scalar, AVX2, AVX-512) of both traversals performs, for every local
//! row, the same f32 operations in the same order: the product `w · a_j` rounded once, then added
//! to the row's accumulator, columns in increasing order. The row traversal also adds the
//! products of zero activations and of padding entries, which are ±0.0 for finite activations
//! and leave a sum that started at +0.0 unchanged. Results are therefore bit-identical across
//! variants and traversals (for finite inputs) and equal to a row-by-row sum in increasing
//! column order starting from the accumulator's value.

/// `$f::<BITS>(args…)` with the code width of a sparse kind (0 for `sparse-f32`, whose entries
/// hold no code), `$dense` for `dense-f32` or `$codes` for `dense-code4`: the one place a kind
/// picks its monomorphised kernel, shared by every variant and traversal.
macro_rules! by_code_bits {
    ($kind:expr, $dense:expr, $codes:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $kind {
            KernelKind::Code4 => $f::<4>($($arg),*),
            KernelKind::Code5 => $f::<5>($($arg),*),
            KernelKind::Code8 => $f::<8>($($arg),*),
            KernelKind::SparseF32 => $f::<0>($($arg),*),
            KernelKind::DenseF32 => $dense,
            KernelKind::DenseCode4 => $codes,
        }
    };
}

/// The two entry points of a SIMD variant compiled with `$features`: `accumulate` (columns, by
/// the variant's `columns::<BITS>`, `dense` and `dense_codes`) and `rows` (by its
/// `row_chunks::<BITS>`).
#[cfg(target_arch = "x86_64")]
macro_rules! variant_entry_points {
    ($features:literal) => {
        /// # Safety
        /// The CPU supports the variant's features; `slice` satisfies the layout invariants
        /// (every column decodes to rows below `acc.len()`, column ranges lie inside the
        /// entries); every active column is below the matrix's column count; `table` has
        /// `2^bits` entries for coded kinds.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn accumulate(
            kind: KernelKind,
            table: &[f32],
            slice: &Slice,
            active: &Active,
            acc: &mut [f32],
        ) {
            // SAFETY (all calls below): forwarded from this function's contract.
            unsafe {
                by_code_bits!(
                    kind,
                    dense(slice, active, acc),
                    dense_codes(table, slice, active, acc),
                    columns(table, slice, active, acc)
                )
            }
        }

        /// # Safety
        /// As `accumulate`, for row chunks: lanes' rows below `acc.len()`, lanes' columns below
        /// `x.len()`, chunk steps inside the entries (and values), `chunks` inside the chunks.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn rows(
            kind: KernelKind,
            table: &[f32],
            rc: &RowChunks,
            chunks: std::ops::Range<usize>,
            x: &[f32],
            acc: &mut [f32],
        ) {
            // SAFETY (all calls below): forwarded from this function's contract.
            unsafe {
                by_code_bits!(
                    kind,
                    unreachable!("dense matrices have no row chunks"),
                    unreachable!("dense matrices have no row chunks"),
                    row_chunks(table, rc, chunks, x, acc)
                )
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::isa::Isa;
use crate::layout::{
    BAND_ROWS, BAND_WORDS, KernelKind, LANES, PackedMatrix, RowChunks, Slice, WINDOW_COLS,
    code_nibble,
};
use std::ops::Range;

/// The non-zero activations of an input vector: column indices (increasing) and values, and the
/// whole vector when it was collected with [`Active::gather`].
#[derive(Clone, Debug, Default)]
pub struct Active {
    pub index: Vec<u32>,
    pub value: Vec<f32>,
    /// The whole input vector (zeros included), or empty when only the list is known.
    pub dense: Vec<f32>,
}

impl Active {
    /// Collects the non-zero entries of `x`, and `x` itself.
    pub fn gather(&mut self, x: &[f32]) {
        self.collect(x);
        self.dense.extend_from_slice(x);
    }

    /// Collects the non-zero entries of `x` only.
    pub fn collect(&mut self, x: &[f32]) {
        self.clear();
        self.index.resize(x.len(), 0);
        self.value.resize(x.len(), 0.0);
        // Every entry is written at the list's end, which advances past the non-zero ones only:
        // no branch on the data, which at the benchmark densities mispredicts about one entry in
        // four. `n <= j`, so the slots exist.
        let mut n = 0;
        for (j, &a) in x.iter().enumerate() {
            self.index[n] = j as u32;
            self.value[n] = a;
            n += usize::from(a != 0.0);
        }
        self.index.truncate(n);
        self.value.truncate(n);
    }

    /// Empties the list and the whole vector.
    pub fn clear(&mut self) {
        self.index.clear();
        self.value.clear();
        self.dense.clear();
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Accumulates slice `s` of `m` times the active columns into `acc` (one value per local row).
///
/// Panics when `acc` does not have one value per local row or an active column is out of range
/// (callers size both from the matrix).
pub fn accumulate(isa: Isa, m: &PackedMatrix, s: usize, active: &Active, acc: &mut [f32]) {
    let slice = &m.slices()[s];
    assert_eq!(acc.len(), slice.rows().len(), "one accumulator per row");
    assert_eq!(active.index.len(), active.value.len());
    assert!(
        active.index.last().is_none_or(|&j| (j as usize) < m.cols()),
        "active column out of range"
    );
    // Where gathers and scatters are slow, the SIMD variants walk coded columns one entry at a
    // time too: the same operations in the same order, so the same bits.
    let coded = matches!(
        m.kind(),
        KernelKind::Code4 | KernelKind::Code5 | KernelKind::Code8
    );
    if coded && isa != Isa::Scalar && !Isa::gathers_are_fast() {
        return scalar(m.kind(), m.table(), slice, active, acc);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if Isa::Avx512.is_supported() => {
            // SAFETY: the CPU supports AVX-512 F/BW/VL (checked just above); the layout
            // invariants (validated when `m` was built, fields private) keep every decoded row
            // below `acc.len()` and every column range inside the entries; `acc` and the active
            // columns were checked above.
            unsafe { avx512::accumulate(m.kind(), m.table(), slice, active, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if Isa::Avx2.is_supported() => {
            // SAFETY: as for AVX-512, with AVX2 and FMA support checked just above.
            unsafe { avx2::accumulate(m.kind(), m.table(), slice, active, acc) }
        }
        _ => scalar(m.kind(), m.table(), slice, active, acc),
    }
}

/// Accumulates the row chunks `chunks` of slice `s` of `m` times the whole input `x` into `acc`
/// (the local rows of those chunks' lanes; other rows are left as they are).
///
/// Panics when the slice has no row chunks, `chunks` is not a range of them, `acc` does not have
/// one value per local row or `x` one value per column.
pub fn accumulate_rows(
    isa: Isa,
    m: &PackedMatrix,
    s: usize,
    chunks: Range<usize>,
    x: &[f32],
    acc: &mut [f32],
) {
    let slice = &m.slices()[s];
    let rc = slice.row_chunks().expect("the matrix was built with rows");
    assert!(
        chunks.start <= chunks.end && chunks.end <= rc.chunks().len(),
        "chunk range"
    );
    assert_eq!(acc.len(), slice.rows().len(), "one accumulator per row");
    assert_eq!(x.len(), m.cols(), "one input per column");
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if Isa::Avx512.is_supported() => {
            // SAFETY: AVX-512 F/BW/VL support checked just above; the row-chunk invariants
            // (validated when `m` was built) keep lanes' rows below `acc.len()` and columns
            // below `x.len()`, both checked above, and chunk steps inside the entries.
            unsafe { avx512::rows(m.kind(), m.table(), rc, chunks, x, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if Isa::Avx2.is_supported() => {
            // SAFETY: as for AVX-512, with AVX2 and FMA support checked just above.
            unsafe { avx2::rows(m.kind(), m.table(), rc, chunks, x, acc) }
        }
        _ => by_code_bits!(
            m.kind(),
            unreachable!("dense matrices have no row chunks"),
            unreachable!("dense matrices have no row chunks"),
            scalar_rows(m.table(), rc, chunks, x, acc)
        ),
    }
}

/// Chunk `c`'s sums as a row kernel starts them: its rows' accumulators, lane by lane (0.0 in
/// padding lanes).
#[inline]
fn chunk_start(rc: &RowChunks, c: usize, acc: &[f32]) -> [f32; LANES] {
    let mut sums = [0.0f32; LANES];
    for (s, &r) in sums.iter_mut().zip(rc.chunk_rows(c, acc.len())) {
        *s = acc[r as usize];
    }
    sums
}

/// Chunk `c`'s finished sums back into its rows' accumulators (padding lanes dropped).
#[inline]
fn chunk_end(rc: &RowChunks, c: usize, sums: &[f32; LANES], acc: &mut [f32]) {
    for (&s, &r) in sums.iter().zip(rc.chunk_rows(c, acc.len())) {
        acc[r as usize] = s;
    }
}

/// The portable row traversal: each chunk's lanes summed side by side, window by window.
/// `BITS` = 0: weights from the chunks' values; otherwise codes into `table`.
fn scalar_rows<const BITS: u32>(
    table: &[f32],
    rc: &RowChunks,
    chunks: Range<usize>,
    x: &[f32],
    acc: &mut [f32],
) {
    for c in chunks {
        let mut sum = chunk_start(rc, c, acc);
        let mut at = rc.chunks()[c].0 as usize * LANES;
        for (w, &steps) in rc.window_steps(c).iter().enumerate() {
            let window = &x[w * WINDOW_COLS..];
            for _ in 0..steps {
                for (lane, s) in sum.iter_mut().enumerate() {
                    let e = match BITS {
                        4 => u16::from(rc.narrow()[at + lane]),
                        _ => rc.wide()[at + lane],
                    };
                    let weight = match BITS {
                        0 => rc.values()[at + lane],
                        _ => table[(e >> 4) as usize],
                    };
                    *s += weight * window[(e & 15) as usize];
                }
                at += LANES;
            }
        }
        chunk_end(rc, c, &sum, acc);
    }
}

/// The portable variant.
fn scalar(kind: KernelKind, table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    match kind {
        KernelKind::Code4 => scalar_coded::<4>(table, slice, active, acc),
        KernelKind::Code5 => scalar_coded::<5>(table, slice, active, acc),
        KernelKind::Code8 => scalar_coded::<8>(table, slice, active, acc),
        KernelKind::SparseF32 => scalar_values(slice, active, acc),
        KernelKind::DenseF32 => dense_columns(slice, active, acc),
        KernelKind::DenseCode4 => scalar_dense_codes(table, slice, active, acc),
    }
}

/// `dense-code4`: band by band, every active column's codes looked up for the band's rows.
fn scalar_dense_codes(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let codes = slice.codes();
    let cols = slice.code_columns();
    for (b, rows) in acc.chunks_mut(BAND_ROWS).enumerate() {
        for (&j, &a) in active.index.iter().zip(&active.value) {
            let at = (b * cols + j as usize) * BAND_WORDS;
            let words = &codes[at..at + BAND_WORDS];
            for (offset, y) in rows.iter_mut().enumerate() {
                let word = words[offset % BAND_WORDS];
                let code = (word >> (4 * code_nibble(offset / BAND_WORDS))) & 15;
                *y += table[code as usize] * a;
            }
        }
    }
}

/// How many active columns ahead [`scalar_coded`] prefetches a column's first entries, whose
/// address the hardware prefetcher cannot guess (the rest of the column follows in sequence).
const PREFETCH_AHEAD: usize = 4;

/// Coded columns one entry at a time: `acc[row] += p[code]`, where `p[k] = table[k] · a_j` is
/// computed once per column (the product `w · a_j` rounded once, as the contract requires).
/// Each entry costs two loads and a store and no gather or scatter, which makes this the
/// fastest column kernel on machines whose gathers and scatters are slow
/// ([`Isa::gathers_are_fast`]); for 8-bit codes the 256 products would cost more than most
/// columns, so the product is formed per entry instead. Kept out of line: inlined into
/// [`scalar`]'s dispatch its loop compiles about 15% slower (measured on Alex-6).
#[inline(never)]
fn scalar_coded<const BITS: u32>(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries) = (slice.ptr(), slice.entries());
    let mask = (1u16 << BITS) - 1;
    let table = &table[..1 << BITS];
    let mut products = [0.0f32; 32];
    for (i, (&j, &a)) in active.index.iter().zip(&active.value).enumerate() {
        #[cfg(target_arch = "x86_64")]
        if let Some(&ahead) = active.index.get(i + PREFETCH_AHEAD) {
            let from = ptr[ahead as usize] as usize;
            if from < entries.len() {
                // SAFETY: `from` lies inside the entries; prefetching reads nothing.
                unsafe {
                    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                    _mm_prefetch::<_MM_HINT_T0>(entries.as_ptr().add(from) as *const i8);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
        let column = &entries[ptr[j as usize] as usize..ptr[j as usize + 1] as usize];
        if BITS <= 5 {
            let products = &mut products[..1 << BITS];
            for (p, &w) in products.iter_mut().zip(table) {
                *p = w * a;
            }
            // SAFETY: every entry's row lies below the slice's row count, which is `acc.len()`
            // (layout invariant, checked by the caller); the code is masked to fewer than
            // `2^BITS` = `products.len()`.
            let add = |acc: &mut [f32], e: u16| unsafe {
                *acc.get_unchecked_mut((e >> BITS) as usize) +=
                    *products.get_unchecked((e & mask) as usize);
            };
            // Four entries per iteration: a one-entry loop runs up to 15% slower when its few
            // instructions straddle a 64-byte boundary (measured on Zen 4), four amortise it.
            let mut quads = column.chunks_exact(4);
            for q in &mut quads {
                add(acc, q[0]);
                add(acc, q[1]);
                add(acc, q[2]);
                add(acc, q[3]);
            }
            for &e in quads.remainder() {
                add(acc, e);
            }
        } else {
            for &e in column {
                // SAFETY: as above, with `table.len()` = `2^BITS`.
                unsafe {
                    *acc.get_unchecked_mut((e >> BITS) as usize) +=
                        *table.get_unchecked((e & mask) as usize) * a;
                }
            }
        }
    }
}

fn scalar_values(slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries, values) = (slice.ptr(), slice.entries(), slice.values());
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let range = ptr[j as usize] as usize..ptr[j as usize + 1] as usize;
        for (&e, &w) in entries[range.clone()].iter().zip(&values[range]) {
            acc[e as usize] += w * a;
        }
    }
}

/// Dense columns: `acc += column_j · a_j`. Plain loops that the compiler vectorizes with
/// separate multiplies and adds, so every variant shares this one.
pub(crate) fn dense_columns(slice: &Slice, active: &Active, acc: &mut [f32]) {
    let local = acc.len();
    let values = slice.values();
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let column = &values[j as usize * local..(j as usize + 1) * local];
        for (y, &w) in acc.iter_mut().zip(column) {
            *y += w * a;
        }
    }
}
