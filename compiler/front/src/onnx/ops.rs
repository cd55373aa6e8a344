//! The op table: one converter per ONNX op type, each turning one node into sprig nodes or a
//! folded constant.
//!
//! Contract: a converter gets the node's operands ([`Val`]: a sprig node or a constant), and
//! returns one value per output it computes (`None` for outputs it does not, which is an
//! unsupported use only when something reads them). Constant operands of shape arithmetic fold;
//! weights must be constants (initializers, `Constant` nodes or folded values), and an op that
//! would need a computed weight is an unsupported use, named with the reason. Layout changes
//! follow ONNX exactly: Gemm's and MatMul's `B` keep the layout the model stores (scaled by
//! alpha): a `dense` weight `[out, in]` for Gemm with `transB`, a `matmul` weight `[in, out]` for
//! Gemm without it and for MatMul (simplify's `gemm-transb-normal-form` brings those to dense);
//! beta scales the bias, LSTM weights lose their direction axis.

use super::import::{Const, Conv, Ctx, Val, invalid, unsupported};
use super::proto::{AttributeProto, NodeProto};
use super::tensor::{self, Data};
use sprig_ir::op::{self, Axis, Conv2d, Pool2d};
use sprig_ir::{DType, NodeId, Op};
use std::rc::Rc;
use std::sync::Arc;

/// A node as a converter sees it.
pub(crate) struct NodeIn<'a> {
    pub proto: &'a NodeProto,
    /// One per ONNX input; `None` for an omitted optional input (empty name).
    pub inputs: Vec<Option<Val>>,
    /// Whether each output is read by a needed node or is a kept graph output.
    pub used: Vec<bool>,
}

type Out = Result<Vec<Option<Val>>, Conv>;
type Converter = fn(&mut Ctx<'_>, &NodeIn<'_>) -> Out;

/// Every ONNX op sprig imports, by op type (default domain).
pub(crate) const OPS: &[(&str, Converter)] = &[
    ("Add", binary),
    ("ArgMax", argmax),
    ("AveragePool", pool),
    ("BatchNormalization", batchnorm),
    ("Cast", cast),
    ("Concat", concat),
    ("Constant", constant),
    ("Conv", conv),
    ("Div", binary),
    ("Dropout", pass_through),
    ("Flatten", flatten),
    ("Gather", gather),
    ("Gemm", gemm),
    ("GlobalAveragePool", global_pool),
    ("GlobalMaxPool", global_pool),
    ("Identity", pass_through),
    ("LSTM", lstm),
    ("LogSoftmax", softmax),
    ("MatMul", matmul),
    ("MaxPool", pool),
    ("Mul", binary),
    ("Relu", unary),
    ("Reshape", reshape),
    ("Shape", shape),
    ("Sigmoid", unary),
    ("Slice", slice),
    ("Softmax", softmax),
    ("Split", split),
    ("Squeeze", squeeze),
    ("Sub", binary),
    ("Tanh", unary),
    ("Transpose", transpose),
    ("Unsqueeze", unsqueeze),
];

/// The converter for `op_type`, if sprig imports it.
pub(crate) fn converter(op_type: &str) -> Option<Converter> {
    OPS.iter().find(|(n, _)| *n == op_type).map(|(_, c)| *c)
}

impl NodeIn<'_> {
    fn op(&self) -> &str {
        self.proto.op_type.as_deref().unwrap_or("")
    }

    /// The name of output `k` (the node's own value names).
    fn out(&self, k: usize) -> &str {
        self.proto.output.get(k).map_or("", String::as_str)
    }

    fn input(&self, k: usize) -> Result<&Val, Conv> {
        self.inputs
            .get(k)
            .and_then(Option::as_ref)
            .ok_or_else(|| invalid(format!("input #{k} is required but missing")))
    }

    fn opt_input(&self, k: usize) -> Option<&Val> {
        self.inputs.get(k).and_then(Option::as_ref)
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.proto
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, Conv> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => {
                a.i.ok_or_else(|| invalid(format!("attribute `{name}` is not an integer")))
            }
        }
    }

    fn float(&self, name: &str, default: f32) -> Result<f32, Conv> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => {
                a.f.ok_or_else(|| invalid(format!("attribute `{name}` is not a float")))
            }
        }
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    fn used(&self, k: usize) -> bool {
        self.used.get(k).copied().unwrap_or(false)
    }
}

fn one(v: Val) -> Out {
    Ok(vec![Some(v)])
}

fn node(id: NodeId) -> Out {
    one(Val::Node(id))
}

/// A required constant operand; `what` names it for the unsupported-use message.
fn constant_input<'v>(n: &'v NodeIn<'_>, k: usize, what: &str) -> Result<&'v Rc<Const>, Conv> {
    match n.input(k)? {
        Val::Const(c) => Ok(c),
        Val::Node(_) => Err(unsupported(format!("computed {what}"))),
    }
}

fn ints_of(c: &Const, what: &str) -> Result<Vec<i64>, Conv> {
    match &c.data {
        Data::I64(v) => Ok(v.to_vec()),
        Data::F32(_) => Err(invalid(format!("{what} must be integers"))),
    }
}

/// An axis in `-rank..rank`, resolved.
fn axis(a: i64, rank: usize, what: &str) -> Result<usize, Conv> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) {
        Ok(v as usize)
    } else {
        Err(invalid(format!(
            "{what} {a} is out of range for rank {rank}"
        )))
    }
}

fn usize_of(v: i64, what: &str) -> Result<usize, Conv> {
    usize::try_from(v).map_err(|_| invalid(format!("{what} must not be negative, found {v}")))
}

fn count(dims: &[usize]) -> Result<usize, Conv> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(format!("shape {dims:?} overflows")))
}

/// A constant with the same data and new dims.
fn reshaped(name: &str, c: &Const, dims: Vec<usize>) -> Val {
    Val::Const(Const::new(name, dims, c.data.clone()))
}

