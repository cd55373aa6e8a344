//! The CPU layout of a weight matrix: what the kernels read, built once from a weight's encoding.
//!
//! A matrix `[rows, cols]` (dense weights `[out, in]`; a conv group's filters `[out, in·kh·kw]`)
//! is split into row slices, the units the worker threads take in turn. Each slice stores its
//! rows column by column (compressed sparse columns, as EIE's PEs do), so a zero activation
//! skips its whole column:
//!
//! - coded kinds (`sparse-code4/5/8`, from weight sharing): one 16-bit entry per stored weight,
//!   `code | row << bits`, where `code` indexes the layer's table (the codebook, plus a 0.0 entry
//!   when the codebook has none) and `row` is the entry's local row within the slice. `bits` is
//!   the narrowest of 4, 5, 8 that holds the table: 16, 32 or 256 entries, looked up inside the
//!   kernels. A slice therefore holds at most `2^(16 - bits)` rows ([`KernelKind::max_slice_rows`]):
//!   rows decode without a running sum, so a column's entries are independent of each other.
//! - `sparse-f32` (pruned, unquantized): the same 16-bit entries holding only the local row, and
//!   one f32 value per entry.
//! - `dense-f32` (more than half non-zero, unquantized): each column's rows contiguous.
//! - `dense-code4` (weight sharing with at most 16 table entries, at least one weight in
//!   [`DENSE_CODES_FROM`] non-zero): every element's 4-bit code, zeros included, and no indices.
//!   At that density the codes take no more bytes than the two sparse layouts' entries, and a
//!   product reads no index and no padding: for each active column, 16 rows per table lookup in
//!   registers. Rows go in bands of [`BAND_ROWS`]; per band and column, [`BAND_WORDS`] 32-bit
//!   words where nibble [`code_nibble`]`(k)` of word `i` is the code of the band's row `i + 16·k`
//!   (rows past the slice hold the table's zero); one word of padding ends the codes.
//!
//! Sparse kinds also keep the same entries row by row ([`RowChunks`]): a slice's rows, sorted by
//! decreasing non-zero count, go in chunks of [`LANES`] rows summed side by side, and the columns
//! in windows of [`WINDOW_COLS`]. Per chunk and window, some steps (the most entries any of the
//! chunk's rows has in the window, at most [`WINDOW_COLS`]); step `s` holds the `s`-th entry of
//! the window of each of the chunk's rows, `column | code << 4` with the column counted from the
//! window's first (one byte for `sparse-code4`, 16 bits otherwise; `sparse-f32` keeps a value per
//! entry and code 0). Rows with fewer entries in the window end with padding (column 0, the
//! table's zero or the value 0.0). A window's 16 activations fit one register, so the kernels look
//! them up by column in registers instead of gathering them from memory. The column layout serves
//! sparse activations (a zero activation skips its column); the row layout serves dense ones (no
//! scattered accumulator updates, no gathers). [`PackedMatrix::traversal_for`] picks one per
//! product from the number of active columns.
//!
//! Slices: one per thread (a slice walked by columns pays for every active column, so finer
//! slices cost more than they balance; row walks cut slices finer, see [`RowChunks::split`]).
//! When the weight carries a partition, rows are dealt out as its scheme says (row `i` to slice `pe(i) mod slices`, EIE's
//! interleave); otherwise slices are contiguous row ranges cut so that each holds about the same
//! number of non-zeros. A slice over [`KernelKind::max_slice_rows`] is then cut into consecutive
//! pieces of its rows.
//!
//! Invariants (checked when a matrix is built, relied on by the kernels; fields are private):
//! `ptr` has `cols + 1` non-decreasing entries ending at `entries.len()`; any column's entries
//! hold strictly increasing local rows below the slice's row count; a stored weight decodes to
//! exactly the weight's value (codes are checked against the values). Row chunks: the lanes of
//! all chunks hold each local row exactly once (then zeros past the last row); every chunk's
//! steps, window by window, follow each other in the entries; decoding any entry gives a column
//! below `cols` and a code inside the table.

use crate::CpuError;
use sprig_ir::Weight;
use sprig_ir::encoding::Encoding;
use std::ops::Range;

/// Which kernel a matrix runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// Weight sharing with at most 16 table entries.
    Code4,
    /// Weight sharing with at most 32 table entries.
    Code5,
    /// Weight sharing with at most 256 table entries.
    Code8,
    /// Pruned f32 values.
    SparseF32,
    /// Every element, f32.
    DenseF32,
    /// Every element's code, at most 16 table entries.
    DenseCode4,
}

