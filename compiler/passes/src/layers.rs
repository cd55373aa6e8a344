//! Compressible layers: the weight matrices of dense, conv2d, lstm (separate or stacked) and
//! embedding ops, seen as `rows × row_len` matrices (output rows first, as the IR stores them),
//! and their biases.
//!
//! Invariant: each weight appears once (a weight shared by several nodes is listed at its first
//! user in the graph's topological order), so a pass never compresses a weight twice.
//!
//! A `matmul` (weight `[in, out]`) is no layer: its rows are inputs, not outputs. The
//! compression passes refuse a graph that still holds one ([`require_dense_normal_form`]), so
//! none is ever skipped unnoticed; `simplify` rewrites every matmul to `dense`.

use crate::manager::PassError;
use crate::options::LayerNames;
use rayon::prelude::*;
use sprig_ir::{Graph, GraphInfo, NodeId, Op, WeightId};
use std::collections::HashSet;

/// Fully connected or convolutional: the paper's defaults differ between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Fc,
    Conv,
}

impl LayerKind {
    /// The paper's width for this kind of layer, used for both weight codes and relative
    /// indices: 8 bits for conv layers, 5 for fc layers.
    pub fn default_bits(self) -> u64 {
        match self {
            LayerKind::Conv => 8,
            LayerKind::Fc => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Fc => "fc",
            LayerKind::Conv => "conv",
        }
    }
}

/// Elements per parallel work unit in the passes' scans over a layer.
pub const CHUNK: usize = 1 << 20;

/// Positions of the non-zero values, in increasing order (scanned in parallel chunks).
pub fn nonzero_positions(values: &[f32]) -> Vec<usize> {
    values
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(i, _)| c * CHUNK + i)
                .collect::<Vec<usize>>()
        })
        .collect::<Vec<_>>()
        .concat()
}

/// One compressible weight.
#[derive(Clone, Debug)]
pub struct Layer {
    pub node: NodeId,
    pub node_name: String,
    pub weight: WeightId,
    pub weight_name: String,
    pub kind: LayerKind,
    /// Whether this is a bias (kept dense unless asked otherwise).
    pub is_bias: bool,
    /// Output rows (the first axis).
    pub rows: usize,
    /// Elements per row.
    pub row_len: usize,
}

impl Layer {
    pub fn names(&self) -> LayerNames<'_> {
        LayerNames {
            node: &self.node_name,
            weight: &self.weight_name,
            kind: self.kind.name(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows * self.row_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Refuses a graph that still holds a `matmul`, naming every such node: `pass` works on output
/// rows, which only the `dense` normal form stores first (run `simplify` before it, as the
/// presets do).
pub fn require_dense_normal_form(
    graph: &Graph,
    info: &GraphInfo,
    pass: &str,
) -> Result<(), PassError> {
    let matmuls: Vec<String> = info
        .order
        .iter()
        .filter(|&&id| matches!(graph.node(id).op, Op::MatMul(_)))
        .map(|&id| format!("`{}`", graph.node(id).name))
        .collect();
    if matmuls.is_empty() {
        return Ok(());
    }
    Err(PassError::failed(
        pass,
        format!(
            "{} {} (weight [in, out]), which this pass does not compress; run simplify first (it rewrites every matmul to dense, whose weight is [out, in])",
            matmuls.join(", "),
            if matmuls.len() == 1 {
                "is a matmul"
            } else {
                "are matmuls"
            }
        ),
    ))
}

/// Every compressible weight of a verified graph, in topological order of their first users.
pub fn layers(graph: &Graph, info: &GraphInfo) -> Vec<Layer> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in &info.order {
        let node = graph.node(id);
        let (kind, mains, biases): (LayerKind, Vec<WeightId>, Vec<WeightId>) = match &node.op {
            Op::Dense(d) => (LayerKind::Fc, vec![d.weight], d.bias.into_iter().collect()),
            Op::Conv2d(c) => (
                LayerKind::Conv,
                vec![c.weight],
                c.bias.into_iter().collect(),
            ),
            Op::Lstm(l) => (LayerKind::Fc, vec![l.w, l.r], l.b.into_iter().collect()),
            Op::LstmStacked(l) => (LayerKind::Fc, vec![l.weight], vec![]),
            Op::Embedding(e) => (LayerKind::Fc, vec![e.table], vec![]),
            _ => continue,
        };
        let tagged = mains
            .into_iter()
            .map(|w| (w, false))
            .chain(biases.into_iter().map(|w| (w, true)));
        for (w, is_bias) in tagged {
            if !seen.insert(w) {
                continue;
            }
            let weight = &graph.weights[w];
            let dims = weight.ty.shape.dims();
            let rows = dims.first().copied().unwrap_or(1);
            let row_len = dims.iter().skip(1).product();
            out.push(Layer {
                node: id,
                node_name: node.name.clone(),
                weight: w,
                weight_name: weight.name.clone(),
                kind,
                is_bias,
                rows,
                row_len,
            });
        }
    }
    out
}
