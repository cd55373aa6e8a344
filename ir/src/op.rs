//! The closed set of operations a graph node can perform, with their attribute structs, and the
//! one schema table that front ends, the printer and the verifier share.
//!
//! Invariants:
//! - Value operands are graph edges (ordered by operand position); weights are [`WeightId`]
//!   handles held inside the op. An op never owns tensor data.
//! - [`Op::build`] is the only way text-level attributes become an op, and [`Op::attrs`] gives
//!   back the attributes that differ from their defaults, in the shortest form that `build` reads
//!   to the same op: `Op::build(op.kind(), op.weights(), &op.attrs()) == Ok(op)`.
//! - Layouts follow ONNX: dense weights are `[out, in]`, matmul weights `[in, out]` (ONNX's
//!   MatMul and Gemm without transB; `simplify` rewrites matmul to dense), conv weights
//!   `[out, in/groups, kh, kw]`, activations are channel-major (`[C, H, W]` or `[N, C, H, W]`),
//!   padding is `[top, left, bottom, right]`.

use crate::types::{DType, TensorType};
use crate::weights::WeightId;
use std::fmt;

/// Identifies an op without its attributes; its text name is the function name in the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Input,
    Constant,
    Dense,
    MatMul,
    Conv2d,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    LogSoftmax,
    MaxPool2d,
    AvgPool2d,
    Flatten,
    Reshape,
    Transpose,
    Add,
    Sub,
    Mul,
    Div,
    Concat,
    BatchNorm,
    Dropout,
    Identity,
    Lstm,
    LstmStacked,
    Embedding,
    ArgMax,
    Slice,
    Cast,
}

/// How many value operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exactly(1) => f.write_str("1 value operand"),
            Arity::Exactly(k) => write!(f, "{k} value operands"),
            Arity::AtLeast(k) => write!(f, "at least {k} value operands"),
        }
    }
}

/// A weight operand position. Optional slots may only be left out from the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightSlot {
    pub name: &'static str,
    pub optional: bool,
}

const fn req(name: &'static str) -> WeightSlot {
    WeightSlot {
        name,
        optional: false,
    }
}

const fn opt(name: &'static str) -> WeightSlot {
    WeightSlot {
        name,
        optional: true,
    }
}

/// The signature of an op in the text format: `name(values..., @weights..., attr = value...)`.
#[derive(Clone, Copy, Debug)]
pub struct OpSchema {
    pub kind: OpKind,
    pub name: &'static str,
    pub values: Arity,
    pub weights: &'static [WeightSlot],
    pub attrs: &'static [&'static str],
    pub summary: &'static str,
}

