//! The f32 reference interpreter: the oracle every backend is checked against.
//!
//! Contract: `interpret(g, info, inputs)` runs a graph that verified (`info == verify(g)?`) on
//! one tensor per network input, in `g.inputs()` order, each with exactly its declared shape
//! (i64 inputs carry their indices as f32 values holding exact integers). It returns one tensor
//! per network output, in `g.outputs()` order. Every op computes exactly the semantics documented
//! in [`crate::op`] (ONNX semantics where those are silent), in f32, with a fixed evaluation
//! order: reductions (dense, conv2d, the LSTM gates; a stacked LSTM's one product over `[x; h; 1]`) sum their terms in increasing index order
//! starting from zero and add the bias last, so results are reproducible bit for bit.
//!
//! Invariants:
//! - Before a node runs, its type is inferred again from the operand tensors actually held and
//!   compared with `info`; a graph changed after verification gives [`InterpError::Unverified`],
//!   never a panic, and kernels only ever see shapes the verifier accepts.
//! - A value is dropped as soon as its last user has run, unless it is a network output, so
//!   memory holds only the live frontier of the graph.

mod kernels;

pub use kernels::matmul_rows;

#[cfg(test)]
mod tests;

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::{DType, TensorType};
use crate::verify::{GraphInfo, Operand, infer};
use crate::weights::{WeightId, Weights};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InterpError {
    /// The input tensors do not match the network's declared inputs.
    #[error("{0}")]
    Input(String),
    /// An `embedding` index that is not a row of its table (out of range, or not an integer).
    #[error(
        "embedding `{node}`: index {index} at position {position} of `{indices}` is not a row of @{table}, which has {rows} rows"
    )]
    Index {
        node: String,
        indices: String,
        position: usize,
        index: f32,
        table: String,
        rows: usize,
    },
    /// The graph does not match the [`GraphInfo`] given (it changed after verification, or the
    /// info belongs to another graph).
    #[error("the graph does not match its verification result (verify it again): {0}")]
    Unverified(String),
}