fn reshape_node(cx: &mut Ctx<'_>, name: String, x: NodeId, dims: &[usize]) -> Result<NodeId, Conv> {
    let shape = dims.iter().map(|&d| d as i64).collect();
    cx.add(name, Op::Reshape(op::Reshape { shape }), &[x])
}

fn unary(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = cx.node_of(n.input(0)?)?;
    let op = match n.op() {
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Sigmoid,
        _ => Op::Tanh,
    };
    node(cx.add(n.out(0).to_string(), op, &[x])?)
}

fn pass_through(_: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    if n.op() == "Dropout" && n.used(1) {
        return Err(unsupported("mask output"));
    }
    one(n.input(0)?.clone())
}

fn softmax(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = cx.node_of(n.input(0)?)?;
    let dims = cx.dims(&Val::Node(x));
    let rank = dims.len();
    let log = n.op() == "LogSoftmax";
    let make = |a: i64| {
        let ax = Axis { axis: a };
        if log {
            Op::LogSoftmax(ax)
        } else {
            Op::Softmax(ax)
        }
    };
    let out = n.out(0).to_string();
    if cx.opset >= 13 {
        let a = n.int("axis", -1)?;
        axis(a, rank, "axis")?;
        return node(cx.add(out, make(a), &[x])?);
    }
    // Before opset 13 the input is coerced to 2-D at `axis` (default 1).
    let a = axis(n.int("axis", 1)?, rank.max(1), "axis")?;
    if a + 1 == rank {
        return node(cx.add(out, make(-1), &[x])?);
    }
    let flat = [count(&dims[..a])?, count(&dims[a..])?];
    let r1 = cx.fresh_name(&format!("{out}/2d"));
    let r1 = reshape_node(cx, r1, x, &flat)?;
    let s = cx.fresh_name(&format!("{out}/softmax"));
    let s = cx.add(s, make(-1), &[r1])?;
    node(reshape_node(cx, out, s, &dims)?)
}

/// Element-wise `f` with NumPy broadcasting, over constants.
fn broadcast_fold<T: Copy>(
    a: (&[usize], &[T]),
    b: (&[usize], &[T]),
    f: impl Fn(T, T) -> Result<T, Conv>,
) -> Result<(Vec<usize>, Vec<T>), Conv> {
    let rank = a.0.len().max(b.0.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (ad, bd) = (pad(a.0), pad(b.0));
    let mut dims = Vec::with_capacity(rank);
    for k in 0..rank {
        dims.push(match (ad[k], bd[k]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return Err(invalid(format!(
                    "shapes {:?} and {:?} do not broadcast ({x} vs {y})",
                    a.0, b.0
                )));
            }
        });
    }
    let total = count(&dims)?;
    let strides = |d: &[usize]| {
        let mut s = vec![0; rank];
        let mut acc = 1;
        for k in (0..rank).rev() {
            s[k] = if d[k] == 1 { 0 } else { acc };
            acc *= d[k];
        }
        s
    };
    let (sa, sb) = (strides(&ad), strides(&bd));
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; rank];
    for _ in 0..total {
        let ia: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        out.push(f(a.1[ia], b.1[ib])?);
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok((dims, out))
}

fn binary(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let (a, b) = (n.input(0)?, n.input(1)?);
    let kind = n.op();
    if let (Val::Const(ca), Val::Const(cb)) = (a, b) {
        let out = n.out(0);
        let folded = match (&ca.data, &cb.data) {
            (Data::I64(x), Data::I64(y)) => {
                let (dims, v) = broadcast_fold((&ca.dims, x), (&cb.dims, y), |p, q| {
                    let r = match kind {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => p.checked_div(q),
                    };
                    r.ok_or_else(|| invalid(format!("integer {kind} of {p} and {q} fails")))
                })?;
                Const::new(out, dims, Data::I64(v.into()))
            }
            _ => {
                let (x, y) = (ca.data.to_f32(), cb.data.to_f32());
                let (dims, v) = broadcast_fold((&ca.dims, &x), (&cb.dims, &y), |p, q| {
                    Ok(match kind {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    })
                })?;
                Const::new(out, dims, Data::F32(v.into()))
            }
        };
        return one(Val::Const(folded));
    }
    // MatMul + Add: a bias vector fuses into the matmul.
    if kind == "Add" {
        for (x, c) in [(a, b), (b, a)] {
            let (Val::Node(id), Val::Const(c)) = (x, c) else {
                continue;
            };
            if !cx.fusable.contains(id) {
                continue;
            }
            let dims = cx.dims(x);
            let out_features = dims.last().copied().unwrap_or(0);
            let fits = c.dims == [out_features] || (dims.len() >= 2 && c.dims == [1, out_features]);
            if !fits {
                continue;
            }
            let bias = cx.weight_as(c, vec![out_features])?;
            match &mut cx.graph.node_mut(*id).op {
                Op::Dense(d) => d.bias = Some(bias),
                Op::MatMul(m) => m.bias = Some(bias),
                _ => {}
            }
            cx.fusable.remove(id);
            cx.rename(*id, n.out(0));
            return node(*id);
        }
    }
    let (a, b) = (cx.node_of(a)?, cx.node_of(b)?);
    let op = match kind {
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        _ => Op::Div,
    };
    node(cx.add(n.out(0).to_string(), op, &[a, b])?)
}

