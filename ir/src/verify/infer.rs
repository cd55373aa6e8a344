//! Type inference for one node: the shape rules that define each op.
//!
//! Contract: [`infer`] takes an op, the weights arena and the types of the node's value operands
//! (in operand order) and returns the type of the value the node defines, or one message
//! describing the first rule it breaks. It validates everything a kernel relies on: the operand
//! count, operand dtypes, weight handles (in range, f32, element count that fits `usize`), weight
//! shapes, attributes, and every output extent (computed with checked arithmetic, so garbage
//! never overflows). Messages start with the op name and name the values (`x`), weights
//! (`@name`) and the numbers involved. It never reads weight values, so weights stay lazy.
//!
//! The interpreter calls it again before each node, so its kernels can index without checks.

use crate::op::{Axis, Conv2d, Lstm, LstmStacked, Op, Pool2d};
use crate::types::{DType, Shape, TensorType};
use crate::weights::{Weight, WeightId, Weights};

/// A value operand as type inference sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<'a> {
    pub name: &'a str,
    pub ty: &'a TensorType,
}

/// The type `op` defines from `operands`, or why the node is malformed (prefixed with the op).
pub(crate) fn infer(
    op: &Op,
    weights: &Weights,
    operands: &[Operand<'_>],
) -> Result<TensorType, String> {
    infer_unprefixed(op, weights, operands).map_err(|m| format!("{}: {m}", op.name()))
}

fn infer_unprefixed(
    op: &Op,
    weights: &Weights,
    operands: &[Operand<'_>],
) -> Result<TensorType, String> {
    let arity = op.kind().schema().values;
    if !arity.accepts(operands.len()) {
        return Err(format!("takes {arity} but has {}", operands.len()));
    }
    check_dtypes(op, operands)?;
    let w = |id: WeightId| weight(weights, id);
    let first = operands.first().copied();
    // Every op but input and constant takes at least one operand (the arity is checked above).
    let x = || first.expect("arity checked");
    let f32_of = |dims: Vec<usize>| Ok(TensorType::f32(dims));
    match op {
        Op::Input(i) => Ok(i.ty.clone()),
        Op::Constant(c) => Ok(w(c.value)?.ty.clone()),
        Op::Dense(d) => product(weights, d.weight, d.bias, Layout::OutIn, x()),
        Op::MatMul(m) => product(weights, m.weight, m.bias, Layout::InOut, x()),
        Op::Conv2d(c) => conv2d(c, weights, x()),
        Op::Relu | Op::Sigmoid | Op::Tanh | Op::Dropout(_) | Op::Identity => Ok(x().ty.clone()),
        Op::Softmax(a) | Op::LogSoftmax(a) => {
            let x = x();
            signed_axis(a, x)?;
            Ok(x.ty.clone())
        }
        Op::MaxPool2d(p) | Op::AvgPool2d(p) => pool2d(p, x()),
        Op::Flatten(f) => {
            let x = x();
            let dims = x.ty.shape.dims();
            if f.axis > dims.len() {
                return Err(format!(
                    "axis {} is out of range for `{}` : {} (it must be at most {})",
                    f.axis,
                    x.name,
                    x.ty,
                    dims.len()
                ));
            }
            let merged = Shape::new(&dims[f.axis..])
                .checked_len()
                .ok_or_else(|| format!("the element count of {} overflows", x.ty))?;
            let mut out = dims[..f.axis].to_vec();
            out.push(merged);
            f32_of(out)
        }
        Op::Reshape(r) => {
            let x = x();
            let count = elements(x.ty)?;
            let target = || format!("{:?}", r.shape);
            let mut dims = Vec::with_capacity(r.shape.len());
            let mut infer_at = None;
            let mut known: usize = 1;
            for (i, &d) in r.shape.iter().enumerate() {
                if d == -1 {
                    if infer_at.is_some() {
                        return Err(format!("shape {} holds more than one -1", target()));
                    }
                    infer_at = Some(i);
                    dims.push(0);
                    continue;
                }
                let d = usize::try_from(d).map_err(|_| {
                    format!(
                        "shape {} holds {d}; sizes must be >= 0 (or a single -1)",
                        target()
                    )
                })?;
                known = known
                    .checked_mul(d)
                    .ok_or_else(|| format!("the element count of shape {} overflows", target()))?;
                dims.push(d);
            }
            match infer_at {
                Some(i) => {
                    if known == 0 {
                        return Err(format!(
                            "cannot infer the -1 in shape {}: the other sizes multiply to 0",
                            target()
                        ));
                    }
                    if count % known != 0 {
                        return Err(format!(
                            "cannot reshape {} ({count} elements) into {}: {count} is not a multiple of {known}",
                            x.ty,
                            target()
                        ));
                    }
                    dims[i] = count / known;
                }
                None if known != count => {
                    return Err(format!(
                        "cannot reshape {} ({count} elements) into {} ({known} elements)",
                        x.ty,
                        target()
                    ));
                }
                None => {}
            }
            f32_of(dims)
        }
        Op::Transpose(t) => {
            let x = x();
            let dims = x.ty.shape.dims();
            let perm = transpose_perm(&t.perm, dims.len()).ok_or_else(|| {
                format!(
                    "perm {:?} is not a permutation of the {} axes of `{}` : {}",
                    t.perm,
                    dims.len(),
                    x.name,
                    x.ty
                )
            })?;
            f32_of(perm.iter().map(|&p| dims[p]).collect())
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let (a, b) = (operands[0].ty.shape.dims(), operands[1].ty.shape.dims());
            broadcast(a, b).map(TensorType::f32).map_err(|axis| {
                let (da, db) = (
                    a[a.len() - 1 - axis].to_string(),
                    b[b.len() - 1 - axis].to_string(),
                );
                format!(
                    "shapes {} and {} do not broadcast ({da} and {db} at axis -{})",
                    Shape::new(a),
                    Shape::new(b),
                    axis + 1
                )
            })
        }
        Op::Concat(a) => {
            let first = x();
            let axis = signed_axis(a, first)?;
            let mut dims = first.ty.shape.dims().to_vec();
            for o in &operands[1..] {
                let od = o.ty.shape.dims();
                if od.len() != dims.len() {
                    return Err(format!(
                        "`{}` : {} has rank {} but `{}` : {} has rank {}",
                        o.name,
                        o.ty,
                        od.len(),
                        first.name,
                        first.ty,
                        dims.len()
                    ));
                }
                let fd = first.ty.shape.dims();
                if let Some(k) = (0..od.len()).find(|&k| k != axis && od[k] != fd[k]) {
                    return Err(format!(
                        "`{}` : {} and `{}` : {} differ at axis {k} ({} vs {}); they may differ only at axis {axis}",
                        first.name, first.ty, o.name, o.ty, fd[k], od[k]
                    ));
                }
                dims[axis] = dims[axis]
                    .checked_add(od[axis])
                    .ok_or_else(|| format!("the concatenated axis {axis} overflows"))?;
            }
            f32_of(dims)
        }
        Op::BatchNorm(bn) => {
            let x = x();
            let dims = x.ty.shape.dims();
            if bn.axis >= dims.len() {
                return Err(format!(
                    "axis {} is out of range for `{}` : {} (rank {})",
                    bn.axis,
                    x.name,
                    x.ty,
                    dims.len()
                ));
            }
            if !(bn.epsilon.is_finite() && bn.epsilon >= 0.0) {
                return Err(format!(
                    "epsilon must be a finite number >= 0, found {}",
                    bn.epsilon
                ));
            }
            let c = dims[bn.axis];
            for (id, slot) in [
                (bn.scale, "scale"),
                (bn.bias, "bias"),
                (bn.mean, "mean"),
                (bn.var, "var"),
            ] {
                vector_of(w(id)?, c, || {
                    format!("the input has {c} channels at axis {} ({slot})", bn.axis)
                })?;
            }
            Ok(x.ty.clone())
        }
        Op::Lstm(l) => lstm(l, weights, x()),
        Op::LstmStacked(l) => lstm_stacked(l, weights, x()),
        Op::ArgMax(a) => {
            let x = x();
            let axis = signed_axis(&Axis { axis: a.axis }, x)?;
            let mut dims = x.ty.shape.dims().to_vec();
            if dims[axis] == 0 {
                return Err(format!(
                    "axis {axis} of `{}` : {} is empty, so it has no maximum",
                    x.name, x.ty
                ));
            }
            if a.keepdims {
                dims[axis] = 1;
            } else {
                dims.remove(axis);
            }
            Ok(TensorType::new(DType::I64, dims))
        }
        Op::Slice(sl) => {
            let x = x();
            let axis = signed_axis(&Axis { axis: sl.axis }, x)?;
            let mut dims = x.ty.shape.dims().to_vec();
            let end = sl
                .start
                .checked_add(sl.len)
                .filter(|&end| end <= dims[axis])
                .ok_or_else(|| {
                    format!(
                        "elements {}..{} (start {} + len {}) are out of range for axis {axis} of `{}` : {}, which has {}",
                        sl.start,
                        sl.start.saturating_add(sl.len),
                        sl.start,
                        sl.len,
                        x.name,
                        x.ty,
                        dims[axis]
                    )
                })?;
            dims[axis] = end - sl.start;
            Ok(TensorType::new(x.ty.dtype, dims))
        }
        Op::Cast(c) => Ok(TensorType::new(c.to, x().ty.shape.clone())),
        Op::Embedding(e) => {
            let ids = x();
            let table = w(e.table)?;
            let &[_, dim] = table.ty.shape.dims() else {
                return Err(format!(
                    "@{} must be a table [vocab, dim] but is {}",
                    table.name, table.ty.shape
                ));
            };
            let mut dims = ids.ty.shape.dims().to_vec();
            dims.push(dim);
            f32_of(dims)
        }
    }
}

/// f32 everywhere, except that embedding takes i64 indices.
/// How a product's weight matrix is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[out, in]` (dense).
    OutIn,
    /// `[in, out]` (matmul).
    InOut,
}

/// The type of a product of `x` (over its last axis) with a weight matrix in `layout`, with an
/// optional bias of one value per output.
fn product(
    weights: &Weights,
    weight: WeightId,
    bias: Option<WeightId>,
    layout: Layout,
    x: Operand<'_>,
) -> Result<TensorType, String> {
    let op = match layout {
        Layout::OutIn => "dense",
        Layout::InOut => "matmul",
    };
    let weight = self::weight(weights, weight)?;
    let (out, inp) = match (weight.ty.shape.dims(), layout) {
        (&[out, inp], Layout::OutIn) => (out, inp),
        (&[inp, out], Layout::InOut) => (out, inp),
        _ => {
            let form = match layout {
                Layout::OutIn => "[out, in]",
                Layout::InOut => "[in, out]",
            };
            return Err(format!(
                "@{} must be a matrix {form} but is {}",
                weight.name, weight.ty.shape
            ));
        }
    };
    let Some(&features) = x.ty.shape.dims().last() else {
        return Err(format!(
            "input `{}` is a scalar ({}); {op} needs at least one axis",
            x.name, x.ty
        ));
    };
    if features != inp {
        return Err(format!(
            "input has {features} features (last axis of {}) but @{} is {}, which expects {inp}",
            x.ty, weight.name, weight.ty.shape
        ));
    }
    if let Some(b) = bias {
        vector_of(self::weight(weights, b)?, out, || {
            format!("@{} has {out} outputs", weight.name)
        })?;
    }
    let mut dims = x.ty.shape.dims().to_vec();
    *dims.last_mut().expect("rank >= 1") = out;
    Ok(TensorType::f32(dims))
}

fn check_dtypes(op: &Op, operands: &[Operand<'_>]) -> Result<(), String> {
    for o in operands {
        match (op, o.ty.dtype) {
            (Op::Embedding(_) | Op::Cast(_), DType::I64) => {}
            (Op::Embedding(_), DType::F32) => {
                return Err(format!(
                    "indices `{}` are {}; they must be i64",
                    o.name, o.ty
                ));
            }
            (_, DType::F32) => {}
            (_, DType::I64) => {
                return Err(format!(
                    "operand `{}` is {}; {} computes on f32 values (only embedding and cast take i64 values)",
                    o.name,
                    o.ty,
                    op.name()
                ));
            }
        }
    }
    Ok(())
}

/// The weight `id`, checked: in the arena, f32, and with an element count that fits `usize`.
pub(crate) fn weight(weights: &Weights, id: WeightId) -> Result<&Weight, String> {
    if id.index() >= weights.len() {
        return Err(format!(
            "weight handle #{} is out of range (the graph has {} weights)",
            id.index(),
            weights.len()
        ));
    }
    let w = &weights[id];
    check_weight_type(w)?;
    Ok(w)
}

/// The rules every weight's own type follows: f32, element count fits `usize`.
pub(crate) fn check_weight_type(w: &Weight) -> Result<(), String> {
    if w.ty.dtype != DType::F32 {
        return Err(format!("@{} is {}; weights must be f32", w.name, w.ty));
    }
    if w.ty.shape.checked_len().is_none() {
        return Err(format!(
            "@{} : {} has more elements than fit in memory (the count overflows)",
            w.name, w.ty
        ));
    }
    Ok(())
}

/// Checks that `w` is the vector `[n]`; `why` says where `n` comes from.
fn vector_of(w: &Weight, n: usize, why: impl FnOnce() -> String) -> Result<(), String> {
    if w.ty.shape.dims() == [n] {
        Ok(())
    } else {
        Err(format!(
            "@{} is {} but {}, so it must be [{n}]",
            w.name,
            w.ty.shape,
            why()
        ))
    }
}

fn elements(ty: &TensorType) -> Result<usize, String> {
    ty.shape
        .checked_len()
        .ok_or_else(|| format!("the element count of {ty} overflows"))
}

/// A softmax/concat axis (negative counts from the end), resolved to `0..rank`.
pub(crate) fn resolve_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank)
}

