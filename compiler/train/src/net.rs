//! A trainable view of a graph: the chain of ops from the network's one input to its one
//! output, with the parameters (weights and biases of dense and conv2d layers) copied out, the
//! masks of pruned weights and the codes of shared weights; batched forward and backward passes.
//!
//! Supported chains: `dense`, `conv2d` (one group), `maxpool2d`, `avgpool2d`, `relu`, `sigmoid`,
//! `tanh`, `flatten`, `reshape`, `dropout` and `identity` (inference form: the identity), and
//! element-wise `add`/`sub`/`mul`/`div` of the running value with a `constant` (such as input
//! normalisation). The chain ends in `softmax` or `log_softmax` over the class axis, or in the
//! logits themselves; the loss is softmax cross-entropy over the logits either way. Anything
//! else is a [`TrainError::Unsupported`] naming the node.
//!
//! Invariants:
//! - Samples are processed as contiguous batches `[n, features]`; activations keep the per-sample
//!   layout of the IR (channel-major), so results agree with the reference interpreter up to
//!   float summation order.
//! - A masked parameter keeps exact zeros at its pruned positions through every update; a shared
//!   parameter's values are always `codebook[code]` at coded positions and zero elsewhere.
//! - [`Net::store`] writes values back so that each weight's values equal what its encoding
//!   decodes to: codebooks are updated, codes and the pruned set never change.

use crate::TrainError;
use crate::gemm::{View, gemm};
use sprig_ir::encoding::Encoding;
use sprig_ir::op::Pool2d;
use sprig_ir::{Graph, GraphInfo, NodeId, Op, WeightId};
use std::collections::BTreeMap;

/// The code of a position that holds no shared value (a pruned position).
pub const NO_CODE: u16 = u16::MAX;

/// A weight being trained.
#[derive(Clone, Debug)]
pub struct Param {
    pub weight: WeightId,
    pub name: String,
    /// Biases get no weight decay.
    pub is_bias: bool,
    pub values: Vec<f32>,
    /// `true` where the weight survives pruning; `None` for a weight that is not pruned.
    pub mask: Option<Vec<bool>>,
    /// The codebook and codes of a shared (quantized) weight.
    pub shared: Option<SharedParam>,
}

/// Trained quantization state: the codebook is trained, the codes are fixed.
#[derive(Clone, Debug)]
pub struct SharedParam {
    pub codebook: Vec<f32>,
    /// The code of every element ([`NO_CODE`] where the weight is pruned).
    pub code_of: Vec<u16>,
    /// Code 0 stands for zero and is never trained.
    pub zero_code: bool,
}

impl SharedParam {
    /// Whether code `c` is a trained shared value (not zero, not absent).
    pub fn is_trained(&self, c: u16) -> bool {
        c != NO_CODE && !(self.zero_code && c == 0)
    }
}

impl Param {
    /// Elements that are trained (not pruned, not the zero code).
    pub fn trained(&self, i: usize) -> bool {
        match (&self.shared, &self.mask) {
            (Some(s), _) => s.is_trained(s.code_of[i]),
            (None, Some(m)) => m[i],
            (None, None) => true,
        }
    }