fn gemm(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let alpha = n.float("alpha", 1.0)?;
    let beta = n.float("beta", 1.0)?;
    let trans_a = n.int("transA", 0)? != 0;
    let trans_b = n.int("transB", 0)? != 0;
    let a = match n.input(0)? {
        Val::Node(id) => *id,
        Val::Const(_) => return Err(unsupported("constant A")),
    };
    let b = constant_input(n, 1, "B")?;
    let &[b0, b1] = b.dims.as_slice() else {
        return Err(invalid(format!(
            "B must be a matrix, but has dims {:?}",
            b.dims
        )));
    };
    let out = n.out(0).to_string();
    let c = n.opt_input(2).cloned();
    let x = if trans_a {
        let t = cx.fresh_name(&format!("{out}/transA"));
        cx.add(t, Op::Transpose(op::Transpose { perm: vec![1, 0] }), &[a])?
    } else {
        a
    };
    // B is kept as stored: [N, K] with transB (a dense weight), [K, N] without (a matmul
    // weight, which simplify brings to the dense normal form).
    let n_out = if trans_b { b0 } else { b1 };
    let weight = if alpha == 1.0 {
        cx.weight(b)?
    } else {
        let v: Vec<f32> = b.data.to_f32().iter().map(|&v| v * alpha).collect();
        cx.literal(&format!("{}.scaled", b.name), vec![b0, b1], v)?
    };
    // A bias that is one value per output folds into the dense layer.
    let mut bias = None;
    let mut add_after: Option<Val> = None;
    match &c {
        None => {}
        Some(Val::Const(cc)) if cc.dims == [n_out] && beta == 1.0 => bias = Some(cx.weight(cc)?),
        Some(Val::Const(cc))
            if cc.dims.iter().product::<usize>() == n_out
                && matches!(cc.dims.as_slice(), [_] | [1, _]) =>
        {
            let v: Vec<f32> = cc.data.to_f32().iter().map(|&v| v * beta).collect();
            bias = Some(cx.literal(&format!("{}.bias", cc.name), vec![n_out], v)?);
        }
        Some(Val::Const(cc)) if cc.dims.iter().product::<usize>() == 1 => {
            let v = cc.data.to_f32()[0] * beta;
            bias = Some(cx.literal(&format!("{}.bias", cc.name), vec![n_out], vec![v; n_out])?);
        }
        Some(Val::Const(cc)) => {
            let v: Vec<f32> = cc.data.to_f32().iter().map(|&v| v * beta).collect();
            let scaled = Const::new(
                &format!("{}.scaled", cc.name),
                cc.dims.clone(),
                Data::F32(v.into()),
            );
            add_after = Some(Val::Const(if beta == 1.0 { cc.clone() } else { scaled }));
        }
        Some(v @ Val::Node(_)) => {
            if beta == 1.0 {
                add_after = Some(v.clone());
            } else {
                let id = cx.node_of(v)?;
                let k = Val::Const(Const::new(
                    &format!("{out}/beta"),
                    vec![],
                    Data::F32(Arc::from([beta])),
                ));
                let k = cx.node_of(&k)?;
                let name = cx.fresh_name(&format!("{out}/beta_c"));
                add_after = Some(Val::Node(cx.add(name, Op::Mul, &[id, k])?));
            }
        }
    }
    let product = if trans_b {
        Op::Dense(op::Dense { weight, bias })
    } else {
        Op::MatMul(op::MatMul { weight, bias })
    };
    match add_after {
        None => node(cx.add(out, product, &[x])?),
        Some(c) => {
            let d = cx.fresh_name(&format!("{out}/{}", product.name()));
            let d = cx.add(d, product, &[x])?;
            let c = cx.node_of(&c)?;
            node(cx.add(out, Op::Add, &[d, c])?)
        }
    }
}

fn matmul(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let a = match n.input(0)? {
        Val::Node(id) => *id,
        Val::Const(_) => return Err(unsupported("constant A")),
    };
    let b = constant_input(n, 1, "B (two computed operands)")?;
    if b.dims.len() != 2 {
        return Err(unsupported(format!("B of rank {}", b.dims.len())));
    }
    // B is [K, N], kept as stored: a matmul weight.
    let weight = cx.weight(b)?;
    let out = n.out(0);
    let id = cx.add(
        out.to_string(),
        Op::MatMul(op::MatMul { weight, bias: None }),
        &[a],
    )?;
    if cx.uses.get(out).copied() == Some(1) {
        cx.fusable.insert(id);
    }
    node(id)
}

/// Pads `[top, left, bottom, right]` from ONNX `pads`/`auto_pad` for a 2-D window.
fn window_pads(
    n: &NodeIn<'_>,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<[usize; 4], Conv> {
    if stride.contains(&0) || dilation.contains(&0) {
        return Err(invalid(format!(
            "strides {stride:?} and dilations {dilation:?} must be at least 1"
        )));
    }
    let auto = n.string("auto_pad").unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => {
            let pads = n.ints("pads").unwrap_or(&[0, 0, 0, 0]);
            let [t, l, b, r] = pads else {
                return Err(invalid(format!("pads {pads:?} must hold 4 values")));
            };
            Ok([
                usize_of(*t, "pads")?,
                usize_of(*l, "pads")?,
                usize_of(*b, "pads")?,
                usize_of(*r, "pads")?,
            ])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for k in 0..2 {
                let out = input[k].div_ceil(stride[k]);
                let span = dilation[k]
                    .saturating_mul(kernel[k].saturating_sub(1))
                    .saturating_add(1);
                let total = out
                    .saturating_sub(1)
                    .saturating_mul(stride[k])
                    .saturating_add(span)
                    .saturating_sub(input[k]);
                let small = total / 2;
                let (before, after) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[k] = before;
                p[k + 2] = after;
            }
            Ok(p)
        }
        other => Err(invalid(format!("auto_pad `{other}` is not an ONNX mode"))),
    }
}

fn pair(n: &NodeIn<'_>, name: &str) -> Result<[usize; 2], Conv> {
    match n.ints(name) {
        None => Ok([1, 1]),
        Some([a, b]) => Ok([usize_of(*a, name)?, usize_of(*b, name)?]),
        Some(v) => Err(invalid(format!("{name} {v:?} must hold 2 values"))),
    }
}