fn signed_axis(a: &Axis, x: Operand<'_>) -> Result<usize, String> {
    let rank = x.ty.shape.rank();
    resolve_axis(a.axis, rank).ok_or_else(|| {
        if rank == 0 {
            format!(
                "axis {} is out of range: `{}` is a scalar ({})",
                a.axis, x.name, x.ty
            )
        } else {
            format!(
                "axis {} is out of range for `{}` : {} (it must be in -{rank}..{rank})",
                a.axis, x.name, x.ty
            )
        }
    })
}

/// The permutation a transpose applies (empty means reverse), if `perm` is one of `0..rank`.
pub(crate) fn transpose_perm(perm: &[usize], rank: usize) -> Option<Vec<usize>> {
    if perm.is_empty() {
        return Some((0..rank).rev().collect());
    }
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return None;
    }
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return None;
        }
    }
    Some(perm.to_vec())
}

/// Numpy broadcasting of two shapes; on failure, the offending axis counted from the end
/// (0 = last).
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, usize> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for k in 0..rank {
        // Axis k from the end; a missing axis acts as 1.
        let da = if k < a.len() { a[a.len() - 1 - k] } else { 1 };
        let db = if k < b.len() { b[b.len() - 1 - k] } else { 1 };
        out[rank - 1 - k] = match (da, db) {
            _ if da == db => da,
            (1, d) | (d, 1) => d,
            _ => return Err(k),
        };
    }
    Ok(out)
}

