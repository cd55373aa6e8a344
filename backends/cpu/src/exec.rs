//! The executor: runs a whole verified graph on the CPU kernels.
//!
//! Contract: [`Executor::new`] checks that the info is the graph's verification result, packs
//! every weight matrix (dense, conv2d, LSTM) into the CPU layout once, and fuses a `relu` into
//! the dense or conv2d that is its only operand when nothing else reads the pre-activation value.
//! A `matmul` (weight `[in, out]`, the form before `simplify` normalises it to dense) runs as a
//! plain f32 loop over its unpacked weight, summing like the interpreter.
//! [`Executor::run`] takes one tensor per network input (declared shapes) and returns one per
//! output, like the interpreter, and agrees with it: matrix ops sum in its order and the other
//! ops share its formulas. Values are dropped once their last user has run.

use crate::conv::PackedConv;
use crate::layout::{MatrixSource, PackedMatrix};
use crate::lstm::PackedLstm;
use crate::matvec::{Activation, Runtime};
use crate::ops::{self, Pool};
use crate::{CpuError, Options};
use sprig_ir::op::Op;
use sprig_ir::{Graph, GraphInfo, NodeId, Tensor};
use std::sync::Arc;

/// What a node needs at run time, prepared once.
#[derive(Debug)]
enum Prepared {
    Dense {
        matrix: PackedMatrix,
        bias: Option<Vec<f32>>,
        act: Activation,
    },
    Conv(PackedConv),
    Lstm(PackedLstm),
    /// A relu folded into its operand: the value passes through.
    Fused,
    /// Weight values an op reads (constant, batchnorm's four, an embedding table, a matmul's
    /// weight and bias).
    Values(Vec<Arc<[f32]>>),
    None,
}

/// A packed matrix of the network, for reports and benchmarks.
#[derive(Clone, Copy, Debug)]
pub struct LayerMatrix<'a> {
    /// The node's name (with `/g` for conv group g, `/w` and `/r` for an LSTM's matrices).
    pub node: &'a str,
    pub group: Option<usize>,
    pub matrix: &'a PackedMatrix,
}

/// A graph ready to run on the CPU.
#[derive(Debug)]
pub struct Executor<'g> {
    graph: &'g Graph,
    info: &'g GraphInfo,
    rt: Runtime,
    prepared: Vec<Prepared>,
}