/// Every op, in one table. `Input` has no call syntax (it is written `input x : f32[..]`).
pub const SCHEMAS: &[OpSchema] = &[
    OpSchema {
        kind: OpKind::Input,
        name: "input",
        values: Arity::Exactly(0),
        weights: &[],
        attrs: &[],
        summary: "a network input",
    },
    OpSchema {
        kind: OpKind::Constant,
        name: "constant",
        values: Arity::Exactly(0),
        weights: &[req("value")],
        attrs: &[],
        summary: "a weight used as a value",
    },
    OpSchema {
        kind: OpKind::Dense,
        name: "dense",
        values: Arity::Exactly(1),
        weights: &[req("weight"), opt("bias")],
        attrs: &[],
        summary: "y = W x + b over the last axis; W is [out, in]",
    },
    OpSchema {
        kind: OpKind::MatMul,
        name: "matmul",
        values: Arity::Exactly(1),
        weights: &[req("weight"), opt("bias")],
        attrs: &[],
        summary: "y = x W + b over the last axis; W is [in, out] (ONNX MatMul and Gemm without transB); simplify rewrites it to dense",
    },
    OpSchema {
        kind: OpKind::Conv2d,
        name: "conv2d",
        values: Arity::Exactly(1),
        weights: &[req("weight"), opt("bias")],
        attrs: &["stride", "padding", "dilation", "groups"],
        summary: "2-D cross-correlation; W is [out, in/groups, kh, kw]",
    },
    OpSchema {
        kind: OpKind::Relu,
        name: "relu",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &[],
        summary: "max(x, 0)",
    },
    OpSchema {
        kind: OpKind::Sigmoid,
        name: "sigmoid",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &[],
        summary: "1 / (1 + e^-x)",
    },
    OpSchema {
        kind: OpKind::Tanh,
        name: "tanh",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &[],
        summary: "hyperbolic tangent",
    },
    OpSchema {
        kind: OpKind::Softmax,
        name: "softmax",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["axis"],
        summary: "softmax along an axis (default the last)",
    },
    OpSchema {
        kind: OpKind::LogSoftmax,
        name: "log_softmax",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["axis"],
        summary: "log of softmax along an axis (default the last)",
    },
    OpSchema {
        kind: OpKind::MaxPool2d,
        name: "maxpool2d",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["kernel", "stride", "padding"],
        summary: "2-D max pooling over the last two axes",
    },
    OpSchema {
        kind: OpKind::AvgPool2d,
        name: "avgpool2d",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["kernel", "stride", "padding", "count_include_pad"],
        summary: "2-D average pooling over the last two axes",
    },
    OpSchema {
        kind: OpKind::Flatten,
        name: "flatten",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["axis"],
        summary: "merge the axes from `axis` on into one",
    },
    OpSchema {
        kind: OpKind::Reshape,
        name: "reshape",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["shape"],
        summary: "same elements, new shape (one -1 may be inferred)",
    },
    OpSchema {
        kind: OpKind::Transpose,
        name: "transpose",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["perm"],
        summary: "permute axes (default: reverse them)",
    },
    OpSchema {
        kind: OpKind::Add,
        name: "add",
        values: Arity::Exactly(2),
        weights: &[],
        attrs: &[],
        summary: "element-wise a + b with broadcasting",
    },
    OpSchema {
        kind: OpKind::Sub,
        name: "sub",
        values: Arity::Exactly(2),
        weights: &[],
        attrs: &[],
        summary: "element-wise a - b with broadcasting",
    },
    OpSchema {
        kind: OpKind::Mul,
        name: "mul",
        values: Arity::Exactly(2),
        weights: &[],
        attrs: &[],
        summary: "element-wise a * b with broadcasting",
    },
    OpSchema {
        kind: OpKind::Div,
        name: "div",
        values: Arity::Exactly(2),
        weights: &[],
        attrs: &[],
        summary: "element-wise a / b with broadcasting",
    },
    OpSchema {
        kind: OpKind::Concat,
        name: "concat",
        values: Arity::AtLeast(1),
        weights: &[],
        attrs: &["axis"],
        summary: "join values along an axis",
    },
    OpSchema {
        kind: OpKind::BatchNorm,
        name: "batchnorm",
        values: Arity::Exactly(1),
        weights: &[req("scale"), req("bias"), req("mean"), req("var")],
        attrs: &["epsilon", "axis"],
        summary: "inference batch normalisation along the channel axis",
    },
    OpSchema {
        kind: OpKind::Dropout,
        name: "dropout",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["ratio"],
        summary: "identity at inference",
    },
    OpSchema {
        kind: OpKind::Identity,
        name: "identity",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &[],
        summary: "the value itself",
    },
    OpSchema {
        kind: OpKind::Lstm,
        name: "lstm",
        values: Arity::Exactly(1),
        weights: &[req("w"), req("r"), opt("b"), opt("h0"), opt("c0")],
        attrs: &["last"],
        summary: "forward LSTM (ONNX semantics, gates i, o, f, c); x is [seq, in] or [seq, batch, in]; every hidden state, or with `last = true` only the final one",
    },
    OpSchema {
        kind: OpKind::LstmStacked,
        name: "lstm_stacked",
        values: Arity::Exactly(1),
        weights: &[req("weight"), opt("h0"), opt("c0")],
        attrs: &["last"],
        summary: "forward LSTM whose gates are one product per step: weight is [4h, in + h + 1] over [x_t; h; 1] (gates i, o, f, c); results as `lstm`",
    },
    OpSchema {
        kind: OpKind::Embedding,
        name: "embedding",
        values: Arity::Exactly(1),
        weights: &[req("table")],
        attrs: &[],
        summary: "rows of a [vocab, dim] table picked by i64 indices",
    },
    OpSchema {
        kind: OpKind::ArgMax,
        name: "argmax",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["axis", "keepdims"],
        summary: "i64 index of the first maximum along an axis (default the last)",
    },
    OpSchema {
        kind: OpKind::Slice,
        name: "slice",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["axis", "start", "len"],
        summary: "the `len` consecutive elements from `start` along an axis (default the last)",
    },
    OpSchema {
        kind: OpKind::Cast,
        name: "cast",
        values: Arity::Exactly(1),
        weights: &[],
        attrs: &["to"],
        summary: "the values as another element type (`to = f32` or `to = i64`; f32 to i64 truncates toward zero)",
    },
];

