//! The targets' cost models: what one e-node costs on EIE or on the CPU, so extraction picks the
//! cheapest equivalent graph for the target.
//!
//! Contract: costs are `u64` and every sum saturates, so an absurd graph costs `u64::MAX` rather
//! than wrapping. A cost depends only on shapes, attributes and weight non-zero counts, never on
//! timing or on whether a seeded weight has been generated yet: a seeded random weight counts
//! `density × len` non-zeros (its generator's expectation), every other weight its actual
//! non-zeros. Costs rank graphs; they are estimates, not simulations.
//!
//! - EIE ([`EieCost`]): estimated cycles. A matrix-vector product of `rows × cols` with `nnz`
//!   non-zeros on `pes` PEs (rows interleaved) streams every column once; a column costs the
//!   larger of one cycle (the activation broadcast) and the entries its busiest PE holds, counted
//!   with the filler entries 4-bit relative indices need across runs of 16 zeros; each layer adds
//!   a fixed overhead (pipeline fill and drain, pointer reads). Element-wise work costs one cycle
//!   per `pes` elements plus a small overhead. A convolution is its weight matrix applied at
//!   every output position.
//! - CPU ([`CpuCost`]): bytes moved times [`BYTE_WEIGHT`] plus FLOPs. A weight moves as packed
//!   bytes (sparse: 4-byte value and 2-byte index per non-zero plus column pointers, when that
//!   is smaller than dense), activations move in and out at 4 bytes per element.
//! - A `matmul` (weight `[in, out]`) runs as a plain loop over its unpacked weight: it costs
//!   the `out × in` product with every entry stored, plus one, so it is never cheaper than the
//!   `dense` it normalises to (costs grow with the non-zero count).
//! - A `slice` is a copy: on EIE the host copies the elements between buffers, which takes no
//!   PE cycle (as in the simulator), so it costs nothing; on the CPU its elements move in and
//!   out. Extraction charges a slice its share of its operand's cost in proportion to the
//!   elements it takes, so the slices of one stacked product divide that product's cost among
//!   them instead of each paying for all of it (tree costs would count a shared product once
//!   per user).

use super::lang::{ENode, SGraph};
use egg::{CostFunction, Id};
use sprig_ir::{Op, TensorType, WeightId, WeightInit, Weights};

/// Which cost model ranks the graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Eie,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Eie => "eie",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Target::Cpu => "weighted bytes + flops",
            Target::Eie => "estimated cycles",
        }
    }
}

/// EIE's PE count, the default of the EIE cost model.
pub const EIE_PES: u64 = 64;
/// Cycles a layer costs besides its entries (pipeline fill and drain, pointer reads).
pub const EIE_LAYER_OVERHEAD: u64 = 64;
/// A zero run of this many entries needs a filler entry (4-bit relative indices).
pub const EIE_MAX_RUN: i32 = 16;
/// How much a byte moved costs relative to one floating-point operation on the CPU.
pub const BYTE_WEIGHT: u64 = 4;

/// Non-zero count of a weight, without generating a seeded one.
pub fn nonzeros(weights: &Weights, id: WeightId) -> u64 {
    let w = &weights[id];
    match &w.init {
        WeightInit::Random(r) => (r.density.clamp(0.0, 1.0) * w.len() as f64).round() as u64,
        _ => w.values().iter().filter(|&&v| v != 0.0).count() as u64,
    }
}

/// The shape of a weight as `[rows, cols]`, the trailing axes folded into the columns.
pub fn matrix(weights: &Weights, id: WeightId) -> (u64, u64) {
    let dims = weights[id].ty.shape.dims();
    let rows = dims.first().copied().unwrap_or(1) as u64;
    let cols = dims.iter().skip(1).product::<usize>() as u64;
    (rows, cols)
}

fn elements(ty: &TensorType) -> u64 {
    ty.shape.dims().iter().product::<usize>() as u64
}