fn spatial_of(cx: &Ctx<'_>, x: NodeId, what: &str) -> Result<[usize; 2], Conv> {
    let dims = cx.dims(&Val::Node(x));
    match dims.as_slice() {
        [_, _, h, w] => Ok([*h, *w]),
        d => Err(unsupported(format!("{what} on a rank-{} input", d.len()))),
    }
}

fn conv(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let w = constant_input(n, 1, "weights")?;
    if w.dims.len() != 4 {
        return Err(unsupported(format!(
            "{} spatial axes",
            w.dims.len().saturating_sub(2)
        )));
    }
    let x = cx.node_of(n.input(0)?)?;
    let hw = spatial_of(cx, x, "2-D convolution")?;
    let kernel = [w.dims[2], w.dims[3]];
    if let Some(k) = n.ints("kernel_shape")
        && k != [kernel[0] as i64, kernel[1] as i64]
    {
        return Err(invalid(format!(
            "kernel_shape {k:?} disagrees with the weights {:?}",
            w.dims
        )));
    }
    let stride = pair(n, "strides")?;
    let dilation = pair(n, "dilations")?;
    let padding = window_pads(n, hw, kernel, stride, dilation)?;
    let groups = usize_of(n.int("group", 1)?, "group")?;
    let weight = cx.weight(w)?;
    let bias = match n.opt_input(2) {
        None => None,
        Some(Val::Const(b)) => Some(cx.weight(b)?),
        Some(Val::Node(_)) => return Err(unsupported("computed bias")),
    };
    let op = Op::Conv2d(Conv2d {
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
    });
    node(cx.add(n.out(0).to_string(), op, &[x])?)
}

fn pool(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = cx.node_of(n.input(0)?)?;
    let hw = spatial_of(cx, x, "2-D pooling")?;
    let kernel = match n.ints("kernel_shape") {
        Some([a, b]) => [usize_of(*a, "kernel_shape")?, usize_of(*b, "kernel_shape")?],
        Some(k) => return Err(unsupported(format!("{}-D window", k.len()))),
        None => return Err(invalid("kernel_shape is required")),
    };
    if pair(n, "dilations")? != [1, 1] {
        return Err(unsupported("dilations"));
    }
    let stride = pair(n, "strides")?;
    let padding = window_pads(n, hw, kernel, stride, [1, 1])?;
    if n.int("ceil_mode", 0)? != 0 {
        // Ceil mode matters only when the last window would start inside the padded input.
        for k in 0..2 {
            let padded = hw[k] + padding[k] + padding[k + 2];
            if padded >= kernel[k] && (padded - kernel[k]) % stride[k].max(1) != 0 {
                return Err(unsupported("ceil_mode=1"));
            }
        }
    }
    let p = Pool2d {
        kernel,
        stride,
        padding,
        count_include_pad: n.int("count_include_pad", 0)? != 0,
    };
    let op = if n.op() == "MaxPool" {
        if n.used(1) {
            return Err(unsupported("Indices output"));
        }
        Op::MaxPool2d(p)
    } else {
        Op::AvgPool2d(p)
    };
    node(cx.add(n.out(0).to_string(), op, &[x])?)
}

fn global_pool(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = cx.node_of(n.input(0)?)?;
    let hw = spatial_of(cx, x, "global pooling")?;
    let p = Pool2d {
        kernel: hw,
        stride: [hw[0].max(1), hw[1].max(1)],
        padding: [0; 4],
        count_include_pad: false,
    };
    let op = if n.op() == "GlobalMaxPool" {
        Op::MaxPool2d(p)
    } else {
        Op::AvgPool2d(p)
    };
    node(cx.add(n.out(0).to_string(), op, &[x])?)
}

fn batchnorm(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    if n.int("training_mode", 0)? != 0 {
        return Err(unsupported("training_mode"));
    }
    if (1..5).any(|k| n.used(k)) {
        return Err(unsupported("running statistics outputs"));
    }
    let x = cx.node_of(n.input(0)?)?;
    let rank = cx.dims(&Val::Node(x)).len();
    let mut w = [None; 4];
    for (k, slot) in w.iter_mut().enumerate() {
        let c = constant_input(n, k + 1, "statistics")?.clone();
        *slot = Some(cx.weight(&c)?);
    }
    let [Some(scale), Some(bias), Some(mean), Some(var)] = w else {
        unreachable!("all four filled")
    };
    let op = Op::BatchNorm(op::BatchNorm {
        scale,
        bias,
        mean,
        var,
        epsilon: n.float("epsilon", 1e-5)?,
        axis: usize::from(rank >= 2),
    });
    node(cx.add(n.out(0).to_string(), op, &[x])?)
}

fn is_float_code(to: i64) -> bool {
    i32::try_from(to).is_ok_and(tensor::is_float_type)
}

fn cast(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let to = n.int("to", 0)?;
    let name = i32::try_from(to).map_or("unknown", tensor::type_name);
    let x = n.input(0)?;
    match x {
        Val::Const(c) => {
            let float = is_float_code(to);
            let known = i32::try_from(to)
                .ok()
                .and_then(tensor::source_dtype)
                .is_some();
            if !known {
                return Err(unsupported(format!("to {name}")));
            }
            let data = if float {
                let v = c.data.to_f32();
                match to {
                    10 => Data::F32(v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()),
                    16 => Data::F32(
                        v.iter()
                            .map(|&x| half::bf16::from_f32(x).to_f32())
                            .collect(),
                    ),
                    _ => Data::F32(v),
                }
            } else {
                match &c.data {
                    Data::I64(v) if to == 9 => {
                        Data::I64(v.iter().map(|&x| i64::from(x != 0)).collect())
                    }
                    Data::I64(v) => Data::I64(v.clone()),
                    Data::F32(v) if to == 9 => {
                        Data::I64(v.iter().map(|&x| i64::from(x != 0.0)).collect())
                    }
                    Data::F32(v) => Data::I64(v.iter().map(|&x| x.trunc() as i64).collect()),
                }
            };
            // Values that read back the same from the initializer keep it as their source.
            let same = float && !matches!(to, 10 | 16)
                || matches!((&c.data, &data), (Data::I64(_), Data::I64(_)) if to == 7);
            let source = if same { c.source.clone() } else { None };
            one(Val::Const(Rc::new(Const {
                name: n.out(0).to_string(),
                dims: c.dims.clone(),
                data,
                source,
            })))
        }
        Val::Node(id) => {
            let dtype = cx.ty(x).dtype;
            // float and double are f32 in sprig, int32 and int64 are i64; a cast to the value's
            // own type stays in the graph as written (simplify drops it).
            let target = match to {
                1 | 11 => DType::F32,
                6 | 7 => DType::I64,
                _ => {
                    return Err(unsupported(format!(
                        "to {name} of a computed {dtype} value"
                    )));
                }
            };
            let id = *id;
            node(cx.add(
                n.out(0).to_string(),
                Op::Cast(op::Cast { to: target }),
                &[id],
            )?)
        }
    }
}

