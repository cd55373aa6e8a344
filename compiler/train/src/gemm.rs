//! A bounds-checked, safe front for `matrixmultiply::sgemm`: `C = A·B + beta·C` over strided
//! row-major or transposed views of slices.
//!
//! Invariant: every element either view addresses lies inside its slice (checked before the
//! call), so the unsafe kernel never reads or writes out of bounds.

/// A strided `rows × cols` view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl View {
    /// A row-major matrix.
    pub fn rows(rows: usize, cols: usize) -> View {
        View {
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols × rows` matrix, seen as `rows × cols`.
    pub fn transposed(rows: usize, cols: usize) -> View {
        View {
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// One past the largest index the view addresses (0 when empty).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// `c = a · b + beta · c` for `a: m × k`, `b: k × n`, `c: m × n`. Panics when the shapes do not
/// chain or a view reaches past its slice (a caller bug, never input-dependent).
pub fn gemm(a: &[f32], av: View, b: &[f32], bv: View, beta: f32, c: &mut [f32], cv: View) {
    assert!(
        av.cols == bv.rows && av.rows == cv.rows && bv.cols == cv.cols,
        "gemm shapes do not chain"
    );
    assert!(
        av.extent() <= a.len() && bv.extent() <= b.len() && cv.extent() <= c.len(),
        "gemm view out of bounds"
    );
    if cv.rows == 0 || cv.cols == 0 {
        return;
    }
    if av.cols == 0 {
        // An empty sum: matrixmultiply would leave `c` untouched; the product is zero.
        for i in 0..cv.rows {
            for j in 0..cv.cols {
                let x = &mut c[i * cv.row_stride + j * cv.col_stride];
                *x *= beta;
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every addressed element inside its slice; `c` is borrowed
    // mutably and does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            av.rows,
            av.cols,
            bv.cols,
            1.0,
            a.as_ptr(),
            av.row_stride as isize,
            av.col_stride as isize,
            b.as_ptr(),
            bv.row_stride as isize,
            bv.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            cv.row_stride as isize,
            cv.col_stride as isize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_definition_for_every_layout() {
        let a: Vec<f32> = (0..6).map(|x| x as f32).collect(); // 2 × 3
        let b: Vec<f32> = (0..12).map(|x| (x as f32) * 0.5 - 2.0).collect(); // 3 × 4
        let mut c = vec![1.0f32; 8];
        gemm(
            &a,
            View::rows(2, 3),
            &b,
            View::rows(3, 4),
            1.0,
            &mut c,
            View::rows(2, 4),
        );
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = 1.0 + (0..3).map(|k| a[i * 3 + k] * b[k * 4 + j]).sum::<f32>();
                assert_eq!(c[i * 4 + j], want);
            }
        }
        // aᵀ (3 × 2) times c' (2 × 4) with a stored row-major 2 × 3.
        let d: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let mut e = vec![0.0f32; 12];
        gemm(
            &a,
            View::transposed(3, 2),
            &d,
            View::rows(2, 4),
            0.0,
            &mut e,
            View::rows(3, 4),
        );
        for i in 0..3 {
            for j in 0..4 {
                let want: f32 = (0..2).map(|k| a[k * 3 + i] * d[k * 4 + j]).sum();
                assert_eq!(e[i * 4 + j], want);
            }
        }
    }
}
