//! The interpreter's kernels: plain, safe f32 loops, one per op.
//!
//! Contract: every kernel gets operands whose shapes type inference accepted (the interpreter
//! checks that before calling) and whose result is not empty, and computes its result shape
//! from the operands itself. Reductions sum in increasing index order from zero and add the
//! bias last. Loop orders are chosen so inner loops run over contiguous memory: dense and conv2d
//! both reduce to dot products of contiguous weight rows with a contiguous vector (conv2d first
//! gathers each output position's receptive field into one).

use crate::op::{Conv2d, Pool2d};
use crate::tensor::Tensor;
use crate::types::Shape;

/// The product of `dims`; callers pass parts of shapes whose element count is known to fit.
fn size(dims: &[usize]) -> usize {
    dims.iter().product()
}

fn tensor(dims: Vec<usize>, data: Vec<f32>) -> Tensor {
    Tensor {
        shape: Shape(dims),
        data,
    }
}

pub(super) fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    tensor(x.dims().to_vec(), x.data.iter().map(|&v| f(v)).collect())
}

/// `1 / (1 + e^-x)`.
pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `out[o] = sum_k m[o, k] v[k]` for `m` row-major `[out.len(), v.len()]`, each sum taken in
/// increasing `k` from zero. Four rows go at a time as four independent sums (for speed); each
/// still adds its terms in order, so every output equals its plain dot product.
fn matvec(m: &[f32], v: &[f32], out: &mut [f32]) {
    let k = v.len();
    let row = |o: usize| &m[o * k..(o + 1) * k];
    let blocked = out.len() - out.len() % 4;
    for o in (0..blocked).step_by(4) {
        let mut acc = [0.0f32; 4];
        for ((((&x, &w0), &w1), &w2), &w3) in v
            .iter()
            .zip(row(o))
            .zip(row(o + 1))
            .zip(row(o + 2))
            .zip(row(o + 3))
        {
            acc[0] += w0 * x;
            acc[1] += w1 * x;
            acc[2] += w2 * x;
            acc[3] += w3 * x;
        }
        out[o..o + 4].copy_from_slice(&acc);
    }
    for (o, y) in out.iter_mut().enumerate().skip(blocked) {
        let mut acc = 0.0f32;
        for (&w, &x) in row(o).iter().zip(v) {
            acc += w * x;
        }
        *y = acc;
    }
}

/// `y[.., o] = sum_i w[o, i] x[.., i] + b[o]`, with `w` row-major `[out, in]`.
pub(super) fn dense(x: &Tensor, w: &[f32], out: usize, b: Option<&[f32]>) -> Tensor {
    let dims = x.dims();
    let inp = dims[dims.len() - 1];
    let rows = size(&dims[..dims.len() - 1]);
    let mut y = vec![0.0f32; rows * out];
    for r in 0..rows {
        let yr = &mut y[r * out..(r + 1) * out];
        matvec(w, &x.data[r * inp..(r + 1) * inp], yr);
        if let Some(b) = b {
            for (yv, &bv) in yr.iter_mut().zip(b) {
                *yv += bv;
            }
        }
    }
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("dense input has rank >= 1") = out;
    tensor(out_dims, y)
}

/// `y[.., n] = sum_k x[.., k] w[k, n] + b[n]`, with `w` row-major `[in, out]`.
pub(super) fn matmul(x: &Tensor, w: &[f32], out: usize, b: Option<&[f32]>) -> Tensor {
    let dims = x.dims();
    let rows = size(&dims[..dims.len() - 1]);
    let y = matmul_rows(&x.data, w, rows, out, b);
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("matmul input has rank >= 1") = out;
    tensor(out_dims, y)
}

/// `rows` row-major inputs times `w` (row-major `[in, out]`) plus `b`. The loop runs over
/// contiguous rows of `w`, and each output still sums its terms in increasing `k` from zero with
/// the bias last, so the result equals `dense` over `w` transposed bit for bit.
pub fn matmul_rows(x: &[f32], w: &[f32], rows: usize, out: usize, b: Option<&[f32]>) -> Vec<f32> {
    let inp = w.len() / out.max(1);
    let mut y = vec![0.0f32; rows * out];
    for (r, yr) in y.chunks_exact_mut(out.max(1)).enumerate().take(rows) {
        for (k, &xv) in x[r * inp..(r + 1) * inp].iter().enumerate() {
            for (yv, &wv) in yr.iter_mut().zip(&w[k * out..(k + 1) * out]) {
                *yv += wv * xv;
            }
        }
        if let Some(b) = b {
            for (yv, &bv) in yr.iter_mut().zip(b) {
                *yv += bv;
            }
        }
    }
    y
}