fn constant(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let out = n.out(0);
    let a = n
        .proto
        .attribute
        .first()
        .ok_or_else(|| invalid("has no value attribute"))?;
    let c = match a.name.as_deref().unwrap_or("") {
        "value" => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| invalid("value is not a tensor"))?;
            let d = tensor::decode(t, cx.model_dir).map_err(|r| invalid(format!("value: {r}")))?;
            Const::new(out, d.dims, d.data)
        }
        "value_float" => Const::new(out, vec![], Data::F32(Arc::from([a.f.unwrap_or(0.0)]))),
        "value_floats" => Const::new(
            out,
            vec![a.floats.len()],
            Data::F32(a.floats.as_slice().into()),
        ),
        "value_int" => Const::new(out, vec![], Data::I64(Arc::from([a.i.unwrap_or(0)]))),
        "value_ints" => Const::new(out, vec![a.ints.len()], Data::I64(a.ints.as_slice().into())),
        other => return Err(unsupported(other.to_string())),
    };
    one(Val::Const(c))
}

fn shape(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let dims = cx.dims(n.input(0)?);
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(n.int("start", 0)?);
    let end = clamp(n.int("end", rank)?).max(start);
    let v: Vec<i64> = dims[start..end].iter().map(|&d| d as i64).collect();
    one(Val::Const(Const::new(
        n.out(0),
        vec![v.len()],
        Data::I64(v.into()),
    )))
}