impl KernelKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Code4 => "sparse-code4",
            KernelKind::Code5 => "sparse-code5",
            KernelKind::Code8 => "sparse-code8",
            KernelKind::SparseF32 => "sparse-f32",
            KernelKind::DenseF32 => "dense-f32",
            KernelKind::DenseCode4 => "dense-code4",
        }
    }

    /// Bits of the code inside an entry (0 when entries hold only the delta).
    pub fn code_bits(self) -> u32 {
        match self {
            KernelKind::Code4 | KernelKind::DenseCode4 => 4,
            KernelKind::Code5 => 5,
            KernelKind::Code8 => 8,
            KernelKind::SparseF32 | KernelKind::DenseF32 => 0,
        }
    }

    /// The most rows a slice holds: local rows of a column entry fit beside the code in 16 bits.
    pub fn max_slice_rows(self) -> usize {
        match self {
            KernelKind::DenseF32 | KernelKind::DenseCode4 => usize::MAX,
            _ => 1 << (16 - self.code_bits()),
        }
    }
}

/// Rows summed side by side by the row kernels: one chunk's lanes.
pub const LANES: usize = 16;

/// Columns of one window of the row layout: the activations one register holds.
pub const WINDOW_COLS: usize = 16;

/// `dense-code4` is used when at least one weight in this many is non-zero.
pub const DENSE_CODES_FROM: usize = 8;

/// Rows of one band of `dense-code4` codes, and its 32-bit words per column.
pub const BAND_ROWS: usize = 128;
pub const BAND_WORDS: usize = 16;

/// The nibble of word `i` that holds the code of a band's row `i + 16·k`: the low nibble of
/// byte `k mod 4` for `k < 4`, its high nibble otherwise. Read from byte offset `k mod 4`, the
/// band's words hold the codes of rows `16·k ..` in the low nibbles of their low bytes, and
/// shifted down by 4 those of rows `16·(k + 4) ..`: eight registers of codes from four loads and
/// four shifts.
pub const fn code_nibble(k: usize) -> usize {
    2 * (k % 4) + k / 4
}

/// How a product walks a sparse matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Traversal {
    /// Pick per product from the input's density ([`PackedMatrix::traversal_for`]).
    #[default]
    Auto,
    /// Column by column over the active columns (zero activations skipped).
    Columns,
    /// Row chunk by row chunk, window by window (every stored entry visited).
    Rows,
}

impl Traversal {
    pub fn name(self) -> &'static str {
        match self {
            Traversal::Auto => "auto",
            Traversal::Columns => "columns",
            Traversal::Rows => "rows",
        }
    }
}

/// A slice's entries row by row, in chunks of [`LANES`] rows and windows of [`WINDOW_COLS`]
/// columns (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct RowChunks {
    /// The local row of each lane, [`LANES`] per chunk (0 in lanes past the slice's rows).
    lane_rows: Vec<u32>,
    /// Per chunk: its first step and its number of steps (over all windows).
    chunks: Vec<(u32, u32)>,
    /// Windows of the matrix's columns.
    windows: usize,
    /// Per chunk, per window: the window's steps.
    window_steps: Vec<u8>,
    /// `sparse-code4`: `column | code << 4` per entry, [`LANES`] per step.
    narrow: Vec<u8>,
    /// Other sparse kinds: `column | code << 4` per entry, [`LANES`] per step.
    wide: Vec<u16>,
    /// `sparse-f32`: one value per entry (0.0 for padding).
    values: Vec<f32>,
}

impl RowChunks {
    pub(crate) fn chunks(&self) -> &[(u32, u32)] {
        &self.chunks
    }

    /// The local rows of chunk `c`'s lanes in a slice of `local` rows (padding lanes past the
    /// slice's rows left out).
    pub(crate) fn chunk_rows(&self, c: usize, local: usize) -> &[u32] {
        let lanes = local.saturating_sub(c * LANES).min(LANES);
        &self.lane_rows[c * LANES..c * LANES + lanes]
    }

    pub(crate) fn windows(&self) -> usize {
        self.windows
    }

    /// Chunk `c`'s steps per window.
    pub(crate) fn window_steps(&self, c: usize) -> &[u8] {
        &self.window_steps[c * self.windows..(c + 1) * self.windows]
    }

    pub(crate) fn narrow(&self) -> &[u8] {
        &self.narrow
    }