/// The output positions `lo..hi` (within `0..n_out`) whose input position
/// `o * stride + offset` lies in `0..len`.
fn valid_range(n_out: usize, stride: usize, offset: i128, len: usize) -> (usize, usize) {
    let (stride, len_i) = (stride as i128, len as i128);
    // o * stride + offset >= 0  <=>  o >= ceil(-offset / stride)
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    // o * stride + offset < len  <=>  o < ceil((len - offset) / stride)
    let hi = if len_i - offset <= 0 {
        0
    } else {
        (len_i - offset + stride - 1) / stride
    };
    let hi = hi.min(n_out as i128);
    let lo = lo.min(hi);
    (lo as usize, hi as usize)
}

/// Receptive fields gathered at a time, in floats, bounding conv2d's scratch memory.
const PATCH_FLOATS: usize = 1 << 16;

/// 2-D cross-correlation with zero padding, stride, dilation and groups; `w` is
/// `[O, C/groups, kh, kw]`; `x` is `[C, H, W]` or `[N, C, H, W]`. Each output is the dot product
/// of its filter with its receptive field, both ordered (channel, ky, kx), plus the bias.
pub(super) fn conv2d(
    x: &Tensor,
    w: &[f32],
    w_dims: &[usize],
    b: Option<&[f32]>,
    c: &Conv2d,
) -> Tensor {
    let xd = x.dims();
    let r = xd.len();
    let (n, ch, h, wd) = (size(&xd[..r - 3]), xd[r - 3], xd[r - 2], xd[r - 1]);
    let (o_ch, cg, kh, kw) = (w_dims[0], w_dims[1], w_dims[2], w_dims[3]);
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let [pt, pl, pb, pr] = c.padding;
    let oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
    let ow = (wd + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    let og = o_ch / c.groups;
    let k_len = cg * kh * kw;
    // For each kernel row ky: the output rows that read a real input row, and the input row
    // the first of them reads; likewise for each kernel column kx. They depend on the tap only.
    let taps = |n_out: usize, stride: usize, dilation: usize, pad: usize, len: usize, k: usize| {
        let offset = (k * dilation) as i128 - pad as i128;
        let (lo, hi) = valid_range(n_out, stride, offset, len);
        // In range whenever lo < hi; unused otherwise.
        let first = (lo as i128 * stride as i128 + offset).max(0) as usize;
        (lo, hi, first)
    };
    let row_taps: Vec<_> = (0..kh).map(|ky| taps(oh, sh, dh, pt, h, ky)).collect();
    let col_taps: Vec<_> = (0..kw).map(|kx| taps(ow, sw, dw, pl, wd, kx)).collect();

    let block_rows = (PATCH_FLOATS / ow.saturating_mul(k_len).max(1)).clamp(1, oh);
    let mut patches = vec![0.0f32; block_rows * ow * k_len];
    let mut column = vec![0.0f32; og];
    let mut y = vec![0.0f32; n * o_ch * oh * ow];
    for ni in 0..n {
        for g in 0..c.groups {
            let filters = &w[g * og * k_len..(g + 1) * og * k_len];
            let channels = &x.data[(ni * ch + g * cg) * h * wd..(ni * ch + (g + 1) * cg) * h * wd];
            for oy0 in (0..oh).step_by(block_rows) {
                let oy1 = (oy0 + block_rows).min(oh);
                // patches[(oy - oy0) * ow + ox][(cl * kh + ky) * kw + kx] = input cell, or 0
                // where the tap falls on padding.
                patches.fill(0.0);
                for cl in 0..cg {
                    let input = &channels[cl * h * wd..(cl + 1) * h * wd];
                    for (ky, &(oy_lo, oy_hi, iy0)) in row_taps.iter().enumerate() {
                        for (kx, &(ox_lo, ox_hi, ix0)) in col_taps.iter().enumerate() {
                            let k = (cl * kh + ky) * kw + kx;
                            for oy in oy0.max(oy_lo)..oy1.min(oy_hi) {
                                let iy = iy0 + (oy - oy_lo) * sh;
                                let in_row = &input[iy * wd..(iy + 1) * wd];
                                for (step, ox) in (ox_lo..ox_hi).enumerate() {
                                    let p = (oy - oy0) * ow + ox;
                                    patches[p * k_len + k] = in_row[ix0 + step * sw];
                                }
                            }
                        }
                    }
                }
                for oy in oy0..oy1 {
                    for ox in 0..ow {
                        let p = (oy - oy0) * ow + ox;
                        matvec(filters, &patches[p * k_len..(p + 1) * k_len], &mut column);
                        for (o, &v) in column.iter().enumerate() {
                            let oc = g * og + o;
                            y[((ni * o_ch + oc) * oh + oy) * ow + ox] = match b {
                                Some(b) => v + b[oc],
                                None => v,
                            };
                        }
                    }
                }
            }
        }
    }
    let mut dims = xd[..r - 3].to_vec();
    dims.extend([o_ch, oh, ow]);
    tensor(dims, y)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PoolKind {
    Max,
    Avg,
}

/// Pooling over the last two axes. Padded cells are skipped by max (they act as -inf) and by
/// average, whose divisor counts them only when `count_include_pad`. Every window holds at
/// least one real cell (padding is smaller than the kernel and the input is not empty). Max
/// propagates NaN.
pub(super) fn pool2d(x: &Tensor, p: &Pool2d, kind: PoolKind) -> Tensor {
    let xd = x.dims();
    let r = xd.len();
    let (planes, h, w) = (size(&xd[..r - 2]), xd[r - 2], xd[r - 1]);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [pt, pl, pb, pr] = p.padding;
    let oh = (h + pt + pb - kh) / sh + 1;
    let ow = (w + pl + pr - kw) / sw + 1;
    let mut y = Vec::with_capacity(planes * oh * ow);
    for plane in 0..planes {
        let input = &x.data[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            // Window rows oy*sh - pt .. +kh, clipped to the input.
            let top = (oy * sh).saturating_sub(pt);
            let bottom = (oy * sh + kh).saturating_sub(pt).min(h);
            for ox in 0..ow {
                let left = (ox * sw).saturating_sub(pl);
                let right = (ox * sw + kw).saturating_sub(pl).min(w);
                let cells = input[top * w..bottom * w]
                    .chunks_exact(w)
                    .flat_map(|row| &row[left..right]);
                y.push(match kind {
                    PoolKind::Max => {
                        cells.fold(
                            f32::NEG_INFINITY,
                            |m, &v| {
                                if v > m || v.is_nan() { v } else { m }
                            },
                        )
                    }
                    PoolKind::Avg => {
                        let mut sum = 0.0f32;
                        for &v in cells {
                            sum += v;
                        }
                        let count = if p.count_include_pad {
                            kh * kw
                        } else {
                            (bottom - top) * (right - left)
                        };
                        sum / count as f32
                    }
                });
            }
        }
    }
    let mut dims = xd[..r - 2].to_vec();
    dims.extend([oh, ow]);
    tensor(dims, y)
}

/// Softmax (or its log) along `axis`, shifted by the maximum for numerical stability:
/// `e^(x - max) / sum`, or `x - max - ln(sum)`.
pub(super) fn softmax(x: &Tensor, axis: usize, log: bool) -> Tensor {
    let xd = x.dims();
    let (outer, len, inner) = (size(&xd[..axis]), xd[axis], size(&xd[axis + 1..]));
    let mut y = vec![0.0f32; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let max = (0..len)
                .map(|k| x.data[at(k)])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for k in 0..len {
                sum += (x.data[at(k)] - max).exp();
            }
            for k in 0..len {
                let shifted = x.data[at(k)] - max;
                y[at(k)] = if log {
                    shifted - sum.ln()
                } else {
                    shifted.exp() / sum
                };
            }
        }
    }
    tensor(xd.to_vec(), y)
}

/// The index of the first maximum along `axis`, as an f32 holding the integer; NaN counts as
/// smaller than every number. `out` is the result shape (with or without the reduced axis).
pub(super) fn argmax(x: &Tensor, axis: usize, out: &Shape) -> Tensor {
    let xd = x.dims();
    let (outer, len, inner) = (size(&xd[..axis]), xd[axis], size(&xd[axis + 1..]));
    let mut y = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| x.data[(o * len + k) * inner + i];
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
    tensor(out.dims().to_vec(), y)
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// Output axis k is input axis `perm[k]`.
pub(super) fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    let xd = x.dims();
    let in_strides = strides(xd);
    let out_dims: Vec<usize> = perm.iter().map(|&p| xd[p]).collect();
    // The input stride of each output axis.
    let step: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut y = Vec::with_capacity(x.len());
    let mut index = vec![0usize; out_dims.len()];
    let mut at = 0usize;
    for _ in 0..x.len() {
        y.push(x.data[at]);
        // Advance the output index like an odometer, keeping `at` the matching input offset.
        for k in (0..index.len()).rev() {
            index[k] += 1;
            at += step[k];
            if index[k] < out_dims[k] {
                break;
            }
            at -= step[k] * out_dims[k];
            index[k] = 0;
        }
    }
    tensor(out_dims, y)
}

/// Element-wise `f(a, b)` with numpy broadcasting.
pub(super) fn binary(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    let rank = a.shape.rank().max(b.shape.rank());
    // Both shapes padded with leading 1s to the common rank.
    let pad = |d: &[usize]| {
        let mut p = vec![1; rank - d.len()];
        p.extend_from_slice(d);
        p
    };
    let (ad, bd) = (pad(a.dims()), pad(b.dims()));
    let out: Vec<usize> = ad.iter().zip(&bd).map(|(&x, &y)| x.max(y)).collect();
    // A broadcast axis (extent 1 against a larger one) has stride 0.
    let bstrides = |d: &[usize]| -> Vec<usize> {
        strides(d)
            .into_iter()
            .zip(d)
            .map(|(s, &n)| if n == 1 { 0 } else { s })
            .collect()
    };
    let (sa, sb) = (bstrides(&ad), bstrides(&bd));
    let total = size(&out);
    let mut y = Vec::with_capacity(total);
    let mut index = vec![0usize; rank];
    let (mut ia, mut ib) = (0usize, 0usize);
    for _ in 0..total {
        y.push(f(a.data[ia], b.data[ib]));
        for k in (0..rank).rev() {
            index[k] += 1;
            ia += sa[k];
            ib += sb[k];
            if index[k] < out[k] {
                break;
            }
            ia -= sa[k] * out[k];
            ib -= sb[k] * out[k];
            index[k] = 0;
        }
    }
    tensor(out, y)
}

/// Joins `xs` along `axis`.
pub(super) fn concat(xs: &[&Tensor], axis: usize) -> Tensor {
    let first = xs[0].dims();
    let outer = size(&first[..axis]);
    let inner = size(&first[axis + 1..]);
    let mut dims = first.to_vec();
    dims[axis] = xs.iter().map(|x| x.dims()[axis]).sum();
    let mut y = Vec::with_capacity(size(&dims));
    for o in 0..outer {
        for x in xs {
            let chunk = x.dims()[axis] * inner;
            y.extend_from_slice(&x.data[o * chunk..(o + 1) * chunk]);
        }
    }
    tensor(dims, y)
}

/// Elements `start..start + len` along `axis` (the verifier checked the range).
pub(super) fn slice(x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
    let xd = x.dims();
    let outer = size(&xd[..axis]);
    let inner = size(&xd[axis + 1..]);
    let mut dims = xd.to_vec();
    dims[axis] = len;
    let (whole, part) = (xd[axis] * inner, len * inner);
    let mut y = Vec::with_capacity(outer * part);
    for o in 0..outer {
        let first = o * whole + start * inner;
        y.extend_from_slice(&x.data[first..first + part]);
    }
    tensor(dims, y)
}

/// `y = scale * (x - mean) / sqrt(var + epsilon) + bias`, per channel along `axis`.
pub(super) fn batchnorm(
    x: &Tensor,
    axis: usize,
    [scale, bias, mean, var]: [&[f32]; 4],
    epsilon: f32,
) -> Tensor {
    let xd = x.dims();
    let (len, inner) = (xd[axis], size(&xd[axis + 1..]));
    let y = x
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % len;
            scale[c] * (v - mean[c]) / (var[c] + epsilon).sqrt() + bias[c]
        })
        .collect();
    tensor(xd.to_vec(), y)
}