/// Names of the two spatial axes, for messages.
const SPATIAL: [(&str, &str, &str); 2] = [("height", "top", "bottom"), ("width", "left", "right")];

/// The output extent of a sliding window along one spatial axis (`axis` 0 = height, 1 =
/// width): `(len + before + after - dilation * (kernel - 1) - 1) / stride + 1`, which must be at
/// least 1.
fn window_extent(
    axis: usize,
    len: usize,
    pad: [usize; 4],
    kernel: usize,
    dilation: usize,
    stride: usize,
) -> Result<usize, String> {
    let (name, before_side, after_side) = SPATIAL[axis];
    let (before, after) = (pad[axis], pad[axis + 2]);
    let overflow = || format!("the padded {name} or the kernel extent overflows");
    let padded = len
        .checked_add(before)
        .and_then(|v| v.checked_add(after))
        .ok_or_else(overflow)?;
    // kernel >= 1 and dilation >= 1 are checked by the callers.
    let span = dilation
        .checked_mul(kernel - 1)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    if padded < span {
        let dil = if dilation > 1 {
            format!(" ({kernel} taps at dilation {dilation})")
        } else {
            String::new()
        };
        return Err(format!(
            "the window spans {span} along the {name}{dil} but the padded input {name} is only {padded} ({len} + {before} {before_side} + {after} {after_side}), so the output would be empty"
        ));
    }
    Ok((padded - span) / stride + 1)
}