/// Gathers along `axis` of a constant.
fn gather_fold(out: &str, data: &Const, ids: &Const, ax: usize) -> Result<Val, Conv> {
    let ids_v = ints_of(ids, "Gather indices")?;
    let d = &data.dims;
    let (outer, len, inner) = (count(&d[..ax])?, d[ax], count(&d[ax + 1..])?);
    let mut dims = d[..ax].to_vec();
    dims.extend_from_slice(&ids.dims);
    dims.extend_from_slice(&d[ax + 1..]);
    count(&dims)?;
    let resolved: Vec<usize> = ids_v
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + len as i64 } else { i };
            usize::try_from(j).ok().filter(|&j| j < len).ok_or_else(|| {
                invalid(format!(
                    "index {i} is out of range for axis {ax} of size {len}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    fn pick<T: Copy>(v: &[T], outer: usize, len: usize, inner: usize, ids: &[usize]) -> Vec<T> {
        let mut out = Vec::with_capacity(outer * ids.len() * inner);
        for o in 0..outer {
            for &i in ids {
                let at = (o * len + i) * inner;
                out.extend_from_slice(&v[at..at + inner]);
            }
        }
        out
    }
    let data = match &data.data {
        Data::F32(v) => Data::F32(pick(v, outer, len, inner, &resolved).into()),
        Data::I64(v) => Data::I64(pick(v, outer, len, inner, &resolved).into()),
    };
    Ok(Val::Const(Const::new(out, dims, data)))
}

fn gather(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let (data, ids) = (n.input(0)?, n.input(1)?);
    let Val::Const(table) = data else {
        return Err(unsupported("a computed data operand"));
    };
    let ax = axis(n.int("axis", 0)?, table.dims.len(), "axis")?;
    match ids {
        Val::Const(ids) => one(gather_fold(n.out(0), table, ids, ax)?),
        Val::Node(id) => {
            if ax != 0 || table.dims.len() != 2 {
                return Err(unsupported(
                    "computed indices into a table that is not [rows, dim] along axis 0",
                ));
            }
            let w = cx.weight(table)?;
            let op = Op::Embedding(op::Embedding { table: w });
            node(cx.add(n.out(0).to_string(), op, &[*id])?)
        }
    }
}

/// Elements `start..start + len` along `ax` of a constant.
fn slice_fold(out: &str, c: &Const, ax: usize, start: usize, len: usize) -> Val {
    let d = &c.dims;
    let (outer, inner) = (
        d[..ax].iter().product::<usize>(),
        d[ax + 1..].iter().product::<usize>(),
    );
    fn take<T: Copy>(v: &[T], outer: usize, whole: usize, first: usize, part: usize) -> Vec<T> {
        let mut y = Vec::with_capacity(outer * part);
        for o in 0..outer {
            let at = o * whole + first;
            y.extend_from_slice(&v[at..at + part]);
        }
        y
    }
    let (whole, first, part) = (d[ax] * inner, start * inner, len * inner);
    let data = match &c.data {
        Data::F32(v) => Data::F32(take(v, outer, whole, first, part).into()),
        Data::I64(v) => Data::I64(take(v, outer, whole, first, part).into()),
    };
    let mut dims = d.clone();
    dims[ax] = len;
    Val::Const(Const::new(out, dims, data))
}

/// `x` restricted to `start..start + len` along each listed axis: folded for a constant, a
/// chain of `slice` nodes (one per axis that is not kept whole) for a value.
fn slice_along(
    cx: &mut Ctx<'_>,
    out: &str,
    x: &Val,
    ranges: &[(usize, usize, usize)],
) -> Result<Val, Conv> {
    let dims = cx.dims(x);
    let cut: Vec<(usize, usize, usize)> = ranges
        .iter()
        .copied()
        .filter(|&(ax, start, len)| !(start == 0 && len == dims[ax]))
        .collect();
    if cut.is_empty() {
        return Ok(x.clone());
    }
    let mut v = x.clone();
    for (k, &(ax, start, len)) in cut.iter().enumerate() {
        let name = if k + 1 == cut.len() {
            out.to_string()
        } else {
            cx.fresh_name(&format!("{out}/slice{k}"))
        };
        v = match &v {
            Val::Const(c) => slice_fold(&name, c, ax, start, len),
            Val::Node(id) => {
                let op = Op::Slice(op::Slice {
                    axis: ax as i64,
                    start,
                    len,
                });
                Val::Node(cx.add(name, op, &[*id])?)
            }
        };
    }
    Ok(v)
}

/// ONNX Slice with constant starts, ends, axes and unit steps.
fn slice(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = n.input(0)?;
    let dims = cx.dims(x);
    let rank = dims.len();
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let starts = n
            .ints("starts")
            .ok_or_else(|| invalid("starts are required"))?;
        let ends = n.ints("ends").ok_or_else(|| invalid("ends are required"))?;
        (
            starts.to_vec(),
            ends.to_vec(),
            n.ints("axes").map(<[i64]>::to_vec),
            None,
        )
    } else {
        let list = |k: usize, what: &str| -> Result<Option<Vec<i64>>, Conv> {
            match n.opt_input(k) {
                None => Ok(None),
                Some(Val::Const(c)) => Ok(Some(ints_of(c, what)?)),
                Some(Val::Node(_)) => Err(unsupported(format!("computed {what}"))),
            }
        };
        let starts = list(1, "starts")?.ok_or_else(|| invalid("starts are required"))?;
        let ends = list(2, "ends")?.ok_or_else(|| invalid("ends are required"))?;
        (starts, ends, list(3, "axes")?, list(4, "steps")?)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    if ends.len() != starts.len() || axes.len() != starts.len() {
        return Err(invalid(format!(
            "starts ({}), ends ({}) and axes ({}) differ in length",
            starts.len(),
            ends.len(),
            axes.len()
        )));
    }
    if let Some(steps) = &steps {
        if steps.len() != starts.len() {
            return Err(invalid("steps and starts differ in length"));
        }
        if let Some(s) = steps.iter().find(|&&s| s != 1) {
            return Err(unsupported(format!("step {s} (only 1)")));
        }
    }
    let mut ranges = Vec::with_capacity(axes.len());
    for ((&a, &s), &e) in axes.iter().zip(&starts).zip(&ends) {
        let ax = axis(a, rank, "axis")?;
        if ranges.iter().any(|&(b, _, _)| b == ax) {
            return Err(invalid(format!("axis {a} is listed twice")));
        }
        // ONNX clamps negative (from the end) and out-of-range bounds to the axis.
        let d = dims[ax] as i64;
        let clamp = |v: i64| (if v < 0 { v.saturating_add(d) } else { v }).clamp(0, d) as usize;
        let (start, end) = (clamp(s), clamp(e));
        ranges.push((ax, start, end.saturating_sub(start)));
    }
    one(slice_along(cx, n.out(0), x, &ranges)?)
}

/// ONNX Split into parts of constant sizes (given, or equal parts), one slice per read output.
fn split(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = n.input(0)?;
    let dims = cx.dims(x);
    let ax = axis(n.int("axis", 0)?, dims.len(), "axis")?;
    let outputs = n.proto.output.len();
    let sizes = if cx.opset < 13 {
        n.ints("split").map(<[i64]>::to_vec)
    } else {
        match n.opt_input(1) {
            None => None,
            Some(Val::Const(c)) => Some(ints_of(c, "split")?),
            Some(Val::Node(_)) => return Err(unsupported("computed split sizes")),
        }
    };
    let len = dims[ax];
    let sizes: Vec<usize> = match sizes {
        Some(s) => {
            let s: Vec<usize> = s
                .iter()
                .map(|&v| usize_of(v, "a split size"))
                .collect::<Result<_, _>>()?;
            if s.len() != outputs || s.iter().sum::<usize>() != len {
                return Err(invalid(format!(
                    "split sizes {s:?} do not divide axis {ax} of size {len} into {outputs} outputs"
                )));
            }
            s
        }
        None => {
            let parts = match n.int("num_outputs", 0)? {
                0 => outputs,
                k => usize_of(k, "num_outputs")?,
            };
            if parts == 0 || parts != outputs {
                return Err(invalid(format!("{parts} parts for {outputs} outputs")));
            }
            // Equal parts; the last is smaller when the axis does not divide evenly.
            let each = len.div_ceil(parts);
            (0..parts)
                .map(|k| each.min(len.saturating_sub(k * each)))
                .collect()
        }
    };
    let mut out = Vec::with_capacity(outputs);
    let mut start = 0;
    for (k, &size) in sizes.iter().enumerate() {
        out.push(if n.used(k) {
            Some(slice_along(cx, n.out(k), x, &[(ax, start, size)])?)
        } else {
            None
        });
        start += size;
    }
    Ok(out)
}

/// The axes of Squeeze/Unsqueeze: an attribute before opset 13, an input since.
fn axes_of(cx: &Ctx<'_>, n: &NodeIn<'_>) -> Result<Option<Vec<i64>>, Conv> {
    if cx.opset < 13 {
        return Ok(n.ints("axes").map(<[i64]>::to_vec));
    }
    match n.opt_input(1) {
        None => Ok(None),
        Some(Val::Const(c)) => Ok(Some(ints_of(c, "axes")?)),
        Some(Val::Node(_)) => Err(unsupported("computed axes")),
    }
}

/// Gives `x` the dims `dims`: a constant keeps its data, a value gets a reshape node.
fn with_dims(cx: &mut Ctx<'_>, n: &NodeIn<'_>, dims: Vec<usize>) -> Out {
    match n.input(0)? {
        Val::Const(c) => one(reshaped(n.out(0), c, dims)),
        Val::Node(id) => node(reshape_node(cx, n.out(0).to_string(), *id, &dims)?),
    }
}

fn unsqueeze(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let dims = cx.dims(n.input(0)?);
    let axes = axes_of(cx, n)?.ok_or_else(|| invalid("axes are required"))?;
    let rank = dims.len() + axes.len();
    let mut at: Vec<usize> = axes
        .iter()
        .map(|&a| axis(a, rank, "axis"))
        .collect::<Result<_, _>>()?;
    at.sort_unstable();
    at.dedup();
    if at.len() != axes.len() {
        return Err(invalid(format!("axes {axes:?} repeat an axis")));
    }
    let mut out = dims.clone();
    for &a in &at {
        out.insert(a, 1);
    }
    with_dims(cx, n, out)
}

fn squeeze(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let dims = cx.dims(n.input(0)?);
    let out: Vec<usize> = match axes_of(cx, n)? {
        None => dims.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let at: Vec<usize> = axes
                .iter()
                .map(|&a| axis(a, dims.len(), "axis"))
                .collect::<Result<_, _>>()?;
            if let Some(&a) = at.iter().find(|&&a| dims[a] != 1) {
                return Err(invalid(format!("axis {a} has size {}, not 1", dims[a])));
            }
            dims.iter()
                .enumerate()
                .filter(|(k, _)| !at.contains(k))
                .map(|(_, &d)| d)
                .collect()
        }
    };
    with_dims(cx, n, out)
}

fn reshape(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let dims = cx.dims(n.input(0)?);
    let spec = ints_of(constant_input(n, 1, "shape")?, "shape")?;
    let allow_zero = n.int("allowzero", 0)? != 0;
    let total = count(&dims)?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (k, &s) in spec.iter().enumerate() {
        out.push(match s {
            -1 if infer.is_none() => {
                infer = Some(k);
                1
            }
            0 if !allow_zero => *dims.get(k).ok_or_else(|| {
                invalid(format!(
                    "shape {spec:?} copies dim {k}, which the input lacks"
                ))
            })?,
            s => usize_of(s, "shape")?,
        });
    }
    let known = count(&out)?;
    if let Some(k) = infer {
        if known == 0 || total % known != 0 {
            return Err(invalid(format!("cannot reshape {dims:?} into {spec:?}")));
        }
        out[k] = total / known;
    } else if known != total {
        return Err(invalid(format!(
            "cannot reshape {dims:?} ({total} elements) into {spec:?}"
        )));
    }
    with_dims(cx, n, out)
}

fn flatten(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let dims = cx.dims(n.input(0)?);
    let r = dims.len() as i64;
    let a = n.int("axis", 1)?;
    let a = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&a) {
        return Err(invalid(format!("axis {a} is out of range for rank {r}")));
    }
    let a = a as usize;
    let out = vec![count(&dims[..a])?, count(&dims[a..])?];
    match n.input(0)? {
        Val::Node(id) if a == 1 => {
            let op = Op::Flatten(op::Flatten { axis: 1 });
            node(cx.add(n.out(0).to_string(), op, &[*id])?)
        }
        _ => with_dims(cx, n, out),
    }
}