/// A matrix-vector product on EIE: cycles for one input vector, overhead included.
pub fn eie_matvec(rows: u64, cols: u64, nnz: u64, pes: u64) -> u64 {
    if rows == 0 || cols == 0 {
        return EIE_LAYER_OVERHEAD;
    }
    let density = (nnz as f64 / (rows * cols) as f64).clamp(0.0, 1.0);
    let rows_per_pe = rows.div_ceil(pes) as f64;
    let entries = rows_per_pe * density;
    // A stored entry is preceded by a zero run longer than the index can span with
    // probability (1 - d)^16; each such run costs a filler entry.
    let fillers = entries * (1.0 - density).powi(EIE_MAX_RUN);
    let per_column = (entries + fillers).max(1.0);
    ((cols as f64 * per_column).ceil() as u64).saturating_add(EIE_LAYER_OVERHEAD)
}

/// A `rows × cols` weight with `nnz` non-zeros (and a bias with `bias_nnz`) applied to `times`
/// input vectors on `target`.
pub fn product_cost(
    target: Target,
    rows: u64,
    cols: u64,
    nnz: u64,
    bias_nnz: u64,
    times: u64,
) -> u64 {
    match target {
        Target::Eie => eie_matvec(rows, cols, nnz, EIE_PES)
            .saturating_mul(times)
            .saturating_add(bias_nnz.div_ceil(EIE_PES)),
        Target::Cpu => cpu_weight_bytes(rows, cols, nnz)
            .saturating_add(bias_nnz.saturating_mul(4))
            .saturating_mul(BYTE_WEIGHT)
            .saturating_add(nnz.saturating_mul(2).saturating_mul(times)),
    }
}

/// Packed bytes of a `rows × cols` weight with `nnz` non-zeros on the CPU.
pub fn cpu_weight_bytes(rows: u64, cols: u64, nnz: u64) -> u64 {
    let dense = rows.saturating_mul(cols).saturating_mul(4);
    let sparse = nnz
        .saturating_mul(6)
        .saturating_add(cols.saturating_add(1).saturating_mul(4));
    dense.min(sparse)
}

/// A slice of `elements` elements on `target`: a copy (see the module contract).
pub fn slice_cost(target: Target, elements: u64) -> u64 {
    match target {
        Target::Eie => 0,
        Target::Cpu => elements.saturating_mul(8 * BYTE_WEIGHT),
    }
}

/// The EIE cost model (see the module contract): estimated cycles.
#[derive(Debug)]
pub struct EieCost<'a> {
    pub egraph: &'a SGraph,
}

/// The CPU cost model (see the module contract): weighted bytes moved plus FLOPs.
#[derive(Debug)]
pub struct CpuCost<'a> {
    pub egraph: &'a SGraph,
}