pub fn interpret(
    graph: &Graph,
    info: &GraphInfo,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>, InterpError> {
    let declared = graph.inputs();
    if inputs.len() != declared.len() {
        return Err(InterpError::Input(format!(
            "the network takes {} input(s) but {} tensor(s) were given",
            declared.len(),
            inputs.len()
        )));
    }
    let bound = graph.node_ids().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut input_of: Vec<Option<usize>> = vec![None; bound];
    for (k, (&id, given)) in declared.iter().zip(inputs).enumerate() {
        check_input(graph, info, id, given)?;
        input_of[id.index()] = Some(k);
    }

    // How many operand slots still need each value; outputs are kept regardless.
    let mut remaining = vec![0usize; bound];
    let mut is_output = vec![false; bound];
    for &id in &info.order {
        if !graph.contains(id) {
            return Err(InterpError::Unverified(format!(
                "node {id:?} of the order no longer exists"
            )));
        }
        for o in graph.operands(id) {
            remaining[o.index()] += 1;
        }
    }
    for &o in graph.outputs() {
        if o.index() >= bound || !graph.contains(o) {
            return Err(InterpError::Unverified(
                "an output refers to a node that no longer exists".to_string(),
            ));
        }
        is_output[o.index()] = true;
    }

    let mut values: Vec<Option<Tensor>> = vec![None; bound];
    for &id in &info.order {
        let node = graph.node(id);
        let operands = graph.operands(id);
        let result = {
            let mut args: Vec<&Tensor> = Vec::with_capacity(operands.len());
            let mut arg_types: Vec<TensorType> = Vec::with_capacity(operands.len());
            for &o in &operands {
                let held = values[o.index()].as_ref().ok_or_else(|| {
                    InterpError::Unverified(format!(
                        "`{}` runs before its operand `{}`",
                        node.name,
                        graph.node(o).name
                    ))
                })?;
                let dtype = info
                    .get(o)
                    .map(|t| t.dtype)
                    .ok_or_else(|| untyped(graph, o))?;
                args.push(held);
                arg_types.push(TensorType::new(dtype, held.shape.clone()));
            }
            let named: Vec<Operand<'_>> = operands
                .iter()
                .zip(&arg_types)
                .map(|(&o, ty)| Operand {
                    name: &graph.node(o).name,
                    ty,
                })
                .collect();
            let expected = infer(&node.op, &graph.weights, &named)
                .map_err(|m| InterpError::Unverified(format!("`{}`: {m}", node.name)))?;
            if info.get(id) != Some(&expected) {
                return Err(InterpError::Unverified(format!(
                    "`{}` is recorded as {} but its operands give {expected}",
                    node.name,
                    info.get(id)
                        .map_or("untyped".to_string(), ToString::to_string)
                )));
            }
            let result = match (&node.op, input_of[id.index()]) {
                (Op::Input(_), Some(k)) => inputs[k].clone(),
                (Op::Input(_), None) => {
                    return Err(InterpError::Unverified(format!(
                        "input `{}` is not a network input",
                        node.name
                    )));
                }
                _ => run(graph, id, &expected, &args)?,
            };
            if result.shape != expected.shape || result.data.len() != expected.shape.len() {
                return Err(InterpError::Unverified(format!(
                    "`{}` computed shape {} with {} values but its type is {expected}",
                    node.name,
                    result.shape,
                    result.data.len()
                )));
            }
            result
        };
        values[id.index()] = Some(result);
        for o in operands {
            remaining[o.index()] -= 1;
            if remaining[o.index()] == 0 && !is_output[o.index()] {
                values[o.index()] = None;
            }
        }
    }

    graph
        .outputs()
        .iter()
        .map(|&o| {
            values[o.index()].clone().ok_or_else(|| {
                InterpError::Unverified(format!(
                    "output `{}` is not in the order",
                    graph.node(o).name
                ))
            })
        })
        .collect()
}

fn untyped(graph: &Graph, id: NodeId) -> InterpError {
    InterpError::Unverified(format!("`{}` has no type", graph.node(id).name))
}

/// The tensor given for input `id` is well formed and has the declared shape.
fn check_input(
    graph: &Graph,
    info: &GraphInfo,
    id: NodeId,
    given: &Tensor,
) -> Result<(), InterpError> {
    if !graph.contains(id) {
        return Err(InterpError::Unverified(
            "an input refers to a node that no longer exists".to_string(),
        ));
    }
    let name = &graph.node(id).name;
    let declared = info.get(id).ok_or_else(|| untyped(graph, id))?;
    if given.shape != declared.shape {
        return Err(InterpError::Input(format!(
            "input `{name}` is declared {declared} but the tensor given has shape {}",
            given.shape
        )));
    }
    if given.shape.checked_len() != Some(given.data.len()) {
        return Err(InterpError::Input(format!(
            "the tensor given for input `{name}` has shape {} but holds {} values",
            given.shape,
            given.data.len()
        )));
    }
    Ok(())
}

/// A weight's values, whose count matches its type (inference checked the handle and type).
fn values(weights: &Weights, id: WeightId) -> Result<Arc<[f32]>, InterpError> {
    let w = &weights[id];
    let v = w.values();
    if Some(v.len()) != w.ty.shape.checked_len() {
        return Err(InterpError::Unverified(format!(
            "@{} : {} holds {} values",
            w.name,
            w.ty,
            v.len()
        )));
    }
    Ok(v)
}

/// Runs the (non-input) node `id` on `args`; `ty` is its inferred type.
fn run(
    graph: &Graph,
    id: NodeId,
    ty: &TensorType,
    args: &[&Tensor],
) -> Result<Tensor, InterpError> {
    let node = graph.node(id);
    // An empty result needs no computation (and its operands' extents may not be meaningful).
    if ty.shape.checked_len() == Some(0) {
        return Ok(Tensor {
            shape: ty.shape.clone(),
            data: Vec::new(),
        });
    }
    let w = |id: WeightId| values(&graph.weights, id);
    let dims = |id: WeightId| graph.weights[id].ty.shape.dims();
    let x = || args[0];
    Ok(match &node.op {
        Op::Input(_) => {
            return Err(InterpError::Unverified(format!(
                "input `{}` is run as an op",
                node.name
            )));
        }
        Op::Constant(c) => Tensor {
            shape: ty.shape.clone(),
            data: w(c.value)?.to_vec(),
        },
        Op::Dense(d) => {
            let b = d.bias.map(w).transpose()?;
            kernels::dense(x(), &w(d.weight)?, dims(d.weight)[0], b.as_deref())
        }
        Op::MatMul(m) => {
            let b = m.bias.map(w).transpose()?;
            kernels::matmul(x(), &w(m.weight)?, dims(m.weight)[1], b.as_deref())
        }
        Op::Conv2d(c) => {
            let b = c.bias.map(w).transpose()?;
            kernels::conv2d(x(), &w(c.weight)?, dims(c.weight), b.as_deref(), c)
        }
        Op::Relu => kernels::map(x(), |v| if v < 0.0 { 0.0 } else { v }),
        Op::Sigmoid => kernels::map(x(), kernels::sigmoid),
        Op::Tanh => kernels::map(x(), f32::tanh),
        Op::Dropout(_) | Op::Identity => x().clone(),
        Op::Softmax(a) => kernels::softmax(x(), axis(a.axis, x())?, false),
        Op::LogSoftmax(a) => kernels::softmax(x(), axis(a.axis, x())?, true),
        Op::MaxPool2d(p) => kernels::pool2d(x(), p, kernels::PoolKind::Max),
        Op::AvgPool2d(p) => kernels::pool2d(x(), p, kernels::PoolKind::Avg),
        Op::Flatten(_) | Op::Reshape(_) => Tensor {
            shape: ty.shape.clone(),
            data: x().data.clone(),
        },
        Op::Transpose(t) => {
            let perm = crate::verify::transpose_perm(&t.perm, x().shape.rank())
                .ok_or_else(|| InterpError::Unverified(format!("`{}`: bad perm", node.name)))?;
            kernels::transpose(x(), &perm)
        }
        Op::Add => kernels::binary(args[0], args[1], |a, b| a + b),
        Op::Sub => kernels::binary(args[0], args[1], |a, b| a - b),
        Op::Mul => kernels::binary(args[0], args[1], |a, b| a * b),
        Op::Div => kernels::binary(args[0], args[1], |a, b| a / b),
        Op::Concat(a) => kernels::concat(args, axis(a.axis, x())?),
        Op::BatchNorm(bn) => kernels::batchnorm(
            x(),
            bn.axis,
            [&w(bn.scale)?, &w(bn.bias)?, &w(bn.mean)?, &w(bn.var)?],
            bn.epsilon,
        ),
        Op::Lstm(l) => {
            let opt = |id: Option<WeightId>| id.map(w).transpose();
            let (b, h0, c0) = (opt(l.b)?, opt(l.h0)?, opt(l.c0)?);
            kernels::lstm(
                x(),
                &kernels::LstmWeights {
                    hidden: dims(l.w)[0] / 4,
                    gates: kernels::LstmGates::Separate {
                        w: &w(l.w)?,
                        r: &w(l.r)?,
                        b: b.as_deref(),
                    },
                    h0: h0.as_deref(),
                    c0: c0.as_deref(),
                },
                l.last,
            )
        }
        Op::LstmStacked(l) => {
            let opt = |id: Option<WeightId>| id.map(w).transpose();
            let (h0, c0) = (opt(l.h0)?, opt(l.c0)?);
            kernels::lstm(
                x(),
                &kernels::LstmWeights {
                    hidden: dims(l.weight)[0] / 4,
                    gates: kernels::LstmGates::Stacked {
                        weight: &w(l.weight)?,
                    },
                    h0: h0.as_deref(),
                    c0: c0.as_deref(),
                },
                l.last,
            )
        }
        Op::ArgMax(a) => kernels::argmax(x(), axis(a.axis, x())?, &ty.shape),
        Op::Slice(sl) => kernels::slice(x(), axis(sl.axis, x())?, sl.start, sl.len),
        // Values are carried as f32 and i64 values are exact integers, which truncation keeps.
        Op::Cast(c) => match c.to {
            DType::I64 => kernels::map(x(), f32::trunc),
            DType::F32 => x().clone(),
        },
        Op::Embedding(e) => {
            let table = &graph.weights[e.table];
            let (rows, dim) = (dims(e.table)[0], dims(e.table)[1]);
            kernels::embedding(x(), &w(e.table)?, [rows, dim]).map_err(|(position, index)| {
                InterpError::Index {
                    node: node.name.clone(),
                    indices: graph
                        .operands(id)
                        .first()
                        .map_or_else(String::new, |&o| graph.node(o).name.clone()),
                    position,
                    index,
                    table: table.name.clone(),
                    rows,
                }
            })?
        }
    })
}

fn axis(axis: i64, x: &Tensor) -> Result<usize, InterpError> {
    crate::verify::resolve_axis(axis, x.shape.rank())
        .ok_or_else(|| InterpError::Unverified(format!("axis {axis} is out of range")))
}