impl OpKind {
    pub fn schema(self) -> &'static OpSchema {
        SCHEMAS
            .iter()
            .find(|s| s.kind == self)
            .expect("every op kind has a schema")
    }

    pub fn name(self) -> &'static str {
        self.schema().name
    }

    /// The op called `name` in the text format (`input` is not callable and is not found).
    pub fn from_name(name: &str) -> Option<OpKind> {
        SCHEMAS
            .iter()
            .find(|s| s.name == name && s.kind != OpKind::Input)
            .map(|s| s.kind)
    }

    /// The names of every callable op, for "did you mean" lists and help texts.
    pub fn callable_names() -> impl Iterator<Item = &'static str> {
        SCHEMAS
            .iter()
            .filter(|s| s.kind != OpKind::Input)
            .map(|s| s.name)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An attribute value as written in the text format.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Bool(bool),
    /// An element type, written by its name (`f32`, `i64`).
    DType(DType),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(v) => write!(f, "{v}"),
            AttrValue::Float(v) => write!(f, "{}", crate::print::FloatText(*v)),
            AttrValue::Bool(v) => write!(f, "{v}"),
            AttrValue::DType(d) => write!(f, "{d}"),
            AttrValue::Ints(vs) => {
                f.write_str("[")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub ty: TensorType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub value: WeightId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub weight: WeightId,
    pub bias: Option<WeightId>,
}

/// A product whose weight is stored `[in, out]`, ONNX's layout for MatMul and for Gemm without
/// `transB`: `y[.., n] = sum_k x[.., k] W[k, n] + b[n]`. It computes exactly what
/// `dense` over `W^T` computes; only the weight's layout differs. `dense` is the normal form
/// the compression passes and the backends consume, and `simplify` rewrites every `matmul`
/// into it (`gemm-transb-normal-form`), so this op exists only before compression.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMul {
    pub weight: WeightId,
    pub bias: Option<WeightId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub weight: WeightId,
    pub bias: Option<WeightId>,
    /// Vertical, horizontal.
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Conv2d {
    /// A convolution with the default attributes: stride 1, no padding, no dilation, one group.
    pub fn new(weight: WeightId, bias: Option<WeightId>) -> Conv2d {
        Conv2d {
            weight,
            bias,
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top, left, bottom, right.
    pub padding: [usize; 4],
    /// Average pooling only: whether padded positions count in the divisor.
    pub count_include_pad: bool,
}

/// An axis attribute; negative values count from the end.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub axis: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Flatten {
    /// Axes `axis..` are merged into one; axes before it are kept.
    pub axis: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    /// Target dimensions; at most one is -1 (inferred).
    pub shape: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    /// Output axis i is input axis `perm[i]`; empty means reverse all axes.
    pub perm: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub scale: WeightId,
    pub bias: WeightId,
    pub mean: WeightId,
    pub var: WeightId,
    pub epsilon: f32,
    /// The channel axis the four weights run along.
    pub axis: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    pub ratio: f32,
}

/// Forward LSTM with ONNX semantics: `w` is `[4h, in]`, `r` is `[4h, h]` (gate blocks in the
/// order i, o, f, c), `b` is `[8h]` (input biases then recurrent biases), `h0`/`c0` are `[h]` or
/// `[batch, h]`. Activations are the ONNX defaults: sigmoid for gates, tanh for cell and output.
/// The result is every hidden state: `[seq, h]` (or `[seq, batch, h]`); with `last`, only the
/// hidden state after the final step: `[h]` (or `[batch, h]`), ONNX's `Y_h` without its
/// direction axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Lstm {
    pub w: WeightId,
    pub r: WeightId,
    pub b: Option<WeightId>,
    pub h0: Option<WeightId>,
    pub c0: Option<WeightId>,
    pub last: bool,
}

