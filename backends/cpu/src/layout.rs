//! The CPU layout of a weight matrix: what the kernels read, built once from a weight's encoding.
//!
//! A matrix `[rows, cols]` (dense weights `[out, in]`; a conv group's filters `[out, in·kh·kw]`)
//! is split into row slices, one per worker thread. Each slice stores its rows column by column
//! (compressed sparse columns, as EIE's PEs do), so a zero activation skips its whole column:
//!
//! - coded kinds (`sparse-code4/5/8`, from weight sharing): one 16-bit entry per stored weight,
//!   `code | delta << bits`, where `code` indexes the layer's table (the codebook, plus a 0.0 entry
//!   when the codebook has none) and `delta` counts the zero rows skipped before the entry within
//!   the column (a relative index, decoded on the fly by a running sum). A gap wider than a delta
//!   can say is bridged by padding entries whose code is the table's zero. `bits` is the narrowest
//!   of 4, 5, 8 that holds the table: 16, 32 or 256 entries, looked up inside the kernels.
//! - `sparse-f32` (pruned, unquantized): the same 16-bit entries holding only the delta, and one
//!   f32 value per entry (0.0 for padding).
//! - `dense-f32` (more than half non-zero, unquantized): each column's rows contiguous.
//!
//! Slices: when the weight carries a partition, rows are dealt out as its scheme says (row `i` to
//! slice `pe(i) mod slices`, EIE's interleave); otherwise slices are contiguous row ranges cut so
//! that each holds about the same number of non-zeros.
//!
//! Invariants (checked when a matrix is built, relied on by the kernels; fields are private):
//! `ptr` has `cols + 1` non-decreasing entries ending at `entries.len()`; decoding any column
//! gives strictly increasing local rows below the slice's row count; a stored weight decodes to
//! exactly the weight's value (codes are checked against the values).

use crate::CpuError;
use sprig_ir::Weight;
use sprig_ir::encoding::Encoding;

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
}

impl KernelKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Code4 => "sparse-code4",
            KernelKind::Code5 => "sparse-code5",
            KernelKind::Code8 => "sparse-code8",
            KernelKind::SparseF32 => "sparse-f32",
            KernelKind::DenseF32 => "dense-f32",
        }
    }

    /// Bits of the code inside an entry (0 when entries hold only the delta).
    pub fn code_bits(self) -> u32 {
        match self {
            KernelKind::Code4 => 4,
            KernelKind::Code5 => 5,
            KernelKind::Code8 => 8,
            KernelKind::SparseF32 | KernelKind::DenseF32 => 0,
        }
    }

    /// The largest delta an entry holds.
    pub fn max_delta(self) -> u32 {
        (1u32 << (16 - self.code_bits())) - 1
    }
}

/// One slice: some rows of the matrix, stored column by column.
#[derive(Clone, Debug)]
pub struct Slice {
    /// The matrix row of each local row, increasing.
    rows: Vec<u32>,
    /// Column starts in `entries` (sparse kinds), `cols + 1` values.
    ptr: Vec<u32>,
    /// `code | delta << bits` (coded kinds) or `delta` (`sparse-f32`).
    entries: Vec<u16>,
    /// `sparse-f32`: one value per entry; `dense-f32`: `cols × rows.len()`, column-major.
    values: Vec<f32>,
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

    /// Bytes of this slice's arrays.
    pub fn bytes(&self) -> usize {
        self.rows.len() * 4 + self.ptr.len() * 4 + self.entries.len() * 2 + self.values.len() * 4
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
    /// Builds the layout of `src` split into `slices` row slices (at least one).
    pub fn build(src: MatrixSource<'_>, slices: usize) -> Result<PackedMatrix, CpuError> {
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
                kind = k;
                table = t;
                zero_code = z;
            }
        }