fn at_least_one(what: &str, v: [usize; 2]) -> Result<(), String> {
    if v.contains(&0) {
        Err(format!(
            "{what} must be at least 1, found [{}, {}]",
            v[0], v[1]
        ))
    } else {
        Ok(())
    }
}

fn conv2d(c: &Conv2d, weights: &Weights, x: Operand<'_>) -> Result<TensorType, String> {
    let xd = x.ty.shape.dims();
    if !(3..=4).contains(&xd.len()) {
        return Err(format!(
            "input `{}` is {}; conv2d needs [C, H, W] or [N, C, H, W]",
            x.name, x.ty
        ));
    }
    let weight = weight(weights, c.weight)?;
    let &[o, cg, kh, kw] = weight.ty.shape.dims() else {
        return Err(format!(
            "@{} must be [out, in/groups, kh, kw] but is {}",
            weight.name, weight.ty.shape
        ));
    };
    at_least_one("stride", c.stride)?;
    at_least_one("dilation", c.dilation)?;
    let g = c.groups;
    if g == 0 {
        return Err("groups must be at least 1, found 0".to_string());
    }
    let r = xd.len();
    let (ch, h, wd) = (xd[r - 3], xd[r - 2], xd[r - 1]);
    if ch % g != 0 {
        return Err(format!(
            "the input `{}` : {} has {ch} channels, which groups = {g} does not divide",
            x.name, x.ty
        ));
    }
    if o % g != 0 {
        return Err(format!(
            "@{} has {o} output channels, which groups = {g} does not divide",
            weight.name
        ));
    }
    if cg != ch / g {
        return Err(format!(
            "@{} has {cg} input channels per group but the input has {ch} channels and groups = {g}",
            weight.name
        ));
    }
    if kh == 0 || kw == 0 {
        return Err(format!(
            "@{} : {} has an empty {kh}x{kw} kernel",
            weight.name, weight.ty
        ));
    }
    if let Some(b) = c.bias {
        vector_of(self::weight(weights, b)?, o, || {
            format!("@{} has {o} output channels", weight.name)
        })?;
    }
    let oh = window_extent(0, h, c.padding, kh, c.dilation[0], c.stride[0])?;
    let ow = window_extent(1, wd, c.padding, kw, c.dilation[1], c.stride[1])?;
    let mut dims = xd[..r - 3].to_vec();
    dims.extend([o, oh, ow]);
    Ok(TensorType::f32(dims))
}