/// An LSTM whose four gate products and biases are one stacked matrix, so each time step is a
/// single matrix-vector product (ESE's gate stacking; EIE's NT-LSTM layer is 2400 × 1201):
/// `weight` is `[4h, in + h + 1]` and row `j` is `[W[j, :], R[j, :], Wb[j] + Rb[j]]` of the
/// equivalent [`Lstm`], so the gates at step `t` are `weight · [x_t; h_{t-1}; 1]` (columns
/// `0..in` read the input, `in..in + h` the previous hidden state, the last column is the bias).
/// The hidden size is `rows / 4`; `h0`, `c0`, `last` and the results are exactly those of
/// [`Lstm`].
#[derive(Clone, Debug, PartialEq)]
pub struct LstmStacked {
    pub weight: WeightId,
    pub h0: Option<WeightId>,
    pub c0: Option<WeightId>,
    pub last: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    pub table: WeightId,
}

/// The index of the first maximum along `axis` (negative counts from the end), as i64; the
/// axis is removed, or kept with extent 1 when `keepdims`. NaN compares below every number.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgMax {
    pub axis: i64,
    pub keepdims: bool,
}

/// The `len` consecutive elements `start..start + len` along `axis` (negative counts from the
/// end); every other axis is kept whole. A stacked product's result is taken apart with one slice
/// per original product.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub axis: i64,
    pub start: usize,
    pub len: usize,
}

/// The same values as element type `to`. Values are carried as f32 (i64 values as exact
/// integers), so a cast to the operand's own type and an i64 to f32 cast keep every value, and
/// an f32 to i64 cast truncates toward zero (NaN and infinities stay as they are).
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub to: DType,
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Input(Input),
    Constant(Constant),
    Dense(Dense),
    MatMul(MatMul),
    Conv2d(Conv2d),
    Relu,
    Sigmoid,
    Tanh,
    Softmax(Axis),
    LogSoftmax(Axis),
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    Flatten(Flatten),
    Reshape(Reshape),
    Transpose(Transpose),
    Add,
    Sub,
    Mul,
    Div,
    Concat(Axis),
    BatchNorm(BatchNorm),
    Dropout(Dropout),
    Identity,
    Lstm(Lstm),
    LstmStacked(LstmStacked),
    Embedding(Embedding),
    ArgMax(ArgMax),
    Slice(Slice),
    Cast(Cast),
}

/// Why a set of text-level weights and attributes does not make an op.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("`{op}` takes {expected} weight operand(s), found {found}")]
    WeightCount {
        op: &'static str,
        expected: String,
        found: usize,
    },
    #[error("`{op}` has no attribute `{attr}`{}", expected_attrs(.op))]
    UnknownAttr { op: &'static str, attr: String },
    #[error("attribute `{attr}` is given twice")]
    DuplicateAttr { attr: String },
    #[error("attribute `{attr}` of `{op}` {reason}")]
    BadAttr {
        op: &'static str,
        attr: &'static str,
        reason: String,
    },
}

fn expected_attrs(op: &str) -> String {
    let schema = OpKind::from_name(op).map(OpKind::schema);
    match schema {
        Some(s) if !s.attrs.is_empty() => format!(" (it has: {})", s.attrs.join(", ")),
        _ => " (it takes none)".to_string(),
    }
}

/// Reads attributes by name, remembering which were used.
struct AttrReader<'a> {
    op: &'static str,
    attrs: &'a [(String, AttrValue)],
}

