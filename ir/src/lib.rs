//! sprig-ir: the vocabulary every part of sprig shares.
//!
//! A [`Graph`] of named value nodes, each computing an [`Op`] over its value operands and the
//! weights it refers to in the graph's [`Weights`] arena; tensor types; weight encodings;
//! [`verify`], which checks a graph and returns the [`GraphInfo`] (types, order) that backends
//! require; the text printer ([`print`]); and the f32 reference interpreter ([`interpret`]), the
//! oracle every backend is checked against.
//!
//! Invariant: this crate does no IO (no files, no terminal) and knows no file format but the text
//! it prints; front ends build graphs through its API.

pub mod encoding;
pub mod graph;
pub mod interp;
pub mod op;
pub mod print;
pub mod tensor;
pub mod types;
pub mod verify;
pub mod weights;

pub use encoding::Encoding;
pub use graph::{Graph, Node, NodeId};
pub use interp::{InterpError, interpret};
pub use op::{AttrValue, Op, OpKind};
pub use print::print;
pub use tensor::Tensor;
pub use types::{DType, Shape, Span, TensorType};
pub use verify::{GraphInfo, Location, VerifyError, verify};
pub use weights::{Distribution, RandomInit, Weight, WeightId, WeightInit, Weights, same_bits};