    pub(crate) fn wide(&self) -> &[u16] {
        &self.wide
    }

    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }

    /// Entries stored, padding included.
    pub fn slots(&self) -> usize {
        self.narrow.len() + self.wide.len()
    }

    /// The chunks cut into at most `parts` consecutive ranges of about the same number of steps
    /// (every chunk in exactly one range, no range empty).
    pub fn split(&self, parts: usize) -> Vec<Range<usize>> {
        let total: u64 = self
            .chunks
            .iter()
            .map(|&(_, steps)| u64::from(steps) + 1)
            .sum();
        let parts = parts.clamp(1, self.chunks.len().max(1)) as u64;
        let mut out = Vec::with_capacity(parts as usize);
        let (mut start, mut seen) = (0, 0u64);
        for (c, &(_, steps)) in self.chunks.iter().enumerate() {
            seen += u64::from(steps) + 1;
            // Close the current range once it holds its share of the steps.
            if seen * parts >= (out.len() as u64 + 1) * total {
                out.push(start..c + 1);
                start = c + 1;
            }
        }
        if start < self.chunks.len() {
            out.push(start..self.chunks.len());
        }
        out
    }

    /// Bytes of these arrays.
    pub fn bytes(&self) -> usize {
        self.lane_rows.len() * 4
            + self.chunks.len() * 8
            + self.window_steps.len()
            + self.narrow.len()
            + self.wide.len() * 2
            + self.values.len() * 4
    }
}

/// One slice: some rows of the matrix, stored column by column (and row by row).
#[derive(Clone, Debug)]
pub struct Slice {
    /// The matrix row of each local row, increasing.
    rows: Vec<u32>,
    /// Column starts in `entries` (sparse kinds), `cols + 1` values.
    ptr: Vec<u32>,
    /// `code | row << bits` (coded kinds) or `row` (`sparse-f32`), local rows.
    entries: Vec<u16>,
    /// `sparse-f32`: one value per entry; `dense-f32`: `cols × rows.len()`, column-major.
    values: Vec<f32>,
    /// `dense-code4`: per band of [`BAND_ROWS`] local rows, per column, [`BAND_WORDS`] words.
    codes: Vec<u32>,
    /// The row layout of the same entries (sparse kinds, when built with it).
    row_chunks: Option<RowChunks>,
}

impl Slice {
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    pub(crate) fn ptr(&self) -> &[u32] {
        &self.ptr
    }

    pub(crate) fn entries(&self) -> &[u16] {
        &self.entries
    }

    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }

    pub(crate) fn codes(&self) -> &[u32] {
        &self.codes
    }

    /// Bands of `dense-code4` codes ([`BAND_ROWS`] local rows each, the last one partly filled).
    pub fn bands(&self) -> usize {
        self.rows.len().div_ceil(BAND_ROWS)
    }

    /// Columns of `dense-code4` codes (each band holds [`BAND_WORDS`] words per column).
    pub(crate) fn code_columns(&self) -> usize {
        self.codes.len().saturating_sub(1) / (self.bands() * BAND_WORDS).max(1)
    }

    pub fn row_chunks(&self) -> Option<&RowChunks> {
        self.row_chunks.as_ref()
    }

    /// Bytes of the column layout's arrays.
    pub fn bytes(&self) -> usize {
        self.rows.len() * 4
            + self.ptr.len() * 4
            + self.entries.len() * 2
            + self.values.len() * 4
            + self.codes.len() * 4
    }
}

/// A weight matrix in the CPU layout.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    kind: KernelKind,
    /// Coded kinds: `2^bits` values (the codebook, zero-filled); empty otherwise.
    table: Vec<f32>,
    slices: Vec<Slice>,
    /// Weights stored (non-zeros; every element for `dense-f32`), padding excluded.
    stored: usize,
}

/// Where a matrix's values come from: a row-major block of a weight and its encoding.
#[derive(Clone, Copy, Debug)]
pub struct MatrixSource<'a> {
    /// Row-major values of the whole weight.
    pub values: &'a [f32],
    pub encoding: &'a Encoding,
    /// The matrix is rows `first_row .. first_row + rows` of the weight viewed as `[_, cols]`.
    pub first_row: usize,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> MatrixSource<'a> {
    /// The whole weight as a `[rows, cols]` matrix.
    pub fn whole(weight: &'a Weight, values: &'a [f32], rows: usize, cols: usize) -> Self {
        MatrixSource {
            values,
            encoding: &weight.encoding,
            first_row: 0,
            rows,
            cols,
        }
    }
}

/// The kernel table for a codebook: the codebook, with a 0.0 appended when it has none; the
/// index of the zero; the kind whose code width holds it (`None` when over 256 entries).
fn code_table(codebook: &[f32]) -> (Vec<f32>, u16, Option<KernelKind>) {
    let mut table = codebook.to_vec();
    let zero = match table.iter().position(|&v| v == 0.0) {
        Some(z) => z,
        None => {
            table.push(0.0);
            table.len() - 1
        }
    };
    let kind = match table.len() {
        0..=16 => Some(KernelKind::Code4),
        17..=32 => Some(KernelKind::Code5),
        33..=256 => Some(KernelKind::Code8),
        _ => None,
    };
    if let Some(k) = kind {
        table.resize(1 << k.code_bits(), 0.0);
    }
    (table, zero as u16, kind)
}