impl AttrReader<'_> {
    fn get(&self, name: &'static str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn bad(&self, attr: &'static str, reason: impl Into<String>) -> BuildError {
        BuildError::BadAttr {
            op: self.op,
            attr,
            reason: reason.into(),
        }
    }

    fn int(&self, name: &'static str, default: i64) -> Result<i64, BuildError> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Int(v)) => Ok(*v),
            Some(other) => Err(self.bad(name, format!("must be an integer, found `{other}`"))),
        }
    }

    fn positive(&self, name: &'static str, default: usize) -> Result<usize, BuildError> {
        let v = self.int(name, default as i64)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| self.bad(name, format!("must be a positive integer, found {v}")))
    }

    fn non_negative(&self, name: &'static str, default: usize) -> Result<usize, BuildError> {
        let v = self.int(name, default as i64)?;
        usize::try_from(v).map_err(|_| self.bad(name, format!("must not be negative, found {v}")))
    }

    fn float(&self, name: &'static str, default: f64) -> Result<f64, BuildError> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(AttrValue::Int(v)) => Ok(*v as f64),
            Some(other) => Err(self.bad(name, format!("must be a number, found `{other}`"))),
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, BuildError> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Bool(v)) => Ok(*v),
            Some(other) => Err(self.bad(name, format!("must be true or false, found `{other}`"))),
        }
    }

    fn ints(&self, name: &'static str) -> Result<Option<Vec<i64>>, BuildError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => {
                Err(self.bad(name, format!("must be a list of integers, found `{other}`")))
            }
        }
    }

    /// A pair written `n` (both) or `[a, b]`, each element checked by `min`.
    fn pair(
        &self,
        name: &'static str,
        default: [usize; 2],
        min: usize,
    ) -> Result<[usize; 2], BuildError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let list = match v {
            AttrValue::Int(n) => vec![*n, *n],
            AttrValue::Ints(l) if l.len() == 2 => l.clone(),
            other => {
                return Err(self.bad(
                    name,
                    format!("must be an integer or a list of 2, found `{other}`"),
                ));
            }
        };
        let mut out = [0; 2];
        for (o, &x) in out.iter_mut().zip(&list) {
            *o = usize::try_from(x)
                .ok()
                .filter(|&x| x >= min)
                .ok_or_else(|| self.bad(name, format!("must hold integers >= {min}, found {x}")))?;
        }
        Ok(out)
    }

    /// Padding written `p` (all sides), `[v, h]` or `[top, left, bottom, right]`.
    fn padding(&self) -> Result<[usize; 4], BuildError> {
        let Some(v) = self.get("padding") else {
            return Ok([0; 4]);
        };
        let list: Vec<i64> = match v {
            AttrValue::Int(n) => vec![*n; 4],
            AttrValue::Ints(l) if l.len() == 2 => vec![l[0], l[1], l[0], l[1]],
            AttrValue::Ints(l) if l.len() == 4 => l.clone(),
            other => {
                return Err(self.bad(
                    "padding",
                    format!("must be an integer or a list of 2 or 4, found `{other}`"),
                ));
            }
        };
        let mut out = [0; 4];
        for (o, &x) in out.iter_mut().zip(&list) {
            *o = usize::try_from(x)
                .map_err(|_| self.bad("padding", format!("must not be negative, found {x}")))?;
        }
        Ok(out)
    }
}

/// An f32 attribute as the f64 its shortest decimal form reads as, so it prints as written.
fn f32_attr(x: f32) -> AttrValue {
    AttrValue::Float(format!("{x}").parse().unwrap_or(x as f64))
}

fn pair_attr(v: [usize; 2]) -> AttrValue {
    if v[0] == v[1] {
        AttrValue::Int(v[0] as i64)
    } else {
        AttrValue::Ints(v.iter().map(|&x| x as i64).collect())
    }
}

