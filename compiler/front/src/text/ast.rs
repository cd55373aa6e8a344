//! The syntax tree of a text description, before names are resolved.
//!
//! Invariant: every node carries the byte span of the text it came from, so later stages can
//! point at it; nothing here has been checked beyond syntax.

use sprig_ir::{AttrValue, DType};
use std::ops::Range;

pub type Span = Range<usize>;

#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct TypeExpr {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum DistExpr {
    Normal(f64, f64),
    Uniform(f64, f64),
}

#[derive(Clone, Debug)]
pub enum WeightInitExpr {
    /// No `= ...`: the tensor of the same name in the weights file.
    FromFile,
    /// `= file("key")`.
    FileKey(Spanned<String>),
    Literal(Vec<f32>),
    Random {
        dist: DistExpr,
        density: f64,
        seed: u64,
    },
}

#[derive(Clone, Debug)]
pub struct WeightDecl {
    pub name: Spanned<String>,
    pub ty: TypeExpr,
    pub init: WeightInitExpr,
    pub init_span: Span,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct InputDecl {
    pub name: Spanned<String>,
    pub ty: TypeExpr,
}

#[derive(Clone, Debug)]
pub enum Arg {
    Value(Spanned<String>),
    Weight(Spanned<String>),
    Attr(Spanned<String>, Spanned<AttrValue>),
}

#[derive(Clone, Debug)]
pub struct Call {
    pub op: Spanned<String>,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct LetStmt {
    pub name: Spanned<String>,
    pub call: Call,
}

#[derive(Clone, Debug, Default)]
pub struct Ast {
    pub network: Option<Spanned<String>>,
    pub weights_file: Option<Spanned<String>>,
    pub inputs: Vec<InputDecl>,
    pub weights: Vec<WeightDecl>,
    pub lets: Vec<LetStmt>,
    pub outputs: Vec<Spanned<String>>,
    /// Names of values whose statement had a syntax error after the name: they count as
    /// defined, so their uses raise no further errors.
    pub broken_values: Vec<Spanned<String>>,
    /// Likewise for weights.
    pub broken_weights: Vec<Spanned<String>>,
    /// Whether an `output` statement failed after its name (the network does have outputs).
    pub broken_output: bool,
}