impl<'g> Executor<'g> {
    pub fn new(
        graph: &'g Graph,
        info: &'g GraphInfo,
        options: &Options,
    ) -> Result<Executor<'g>, CpuError> {
        match sprig_ir::verify(graph) {
            Ok(fresh) if &fresh == info => {}
            _ => return Err(CpuError::Unverified),
        }
        let rt = Runtime::new(options.isa, options.threads)?.with_traversal(options.traversal);
        let threads = rt.threads();
        let bound = graph.node_ids().map(|id| id.index() + 1).max().unwrap_or(0);
        let mut prepared: Vec<Prepared> = (0..bound).map(|_| Prepared::None).collect();
        let outputs = graph.outputs();
        for &id in &info.order {
            let node = graph.node(id);
            let w = |wid| &graph.weights[wid];
            let shape = |wid| graph.weights[wid].ty.shape.dims().to_vec();
            let layer = |e: CpuError| CpuError::Node(node.name.clone(), Box::new(e));
            prepared[id.index()] = match &node.op {
                Op::Dense(d) => {
                    let dims = shape(d.weight);
                    let values = w(d.weight).values();
                    let matrix = PackedMatrix::build(
                        MatrixSource::whole(w(d.weight), &values, dims[0], dims[1]),
                        threads,
                    )
                    .map_err(layer)?;
                    Prepared::Dense {
                        matrix,
                        bias: d.bias.map(|b| w(b).values().to_vec()),
                        act: Activation::Identity,
                    }
                }
                Op::Conv2d(c) => Prepared::Conv(
                    PackedConv::build(w(c.weight), c.bias.map(w), c, 1).map_err(layer)?,
                ),
                Op::Lstm(l) => Prepared::Lstm(
                    PackedLstm::build(
                        w(l.w),
                        w(l.r),
                        l.b.map(w),
                        l.h0.map(w),
                        l.c0.map(w),
                        l.last,
                        threads,
                    )
                    .map_err(layer)?,
                ),
                Op::LstmStacked(l) => Prepared::Lstm(
                    PackedLstm::build_stacked(
                        w(l.weight),
                        l.h0.map(w),
                        l.c0.map(w),
                        l.last,
                        threads,
                    )
                    .map_err(layer)?,
                ),
                Op::Relu => {
                    let operand = graph.operands(id)[0];
                    let sole_user = graph.users(operand).len() == 1 && !outputs.contains(&operand);
                    match &mut prepared[operand.index()] {
                        Prepared::Dense { act, .. } if sole_user => {
                            *act = Activation::Relu;
                            Prepared::Fused
                        }
                        Prepared::Conv(conv) if sole_user => {
                            conv.act = Activation::Relu;
                            Prepared::Fused
                        }
                        _ => Prepared::None,
                    }
                }
                Op::Constant(c) => Prepared::Values(vec![w(c.value).values()]),
                Op::BatchNorm(bn) => Prepared::Values(
                    [bn.scale, bn.bias, bn.mean, bn.var]
                        .iter()
                        .map(|&b| w(b).values())
                        .collect(),
                ),
                Op::Embedding(e) => Prepared::Values(vec![w(e.table).values()]),
                Op::MatMul(m) => Prepared::Values(
                    std::iter::once(m.weight)
                        .chain(m.bias)
                        .map(|b| w(b).values())
                        .collect(),
                ),
                _ => Prepared::None,
            };
        }
        Ok(Executor {
            graph,
            info,
            rt,
            prepared,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Every packed matrix, in execution order.
    pub fn matrices(&self) -> Vec<LayerMatrix<'_>> {
        let mut out = Vec::new();
        for &id in &self.info.order {
            let node = &self.graph.node(id).name;
            match &self.prepared[id.index()] {
                Prepared::Dense { matrix, .. } => out.push(LayerMatrix {
                    node,
                    group: None,
                    matrix,
                }),
                Prepared::Conv(c) => {
                    for (g, matrix) in c.matrices().iter().enumerate() {
                        out.push(LayerMatrix {
                            node,
                            group: Some(g),
                            matrix,
                        });
                    }
                }
                Prepared::Lstm(l) => {
                    for (g, matrix) in l.matrices().into_iter().enumerate() {
                        out.push(LayerMatrix {
                            node,
                            group: Some(g),
                            matrix,
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Runs the network on one tensor per input.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CpuError> {
        self.run_observed(inputs, &mut |_, _| {})
    }

    /// [`Executor::run`], calling `observe(node, operands)` before each dense node runs.
    pub fn run_observed(
        &self,
        inputs: &[Tensor],
        observe: &mut dyn FnMut(NodeId, &[&Tensor]),
    ) -> Result<Vec<Tensor>, CpuError> {
        let graph = self.graph;
        let declared = graph.inputs();
        if inputs.len() != declared.len() {
            return Err(CpuError::Input(format!(
                "the network takes {} input(s) but {} tensor(s) were given",
                declared.len(),
                inputs.len()
            )));
        }
        let bound = self.prepared.len();
        let mut values: Vec<Option<Tensor>> = vec![None; bound];
        for (&id, given) in declared.iter().zip(inputs) {
            let ty = self.info.ty(id);
            if given.shape != ty.shape || given.data.len() != ty.shape.len() {
                return Err(CpuError::Input(format!(
                    "input `{}` is declared {ty} but the tensor given has shape {} with {} values",
                    graph.node(id).name,
                    given.shape,
                    given.data.len()
                )));
            }
            values[id.index()] = Some(given.clone());
        }
        let mut remaining = vec![0usize; bound];
        for &id in &self.info.order {
            for o in graph.operands(id) {
                remaining[o.index()] += 1;
            }
        }
        for &o in graph.outputs() {
            remaining[o.index()] += 1;
        }
        for &id in &self.info.order {
            let operands = graph.operands(id);
            if matches!(graph.node(id).op, Op::Input(_)) {
                continue;
            }
            let result = {
                let args: Vec<&Tensor> = operands
                    .iter()
                    .map(|o| values[o.index()].as_ref().ok_or(CpuError::Unverified))
                    .collect::<Result<_, _>>()?;
                if matches!(graph.node(id).op, Op::Dense(_)) {
                    observe(id, &args);
                }
                self.node(id, &args)?
            };
            values[id.index()] = Some(result);
            for o in operands {
                remaining[o.index()] -= 1;
                if remaining[o.index()] == 0 {
                    values[o.index()] = None;
                }
            }
        }
        graph
            .outputs()
            .iter()
            .map(|&o| values[o.index()].clone().ok_or(CpuError::Unverified))
            .collect()
    }

    /// Computes node `id` from its operands.
    fn node(&self, id: NodeId, args: &[&Tensor]) -> Result<Tensor, CpuError> {
        let node = self.graph.node(id);
        let ty = self.info.ty(id);
        let out_dims = ty.shape.dims();
        let tensor = |data: Vec<f32>| Tensor {
            shape: ty.shape.clone(),
            data,
        };
        if ty.shape.is_empty() {
            return Ok(tensor(Vec::new()));
        }
        let x = || args[0];
        let axis = |a: i64| resolve_axis(a, x().shape.rank()).ok_or(CpuError::Unverified);
        let prepared = &self.prepared[id.index()];
        let values = |k: usize| match prepared {
            Prepared::Values(v) => Ok(&v[k][..]),
            _ => Err(CpuError::Unverified),
        };
        Ok(match &node.op {
            Op::Input(_) => return Err(CpuError::Unverified),
            Op::Constant(_) => tensor(values(0)?.to_vec()),
            Op::Dense(_) => {
                let Prepared::Dense { matrix, bias, act } = prepared else {
                    return Err(CpuError::Unverified);
                };
                let (inp, out) = (matrix.cols(), matrix.rows());
                let mut y = vec![0.0f32; ty.shape.len()];
                for (xr, yr) in x().data.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
                    matrix.matvec(&self.rt, xr, bias.as_deref(), *act, yr);
                }
                tensor(y)
            }
            Op::MatMul(m) => {
                let out = out_dims[out_dims.len() - 1];
                let bias = m.bias.map(|_| values(1)).transpose()?;
                let rows = ty.shape.len() / out;
                tensor(sprig_ir::interp::matmul_rows(
                    &x().data,
                    values(0)?,
                    rows,
                    out,
                    bias,
                ))
            }
            Op::Conv2d(_) => {
                let Prepared::Conv(conv) = prepared else {
                    return Err(CpuError::Unverified);
                };
                let r = out_dims.len();
                tensor(conv.run(
                    &self.rt,
                    &x().data,
                    x().dims(),
                    [out_dims[r - 2], out_dims[r - 1]],
                ))
            }
            Op::Lstm(_) | Op::LstmStacked(_) => {
                let Prepared::Lstm(lstm) = prepared else {
                    return Err(CpuError::Unverified);
                };
                tensor(lstm.run(&self.rt, &x().data, x().dims()))
            }
            Op::Relu => match prepared {
                Prepared::Fused => x().clone(),
                _ => tensor(ops::relu(&x().data)),
            },
            Op::Sigmoid => tensor(ops::sigmoid(&x().data)),
            Op::Tanh => tensor(ops::tanh(&x().data)),
            Op::Dropout(_) | Op::Identity | Op::Flatten(_) | Op::Reshape(_) => {
                tensor(x().data.clone())
            }
            Op::Softmax(a) => tensor(ops::softmax(&x().data, x().dims(), axis(a.axis)?, false)),
            Op::LogSoftmax(a) => tensor(ops::softmax(&x().data, x().dims(), axis(a.axis)?, true)),
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let kind = if matches!(node.op, Op::MaxPool2d(_)) {
                    Pool::Max
                } else {
                    Pool::Avg
                };
                let r = out_dims.len();
                tensor(ops::pool2d(
                    &x().data,
                    x().dims(),
                    p,
                    kind,
                    [out_dims[r - 2], out_dims[r - 1]],
                ))
            }
            Op::Transpose(t) => {
                let rank = x().shape.rank();
                let perm: Vec<usize> = if t.perm.is_empty() {
                    (0..rank).rev().collect()
                } else {
                    t.perm.clone()
                };
                if perm.len() != rank || perm.iter().any(|&p| p >= rank) {
                    return Err(CpuError::Unverified);
                }
                tensor(ops::transpose(&x().data, x().dims(), &perm))
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let (a, b) = (args[0], args[1]);
                let pair = ((&a.data[..], a.dims()), (&b.data[..], b.dims()));
                tensor(match node.op {
                    Op::Add => ops::binary(pair.0, pair.1, out_dims, |p, q| p + q),
                    Op::Sub => ops::binary(pair.0, pair.1, out_dims, |p, q| p - q),
                    Op::Mul => ops::binary(pair.0, pair.1, out_dims, |p, q| p * q),
                    _ => ops::binary(pair.0, pair.1, out_dims, |p, q| p / q),
                })
            }
            Op::Concat(a) => {
                let parts: Vec<(&[f32], &[usize])> =
                    args.iter().map(|t| (&t.data[..], t.dims())).collect();
                tensor(ops::concat(&parts, axis(a.axis)?))
            }
            Op::BatchNorm(bn) => tensor(ops::batchnorm(
                &x().data,
                x().dims(),
                bn.axis,
                [values(0)?, values(1)?, values(2)?, values(3)?],
                bn.epsilon,
            )),
            Op::ArgMax(a) => tensor(ops::argmax(&x().data, x().dims(), axis(a.axis)?)),
            Op::Slice(sl) => tensor(ops::slice(
                &x().data,
                x().dims(),
                axis(sl.axis)?,
                sl.start,
                sl.len,
            )),
            // Values are carried as f32 and i64 values are exact integers, which truncation keeps.
            Op::Cast(c) => match c.to {
                sprig_ir::DType::I64 => tensor(x().data.iter().map(|v| v.trunc()).collect()),
                sprig_ir::DType::F32 => tensor(x().data.clone()),
            },
            Op::Embedding(e) => {
                let table = &self.graph.weights[e.table];
                let dim = table.ty.shape.dims()[1];
                let data = ops::embedding(&x().data, values(0)?, dim).map_err(|(pos, index)| {
                    CpuError::Index {
                        node: node.name.clone(),
                        position: pos,
                        index,
                        table: table.name.clone(),
                        rows: table.ty.shape.dims()[0],
                    }
                })?;
                tensor(data)
            }
        })
    }
}

/// An axis attribute resolved against `rank` (negative counts from the end).
fn resolve_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}