/// The cost of `enode` alone, without its children, on `target`.
pub fn own_cost(target: Target, egraph: &SGraph, enode: &ENode) -> u64 {
    {
        let weights = &egraph.analysis.weights;
        let ty_of = |c: Id| egraph[c].data.ty.clone();
        let input = enode.children.first().and_then(|&c| ty_of(c));
        let in_elems = input.as_ref().map_or(0, elements);
        let out = super::lang::node_type(egraph, enode);
        let out_elems = out.as_ref().map_or(0, elements);
        let vectors = |ty: &Option<TensorType>| -> u64 {
            // Leading axes of a dense input are independent vectors.
            ty.as_ref().map_or(1, |t| {
                let d = t.shape.dims();
                d[..d.len().saturating_sub(1)].iter().product::<usize>() as u64
            })
        };
        let product = |w: WeightId, bias: Option<WeightId>, times: u64| -> u64 {
            let (rows, cols) = matrix(weights, w);
            let bias_nnz = bias.map_or(0, |b| nonzeros(weights, b));
            product_cost(target, rows, cols, nonzeros(weights, w), bias_nnz, times)
        };
        let elementwise = |n: u64| -> u64 {
            match target {
                Target::Eie => n.div_ceil(EIE_PES).saturating_add(1),
                Target::Cpu => n.saturating_mul(8 * BYTE_WEIGHT).saturating_add(n),
            }
        };
        match &enode.op {
            Op::Input(_) | Op::Constant(_) => 0,
            Op::Dense(d) => product(d.weight, d.bias, vectors(&input)),
            Op::MatMul(m) => {
                // Unpacked: the plain loop touches every entry, so the weight counts as fully
                // dense; one more than any dense form of the same product.
                let (inp, out) = matrix(weights, m.weight);
                let bias_nnz = m.bias.map_or(0, |b| nonzeros(weights, b));
                product_cost(
                    target,
                    out,
                    inp,
                    out.saturating_mul(inp),
                    bias_nnz,
                    vectors(&input),
                )
                .saturating_add(1)
            }
            Op::Conv2d(c) => {
                let positions = out.as_ref().map_or(1, |t| {
                    let d = t.shape.dims();
                    d[d.len().saturating_sub(2)..].iter().product::<usize>() as u64
                        * d[..d.len().saturating_sub(3)].iter().product::<usize>() as u64
                });
                product(c.weight, c.bias, positions.max(1))
            }
            Op::Lstm(l) => {
                let steps = input.as_ref().map_or(1, |t| {
                    let d = t.shape.dims();
                    d[..d.len().saturating_sub(1)].iter().product::<usize>() as u64
                });
                let hidden = matrix(weights, l.w).0 / 4;
                product(l.w, l.b, steps)
                    .saturating_add(product(l.r, None, steps))
                    .saturating_add(elementwise(hidden * 4).saturating_mul(steps))
            }
            Op::LstmStacked(l) => {
                let steps = input.as_ref().map_or(1, |t| {
                    let d = t.shape.dims();
                    d[..d.len().saturating_sub(1)].iter().product::<usize>() as u64
                });
                let hidden = matrix(weights, l.weight).0 / 4;
                product(l.weight, None, steps)
                    .saturating_add(elementwise(hidden * 4).saturating_mul(steps))
            }
            Op::Slice(_) => slice_cost(target, out_elems),
            Op::Embedding(e) => {
                let (_, dim) = matrix(weights, e.table);
                elementwise(in_elems.saturating_mul(dim))
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Concat(_) => {
                let operands: u64 = enode
                    .children
                    .iter()
                    .map(|&c| ty_of(c).as_ref().map_or(0, elements))
                    .sum();
                elementwise(operands.max(out_elems))
            }
            _ => elementwise(in_elems.max(out_elems)),
        }
    }
}

/// `own` plus the children's costs; a slice pays only its share of its operand (the module
/// contract).
fn tree_cost(egraph: &SGraph, own: u64, enode: &ENode, costs: &mut dyn FnMut(Id) -> u64) -> u64 {
    if let (Op::Slice(_), [operand]) = (&enode.op, enode.children.as_slice()) {
        let taken = super::lang::node_type(egraph, enode).map_or(0, |t| elements(&t));
        let whole = egraph[*operand].data.ty.as_ref().map_or(0, elements);
        let share = (costs(*operand) as u128 * taken as u128).div_ceil(whole.max(1) as u128);
        return own.saturating_add(u64::try_from(share).unwrap_or(u64::MAX));
    }
    enode
        .children
        .iter()
        .fold(own, |acc, &c| acc.saturating_add(costs(c)))
}

impl CostFunction<ENode> for EieCost<'_> {
    type Cost = u64;

    fn cost<C>(&mut self, enode: &ENode, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        let own = own_cost(Target::Eie, self.egraph, enode);
        tree_cost(self.egraph, own, enode, &mut costs)
    }
}

impl CostFunction<ENode> for CpuCost<'_> {
    type Cost = u64;

    fn cost<C>(&mut self, enode: &ENode, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        let own = own_cost(Target::Cpu, self.egraph, enode);
        tree_cost(self.egraph, own, enode, &mut costs)
    }
}
