//! The executor's kernels for ops without weight matrices: element-wise maps and arithmetic with
//! broadcasting, softmax, pooling, shape ops, concat, batchnorm, embedding, argmax.
//!
//! Contract: each function computes the op's semantics as documented in `sprig_ir::op`, on
//! operands whose shapes the verifier accepted, returning the values row-major in the result
//! shape the executor passes. Reductions run in the interpreter's order (increasing index from
//! zero), so results match the interpreter's bit for bit.

use sprig_ir::op::Pool2d;

fn size(dims: &[usize]) -> usize {
    dims.iter().product()
}

pub fn relu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect()
}

pub fn sigmoid_value(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

pub fn sigmoid(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| sigmoid_value(v)).collect()
}

pub fn tanh(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| v.tanh()).collect()
}

/// Softmax (or log-softmax) along `axis` of `dims`, shifted by the maximum.
pub fn softmax(x: &[f32], dims: &[usize], axis: usize, log: bool) -> Vec<f32> {
    let (outer, len, inner) = (size(&dims[..axis]), dims[axis], size(&dims[axis + 1..]));
    let mut y = vec![0.0f32; x.len()];
    let mut lane = vec![0.0f32; len];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            for (k, v) in lane.iter_mut().enumerate() {
                *v = x[at(k)];
            }
            let max = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for &v in &lane {
                sum += (v - max).exp();
            }
            for (k, &v) in lane.iter().enumerate() {
                let shifted = v - max;
                y[at(k)] = if log {
                    shifted - sum.ln()
                } else {
                    shifted.exp() / sum
                };
            }
        }
    }
    y
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    Avg,
}