/// How an LSTM's gate pre-activations are computed, values row-major.
pub(super) enum LstmGates<'a> {
    /// [`crate::op::Lstm`]: `W x_t + Wb + R h + Rb` (each product summed in index order, then
    /// added in that order).
    Separate {
        w: &'a [f32],
        r: &'a [f32],
        b: Option<&'a [f32]>,
    },
    /// [`crate::op::LstmStacked`]: one product `S · [x_t; h; 1]`, summed in column order.
    Stacked { weight: &'a [f32] },
}

/// The weights of one LSTM.
pub(super) struct LstmWeights<'a> {
    pub hidden: usize,
    pub gates: LstmGates<'a>,
    pub h0: Option<&'a [f32]>,
    pub c0: Option<&'a [f32]>,
}

/// Forward LSTM, ONNX semantics: per step, for every batch row, the gates in blocks i, o, f, c
/// (see [`LstmGates`]); `C = σ(f) ⊙ C + σ(i) ⊙ tanh(c)`, `H = σ(o) ⊙ tanh(C)`; every `H` is
/// output, or only the final one when `last`.
pub(super) fn lstm(x: &Tensor, lw: &LstmWeights<'_>, last: bool) -> Tensor {
    let xd = x.dims();
    // x is [seq, in] or [seq, batch, in]; without a batch axis it is one batch row.
    let (seq, inp) = (xd[0], xd[xd.len() - 1]);
    let batch = if xd.len() == 3 { xd[1] } else { 1 };
    let h = lw.hidden;
    // An initial state of [h] is shared by every batch row; [batch, h] gives one per row.
    let initial = |s: Option<&[f32]>| -> Vec<f32> {
        match s {
            Some(s) if s.len() == h => s.repeat(batch),
            Some(s) => s.to_vec(),
            None => vec![0.0; batch * h],
        }
    };
    let (mut hs, mut cs) = (initial(lw.h0), initial(lw.c0));
    let mut y = Vec::with_capacity(seq * batch * h);
    let mut gates = vec![0.0f32; 4 * h];
    for t in 0..seq {
        for bi in 0..batch {
            let xt = &x.data[(t * batch + bi) * inp..(t * batch + bi + 1) * inp];
            let hp = &hs[bi * h..(bi + 1) * h];
            match lw.gates {
                LstmGates::Separate { w, r, b } => {
                    for (j, g) in gates.iter_mut().enumerate() {
                        let wx = dot(&w[j * inp..(j + 1) * inp], xt);
                        let rh = dot(&r[j * h..(j + 1) * h], hp);
                        *g = match b {
                            Some(b) => wx + b[j] + rh + b[4 * h + j],
                            None => wx + rh,
                        };
                    }
                }
                LstmGates::Stacked { weight } => {
                    let width = inp + h + 1;
                    for (j, g) in gates.iter_mut().enumerate() {
                        let row = &weight[j * width..(j + 1) * width];
                        let xh = dot(&row[..inp], xt);
                        *g = dot_from(xh, &row[inp..inp + h], hp) + row[inp + h];
                    }
                }
            }
            for k in 0..h {
                let i = sigmoid(gates[k]);
                let o = sigmoid(gates[h + k]);
                let f = sigmoid(gates[2 * h + k]);
                let c = gates[3 * h + k].tanh();
                let cell = f * cs[bi * h + k] + i * c;
                cs[bi * h + k] = cell;
                hs[bi * h + k] = o * cell.tanh();
            }
        }
        if !last {
            y.extend_from_slice(&hs);
        }
    }
    if last {
        let dims = if xd.len() == 2 {
            vec![h]
        } else {
            vec![batch, h]
        };
        return tensor(dims, hs);
    }
    let dims = if xd.len() == 2 {
        vec![seq, h]
    } else {
        vec![seq, batch, h]
    };
    tensor(dims, y)
}

/// `Σ a[k]·b[k]` in index order, from zero.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_from(0.0, a, b)
}

/// `acc + Σ a[k]·b[k]`, adding the terms in index order.
fn dot_from(mut acc: f32, a: &[f32], b: &[f32]) -> f32 {
    for (&x, &y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

/// Rows of `table` (`[rows, dim]`) picked by `ids`; an id that is not an integer in `0..rows`
/// is returned as `(position, id)`.
pub(super) fn embedding(
    ids: &Tensor,
    table: &[f32],
    [rows, dim]: [usize; 2],
) -> Result<Tensor, (usize, f32)> {
    let mut y = Vec::with_capacity(ids.len() * dim);
    for (pos, &id) in ids.data.iter().enumerate() {
        if !(id >= 0.0 && id.fract() == 0.0 && (id as f64) < rows as f64) {
            return Err((pos, id));
        }
        let row = id as usize;
        y.extend_from_slice(&table[row * dim..(row + 1) * dim]);
    }
    let mut dims = ids.dims().to_vec();
    dims.push(dim);
    Ok(tensor(dims, y))
}