        let slice_of = slice_assignment(block, rows, cols, slices.max(1), encoding);
        let n_slices = slices.max(1);
        let mut built = Vec::with_capacity(n_slices);
        for s in 0..n_slices {
            let slice_rows: Vec<u32> = (0..rows as u32)
                .filter(|&r| slice_of[r as usize] == s)
                .collect();
            built.push(match kind {
                KernelKind::DenseF32 => dense_slice(block, cols, slice_rows),
                _ => sparse_slice(
                    block,
                    cols,
                    slice_rows,
                    kind,
                    &table,
                    zero_code,
                    element_codes.as_deref(),
                )?,
            });
        }
        let stored = if kind == KernelKind::DenseF32 {
            len
        } else {
            nonzeros
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
            if s.ptr.len() != self.cols + 1
                || s.ptr.last().copied() != Some(s.entries.len() as u32)
                || s.ptr.windows(2).any(|w| w[0] > w[1])
            {
                return bad("column pointers".to_string());
            }
            if self.kind == KernelKind::SparseF32 && s.values.len() != s.entries.len() {
                return bad("values per entry".to_string());
            }
            let bits = self.kind.code_bits();
            for c in 0..self.cols {
                let mut next = 0usize;
                for &e in &s.entries[s.ptr[c] as usize..s.ptr[c + 1] as usize] {
                    next += (e as usize >> bits) + 1;
                }
                if next > local {
                    return bad(format!("column {c} decodes past the slice's rows"));
                }
            }
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
            .map(|s| {
                if self.kind == KernelKind::DenseF32 {
                    s.values.len()
                } else {
                    s.entries.len()
                }
            })
            .sum()
    }

    /// Bytes of the whole layout.
    pub fn bytes(&self) -> usize {
        self.table.len() * 4 + self.slices.iter().map(Slice::bytes).sum::<usize>()
    }

    /// Bytes of weights and pointers a product reads when the columns `active` are non-zero.
    pub fn bytes_read(&self, active: &[u32]) -> usize {
        let mut bytes = self.table.len() * 4;
        for s in &self.slices {
            for &j in active {
                let j = j as usize;
                bytes += match self.kind {
                    KernelKind::DenseF32 => s.rows.len() * 4,
                    KernelKind::SparseF32 => 8 + 6 * (s.ptr[j + 1] - s.ptr[j]) as usize,
                    _ => 8 + 2 * (s.ptr[j + 1] - s.ptr[j]) as usize,
                };
            }
        }
        bytes
    }
}

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
    }
}

fn sparse_slice(
    block: &[f32],
    cols: usize,
    rows: Vec<u32>,
    kind: KernelKind,
    table: &[f32],
    zero_code: u16,
    codes: Option<&[u16]>,
) -> Result<Slice, CpuError> {
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
    let max_delta = kind.max_delta();
    let pad_code = if kind == KernelKind::SparseF32 {
        0
    } else {
        zero_code
    };
    let mut ptr = Vec::with_capacity(cols + 1);
    let mut entries = Vec::with_capacity(nnz + nnz / 64);
    let mut values = Vec::new();
    ptr.push(0u32);
    for c in 0..cols {
        let mut next = 0u32; // the local row the next delta counts from
        for &(lr, at) in &items[count[c] as usize..count[c + 1] as usize] {
            let mut gap = lr - next;
            while gap > max_delta {
                entries.push(pad_code | (max_delta << bits) as u16);
                if kind == KernelKind::SparseF32 {
                    values.push(0.0);
                }
                gap -= max_delta + 1;
            }
            let code = match codes {
                Some(codes) => codes[at],
                None => 0,
            };
            debug_assert!(codes.is_none() || table[code as usize] == block[at]);
            entries.push(code | (gap << bits) as u16);
            if kind == KernelKind::SparseF32 {
                values.push(block[at]);
            }
            next = lr + 1;
        }
        let end = u32::try_from(entries.len()).map_err(|_| CpuError::TooLarge)?;
        ptr.push(end);
    }
    Ok(Slice {
        rows,
        ptr,
        entries,
        values,
    })
}
