//! What the CPU kernels are measured against: a dense f32 matrix × vector by faer, a plain f32 CSR
//! kernel of the kind sparse libraries ship (scipy's `csr_matvec`, sprs' `mul_acc_mat_vec_csr`:
//! per row, a dot product of its values with the vector gathered at its column indices), and a
//! probe of the machine's read bandwidth.
//!
//! Contract: both baselines compute `y = W x` from the decoded f32 weights (no bias, no
//! activation, zero activations not skipped), single-threaded.

use faer::{Accum, Mat, Par};
use std::time::Instant;

/// The dense baseline: `W` as a faer matrix.
#[derive(Debug)]
pub struct DenseBaseline {
    w: Mat<f32>,
    x: Mat<f32>,
    y: Mat<f32>,
}

impl DenseBaseline {
    /// `values` row-major `[rows, cols]`.
    pub fn new(values: &[f32], rows: usize, cols: usize) -> DenseBaseline {
        DenseBaseline {
            w: Mat::from_fn(rows, cols, |i, j| values[i * cols + j]),
            x: Mat::zeros(cols, 1),
            y: Mat::zeros(rows, 1),
        }
    }

    /// `y = W x`.
    pub fn run(&mut self, x: &[f32], y: &mut [f32]) {
        for (i, &v) in x.iter().enumerate() {
            self.x[(i, 0)] = v;
        }
        faer::linalg::matmul::matmul(
            self.y.as_mut(),
            Accum::Replace,
            self.w.as_ref(),
            self.x.as_ref(),
            1.0f32,
            Par::Seq,
        );
        for (i, v) in y.iter_mut().enumerate() {
            *v = self.y[(i, 0)];
        }
    }
}

/// The CSR baseline: row pointers, column indices and values of the non-zeros.
#[derive(Debug)]
pub struct CsrBaseline {
    ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f32>,
}

impl CsrBaseline {
    /// `values` row-major `[rows, cols]`; zeros are dropped.
    pub fn new(values: &[f32], rows: usize, cols: usize) -> CsrBaseline {
        let mut ptr = Vec::with_capacity(rows + 1);
        let (mut col, mut val) = (Vec::new(), Vec::new());
        ptr.push(0);
        for r in 0..rows {
            for (c, &v) in values[r * cols..(r + 1) * cols].iter().enumerate() {
                if v != 0.0 {
                    col.push(c as u32);
                    val.push(v);
                }
            }
            ptr.push(col.len());
        }
        CsrBaseline { ptr, col, val }
    }

    pub fn nonzeros(&self) -> usize {
        self.val.len()
    }

    /// `y = W x`.
    pub fn run(&self, x: &[f32], y: &mut [f32]) {
        for (r, out) in y.iter_mut().enumerate() {
            let range = self.ptr[r]..self.ptr[r + 1];
            let mut sum = 0.0f32;
            for (&c, &v) in self.col[range.clone()].iter().zip(&self.val[range]) {
                sum += v * x[c as usize];
            }
            *out = sum;
        }
    }
}

/// The machine's sustained single-thread read bandwidth in bytes per second, summing a buffer of
/// `bytes` (make it several times the last-level cache) in blocks of 4 MiB: each block's best
/// time over a few passes, so that a pass interrupted by other work on the machine counts only
/// where it was interrupted.
pub fn read_bandwidth(bytes: usize) -> f64 {
    const BLOCK_WORDS: usize = (4 << 20) / 8;
    let words = (bytes / 8).max(BLOCK_WORDS);
    let buffer: Vec<u64> = (0..words as u64).collect();
    let blocks: Vec<&[u64]> = buffer.chunks(BLOCK_WORDS).collect();
    let mut best = vec![f64::INFINITY; blocks.len()];
    let mut sink = 0u64;
    for _ in 0..7 {
        for (block, best) in blocks.iter().zip(best.iter_mut()) {
            let start = Instant::now();
            // Eight independent sums keep the loads, not the adds, the limit.
            let mut acc = [0u64; 8];
            for chunk in block.chunks_exact(8) {
                for (a, &v) in acc.iter_mut().zip(chunk) {
                    *a = a.wrapping_add(v);
                }
            }
            sink = sink.wrapping_add(acc.iter().fold(0, |s, &v| s.wrapping_add(v)));
            *best = best.min(start.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(sink);
    (words * 8) as f64 / best.iter().sum::<f64>()
}