fn pool2d(p: &Pool2d, x: Operand<'_>) -> Result<TensorType, String> {
    let xd = x.ty.shape.dims();
    if xd.len() < 3 {
        return Err(format!(
            "input `{}` is {}; pooling needs [C, H, W] or [N, C, H, W]",
            x.name, x.ty
        ));
    }
    at_least_one("kernel", p.kernel)?;
    at_least_one("stride", p.stride)?;
    for (axis, &(name, before, after)) in SPATIAL.iter().enumerate() {
        let k = p.kernel[axis];
        for (side, pad) in [(before, p.padding[axis]), (after, p.padding[axis + 2])] {
            if pad >= k {
                return Err(format!(
                    "padding {pad} on the {side} is not smaller than the kernel {name} {k}"
                ));
            }
        }
    }
    let r = xd.len();
    let (h, w) = (xd[r - 2], xd[r - 1]);
    for (len, (name, _, _)) in [(h, SPATIAL[0]), (w, SPATIAL[1])] {
        if len == 0 {
            return Err(format!(
                "cannot pool `{}` : {}: its {name} is 0",
                x.name, x.ty
            ));
        }
    }
    let oh = window_extent(0, h, p.padding, p.kernel[0], 1, p.stride[0])?;
    let ow = window_extent(1, w, p.padding, p.kernel[1], 1, p.stride[1])?;
    let mut dims = xd[..r - 2].to_vec();
    dims.extend([oh, ow]);
    Ok(TensorType::f32(dims))
}

/// The input of an LSTM: `(seq, batch, in)` from `[seq, in]` or `[seq, batch, in]`.
fn lstm_input(x: Operand<'_>) -> Result<(usize, Option<usize>, usize), String> {
    match *x.ty.shape.dims() {
        [seq, inp] => Ok((seq, None, inp)),
        [seq, batch, inp] => Ok((seq, Some(batch), inp)),
        _ => Err(format!(
            "input `{}` is {}; lstm needs [seq, in] or [seq, batch, in]",
            x.name, x.ty
        )),
    }
}