impl PackedMatrix {
    /// Builds the layout of `src` for products on `threads` threads (row slices as the module
    /// docs say), sparse kinds with both the column and the row layout.
    pub fn build(src: MatrixSource<'_>, threads: usize) -> Result<PackedMatrix, CpuError> {
        PackedMatrix::build_with(src, threads, true)
    }

    /// [`PackedMatrix::build`] with the column layout only (for products that always see a
    /// list of non-zero inputs and never the whole input vector, as conv2d's receptive fields).
    pub fn build_columns(src: MatrixSource<'_>, threads: usize) -> Result<PackedMatrix, CpuError> {
        PackedMatrix::build_with(src, threads, false)
    }

    fn build_with(
        src: MatrixSource<'_>,
        threads: usize,
        with_rows: bool,
    ) -> Result<PackedMatrix, CpuError> {
        let MatrixSource {
            values,
            encoding,
            first_row,
            rows,
            cols,
        } = src;
        let len = rows.checked_mul(cols).ok_or(CpuError::TooLarge)?;
        let start = first_row.checked_mul(cols).ok_or(CpuError::TooLarge)?;
        let block = values
            .get(start..start + len)
            .ok_or_else(|| CpuError::Layout("the matrix lies outside its weight".to_string()))?;
        if rows > u32::MAX as usize || cols >= u32::MAX as usize {
            return Err(CpuError::TooLarge);
        }
        let nonzeros = block.iter().filter(|&&v| v != 0.0).count();

        // Codes of this block, one per element, when the weight is shared.
        let mut kind = if nonzeros * 2 > len {
            KernelKind::DenseF32
        } else {
            KernelKind::SparseF32
        };
        let mut table = Vec::new();
        let mut zero_code = 0u16;
        let mut element_codes: Option<Vec<u16>> = None;
        if let Some(shared) = &encoding.shared {
            let (t, z, k) = code_table(&shared.codebook);
            if let Some(k) = k {
                element_codes = Some(block_codes(values, encoding, start, len)?);
                kind = if k == KernelKind::Code4 && nonzeros * DENSE_CODES_FROM >= len {
                    KernelKind::DenseCode4
                } else {
                    k
                };
                table = t;
                zero_code = z;
            }
        }

        let wanted = threads.max(1);
        let slice_of = slice_assignment(block, rows, cols, wanted.min(rows.max(1)), encoding);
        let mut built = Vec::with_capacity(wanted);
        for slice_rows in capped_slices(&slice_of, kind.max_slice_rows()) {
            built.push(match kind {
                KernelKind::DenseF32 => dense_slice(block, cols, slice_rows),
                KernelKind::DenseCode4 => dense_code_slice(
                    cols,
                    slice_rows,
                    element_codes.as_deref().expect("coded kinds have codes"),
                    zero_code,
                ),
                _ => sparse_slice(
                    block,
                    cols,
                    slice_rows,
                    EntryCoding {
                        kind,
                        table: &table,
                        zero_code,
                        codes: element_codes.as_deref(),
                    },
                    with_rows,
                )?,
            });
        }
        let stored = match kind {
            KernelKind::DenseF32 => len,
            _ => nonzeros,
        };
        let m = PackedMatrix {
            rows,
            cols,
            kind,
            table,
            slices: built,
            stored,
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks the invariants the kernels rely on.
    fn validate(&self) -> Result<(), CpuError> {
        let bad = |m: String| Err(CpuError::Layout(m));
        for s in &self.slices {
            let local = s.rows.len();
            if self.kind == KernelKind::DenseF32 {
                if s.values.len() != local * self.cols {
                    return bad("dense slice size".to_string());
                }
                continue;
            }
            if self.kind == KernelKind::DenseCode4 {
                if s.codes.len() != s.bands() * self.cols * BAND_WORDS + 1 || self.table.len() != 16
                {
                    return bad("dense code slice size".to_string());
                }
                continue;
            }
            if s.ptr.len() != self.cols + 1
                || s.ptr.last().copied() != Some(s.entries.len() as u32)
                || s.ptr.windows(2).any(|w| w[0] > w[1])
            {
                return bad("column pointers".to_string());
            }
            if self.kind == KernelKind::SparseF32 && s.values.len() != s.entries.len() {
                return bad("values per entry".to_string());
            }
            if local > self.kind.max_slice_rows() {
                return bad("a slice holds more rows than its entries can name".to_string());
            }
            let bits = self.kind.code_bits();
            for c in 0..self.cols {
                let mut next = 0usize; // the lowest local row the next entry may hold
                for &e in &s.entries[s.ptr[c] as usize..s.ptr[c + 1] as usize] {
                    let row = e as usize >> bits;
                    if row < next || row >= local {
                        return bad(format!("column {c} holds rows out of order or range"));
                    }
                    next = row + 1;
                }
            }
            if let Some(rc) = &s.row_chunks {
                self.validate_rows(rc, local)?;
            }
        }
        Ok(())
    }

    /// The row-chunk invariants of one slice with `local` rows.
    fn validate_rows(&self, rc: &RowChunks, local: usize) -> Result<(), CpuError> {
        let bad = |m: &str| Err(CpuError::Layout(format!("row chunks: {m}")));
        if rc.chunks.len() != local.div_ceil(LANES) || rc.lane_rows.len() != rc.chunks.len() * LANES
        {
            return bad("chunk count");
        }
        if rc.windows != self.cols.div_ceil(WINDOW_COLS)
            || rc.window_steps.len() != rc.chunks.len() * rc.windows
        {
            return bad("window count");
        }
        let narrow = self.kind == KernelKind::Code4;
        let slots = rc.slots();
        if (narrow && !rc.wide.is_empty()) || (!narrow && !rc.narrow.is_empty()) {
            return bad("entry width");
        }
        let values = if self.kind == KernelKind::SparseF32 {
            slots
        } else {
            0
        };
        if rc.values.len() != values {
            return bad("values per entry");
        }
        let mut seen = vec![false; local];
        for (lane, &r) in rc.lane_rows.iter().enumerate() {
            if lane < local {
                match seen.get_mut(r as usize) {
                    Some(s) if !*s => *s = true,
                    _ => return bad("lanes are not a permutation of the rows"),
                }
            } else if r != 0 {
                return bad("lanes past the rows");
            }
        }
        // Codes index the table (`sparse-f32` entries hold code 0 and an empty table).
        let codes = self.table.len().max(1);
        let mut next = 0usize; // the first step of the next chunk
        for (c, &(start, steps)) in rc.chunks.iter().enumerate() {
            let per_window = rc.window_steps(c);
            let total: usize = per_window.iter().map(|&k| k as usize).sum();
            if start as usize != next || steps as usize != total {
                return bad("chunks do not follow each other");
            }
            if per_window.iter().any(|&k| k as usize > WINDOW_COLS) {
                return bad("a window holds more steps than columns");
            }
            let mut at = next * LANES;
            for (w, &k) in per_window.iter().enumerate() {
                for _ in 0..k as usize * LANES {
                    let e = match rc.narrow.get(at) {
                        Some(&e) => u32::from(e),
                        None => match rc.wide.get(at) {
                            Some(&e) => u32::from(e),
                            None => return bad("chunk outside the entries"),
                        },
                    };
                    if w * WINDOW_COLS + (e & 15) as usize >= self.cols {
                        return bad("an entry decodes past the columns");
                    }
                    if (e >> 4) as usize >= codes {
                        return bad("an entry's code lies outside the table");
                    }
                    at += 1;
                }
            }
            next += total;
        }
        if next * LANES != slots {
            return bad("entries past the last chunk");
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    pub(crate) fn table(&self) -> &[f32] {
        &self.table
    }

    pub fn slices(&self) -> &[Slice] {
        &self.slices
    }

    /// Weights stored, padding excluded.
    pub fn stored(&self) -> usize {
        self.stored
    }

    /// Entries stored, padding included (elements for `dense-f32`).
    pub fn entries(&self) -> usize {
        self.slices
            .iter()
            .map(|s| match self.kind {
                KernelKind::DenseF32 => s.values.len(),
                KernelKind::DenseCode4 => s.rows.len() * self.cols,
                _ => s.entries.len(),
            })
            .sum()
    }

    /// Bytes of the whole layout (both layouts when the matrix has rows).
    pub fn bytes(&self) -> usize {
        self.table.len() * 4
            + self
                .slices
                .iter()
                .map(|s| s.bytes() + s.row_chunks.as_ref().map_or(0, RowChunks::bytes))
                .sum::<usize>()
    }

    /// Whether the row layout was built (sparse kinds built by [`PackedMatrix::build`]).
    pub fn has_rows(&self) -> bool {
        self.slices.iter().all(|s| s.row_chunks.is_some())
    }

    /// Entries a product visits walking the columns `active` (padding included).
    pub fn column_work(&self, active: &[u32]) -> usize {
        if matches!(self.kind, KernelKind::DenseF32 | KernelKind::DenseCode4) {
            return active.len() * self.rows;
        }
        self.slices
            .iter()
            .map(|s| {
                active
                    .iter()
                    .map(|&j| (s.ptr[j as usize + 1] - s.ptr[j as usize]) as usize)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Entries a product visits walking the rows (padding included); `None` without rows.
    pub fn row_work(&self) -> Option<usize> {
        self.slices
            .iter()
            .map(|s| s.row_chunks.as_ref().map(RowChunks::slots))
            .sum()
    }

    /// The traversal a product with the columns `active` non-zero takes when `wanted` is
    /// [`Traversal::Auto`]: rows when the matrix has them and visiting every row entry, padding
    /// included, with the activations looked up in registers costs less than visiting the active
    /// columns' entries with scattered accumulator updates (a row entry costs about a fifth of a
    /// column entry: 0.07–0.10 ns against 0.5–0.7 ns, AVX-512 on Zen 4, on the benchmark layers);
    /// otherwise as asked, columns when rows are missing.
    pub fn traversal_for(&self, wanted: Traversal, active: &[u32]) -> Traversal {
        self.pick_traversal(wanted, || self.column_work(active))
    }

    /// [`PackedMatrix::traversal_for`] with the column work computed only when needed.
    pub(crate) fn pick_traversal(
        &self,
        wanted: Traversal,
        column_work: impl FnOnce() -> usize,
    ) -> Traversal {
        let Some(row_work) = self.row_work() else {
            return Traversal::Columns;
        };
        match wanted {
            Traversal::Auto if row_work < ROW_ENTRY_ADVANTAGE * column_work() => Traversal::Rows,
            Traversal::Rows => Traversal::Rows,
            _ => Traversal::Columns,
        }
    }

    /// Bytes of weights, pointers and activations a product reads when the columns `active`
    /// are non-zero and it walks the matrix by `traversal` (as [`PackedMatrix::traversal_for`]
    /// resolves it).
    pub fn bytes_read(&self, traversal: Traversal, active: &[u32]) -> usize {
        let mut bytes = self.table.len() * 4;
        if self.traversal_for(traversal, active) == Traversal::Rows {
            let rows: usize = self
                .slices
                .iter()
                .filter_map(|s| s.row_chunks.as_ref())
                .map(RowChunks::bytes)
                .sum();
            return bytes + rows + self.cols * 4;
        }
        for s in &self.slices {
            for &j in active {
                let j = j as usize;
                bytes += match self.kind {
                    KernelKind::DenseF32 => s.rows.len() * 4,
                    KernelKind::DenseCode4 => s.bands() * BAND_WORDS * 4,
                    KernelKind::SparseF32 => 8 + 6 * (s.ptr[j + 1] - s.ptr[j]) as usize,
                    _ => 8 + 2 * (s.ptr[j + 1] - s.ptr[j]) as usize,
                };
            }
        }
        bytes + active.len() * 8
    }
}

/// How many row entries cost as much as one column entry (see [`PackedMatrix::traversal_for`]).
const ROW_ENTRY_ADVANTAGE: usize = 5;

/// One code per element of the block `start .. start + len`, checked against the values.
fn block_codes(
    values: &[f32],
    encoding: &Encoding,
    start: usize,
    len: usize,
) -> Result<Vec<u16>, CpuError> {
    let shared = encoding.shared.as_ref().expect("caller checked");
    let per_nonzero = encoding.pruned.is_some();
    let mismatch = || CpuError::Layout("codes do not match the weight's values".to_string());
    // Codes per non-zero: skip those of the elements before the block.
    let mut cursor = if per_nonzero {
        values[..start].iter().filter(|&&v| v != 0.0).count()
    } else {
        start
    };
    let (table, zero, _) = code_table(&shared.codebook);
    let mut out = Vec::with_capacity(len);
    for &v in &values[start..start + len] {
        let code = if per_nonzero && v == 0.0 {
            zero
        } else {
            let c = *shared.codes.get(cursor).ok_or_else(mismatch)?;
            cursor += 1;
            c
        };
        // f32 equality: a stored -0.0 matches a 0.0 entry.
        if table.get(code as usize) != Some(&v) {
            return Err(mismatch());
        }
        out.push(code);
    }
    Ok(out)
}

/// Each slice's rows (increasing) from the slice of every row, a slice over `max_rows` rows cut
/// into consecutive pieces; empty slices dropped, at least one slice kept.
fn capped_slices(slice_of: &[usize], max_rows: usize) -> Vec<Vec<u32>> {
    let count = slice_of.iter().max().map_or(1, |&s| s + 1);
    let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); count];
    for (r, &s) in slice_of.iter().enumerate() {
        rows_of[s].push(r as u32);
    }
    let mut out: Vec<Vec<u32>> = rows_of
        .into_iter()
        .filter(|rows| !rows.is_empty())
        .flat_map(|rows| {
            rows.chunks(max_rows.max(1))
                .map(<[u32]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// The slice of every row.
fn slice_assignment(
    block: &[f32],
    rows: usize,
    cols: usize,
    slices: usize,
    encoding: &Encoding,
) -> Vec<usize> {
    if let Some(p) = &encoding.partition {
        return (0..rows)
            .map(|r| p.scheme.pe_of(r, p.pes.max(1)) % slices)
            .collect();
    }
    // Contiguous ranges, cut where the running non-zero count passes each share.
    let per_row: Vec<usize> = (0..rows)
        .map(|r| {
            block[r * cols..(r + 1) * cols]
                .iter()
                .filter(|&&v| v != 0.0)
                .count()
                + 1
        })
        .collect();
    let total: usize = per_row.iter().sum();
    let mut seen = 0usize;
    per_row
        .iter()
        .map(|&n| {
            let s = (seen * slices / total.max(1)).min(slices - 1);
            seen += n;
            s
        })
        .collect()
}

fn dense_slice(block: &[f32], cols: usize, rows: Vec<u32>) -> Slice {
    let local = rows.len();
    let mut values = vec![0.0f32; local * cols];
    for (lr, &r) in rows.iter().enumerate() {
        let row = &block[r as usize * cols..(r as usize + 1) * cols];
        for (c, &v) in row.iter().enumerate() {
            values[c * local + lr] = v;
        }
    }
    Slice {
        rows,
        ptr: Vec::new(),
        entries: Vec::new(),
        values,
        codes: Vec::new(),
        row_chunks: None,
    }
}

/// A `dense-code4` slice: the code of every element of its rows (see the module docs).
fn dense_code_slice(cols: usize, rows: Vec<u32>, element_codes: &[u16], zero_code: u16) -> Slice {
    let bands = rows.len().div_ceil(BAND_ROWS);
    // One word past the last column: the kernels read a column's words from byte offsets up
    // to 3, so the last read ends up to 3 bytes past its column.
    let mut codes = vec![0u32; bands * cols * BAND_WORDS + 1];
    for b in 0..bands {
        for offset in 0..BAND_ROWS {
            let (word, nibble) = (offset % BAND_WORDS, code_nibble(offset / BAND_WORDS));
            let row = rows.get(b * BAND_ROWS + offset);
            for c in 0..cols {
                let code = match row {
                    Some(&r) => element_codes[r as usize * cols + c],
                    None => zero_code,
                };
                codes[(b * cols + c) * BAND_WORDS + word] |= u32::from(code) << (4 * nibble);
            }
        }
    }
    Slice {
        rows,
        ptr: Vec::new(),
        entries: Vec::new(),
        values: Vec::new(),
        codes,
        row_chunks: None,
    }
}

/// How a sparse slice's entries are coded.
struct EntryCoding<'a> {
    kind: KernelKind,
    /// The kernel table (coded kinds).
    table: &'a [f32],
    /// The table's zero (row-chunk padding of coded kinds).
    zero_code: u16,
    /// One code per element of the block (coded kinds).
    codes: Option<&'a [u16]>,
}

fn sparse_slice(
    block: &[f32],
    cols: usize,
    rows: Vec<u32>,
    coding: EntryCoding<'_>,
    with_rows: bool,
) -> Result<Slice, CpuError> {
    let EntryCoding {
        kind,
        table,
        zero_code,
        codes,
    } = coding;
    // Counting sort of the non-zeros by column; rows stay increasing within a column.
    let mut count = vec![0u32; cols + 1];
    for &r in &rows {
        let row = &block[r as usize * cols..(r as usize + 1) * cols];
        for (c, &v) in row.iter().enumerate() {
            if v != 0.0 {
                count[c + 1] += 1;
            }
        }
    }
    for c in 0..cols {
        count[c + 1] += count[c];
    }
    let nnz = count[cols] as usize;
    let mut fill = count.clone();
    // (local row, element index) per non-zero, column-major.
    let mut items = vec![(0u32, 0usize); nnz];
    for (lr, &r) in rows.iter().enumerate() {
        let base = r as usize * cols;
        for (c, &v) in block[base..base + cols].iter().enumerate() {
            if v != 0.0 {
                items[fill[c] as usize] = (lr as u32, base + c);
                fill[c] += 1;
            }
        }
    }
    let bits = kind.code_bits();
    let pad_code = if kind == KernelKind::SparseF32 {
        0
    } else {
        zero_code
    };
    let mut ptr = Vec::with_capacity(cols + 1);
    let mut entries = Vec::with_capacity(nnz);
    let mut values = Vec::new();
    ptr.push(0u32);
    for c in 0..cols {
        for &(lr, at) in &items[count[c] as usize..count[c + 1] as usize] {
            let code = match codes {
                Some(codes) => codes[at],
                None => 0,
            };
            debug_assert!(codes.is_none() || table[code as usize] == block[at]);
            debug_assert!((lr as usize) < kind.max_slice_rows());
            entries.push(code | (lr << bits) as u16);
            if kind == KernelKind::SparseF32 {
                values.push(block[at]);
            }
        }
        let end = u32::try_from(entries.len()).map_err(|_| CpuError::TooLarge)?;
        ptr.push(end);
    }
    let row_chunks = if with_rows {
        // Each local row's (column, element) pairs in increasing column.
        let mut per_row: Vec<Vec<(u32, usize)>> = vec![Vec::new(); rows.len()];
        for c in 0..cols {
            for &(lr, at) in &items[count[c] as usize..count[c + 1] as usize] {
                per_row[lr as usize].push((c as u32, at));
            }
        }
        let entry = |at: usize| match codes {
            Some(codes) => (codes[at], 0.0),
            None => (0, block[at]),
        };
        Some(row_chunks(&per_row, cols, kind, pad_code, entry)?)
    } else {
        None
    };
    Ok(Slice {
        rows,
        ptr,
        entries,
        values,
        codes: Vec::new(),
        row_chunks,
    })
}

/// The row layout of one slice from each local row's `(column, element)` pairs (increasing
/// column) over `cols` columns; `entry` gives an element's code (coded kinds) or value
/// (`sparse-f32`).
fn row_chunks(
    per_row: &[Vec<(u32, usize)>],
    cols: usize,
    kind: KernelKind,
    pad_code: u16,
    entry: impl Fn(usize) -> (u16, f32),
) -> Result<RowChunks, CpuError> {
    let narrow = kind == KernelKind::Code4;
    let with_values = kind == KernelKind::SparseF32;
    let windows = cols.div_ceil(WINDOW_COLS);
    // Longest rows first, so that rows of a chunk have about the same length.
    let mut order: Vec<u32> = (0..per_row.len() as u32).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(per_row[r as usize].len()));
    let mut rc = RowChunks {
        windows,
        ..RowChunks::default()
    };
    let mut steps_so_far = 0usize;
    for group in order.chunks(LANES) {
        let rows: Vec<&[(u32, usize)]> = group.iter().map(|&r| &per_row[r as usize][..]).collect();
        // Each lane's first entry not yet placed.
        let mut cursor = vec![0usize; rows.len()];
        let mut chunk_steps = 0usize;
        for w in 0..windows {
            let end = ((w + 1) * WINDOW_COLS) as u32;
            let counts: Vec<usize> = rows
                .iter()
                .zip(&cursor)
                .map(|(row, &at)| row[at..].iter().take_while(|&&(c, _)| c < end).count())
                .collect();
            let steps = counts.iter().copied().max().unwrap_or(0);
            rc.window_steps.push(steps as u8);
            for step in 0..steps {
                for lane in 0..LANES {
                    let placed = rows.get(lane).filter(|_| step < counts[lane]);
                    let (e, value) = match placed {
                        Some(row) => {
                            let (c, at) = row[cursor[lane] + step];
                            let (code, value) = entry(at);
                            ((c as usize - w * WINDOW_COLS) as u16 | code << 4, value)
                        }
                        None => (pad_code << 4, 0.0),
                    };
                    if narrow {
                        rc.narrow.push(e as u8);
                    } else {
                        rc.wide.push(e);
                    }
                    if with_values {
                        rc.values.push(value);
                    }
                }
            }
            for (at, n) in cursor.iter_mut().zip(&counts) {
                *at += n;
            }
            chunk_steps += steps;
        }
        let start = u32::try_from(steps_so_far).map_err(|_| CpuError::TooLarge)?;
        let steps = u32::try_from(chunk_steps).map_err(|_| CpuError::TooLarge)?;
        rc.chunks.push((start, steps));
        steps_so_far += chunk_steps;
        for lane in 0..LANES {
            rc.lane_rows.push(group.get(lane).copied().unwrap_or(0));
        }
    }
    if rc.slots() > u32::MAX as usize {
        return Err(CpuError::TooLarge);
    }
    Ok(rc)
}