fn padding_attr(p: [usize; 4]) -> AttrValue {
    if p.iter().all(|&x| x == p[0]) {
        AttrValue::Int(p[0] as i64)
    } else if p[0] == p[2] && p[1] == p[3] {
        AttrValue::Ints(vec![p[0] as i64, p[1] as i64])
    } else {
        AttrValue::Ints(p.iter().map(|&x| x as i64).collect())
    }
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input(_) => OpKind::Input,
            Op::Constant(_) => OpKind::Constant,
            Op::Dense(_) => OpKind::Dense,
            Op::MatMul(_) => OpKind::MatMul,
            Op::Conv2d(_) => OpKind::Conv2d,
            Op::Relu => OpKind::Relu,
            Op::Sigmoid => OpKind::Sigmoid,
            Op::Tanh => OpKind::Tanh,
            Op::Softmax(_) => OpKind::Softmax,
            Op::LogSoftmax(_) => OpKind::LogSoftmax,
            Op::MaxPool2d(_) => OpKind::MaxPool2d,
            Op::AvgPool2d(_) => OpKind::AvgPool2d,
            Op::Flatten(_) => OpKind::Flatten,
            Op::Reshape(_) => OpKind::Reshape,
            Op::Transpose(_) => OpKind::Transpose,
            Op::Add => OpKind::Add,
            Op::Sub => OpKind::Sub,
            Op::Mul => OpKind::Mul,
            Op::Div => OpKind::Div,
            Op::Concat(_) => OpKind::Concat,
            Op::BatchNorm(_) => OpKind::BatchNorm,
            Op::Dropout(_) => OpKind::Dropout,
            Op::Identity => OpKind::Identity,
            Op::Lstm(_) => OpKind::Lstm,
            Op::LstmStacked(_) => OpKind::LstmStacked,
            Op::Embedding(_) => OpKind::Embedding,
            Op::ArgMax(_) => OpKind::ArgMax,
            Op::Slice(_) => OpKind::Slice,
            Op::Cast(_) => OpKind::Cast,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The weight operands in schema order; absent optional slots are left out.
    pub fn weights(&self) -> Vec<WeightId> {
        let mut out = Vec::new();
        self.for_each_weight(|w| out.push(w));
        out
    }

    pub fn for_each_weight(&self, mut f: impl FnMut(WeightId)) {
        let mut ids = self.clone();
        ids.for_each_weight_mut(|w| f(*w));
    }

    /// Visits every weight handle in schema order, for renumbering or replacing weights.
    pub fn for_each_weight_mut(&mut self, mut f: impl FnMut(&mut WeightId)) {
        let opt = |w: &mut Option<WeightId>, f: &mut dyn FnMut(&mut WeightId)| {
            if let Some(w) = w {
                f(w)
            }
        };
        match self {
            Op::Constant(c) => f(&mut c.value),
            Op::Dense(d) => {
                f(&mut d.weight);
                opt(&mut d.bias, &mut f);
            }
            Op::MatMul(m) => {
                f(&mut m.weight);
                opt(&mut m.bias, &mut f);
            }
            Op::Conv2d(c) => {
                f(&mut c.weight);
                opt(&mut c.bias, &mut f);
            }
            Op::BatchNorm(b) => {
                f(&mut b.scale);
                f(&mut b.bias);
                f(&mut b.mean);
                f(&mut b.var);
            }
            Op::Lstm(l) => {
                f(&mut l.w);
                f(&mut l.r);
                opt(&mut l.b, &mut f);
                opt(&mut l.h0, &mut f);
                opt(&mut l.c0, &mut f);
            }
            Op::LstmStacked(l) => {
                f(&mut l.weight);
                opt(&mut l.h0, &mut f);
                opt(&mut l.c0, &mut f);
            }
            Op::Embedding(e) => f(&mut e.table),
            Op::Input(_)
            | Op::Relu
            | Op::Sigmoid
            | Op::Tanh
            | Op::Softmax(_)
            | Op::LogSoftmax(_)
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Concat(_)
            | Op::Dropout(_)
            | Op::Identity
            | Op::ArgMax(_)
            | Op::Slice(_)
            | Op::Cast(_) => {}
        }
    }

    /// Builds a callable op from its weight operands (schema order) and text-level attributes.
    /// `Input` cannot be built this way.
    pub fn build(
        kind: OpKind,
        weights: &[WeightId],
        attrs: &[(String, AttrValue)],
    ) -> Result<Op, BuildError> {
        let schema = kind.schema();
        let op = schema.name;
        let required = schema.weights.iter().filter(|s| !s.optional).count();
        if weights.len() < required || weights.len() > schema.weights.len() || kind == OpKind::Input
        {
            let expected = if required == schema.weights.len() {
                required.to_string()
            } else {
                format!("{required} to {}", schema.weights.len())
            };
            return Err(BuildError::WeightCount {
                op,
                expected,
                found: weights.len(),
            });
        }
        for (i, (name, _)) in attrs.iter().enumerate() {
            if !schema.attrs.contains(&name.as_str()) {
                return Err(BuildError::UnknownAttr {
                    op,
                    attr: name.clone(),
                });
            }
            if attrs[..i].iter().any(|(n, _)| n == name) {
                return Err(BuildError::DuplicateAttr { attr: name.clone() });
            }
        }
        let a = AttrReader { op, attrs };
        let w = |i: usize| weights.get(i).copied();
        Ok(match kind {
            OpKind::Input => unreachable!("rejected above"),
            OpKind::Constant => Op::Constant(Constant {
                value: w(0).expect("checked"),
            }),
            OpKind::Dense => Op::Dense(Dense {
                weight: w(0).expect("checked"),
                bias: w(1),
            }),
            OpKind::MatMul => Op::MatMul(MatMul {
                weight: w(0).expect("checked"),
                bias: w(1),
            }),
            OpKind::Conv2d => Op::Conv2d(Conv2d {
                weight: w(0).expect("checked"),
                bias: w(1),
                stride: a.pair("stride", [1, 1], 1)?,
                padding: a.padding()?,
                dilation: a.pair("dilation", [1, 1], 1)?,
                groups: a.positive("groups", 1)?,
            }),
            OpKind::Relu => Op::Relu,
            OpKind::Sigmoid => Op::Sigmoid,
            OpKind::Tanh => Op::Tanh,
            OpKind::Softmax => Op::Softmax(Axis {
                axis: a.int("axis", -1)?,
            }),
            OpKind::LogSoftmax => Op::LogSoftmax(Axis {
                axis: a.int("axis", -1)?,
            }),
            OpKind::MaxPool2d | OpKind::AvgPool2d => {
                if a.get("kernel").is_none() {
                    return Err(a.bad("kernel", "is required"));
                }
                let kernel = a.pair("kernel", [1, 1], 1)?;
                let pool = Pool2d {
                    kernel,
                    stride: a.pair("stride", kernel, 1)?,
                    padding: a.padding()?,
                    count_include_pad: a.bool("count_include_pad", false)?,
                };
                if kind == OpKind::MaxPool2d {
                    Op::MaxPool2d(pool)
                } else {
                    Op::AvgPool2d(pool)
                }
            }
            OpKind::Flatten => Op::Flatten(Flatten {
                axis: a.non_negative("axis", 0)?,
            }),
            OpKind::Reshape => {
                let shape = a
                    .ints("shape")?
                    .ok_or_else(|| a.bad("shape", "is required"))?;
                if shape.iter().any(|&d| d < -1) {
                    return Err(a.bad("shape", "may hold only sizes >= 0 and a single -1"));
                }
                if shape.iter().filter(|&&d| d == -1).count() > 1 {
                    return Err(a.bad("shape", "may hold at most one -1"));
                }
                Op::Reshape(Reshape { shape })
            }
            OpKind::Transpose => {
                let perm = a.ints("perm")?.unwrap_or_default();
                let perm: Vec<usize> = perm
                    .iter()
                    .map(|&p| {
                        usize::try_from(p).map_err(|_| {
                            a.bad("perm", format!("must not hold negative axes, found {p}"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Op::Transpose(Transpose { perm })
            }
            OpKind::Add => Op::Add,
            OpKind::Sub => Op::Sub,
            OpKind::Mul => Op::Mul,
            OpKind::Div => Op::Div,
            OpKind::Concat => Op::Concat(Axis {
                axis: a.int("axis", 0)?,
            }),
            OpKind::BatchNorm => {
                let epsilon = a.float("epsilon", 1e-5)? as f32;
                if !(epsilon.is_finite() && epsilon >= 0.0) {
                    return Err(a.bad("epsilon", "must be a finite number >= 0"));
                }
                Op::BatchNorm(BatchNorm {
                    scale: w(0).expect("checked"),
                    bias: w(1).expect("checked"),
                    mean: w(2).expect("checked"),
                    var: w(3).expect("checked"),
                    epsilon,
                    axis: a.non_negative("axis", 0)?,
                })
            }
            OpKind::Dropout => {
                let ratio = a.float("ratio", 0.5)? as f32;
                if !(0.0..1.0).contains(&ratio) {
                    return Err(a.bad("ratio", format!("must be in [0, 1), found {ratio}")));
                }
                Op::Dropout(Dropout { ratio })
            }
            OpKind::Identity => Op::Identity,
            OpKind::Lstm => Op::Lstm(Lstm {
                w: w(0).expect("checked"),
                r: w(1).expect("checked"),
                b: w(2),
                h0: w(3),
                c0: w(4),
                last: a.bool("last", false)?,
            }),
            OpKind::LstmStacked => Op::LstmStacked(LstmStacked {
                weight: w(0).expect("checked"),
                h0: w(1),
                c0: w(2),
                last: a.bool("last", false)?,
            }),
            OpKind::Embedding => Op::Embedding(Embedding {
                table: w(0).expect("checked"),
            }),
            OpKind::ArgMax => Op::ArgMax(ArgMax {
                axis: a.int("axis", -1)?,
                keepdims: a.bool("keepdims", false)?,
            }),
            OpKind::Slice => {
                if a.get("len").is_none() {
                    return Err(a.bad("len", "is required"));
                }
                Op::Slice(Slice {
                    axis: a.int("axis", -1)?,
                    start: a.non_negative("start", 0)?,
                    len: a.non_negative("len", 0)?,
                })
            }
            OpKind::Cast => match a.get("to") {
                Some(AttrValue::DType(to)) => Op::Cast(Cast { to: *to }),
                Some(other) => {
                    return Err(a.bad(
                        "to",
                        format!("must be an element type (f32 or i64), found `{other}`"),
                    ));
                }
                None => return Err(a.bad("to", "is required")),
            },
        })
    }

    /// The attributes that differ from their defaults, in schema order and shortest form.
    pub fn attrs(&self) -> Vec<(String, AttrValue)> {
        let mut out: Vec<(&'static str, AttrValue)> = Vec::new();
        match self {
            Op::Conv2d(c) => {
                if c.stride != [1, 1] {
                    out.push(("stride", pair_attr(c.stride)));
                }
                if c.padding != [0; 4] {
                    out.push(("padding", padding_attr(c.padding)));
                }
                if c.dilation != [1, 1] {
                    out.push(("dilation", pair_attr(c.dilation)));
                }
                if c.groups != 1 {
                    out.push(("groups", AttrValue::Int(c.groups as i64)));
                }
            }
            Op::Softmax(ax) | Op::LogSoftmax(ax) => {
                if ax.axis != -1 {
                    out.push(("axis", AttrValue::Int(ax.axis)));
                }
            }
            Op::Concat(ax) => {
                if ax.axis != 0 {
                    out.push(("axis", AttrValue::Int(ax.axis)));
                }
            }
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                out.push(("kernel", pair_attr(p.kernel)));
                if p.stride != p.kernel {
                    out.push(("stride", pair_attr(p.stride)));
                }
                if p.padding != [0; 4] {
                    out.push(("padding", padding_attr(p.padding)));
                }
                if p.count_include_pad {
                    out.push(("count_include_pad", AttrValue::Bool(true)));
                }
            }
            Op::Flatten(fl) => {
                if fl.axis != 0 {
                    out.push(("axis", AttrValue::Int(fl.axis as i64)));
                }
            }
            Op::Reshape(r) => out.push(("shape", AttrValue::Ints(r.shape.clone()))),
            Op::Transpose(t) => {
                if !t.perm.is_empty() {
                    out.push((
                        "perm",
                        AttrValue::Ints(t.perm.iter().map(|&p| p as i64).collect()),
                    ));
                }
            }
            Op::BatchNorm(b) => {
                if b.epsilon != 1e-5 {
                    out.push(("epsilon", f32_attr(b.epsilon)));
                }
                if b.axis != 0 {
                    out.push(("axis", AttrValue::Int(b.axis as i64)));
                }
            }
            Op::Dropout(d) => {
                if d.ratio != 0.5 {
                    out.push(("ratio", f32_attr(d.ratio)));
                }
            }
            Op::Lstm(l) => {
                if l.last {
                    out.push(("last", AttrValue::Bool(true)));
                }
            }
            Op::LstmStacked(l) => {
                if l.last {
                    out.push(("last", AttrValue::Bool(true)));
                }
            }
            Op::ArgMax(a) => {
                if a.axis != -1 {
                    out.push(("axis", AttrValue::Int(a.axis)));
                }
                if a.keepdims {
                    out.push(("keepdims", AttrValue::Bool(true)));
                }
            }
            Op::Slice(sl) => {
                if sl.axis != -1 {
                    out.push(("axis", AttrValue::Int(sl.axis)));
                }
                if sl.start != 0 {
                    out.push(("start", AttrValue::Int(sl.start as i64)));
                }
                out.push(("len", AttrValue::Int(sl.len as i64)));
            }
            Op::Cast(c) => out.push(("to", AttrValue::DType(c.to))),
            Op::Input(_)
            | Op::Constant(_)
            | Op::Dense(_)
            | Op::MatMul(_)
            | Op::Relu
            | Op::Sigmoid
            | Op::Tanh
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Identity
            | Op::Embedding(_) => {}
        }
        out.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }
}