fn transpose(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let x = cx.node_of(n.input(0)?)?;
    let perm = match n.ints("perm") {
        None => vec![],
        Some(p) => p
            .iter()
            .map(|&v| usize_of(v, "perm"))
            .collect::<Result<_, _>>()?,
    };
    node(cx.add(
        n.out(0).to_string(),
        Op::Transpose(op::Transpose { perm }),
        &[x],
    )?)
}

fn concat(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let vals: Vec<&Val> = n.inputs.iter().flatten().collect();
    let first = vals.first().ok_or_else(|| invalid("has no inputs"))?;
    let rank = cx.dims(first).len();
    let a = n.int("axis", i64::MIN)?;
    if a == i64::MIN {
        return Err(invalid("axis is required"));
    }
    let ax = axis(a, rank, "axis")?;
    let consts: Option<Vec<&Rc<Const>>> = vals
        .iter()
        .map(|v| match v {
            Val::Const(c) => Some(c),
            Val::Node(_) => None,
        })
        .collect();
    if let Some(cs) = consts {
        let mut dims = cs[0].dims.clone();
        for c in &cs[1..] {
            if c.dims.len() != rank || (0..rank).any(|k| k != ax && c.dims[k] != dims[k]) {
                return Err(invalid(format!(
                    "cannot concatenate {:?} and {:?} along axis {ax}",
                    cs[0].dims, c.dims
                )));
            }
            dims[ax] += c.dims[ax];
        }
        let outer = count(&dims[..ax])?;
        let all_int = cs.iter().all(|c| !c.is_float());
        fn join<T: Copy>(parts: &[(Arc<[T]>, usize)], outer: usize) -> Vec<T> {
            let mut out = Vec::new();
            for o in 0..outer {
                for (v, chunk) in parts {
                    out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                }
            }
            out
        }
        let chunk = |c: &Const| count(&c.dims[ax..]);
        let data = if all_int {
            let parts = cs
                .iter()
                .map(|c| match &c.data {
                    Data::I64(v) => Ok((v.clone(), chunk(c)?)),
                    Data::F32(_) => unreachable!("all integer"),
                })
                .collect::<Result<Vec<_>, Conv>>()?;
            Data::I64(join(&parts, outer).into())
        } else {
            let parts = cs
                .iter()
                .map(|c| Ok((c.data.to_f32(), chunk(c)?)))
                .collect::<Result<Vec<_>, Conv>>()?;
            Data::F32(join(&parts, outer).into())
        };
        return one(Val::Const(Const::new(n.out(0), dims, data)));
    }
    let ids = vals
        .iter()
        .map(|v| cx.node_of(v))
        .collect::<Result<Vec<_>, _>>()?;
    let op = Op::Concat(Axis { axis: ax as i64 });
    node(cx.add(n.out(0).to_string(), op, &ids)?)
}

