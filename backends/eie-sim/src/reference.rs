//! The plain software model of EIE's fixed-point matrix-vector product: no PEs, no cycles, a
//! dense matrix of weight codes walked row by row.
//!
//! Contract: `matvec` computes, for every row i, `acc = bias[i]`, then for every column j in
//! increasing order with `a[j] != 0` and `code[i][j] != 0`, `acc = mac(acc, codebook[code], a[j],
//! shift)`, and returns `activation(saturate_i16(acc))` — the arithmetic of `sprig_eie::isa`
//! without any of the machine's storage format, so it is an independent check of the
//! simulator's outputs.

use sprig_eie::isa::{self, Activation};

/// A layer as a dense matrix of 4-bit weight codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenseLayer {
    pub rows: usize,
    pub cols: usize,
    /// Row-major `rows × cols` codes (0..16); 0 is a zero weight.
    pub codes: Vec<u8>,
    /// Weights in Q(wf); entry 0 is 0.
    pub codebook: [i16; 16],
    /// Per row, in Q(of).
    pub bias: Vec<i32>,
    /// wf + af − of.
    pub shift: u8,
    pub activation: Activation,
}

/// The layer's output for the source vector `acts` (Q(af)), in Q(of).
pub fn matvec(layer: &DenseLayer, acts: &[i16]) -> Vec<i16> {
    assert_eq!(acts.len(), layer.cols, "source vector length");
    (0..layer.rows)
        .map(|i| {
            let row = &layer.codes[i * layer.cols..(i + 1) * layer.cols];
            let mut acc = layer.bias[i];
            for (&code, &a) in row.iter().zip(acts) {
                if code != 0 && a != 0 {
                    acc = isa::mac(acc, layer.codebook[usize::from(code)], a, layer.shift);
                }
            }
            isa::write_back(acc, layer.activation)
        })
        .collect()
}
