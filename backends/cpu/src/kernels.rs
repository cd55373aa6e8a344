//! The column kernels: `acc[row] += w[row, j] · a_j` over one slice, for every non-zero
//! activation `a_j`, in increasing `j`.
//!
//! Contract: every variant (scalar, AVX2, AVX-512) performs, for every local row, the same f32
//! operations in the same order: the product `w · a_j` rounded once, then added to the row's
//! accumulator, columns in the order given. Results are therefore bit-identical across variants
//! and equal to a row-by-row sum in increasing column order starting from the accumulator's
//! value. Zero activations are never visited (callers pass only the non-zero ones).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::isa::Isa;
use crate::layout::{KernelKind, PackedMatrix, Slice};

/// The non-zero activations of an input vector: column indices (increasing) and values.
#[derive(Clone, Debug, Default)]
pub struct Active {
    pub index: Vec<u32>,
    pub value: Vec<f32>,
}

impl Active {
    /// Collects the non-zero entries of `x`.
    pub fn gather(&mut self, x: &[f32]) {
        self.index.clear();
        self.value.clear();
        for (j, &a) in x.iter().enumerate() {
            if a != 0.0 {
                self.index.push(j as u32);
                self.value.push(a);
            }
        }
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

/// The portable variant.
fn scalar(kind: KernelKind, table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    match kind {
        KernelKind::Code4 => scalar_coded::<4>(table, slice, active, acc),
        KernelKind::Code5 => scalar_coded::<5>(table, slice, active, acc),
        KernelKind::Code8 => scalar_coded::<8>(table, slice, active, acc),
        KernelKind::SparseF32 => scalar_values(slice, active, acc),
        KernelKind::DenseF32 => dense_columns(slice, active, acc),
    }
}

fn scalar_coded<const BITS: u32>(table: &[f32], slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries) = (slice.ptr(), slice.entries());
    let mask = (1u16 << BITS) - 1;
    let table = &table[..1 << BITS];
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let column = &entries[ptr[j as usize] as usize..ptr[j as usize + 1] as usize];
        // The row before the first: deltas count the zero rows before each entry.
        let mut row = usize::MAX;
        for &e in column {
            row = row.wrapping_add((e >> BITS) as usize + 1);
            let w = table[(e & mask) as usize];
            acc[row] += w * a;
        }
    }
}

fn scalar_values(slice: &Slice, active: &Active, acc: &mut [f32]) {
    let (ptr, entries, values) = (slice.ptr(), slice.entries(), slice.values());
    for (&j, &a) in active.index.iter().zip(&active.value) {
        let range = ptr[j as usize] as usize..ptr[j as usize + 1] as usize;
        let mut row = usize::MAX;
        for (&e, &w) in entries[range.clone()].iter().zip(&values[range]) {
            row = row.wrapping_add(e as usize + 1);
            acc[row] += w * a;
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