/// Pooling over the last two axes of `dims`; `out` is `[oh, ow]`. Padding cells are skipped (max
/// treats them as -inf; average counts them only with `count_include_pad`); max propagates NaN.
pub fn pool2d(x: &[f32], dims: &[usize], p: &Pool2d, kind: Pool, [oh, ow]: [usize; 2]) -> Vec<f32> {
    let r = dims.len();
    let (planes, h, w) = (size(&dims[..r - 2]), dims[r - 2], dims[r - 1]);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [pt, pl, _, _] = p.padding;
    let mut y = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks_exact(h * w).take(planes) {
        for oy in 0..oh {
            let top = (oy * sh).saturating_sub(pt);
            let bottom = (oy * sh + kh).saturating_sub(pt).min(h);
            for ox in 0..ow {
                let left = (ox * sw).saturating_sub(pl);
                let right = (ox * sw + kw).saturating_sub(pl).min(w);
                let v = match kind {
                    Pool::Max => {
                        let mut m = f32::NEG_INFINITY;
                        for row in top..bottom {
                            for &v in &plane[row * w + left..row * w + right] {
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                        m
                    }
                    Pool::Avg => {
                        let mut sum = 0.0f32;
                        for row in top..bottom {
                            for &v in &plane[row * w + left..row * w + right] {
                                sum += v;
                            }
                        }
                        let count = if p.count_include_pad {
                            kh * kw
                        } else {
                            (bottom - top) * (right - left)
                        };
                        sum / count as f32
                    }
                };
                y.push(v);
            }
        }
    }
    y
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// Visits every index of `out` in row-major order, calling `f` with the matching offsets into
/// operands of the given strides (stride 0 on broadcast axes).
fn odometer(out: &[usize], operand_strides: &[Vec<usize>], mut f: impl FnMut(&[usize])) {
    let total = size(out);
    let rank = out.len();
    let mut index = vec![0usize; rank];
    let mut at = vec![0usize; operand_strides.len()];
    for _ in 0..total {
        f(&at);
        for k in (0..rank).rev() {
            index[k] += 1;
            for (a, s) in at.iter_mut().zip(operand_strides) {
                *a += s[k];
            }
            if index[k] < out[k] {
                break;
            }
            for (a, s) in at.iter_mut().zip(operand_strides) {
                *a -= s[k] * out[k];
            }
            index[k] = 0;
        }
    }
}

/// Element-wise `f(a, b)` with numpy broadcasting; `out` is the broadcast shape.
pub fn binary(
    a: (&[f32], &[usize]),
    b: (&[f32], &[usize]),
    out: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    if a.1 == b.1 {
        return a.0.iter().zip(b.0).map(|(&x, &y)| f(x, y)).collect();
    }
    let rank = out.len();
    let padded_strides = |d: &[usize]| -> Vec<usize> {
        let mut p = vec![1; rank - d.len()];
        p.extend_from_slice(d);
        strides(&p)
            .into_iter()
            .zip(&p)
            .map(|(s, &n)| if n == 1 { 0 } else { s })
            .collect()
    };
    let mut y = Vec::with_capacity(size(out));
    odometer(out, &[padded_strides(a.1), padded_strides(b.1)], |at| {
        y.push(f(a.0[at[0]], b.0[at[1]]))
    });
    y
}

/// Output axis `k` is input axis `perm[k]`.
pub fn transpose(x: &[f32], dims: &[usize], perm: &[usize]) -> Vec<f32> {
    let in_strides = strides(dims);
    let out: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let step: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut y = Vec::with_capacity(x.len());
    odometer(&out, &[step], |at| y.push(x[at[0]]));
    y
}

/// Joins tensors along `axis`.
pub fn concat(xs: &[(&[f32], &[usize])], axis: usize) -> Vec<f32> {
    let first = xs[0].1;
    let outer = size(&first[..axis]);
    let inner = size(&first[axis + 1..]);
    let mut y = Vec::with_capacity(xs.iter().map(|x| x.0.len()).sum());
    for o in 0..outer {
        for (data, dims) in xs {
            let chunk = dims[axis] * inner;
            y.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
        }
    }
    y
}

/// Elements `start..start + len` along `axis`, every other axis whole.
pub fn slice(x: &[f32], dims: &[usize], axis: usize, start: usize, len: usize) -> Vec<f32> {
    let outer = size(&dims[..axis]);
    let inner = size(&dims[axis + 1..]);
    let (whole, part) = (dims[axis] * inner, len * inner);
    let mut y = Vec::with_capacity(outer * part);
    for o in 0..outer {
        let first = o * whole + start * inner;
        y.extend_from_slice(&x[first..first + part]);
    }
    y
}

/// `scale · (x − mean) / sqrt(var + ε) + bias` per channel along `axis`.
pub fn batchnorm(
    x: &[f32],
    dims: &[usize],
    axis: usize,
    [scale, bias, mean, var]: [&[f32]; 4],
    epsilon: f32,
) -> Vec<f32> {
    let (len, inner) = (dims[axis], size(&dims[axis + 1..]));
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % len;
            scale[c] * (v - mean[c]) / (var[c] + epsilon).sqrt() + bias[c]
        })
        .collect()
}

/// Index of the first maximum along `axis` (NaN below every number), as f32 integers.
pub fn argmax(x: &[f32], dims: &[usize], axis: usize) -> Vec<f32> {
    let (outer, len, inner) = (size(&dims[..axis]), dims[axis], size(&dims[axis + 1..]));
    let mut y = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| x[(o * len + k) * inner + i];
            let mut best = 0;
            for k in 1..len {
                let (v, b) = (at(k), at(best));
                if v > b || (b.is_nan() && !v.is_nan()) {
                    best = k;
                }
            }
            y.push(best as f32);
        }
    }
    y
}

/// Rows of a `[rows, dim]` table picked by integer ids; the first id that is not a row is
/// returned as `(position, id)`.
pub fn embedding(ids: &[f32], table: &[f32], dim: usize) -> Result<Vec<f32>, (usize, f32)> {
    let rows = table.len() / dim.max(1);
    let mut y = Vec::with_capacity(ids.len() * dim);
    for (pos, &id) in ids.iter().enumerate() {
        if !(id >= 0.0 && id.fract() == 0.0 && (id as f64) < rows as f64) {
            return Err((pos, id));
        }
        let r = id as usize;
        y.extend_from_slice(&table[r * dim..(r + 1) * dim]);
    }
    Ok(y)
}