    /// Sets every coded value to its centroid (shared weights only).
    pub fn decode_shared(&mut self) {
        if let Some(s) = &self.shared {
            for (v, &c) in self.values.iter_mut().zip(&s.code_of) {
                *v = if c == NO_CODE {
                    0.0
                } else {
                    s.codebook[c as usize]
                };
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Top, left.
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// Rows of the im2col matrix.
    pub fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Output positions per channel.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top, left.
    pub pad: [usize; 2],
    pub oh: usize,
    pub ow: usize,
    pub count_include_pad: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConstOp {
    Add,
    /// x − c
    Sub,
    /// c − x
    SubFrom,
    Mul,
    Div,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Dense {
        weight: usize,
        bias: Option<usize>,
        inputs: usize,
        outputs: usize,
    },
    Conv {
        weight: usize,
        bias: Option<usize>,
        geom: ConvGeom,
    },
    Pool {
        max: bool,
        geom: PoolGeom,
    },
    Relu,
    Sigmoid,
    Tanh,
    Const {
        op: ConstOp,
        values: Vec<f32>,
    },
    Copy,
}

#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub kind: Kind,
    pub in_len: usize,
    pub out_len: usize,
}

/// The chain, its parameters and the loss head.
#[derive(Clone, Debug)]
pub struct Net {
    pub(crate) stages: Vec<Stage>,
    pub params: Vec<Param>,
    input_len: usize,
    classes: usize,
    /// The first stage with parameters: no gradient flows further back than its input.
    first_trained: usize,
}

fn unsupported(graph: &Graph, id: NodeId, reason: impl Into<String>) -> TrainError {
    TrainError::Unsupported {
        node: graph.node(id).name.clone(),
        reason: reason.into(),
    }
}

/// Numpy-style broadcast of `values` (shape `from`) to shape `to`; `None` when it does not
/// broadcast.
fn broadcast(values: &[f32], from: &[usize], to: &[usize]) -> Option<Vec<f32>> {
    if from.len() > to.len() {
        return None;
    }
    let offset = to.len() - from.len();
    let mut strides = vec![0usize; to.len()];
    let mut stride = 1;
    for (i, &d) in from.iter().enumerate().rev() {
        let t = to[offset + i];
        if d != t && d != 1 {
            return None;
        }
        strides[offset + i] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    let len: usize = to.iter().product();
    let mut out = Vec::with_capacity(len);
    let mut index = vec![0usize; to.len()];
    for _ in 0..len {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[at]);
        for axis in (0..to.len()).rev() {
            index[axis] += 1;
            if index[axis] < to[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Some(out)
}

/// The per-sample image layout `[C, H, W]` of a rank-3 value or a rank-4 value with batch 1.
fn chw(dims: &[usize]) -> Option<[usize; 3]> {
    match dims {
        [c, h, w] | [1, c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

impl Net {
    /// The trainable chain of a verified graph.
    pub fn from_graph(graph: &Graph, info: &GraphInfo) -> Result<Net, TrainError> {
        let (&[input], &[output]) = (graph.inputs(), graph.outputs()) else {
            return Err(TrainError::Shape(format!(
                "training needs a network with one input and one output; `{}` has {} and {}",
                graph.name,
                graph.inputs().len(),
                graph.outputs().len()
            )));
        };
        let mut params: Vec<Param> = Vec::new();
        let mut param_of: BTreeMap<WeightId, usize> = BTreeMap::new();
        let mut add_param = |id: WeightId, is_bias: bool| -> Result<usize, TrainError> {
            if let Some(&p) = param_of.get(&id) {
                return Ok(p);
            }
            let p = params.len();
            params.push(param_from_weight(graph, id, is_bias)?);
            param_of.insert(id, p);
            Ok(p)
        };
        let is_constant = |id: NodeId| matches!(graph.node(id).op, Op::Constant(_));
        let len_of = |id: NodeId| info.ty(id).shape.len();
        let mut stages = Vec::new();
        let mut current = input;
        let mut ended = false;
        for &id in &info.order {
            if id == input || is_constant(id) {
                continue;
            }
            let node = graph.node(id);
            if ended {
                return Err(unsupported(
                    graph,
                    id,
                    "the network continues after its softmax output",
                ));
            }
            let operands = graph.operands(id);
            let chained: Vec<NodeId> = operands
                .iter()
                .copied()
                .filter(|&o| !is_constant(o))
                .collect();
            if chained != [current] {
                return Err(unsupported(
                    graph,
                    id,
                    format!(
                        "training needs a single chain of ops, and this node does not take exactly `{}` as its running value",
                        graph.node(current).name
                    ),
                ));
            }
            let (in_len, out_len) = (len_of(current), len_of(id));
            let in_dims = info.ty(current).shape.dims().to_vec();
            let out_dims = info.ty(id).shape.dims().to_vec();
            let kind = match &node.op {
                Op::Dense(d) => {
                    let wd = graph.weights[d.weight].ty.shape.dims().to_vec();
                    if wd.len() != 2 || wd[1] != in_len || wd[0] != out_len {
                        return Err(unsupported(
                            graph,
                            id,
                            "dense over more than one row of features (training takes one feature vector per sample)",
                        ));
                    }
                    Kind::Dense {
                        weight: add_param(d.weight, false)?,
                        bias: d.bias.map(|b| add_param(b, true)).transpose()?,
                        inputs: wd[1],
                        outputs: wd[0],
                    }
                }
                Op::Conv2d(c) => {
                    if c.groups != 1 {
                        return Err(unsupported(
                            graph,
                            id,
                            "grouped convolutions are not trainable",
                        ));
                    }
                    let (Some([cin, h, w]), Some([cout, oh, ow])) = (chw(&in_dims), chw(&out_dims))
                    else {
                        return Err(unsupported(
                            graph,
                            id,
                            "conv2d over a batch of more than one image",
                        ));
                    };
                    let wd = graph.weights[c.weight].ty.shape.dims().to_vec();
                    Kind::Conv {
                        weight: add_param(c.weight, false)?,
                        bias: c.bias.map(|b| add_param(b, true)).transpose()?,
                        geom: ConvGeom {
                            cin,
                            h,
                            w,
                            cout,
                            kh: wd[2],
                            kw: wd[3],
                            stride: c.stride,
                            pad: [c.padding[0], c.padding[1]],
                            dilation: c.dilation,
                            oh,
                            ow,
                        },
                    }
                }
                Op::MaxPool2d(p) | Op::AvgPool2d(p) => Kind::Pool {
                    max: matches!(node.op, Op::MaxPool2d(_)),
                    geom: pool_geom(p, &in_dims, &out_dims),
                },
                Op::Relu => Kind::Relu,
                Op::Sigmoid => Kind::Sigmoid,
                Op::Tanh => Kind::Tanh,
                Op::Flatten(_) | Op::Reshape(_) | Op::Dropout(_) | Op::Identity => Kind::Copy,
                Op::Add | Op::Sub | Op::Mul | Op::Div => {
                    let const_pos = operands.iter().position(|&o| is_constant(o));
                    let (Some(pos), 2) = (const_pos, operands.len()) else {
                        return Err(unsupported(
                            graph,
                            id,
                            "element-wise ops are trainable only with a constant operand",
                        ));
                    };
                    let Op::Constant(c) = &graph.node(operands[pos]).op else {
                        unreachable!("position found by is_constant")
                    };
                    if in_dims != out_dims {
                        return Err(unsupported(
                            graph,
                            id,
                            "the constant broadcasts the running value to a larger shape",
                        ));
                    }
                    let weight = &graph.weights[c.value];
                    let values = broadcast(&weight.values(), weight.ty.shape.dims(), &out_dims)
                        .ok_or_else(|| unsupported(graph, id, "the constant does not broadcast"))?;
                    let op = match (&node.op, pos) {
                        (Op::Add, _) => ConstOp::Add,
                        (Op::Mul, _) => ConstOp::Mul,
                        (Op::Sub, 1) => ConstOp::Sub,
                        (Op::Sub, _) => ConstOp::SubFrom,
                        (Op::Div, 1) => ConstOp::Div,
                        _ => {
                            return Err(unsupported(
                                graph,
                                id,
                                "dividing a constant by the running value is not trainable",
                            ));
                        }
                    };
                    Kind::Const { op, values }
                }
                Op::Softmax(a) | Op::LogSoftmax(a) => {
                    let last = out_dims.len() as i64 - 1;
                    let leading: usize = out_dims.iter().take(out_dims.len() - 1).product();
                    if id != output || (a.axis != -1 && a.axis != last) || leading != 1 {
                        return Err(unsupported(
                            graph,
                            id,
                            "softmax is trainable only as the network's output, over the class axis",
                        ));
                    }
                    ended = true;
                    current = id;
                    continue;
                }
                Op::MatMul(_) => {
                    return Err(unsupported(
                        graph,
                        id,
                        "a matmul (weight [in, out]) is not trainable: run the simplify pass first, which rewrites it to dense",
                    ));
                }
                other => {
                    return Err(unsupported(
                        graph,
                        id,
                        format!("`{}` is not trainable", other.name()),
                    ));
                }
            };
            stages.push(Stage {
                kind,
                in_len,
                out_len,
            });
            current = id;
        }
        if current != output {
            return Err(TrainError::Shape(format!(
                "the chain from the input ends at `{}`, not at the output `{}`",
                graph.node(current).name,
                graph.node(output).name
            )));
        }
        let first_trained = stages
            .iter()
            .position(|s| matches!(s.kind, Kind::Dense { .. } | Kind::Conv { .. }))
            .unwrap_or(stages.len());
        let classes = len_of(output);
        Ok(Net {
            stages,
            params,
            input_len: len_of(input),
            classes,
            first_trained,
        })
    }

    /// Values per input sample.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Scores per sample (the output's length).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Writes the parameters back into `graph` (see the module invariants). A parameter whose
    /// mask was removed (dense training after sparse, DSD) loses its pruned encoding.
    pub fn store(&self, graph: &mut Graph) -> Result<(), TrainError> {
        for p in &self.params {
            let mut values = p.values.clone();
            if p.mask.is_some() || p.shared.is_some() {
                // A surviving weight must stay non-zero so the pruned set is unchanged: an exact
                // 0.0 becomes the smallest positive f32, which no f32 arithmetic downstream
                // distinguishes from zero.
                for (i, v) in values.iter_mut().enumerate() {
                    let kept = match (&p.shared, &p.mask) {
                        (Some(s), _) => {
                            s.code_of[i] != NO_CODE && !(s.zero_code && s.code_of[i] == 0)
                        }
                        (None, Some(m)) => m[i],
                        (None, None) => false,
                    };
                    if kept && *v == 0.0 {
                        *v = f32::from_bits(1);
                    }
                }
            }
            let weight = graph.weights.get_mut(p.weight);
            weight
                .set_computed(values.into())
                .map_err(|e| TrainError::Shape(e.to_string()))?;
            match (&p.shared, &mut weight.encoding.shared) {
                (Some(s), Some(enc)) => {
                    enc.codebook = s.codebook.clone();
                    if enc.zero_code {
                        enc.codebook[0] = 0.0;
                    }
                    for c in enc.codebook.iter_mut().skip(usize::from(enc.zero_code)) {
                        if enc.zero_code && *c == 0.0 {
                            *c = f32::from_bits(1);
                        }
                    }
                }
                (None, None) => {
                    if p.mask.is_none() && weight.encoding.pruned.is_some() {
                        weight.encoding = Encoding::default();
                    }
                }
                _ => {
                    return Err(TrainError::Shape(format!(
                        "@{}: the weight's sharing changed during training",
                        p.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn pool_geom(p: &Pool2d, in_dims: &[usize], out_dims: &[usize]) -> PoolGeom {
    let r = in_dims.len();
    PoolGeom {
        planes: in_dims[..r - 2].iter().product(),
        h: in_dims[r - 2],
        w: in_dims[r - 1],
        kernel: p.kernel,
        stride: p.stride,
        pad: [p.padding[0], p.padding[1]],
        oh: out_dims[r - 2],
        ow: out_dims[r - 1],
        count_include_pad: p.count_include_pad,
    }
}

/// Copies a weight out of the graph with its mask and codes.
fn param_from_weight(graph: &Graph, id: WeightId, is_bias: bool) -> Result<Param, TrainError> {
    let weight = &graph.weights[id];
    let values = weight.values().to_vec();
    let mask = weight
        .encoding
        .pruned
        .as_ref()
        .map(|_| values.iter().map(|&v| v != 0.0).collect::<Vec<bool>>());
    let shared = match &weight.encoding.shared {
        None => None,
        Some(s) => {
            let code_of: Vec<u16> = match &mask {
                Some(mask) => {
                    let kept = mask.iter().filter(|&&k| k).count();
                    if kept != s.codes.len() {
                        return Err(TrainError::Shape(format!(
                            "@{}: {} codes for {kept} surviving weights",
                            weight.name,
                            s.codes.len()
                        )));
                    }
                    let mut codes = s.codes.iter();
                    mask.iter()
                        .map(|&k| {
                            if k {
                                *codes.next().unwrap_or(&NO_CODE)
                            } else {
                                NO_CODE
                            }
                        })
                        .collect()
                }
                None => {
                    if s.codes.len() != values.len() {
                        return Err(TrainError::Shape(format!(
                            "@{}: {} codes for {} values",
                            weight.name,
                            s.codes.len(),
                            values.len()
                        )));
                    }
                    s.codes.to_vec()
                }
            };
            if code_of
                .iter()
                .any(|&c| c != NO_CODE && c as usize >= s.codebook.len())
            {
                return Err(TrainError::Shape(format!(
                    "@{}: a code is past the codebook's {} entries",
                    weight.name,
                    s.codebook.len()
                )));
            }
            Some(SharedParam {
                codebook: s.codebook.clone(),
                code_of,
                zero_code: s.zero_code,
            })
        }
    };
    Ok(Param {
        weight: id,
        name: weight.name.clone(),
        is_bias,
        values,
        mask,
        shared,
    })
}

/// Buffers for one piece of a batch, reused across batches.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// `acts[i]` is the input of stage `i`; the last is the logits.
    pub(crate) acts: Vec<Vec<f32>>,
    /// Per conv stage: the im2col matrices of the piece's samples.
    pub(crate) cols: Vec<Vec<f32>>,
    /// Per max-pool stage: the input position of each output's maximum.
    argmax: Vec<Vec<u32>>,
    /// A conv stage's output gradient for one sample, transposed to `[p, cout]`.
    gs_t: Vec<f32>,
    /// A conv stage's im2col matrix for one sample, transposed to `[p, k]`.
    cols_t: Vec<f32>,
    grad: Vec<f32>,
    grad_in: Vec<f32>,
    /// Per parameter: the gradient summed over the piece.
    pub grads: Vec<Vec<f32>>,
}

/// Loss and hits of a forward pass over a piece.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PieceStats {
    pub loss: f64,
    pub correct: usize,
    pub correct5: usize,
}

impl Workspace {
    pub fn new(net: &Net) -> Workspace {
        Workspace {
            acts: vec![Vec::new(); net.stages.len() + 1],
            cols: vec![Vec::new(); net.stages.len()],
            argmax: vec![Vec::new(); net.stages.len()],
            gs_t: Vec::new(),
            cols_t: Vec::new(),
            grad: Vec::new(),
            grad_in: Vec::new(),
            grads: net
                .params
                .iter()
                .map(|p| vec![0.0; p.values.len()])
                .collect(),
        }
    }

    /// The logits of the last forward pass, `[n, classes]`.
    pub fn logits(&self) -> &[f32] {
        self.acts.last().map_or(&[], Vec::as_slice)
    }
}

/// Index of the largest score (the first one on ties; NaN never wins).
pub(crate) fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// Whether `label` is among the five highest scores (ties broken toward lower indices).
fn in_top5(scores: &[f32], label: usize) -> bool {
    let Some(&target) = scores.get(label) else {
        return false;
    };
    let higher = scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| s > target || (s == target && i < label))
        .count();
    higher < 5
}

impl Net {
    /// Every dense and conv weight transposed into `out` (`[k, outputs]` row-major, where `k`
    /// is the inputs per output); other parameters get an empty vector. The products read a
    /// weight through its transpose so that packing it for the matrix kernel is a contiguous
    /// copy; the packed panels, and so every result, are the same either way.
    pub(crate) fn transpose_weights(&self, out: &mut Vec<Vec<f32>>) {
        out.resize(self.params.len(), Vec::new());
        for stage in &self.stages {
            let (weight, rows, cols) = match &stage.kind {
                Kind::Dense {
                    weight,
                    inputs,
                    outputs,
                    ..
                } => (*weight, *outputs, *inputs),
                Kind::Conv { weight, geom, .. } => (*weight, geom.cout, geom.k()),
                _ => continue,
            };
            transpose(&self.params[weight].values, rows, cols, &mut out[weight]);
        }
    }

    /// The transposed weights of [`Net::transpose_weights`], freshly built.
    pub(crate) fn transposed_weights(&self) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        self.transpose_weights(&mut out);
        out
    }

    /// Runs the chain on `n` samples; the logits end up in `ws.acts.last()`.
    pub(crate) fn forward(&self, ws: &mut Workspace, inputs: &[f32], n: usize) {
        self.forward_with(&self.transposed_weights(), ws, inputs, n);
    }

    /// [`Net::forward`] with the weights already transposed by [`Net::transpose_weights`]
    /// from the current values.
    pub(crate) fn forward_with(
        &self,
        transposed: &[Vec<f32>],
        ws: &mut Workspace,
        inputs: &[f32],
        n: usize,
    ) {
        ws.acts[0].clear();
        ws.acts[0].extend_from_slice(inputs);
        for (i, stage) in self.stages.iter().enumerate() {
            let (lo, hi) = ws.acts.split_at_mut(i + 1);
            let x = &lo[i];
            let y = &mut hi[0];
            y.clear();
            y.resize(n * stage.out_len, 0.0);
            match &stage.kind {
                Kind::Dense {
                    weight,
                    bias,
                    inputs,
                    outputs,
                } => {
                    gemm(
                        x,
                        View::rows(n, *inputs),
                        &transposed[*weight],
                        View::rows(*inputs, *outputs),
                        0.0,
                        y,
                        View::rows(n, *outputs),
                    );
                    if let Some(b) = bias {
                        let b = &self.params[*b].values;
                        for row in y.chunks_exact_mut(*outputs) {
                            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                        }
                    }
                }
                Kind::Conv { weight, bias, geom } => {
                    let g = *geom;
                    let (k, p) = (g.k(), g.p());
                    let cols = &mut ws.cols[i];
                    cols.clear();
                    cols.resize(n * k * p, 0.0);
                    let w = &transposed[*weight];
                    for s in 0..n {
                        let c = &mut cols[s * k * p..(s + 1) * k * p];
                        im2col(&x[s * stage.in_len..(s + 1) * stage.in_len], &g, c);
                        let ys = &mut y[s * stage.out_len..(s + 1) * stage.out_len];
                        gemm(
                            w,
                            View::transposed(g.cout, k),
                            c,
                            View::rows(k, p),
                            0.0,
                            ys,
                            View::rows(g.cout, p),
                        );
                        if let Some(b) = bias {
                            let b = &self.params[*b].values;
                            for (row, b) in ys.chunks_exact_mut(p).zip(b) {
                                row.iter_mut().for_each(|v| *v += b);
                            }
                        }
                    }
                }
                Kind::Pool { max, geom } => {
                    let am = &mut ws.argmax[i];
                    am.clear();
                    if *max {
                        am.resize(n * stage.out_len, 0);
                    }
                    for s in 0..n {
                        pool_forward(
                            &x[s * stage.in_len..(s + 1) * stage.in_len],
                            geom,
                            *max,
                            &mut y[s * stage.out_len..(s + 1) * stage.out_len],
                            if *max {
                                &mut am[s * stage.out_len..(s + 1) * stage.out_len]
                            } else {
                                &mut []
                            },
                        );
                    }
                }
                Kind::Relu => y
                    .iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = if x > 0.0 { x } else { 0.0 }),
                Kind::Sigmoid => y
                    .iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = 1.0 / (1.0 + (-x).exp())),
                Kind::Tanh => y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.tanh()),
                Kind::Copy => y.copy_from_slice(x),
                Kind::Const { op, values } => {
                    for (ys, xs) in y
                        .chunks_exact_mut(stage.out_len)
                        .zip(x.chunks_exact(stage.in_len))
                    {
                        for ((y, &x), &c) in ys.iter_mut().zip(xs).zip(values) {
                            *y = match op {
                                ConstOp::Add => x + c,
                                ConstOp::Sub => x - c,
                                ConstOp::SubFrom => c - x,
                                ConstOp::Mul => x * c,
                                ConstOp::Div => x / c,
                            };
                        }
                    }
                }
            }
        }
    }

    /// Scores the logits of the last forward pass against `labels`.
    pub(crate) fn score(&self, ws: &Workspace, labels: &[u32]) -> PieceStats {
        let logits = ws.acts.last().expect("acts has stages + 1 entries");
        let mut stats = PieceStats::default();
        for (z, &label) in logits.chunks_exact(self.classes).zip(labels) {
            stats.correct += usize::from(argmax(z) == label as usize);
            stats.correct5 += usize::from(in_top5(z, label as usize));
        }
        stats
    }

    /// Forward and backward over `n` samples: adds to `ws.grads` the gradient of the summed
    /// cross-entropy divided by `batch` (the whole batch's size, so pieces add up to the
    /// batch mean).
    pub(crate) fn forward_backward(
        &self,
        transposed: &[Vec<f32>],
        ws: &mut Workspace,
        inputs: &[f32],
        labels: &[u32],
        batch: usize,
    ) -> PieceStats {
        let n = labels.len();
        self.forward_with(transposed, ws, inputs, n);
        let mut stats = self.score(ws, labels);
        // Softmax cross-entropy over the logits.
        let classes = self.classes;
        let logits = ws.acts.last().expect("acts has stages + 1 entries");
        ws.grad.clear();
        ws.grad.resize(n * classes, 0.0);
        let scale = 1.0 / batch as f32;
        for ((z, g), &label) in logits
            .chunks_exact(classes)
            .zip(ws.grad.chunks_exact_mut(classes))
            .zip(labels)
        {
            let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for (g, &z) in g.iter_mut().zip(z) {
                *g = (z - m).exp();
                sum += *g;
            }
            let label = label as usize;
            stats.loss += f64::from(-(z[label] - m - sum.ln()));
            for (j, g) in g.iter_mut().enumerate() {
                let p = *g / sum;
                *g = (p - if j == label { 1.0 } else { 0.0 }) * scale;
            }
        }
        for i in (self.first_trained..self.stages.len()).rev() {
            let stage = &self.stages[i];
            let need_input = i > self.first_trained;
            let x = &ws.acts[i];
            let y = &ws.acts[i + 1];
            let g = &ws.grad;
            let gi = &mut ws.grad_in;
            gi.clear();
            if need_input {
                gi.resize(n * stage.in_len, 0.0);
            }
            match &stage.kind {
                Kind::Dense {
                    weight,
                    bias,
                    inputs,
                    outputs,
                } => {
                    let (inputs, outputs) = (*inputs, *outputs);
                    gemm(
                        g,
                        View::transposed(outputs, n),
                        x,
                        View::rows(n, inputs),
                        1.0,
                        &mut ws.grads[*weight],
                        View::rows(outputs, inputs),
                    );
                    if let Some(b) = bias {
                        let db = &mut ws.grads[*b];
                        for row in g.chunks_exact(outputs) {
                            db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
                        }
                    }
                    if need_input {
                        gemm(
                            g,
                            View::rows(n, outputs),
                            &self.params[*weight].values,
                            View::rows(outputs, inputs),
                            0.0,
                            gi,
                            View::rows(n, inputs),
                        );
                    }
                }
                Kind::Conv { weight, bias, geom } => {
                    let geom = *geom;
                    let (k, p) = (geom.k(), geom.p());
                    let cols = &ws.cols[i];
                    let mut dcols = if need_input {
                        vec![0.0f32; k * p]
                    } else {
                        Vec::new()
                    };
                    for s in 0..n {
                        let gs = &g[s * stage.out_len..(s + 1) * stage.out_len];
                        let c = &cols[s * k * p..(s + 1) * k * p];
                        // Both factors transposed first, so packing them is a contiguous
                        // copy (the same panels as packing the strided views).
                        transpose(gs, geom.cout, p, &mut ws.gs_t);
                        transpose(c, k, p, &mut ws.cols_t);
                        gemm(
                            &ws.gs_t,
                            View::transposed(geom.cout, p),
                            &ws.cols_t,
                            View::rows(p, k),
                            1.0,
                            &mut ws.grads[*weight],
                            View::rows(geom.cout, k),
                        );
                        if let Some(b) = bias {
                            let db = &mut ws.grads[*b];
                            for (d, row) in db.iter_mut().zip(gs.chunks_exact(p)) {
                                *d += row.iter().sum::<f32>();
                            }
                        }
                        if need_input {
                            gemm(
                                &self.params[*weight].values,
                                View::transposed(k, geom.cout),
                                gs,
                                View::rows(geom.cout, p),
                                0.0,
                                &mut dcols,
                                View::rows(k, p),
                            );
                            col2im(
                                &dcols,
                                &geom,
                                &mut gi[s * stage.in_len..(s + 1) * stage.in_len],
                            );
                        }
                    }
                }
                Kind::Pool { max, geom } => {
                    if need_input {
                        for s in 0..n {
                            pool_backward(
                                &g[s * stage.out_len..(s + 1) * stage.out_len],
                                geom,
                                *max,
                                if *max {
                                    &ws.argmax[i][s * stage.out_len..(s + 1) * stage.out_len]
                                } else {
                                    &[]
                                },
                                &mut gi[s * stage.in_len..(s + 1) * stage.in_len],
                            );
                        }
                    }
                }
                Kind::Relu => {
                    if need_input {
                        for ((d, &g), &y) in gi.iter_mut().zip(g).zip(y) {
                            *d = if y > 0.0 { g } else { 0.0 };
                        }
                    }
                }
                Kind::Sigmoid => {
                    if need_input {
                        for ((d, &g), &y) in gi.iter_mut().zip(g).zip(y) {
                            *d = g * y * (1.0 - y);
                        }
                    }
                }
                Kind::Tanh => {
                    if need_input {
                        for ((d, &g), &y) in gi.iter_mut().zip(g).zip(y) {
                            *d = g * (1.0 - y * y);
                        }
                    }
                }
                Kind::Copy => {
                    if need_input {
                        gi.copy_from_slice(g);
                    }
                }
                Kind::Const { op, values } => {
                    if need_input {
                        for (ds, gs) in gi
                            .chunks_exact_mut(stage.in_len)
                            .zip(g.chunks_exact(stage.out_len))
                        {
                            for ((d, &g), &c) in ds.iter_mut().zip(gs).zip(values) {
                                *d = match op {
                                    ConstOp::Add | ConstOp::Sub => g,
                                    ConstOp::SubFrom => -g,
                                    ConstOp::Mul => g * c,
                                    ConstOp::Div => g / c,
                                };
                            }
                        }
                    }
                }
            }
            if need_input {
                std::mem::swap(&mut ws.grad, &mut ws.grad_in);
            }
        }
        stats
    }
}

/// `out = wᵀ` for `w: [rows, cols]` row-major, in tiles that stay in cache.
fn transpose(w: &[f32], rows: usize, cols: usize, out: &mut Vec<f32>) {
    const TILE: usize = 32;
    out.clear();
    out.resize(rows * cols, 0.0);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = w[r * cols + c];
                }
            }
        }
    }
}

/// `cols[(c·kh + i)·kw + j, oy·ow + ox] = x[c, oy·sh − pt + i·dh, ox·sw − pl + j·dw]` (zero
/// outside the image).
fn im2col(x: &[f32], g: &ConvGeom, cols: &mut [f32]) {
    let p = g.p();
    for c in 0..g.cin {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = ((c * g.kh + i) * g.kw + j) * p;
                for oy in 0..g.oh {
                    let iy = (oy * g.stride[0] + i * g.dilation[0]).wrapping_sub(g.pad[0]);
                    let out = &mut cols[row + oy * g.ow..row + (oy + 1) * g.ow];
                    if iy >= g.h {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &x[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w];
                    if g.stride[1] == 1 && g.pad[1] == 0 {
                        let start = j * g.dilation[1];
                        out.copy_from_slice(&src[start..start + g.ow]);
                        continue;
                    }
                    for (ox, o) in out.iter_mut().enumerate() {
                        let ix = (ox * g.stride[1] + j * g.dilation[1]).wrapping_sub(g.pad[1]);
                        *o = if ix < g.w { src[ix] } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back to the input position it came from.
fn col2im(cols: &[f32], g: &ConvGeom, x: &mut [f32]) {
    let p = g.p();
    for c in 0..g.cin {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = ((c * g.kh + i) * g.kw + j) * p;
                for oy in 0..g.oh {
                    let iy = (oy * g.stride[0] + i * g.dilation[0]).wrapping_sub(g.pad[0]);
                    if iy >= g.h {
                        continue;
                    }
                    let src = &cols[row + oy * g.ow..row + (oy + 1) * g.ow];
                    let dst = &mut x[(c * g.h + iy) * g.w..(c * g.h + iy + 1) * g.w];
                    for (ox, &v) in src.iter().enumerate() {
                        let ix = (ox * g.stride[1] + j * g.dilation[1]).wrapping_sub(g.pad[1]);
                        if ix < g.w {
                            dst[ix] += v;
                        }
                    }
                }
            }
        }
    }
}

/// The window of output `(oy, ox)` clipped to the input: rows `top..bottom`, columns
/// `left..right` (as the reference interpreter clips it).
fn window(g: &PoolGeom, oy: usize, ox: usize) -> (usize, usize, usize, usize) {
    let top = (oy * g.stride[0]).saturating_sub(g.pad[0]);
    let bottom = (oy * g.stride[0] + g.kernel[0])
        .saturating_sub(g.pad[0])
        .min(g.h);
    let left = (ox * g.stride[1]).saturating_sub(g.pad[1]);
    let right = (ox * g.stride[1] + g.kernel[1])
        .saturating_sub(g.pad[1])
        .min(g.w);
    (top, bottom, left, right)
}

fn pool_forward(x: &[f32], g: &PoolGeom, max: bool, y: &mut [f32], argmax: &mut [u32]) {
    let (h, w) = (g.h, g.w);
    let mut o = 0;
    for plane in 0..g.planes {
        let base = plane * h * w;
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (top, bottom, left, right) = window(g, oy, ox);
                if max {
                    let mut best = f32::NEG_INFINITY;
                    let mut at = base + top * w + left;
                    for r in top..bottom {
                        for c in left..right {
                            let v = x[base + r * w + c];
                            if v > best || v.is_nan() {
                                best = v;
                                at = base + r * w + c;
                            }
                        }
                    }
                    y[o] = best;
                    argmax[o] = at as u32;
                } else {
                    let mut sum = 0.0f32;
                    for r in top..bottom {
                        for c in left..right {
                            sum += x[base + r * w + c];
                        }
                    }
                    y[o] = sum / avg_count(g, top, bottom, left, right) as f32;
                }
                o += 1;
            }
        }
    }
}

fn avg_count(g: &PoolGeom, top: usize, bottom: usize, left: usize, right: usize) -> usize {
    if g.count_include_pad {
        g.kernel[0] * g.kernel[1]
    } else {
        (bottom - top) * (right - left)
    }
}

fn pool_backward(gy: &[f32], g: &PoolGeom, max: bool, argmax: &[u32], gx: &mut [f32]) {
    gx.fill(0.0);
    if max {
        for (&d, &at) in gy.iter().zip(argmax) {
            gx[at as usize] += d;
        }
        return;
    }
    let (h, w) = (g.h, g.w);
    let mut o = 0;
    for plane in 0..g.planes {
        let base = plane * h * w;
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (top, bottom, left, right) = window(g, oy, ox);
                let share = gy[o] / avg_count(g, top, bottom, left, right) as f32;
                for r in top..bottom {
                    for c in left..right {
                        gx[base + r * w + c] += share;
                    }
                }
                o += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy_rules() {
        assert_eq!(
            broadcast(&[1.0, 2.0], &[2, 1], &[2, 3]),
            Some(vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
        );
        assert_eq!(broadcast(&[5.0], &[], &[2]), Some(vec![5.0, 5.0]));
        assert_eq!(broadcast(&[1.0, 2.0], &[2], &[3]), None);
    }

    #[test]
    fn transpose_matches_the_definition_across_tile_edges() {
        let (rows, cols) = (37, 70);
        let w: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut t = vec![1.0; 3];
        transpose(&w, rows, cols, &mut t);
        assert_eq!(t.len(), rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], w[r * cols + c]);
            }
        }
    }
}
