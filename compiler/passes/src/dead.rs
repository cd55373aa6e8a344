//! Removal of dead neurons after pruning: in a chain `dense A → unary ops → dense B`, a neuron
//! of A whose weight row is all zero (it has no inputs) or whose column of B is all zero (its
//! output is never used) is removed from A (row and bias entry) and from B (column).
//!
//! Invariants: the network computes the same function. A neuron with no inputs outputs the
//! constant f(bias) after the unary ops; its contribution `B[:, i] · f(b_i)` is folded into B's
//! bias (so such a neuron is removed only when B has a bias, or the constant is zero). Only
//! chains whose intermediate values have a single user and are not outputs are touched, only
//! weights used by no other node, and only layers not yet weight-shared (the codes would go
//! stale).

use sprig_ir::encoding::Pruned;
use sprig_ir::{Graph, NodeId, Op, TensorType, Weight, WeightId};

/// One dense → unary* → dense chain.
struct Chain {
    a_weight: WeightId,
    a_bias: Option<WeightId>,
    unary: Vec<Op>,
    b_weight: WeightId,
    b_bias: Option<WeightId>,
}

fn apply_unary(ops: &[Op], mut x: f32) -> f32 {
    for op in ops {
        x = match op {
            Op::Relu => x.max(0.0),
            Op::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Op::Tanh => x.tanh(),
            _ => x,
        };
    }
    x
}

fn uses(graph: &Graph, w: WeightId) -> usize {
    graph
        .node_ids()
        .map(|n| {
            graph
                .node(n)
                .op
                .weights()
                .iter()
                .filter(|&&x| x == w)
                .count()
        })
        .sum()
}

/// The chain starting at dense node `a`, if it qualifies.
fn chain_from(graph: &Graph, a: NodeId) -> Option<Chain> {
    let Op::Dense(da) = &graph.node(a).op else {
        return None;
    };
    let mut unary = Vec::new();
    let mut at = a;
    loop {
        if graph.outputs().contains(&at) {
            return None;
        }
        let [(user, 0)] = graph.users(at)[..] else {
            return None;
        };
        match &graph.node(user).op {
            op @ (Op::Relu | Op::Sigmoid | Op::Tanh | Op::Identity | Op::Dropout(_)) => {
                unary.push(op.clone());
                at = user;
            }
            Op::Dense(db) => {
                let weights = [Some(da.weight), da.bias, Some(db.weight), db.bias];
                let single_use = weights.iter().flatten().all(|&w| uses(graph, w) == 1);
                let unshared = weights
                    .iter()
                    .flatten()
                    .all(|&w| graph.weights[w].encoding.shared.is_none());
                let two_d = graph.weights[da.weight].ty.shape.rank() == 2
                    && graph.weights[db.weight].ty.shape.rank() == 2;
                return (single_use && unshared && two_d).then_some(Chain {
                    a_weight: da.weight,
                    a_bias: da.bias,
                    unary,
                    b_weight: db.weight,
                    b_bias: db.bias,
                });
            }
            _ => return None,
        }
    }
}

/// Replaces a weight's values and shape, keeping its name and recording pruning statistics.
fn replace(graph: &mut Graph, id: WeightId, dims: Vec<usize>, values: Vec<f32>) {
    let old = &graph.weights[id];
    let pruned = old.encoding.pruned.is_some();
    let mut weight = Weight::computed(old.name.clone(), TensorType::f32(dims), values)
        .expect("dimensions computed from the values");
    weight.span = old.span;
    if pruned {
        let values = weight.values();
        weight.encoding.pruned = Some(Pruned {
            nonzeros: values.iter().filter(|v| **v != 0.0).count() as u64,
            len: values.len() as u64,
        });
    }
    *graph.weights.get_mut(id) = weight;
}

/// Removes dead neurons from every qualifying chain; returns one note per chain changed.
pub fn remove_dead_neurons(graph: &mut Graph) -> Vec<String> {
    let mut notes = Vec::new();
    let dense: Vec<NodeId> = graph
        .node_ids()
        .filter(|&n| matches!(graph.node(n).op, Op::Dense(_)))
        .collect();
    for a in dense {
        let Some(chain) = chain_from(graph, a) else {
            continue;
        };
        let wa = graph.weights[chain.a_weight].values();
        let wb = graph.weights[chain.b_weight].values();
        let (m, n) = {
            let d = graph.weights[chain.a_weight].ty.shape.dims();
            (d[0], d[1])
        };
        let p = graph.weights[chain.b_weight].ty.shape.dims()[0];
        let ba = chain.a_bias.map(|b| graph.weights[b].values());
        let mut bb: Option<Vec<f32>> = chain.b_bias.map(|b| graph.weights[b].values().to_vec());
        let mut keep = Vec::with_capacity(m);
        let (mut no_inputs, mut unused) = (0, 0);
        for i in 0..m {
            let column_used = (0..p).any(|r| wb[r * m + i] != 0.0);
            if !column_used {
                unused += 1;
                continue;
            }
            let row_empty = wa[i * n..(i + 1) * n].iter().all(|&v| v == 0.0);
            if row_empty {
                let constant = apply_unary(&chain.unary, ba.as_ref().map_or(0.0, |b| b[i]));
                match (&mut bb, constant == 0.0) {
                    (_, true) => {}
                    (Some(bb), false) => {
                        for (r, b) in bb.iter_mut().enumerate() {
                            *b += wb[r * m + i] * constant;
                        }
                    }
                    (None, false) => {
                        keep.push(i);
                        continue;
                    }
                }
                no_inputs += 1;
                continue;
            }
            keep.push(i);
        }
        if keep.len() == m || keep.is_empty() {
            continue;
        }
        let k = keep.len();
        let new_a: Vec<f32> = keep
            .iter()
            .flat_map(|&i| wa[i * n..(i + 1) * n].iter().copied())
            .collect();
        let new_b: Vec<f32> = (0..p)
            .flat_map(|r| keep.iter().map(move |&i| (r, i)))
            .map(|(r, i)| wb[r * m + i])
            .collect();
        let name = graph.weights[chain.a_weight].name.clone();
        replace(graph, chain.a_weight, vec![k, n], new_a);
        replace(graph, chain.b_weight, vec![p, k], new_b);
        if let (Some(id), Some(ba)) = (chain.a_bias, &ba) {
            replace(graph, id, vec![k], keep.iter().map(|&i| ba[i]).collect());
        }
        if let (Some(id), Some(bb)) = (chain.b_bias, bb) {
            replace(graph, id, vec![p], bb);
        }
        notes.push(format!(
            "@{name}: removed {} neuron(s) ({no_inputs} with no inputs, {unused} unused): {m} → {k}",
            m - k
        ));
    }
    notes
}