fn lstm(l: &Lstm, weights: &Weights, x: Operand<'_>) -> Result<TensorType, String> {
    let (seq, batch, inp) = lstm_input(x)?;
    // Optional slots may only be left out from the end (the text format is positional).
    if l.b.is_none() && (l.h0.is_some() || l.c0.is_some()) || l.h0.is_none() && l.c0.is_some() {
        return Err(
            "an optional weight is given after one that is left out; b, h0 and c0 may only be left out from the end"
                .to_string(),
        );
    }
    let w = weight(weights, l.w)?;
    let &[rows, w_in] = w.ty.shape.dims() else {
        return Err(format!(
            "@{} must be [4 * hidden, in] but is {}",
            w.name, w.ty.shape
        ));
    };
    if rows % 4 != 0 {
        return Err(format!(
            "@{} has {rows} rows, which is not 4 * hidden (gates i, o, f, c)",
            w.name
        ));
    }
    let h = rows / 4;
    if w_in != inp {
        return Err(format!(
            "input has {inp} features (last axis of {}) but @{} is {}, which expects {w_in}",
            x.ty, w.name, w.ty.shape
        ));
    }
    let r = weight(weights, l.r)?;
    if r.ty.shape.dims() != [rows, h] {
        return Err(format!(
            "@{} is {} but @{} gives hidden size {h}, so it must be [{rows}, {h}]",
            r.name, r.ty.shape, w.name
        ));
    }
    if let Some(b) = l.b {
        let b = weight(weights, b)?;
        let want = h
            .checked_mul(8)
            .ok_or("the bias size 8 * hidden overflows")?;
        if b.ty.shape.dims() != [want] {
            return Err(format!(
                "@{} is {} but @{} gives hidden size {h}, so the bias must be [{want}] (input then recurrent biases)",
                b.name, b.ty.shape, w.name
            ));
        }
    }
    lstm_states(weights, [l.h0, l.c0], h, batch)?;
    lstm_output(x, seq, batch, h, l.last)
}

fn lstm_stacked(l: &LstmStacked, weights: &Weights, x: Operand<'_>) -> Result<TensorType, String> {
    let (seq, batch, inp) = lstm_input(x)?;
    if l.h0.is_none() && l.c0.is_some() {
        return Err(
            "c0 is given without h0; h0 and c0 may only be left out from the end".to_string(),
        );
    }
    let w = weight(weights, l.weight)?;
    let &[rows, cols] = w.ty.shape.dims() else {
        return Err(format!(
            "@{} must be [4 * hidden, in + hidden + 1] but is {}",
            w.name, w.ty.shape
        ));
    };
    if rows % 4 != 0 {
        return Err(format!(
            "@{} has {rows} rows, which is not 4 * hidden (gates i, o, f, c)",
            w.name
        ));
    }
    let h = rows / 4;
    let want = inp
        .checked_add(h)
        .and_then(|n| n.checked_add(1))
        .ok_or("the stacked width in + hidden + 1 overflows")?;
    if cols != want {
        return Err(format!(
            "input has {inp} features (last axis of {}) and @{} gives hidden size {h}, so it must be [{rows}, {want}] (input, hidden, bias columns) but is {}",
            x.ty, w.name, w.ty.shape
        ));
    }
    lstm_states(weights, [l.h0, l.c0], h, batch)?;
    lstm_output(x, seq, batch, h, l.last)
}

/// Checks the initial states `[h0, c0]`: each `[h]`, or `[batch, h]` when the input has a batch axis.
fn lstm_states(
    weights: &Weights,
    states: [Option<WeightId>; 2],
    h: usize,
    batch: Option<usize>,
) -> Result<(), String> {
    for (id, slot) in states.into_iter().zip(["h0", "c0"]) {
        let Some(id) = id else { continue };
        let s = weight(weights, id)?;
        let ok = match (s.ty.shape.dims(), batch) {
            ([n], _) => *n == h,
            ([b, n], Some(batch)) => *b == batch && *n == h,
            _ => false,
        };
        if !ok {
            let want = match batch {
                Some(batch) => format!("[{h}] or [{batch}, {h}]"),
                None => format!("[{h}] (the input has no batch axis)"),
            };
            return Err(format!(
                "@{} ({slot}) is {} but must be {want}",
                s.name, s.ty.shape
            ));
        }
    }
    Ok(())
}

/// Every hidden state `[seq, (batch,) h]`, or only the last one.
fn lstm_output(
    x: Operand<'_>,
    seq: usize,
    batch: Option<usize>,
    h: usize,
    last: bool,
) -> Result<TensorType, String> {
    let mut dims = match batch {
        Some(batch) => vec![seq, batch, h],
        None => vec![seq, h],
    };
    if last {
        if seq == 0 {
            return Err(format!(
                "input `{}` : {} has no steps, so there is no last hidden state",
                x.name, x.ty
            ));
        }
        dims.remove(0);
    }
    Ok(TensorType::f32(dims))
}