fn argmax(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    if n.int("select_last_index", 0)? != 0 {
        return Err(unsupported("select_last_index=1"));
    }
    let x = cx.node_of(n.input(0)?)?;
    let op = Op::ArgMax(op::ArgMax {
        axis: n.int("axis", 0)?,
        keepdims: n.int("keepdims", 1)? != 0,
    });
    node(cx.add(n.out(0).to_string(), op, &[x])?)
}

fn lstm(cx: &mut Ctx<'_>, n: &NodeIn<'_>) -> Out {
    let direction = n
        .string("direction")
        .unwrap_or_else(|| "forward".to_string());
    if direction != "forward" {
        return Err(unsupported(format!("direction {direction}")));
    }
    if n.attr("clip").is_some() {
        return Err(unsupported("clip"));
    }
    if n.int("input_forget", 0)? != 0 {
        return Err(unsupported("input_forget"));
    }
    if n.int("layout", 0)? != 0 {
        return Err(unsupported("layout=1"));
    }
    if let Some(a) = n.attr("activations") {
        let names: Vec<String> = a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_lowercase())
            .collect();
        if names != ["sigmoid", "tanh", "tanh"] {
            return Err(unsupported("activations other than Sigmoid, Tanh, Tanh"));
        }
    }
    if n.opt_input(7).is_some() {
        return Err(unsupported("peepholes"));
    }
    if n.used(2) {
        return Err(unsupported("Y_c output"));
    }
    let x = cx.node_of(n.input(0)?)?;
    let xd = cx.dims(&Val::Node(x));
    let &[seq, batch, _] = xd.as_slice() else {
        return Err(invalid(format!(
            "X must be [seq, batch, input] but is {xd:?}"
        )));
    };
    let w = constant_input(n, 1, "W")?.clone();
    let r = constant_input(n, 2, "R")?.clone();
    let &[1, rows, inp] = w.dims.as_slice() else {
        return Err(invalid(format!(
            "W must be [1, 4*hidden, input] but is {:?}",
            w.dims
        )));
    };
    let h = rows / 4;
    if let Some(hs) = n.attr("hidden_size").and_then(|a| a.i)
        && hs as usize != h
    {
        return Err(invalid(format!(
            "hidden_size {hs} disagrees with W {:?}",
            w.dims
        )));
    }
    if r.dims != [1, rows, h] {
        return Err(invalid(format!(
            "R must be [1, {rows}, {h}] but is {:?}",
            r.dims
        )));
    }
    if let Some(lens) = n.opt_input(4) {
        let Val::Const(lens) = lens else {
            return Err(unsupported("computed sequence_lens"));
        };
        if ints_of(lens, "sequence_lens")?
            .iter()
            .any(|&l| l != seq as i64)
        {
            return Err(unsupported("sequence_lens shorter than the sequence"));
        }
    }
    let wid = cx.weight_as(&w, vec![rows, inp])?;
    let rid = cx.weight_as(&r, vec![rows, h])?;
    let state =
        |cx: &mut Ctx<'_>, k: usize, what: &str| -> Result<Option<sprig_ir::WeightId>, Conv> {
            match n.opt_input(k) {
                None => Ok(None),
                Some(Val::Node(_)) => Err(unsupported(format!("computed {what}"))),
                Some(Val::Const(c)) => {
                    if c.dims != [1, batch, h] {
                        return Err(invalid(format!(
                            "{what} must be [1, {batch}, {h}] but is {:?}",
                            c.dims
                        )));
                    }
                    Ok(Some(cx.weight_as(c, vec![batch, h])?))
                }
            }
        };
    let mut b = match n.opt_input(3) {
        None => None,
        Some(Val::Node(_)) => return Err(unsupported("computed B")),
        Some(Val::Const(c)) => {
            if c.dims != [1, 8 * h] {
                return Err(invalid(format!(
                    "B must be [1, {}] but is {:?}",
                    8 * h,
                    c.dims
                )));
            }
            Some(cx.weight_as(c, vec![8 * h])?)
        }
    };
    let mut h0 = state(cx, 5, "initial_h")?;
    let c0 = state(cx, 6, "initial_c")?;
    // sprig's optional weights are positional: fill the gaps with zeros.
    if b.is_none() && (h0.is_some() || c0.is_some()) {
        b = Some(cx.literal(&format!("{}.B", n.out(0)), vec![8 * h], vec![0.0; 8 * h])?);
    }
    if h0.is_none() && c0.is_some() {
        h0 = Some(cx.literal(
            &format!("{}.h0", n.out(0)),
            vec![batch, h],
            vec![0.0; batch * h],
        )?);
    }
    let make = |last| {
        Op::Lstm(op::Lstm {
            w: wid,
            r: rid,
            b,
            h0,
            c0,
            last,
        })
    };
    let mut outs = vec![None, None, None];
    for (k, last, dims) in [
        (0, false, vec![seq, 1, batch, h]),
        (1, true, vec![1, batch, h]),
    ] {
        if !n.used(k) {
            continue;
        }
        let out = n.out(k).to_string();
        let l = cx.fresh_name(&format!("{out}/lstm"));
        let l = cx.add(l, make(last), &[x])?;
        outs[k] = Some(Val::Node(reshape_node(cx, out, l, &dims)?));
    }
    Ok(outs)
}
