//! The verifier: checks a graph and infers every value's type.
//!
//! Contract: `verify(g)` returns [`GraphInfo`] (each node's type and a deterministic topological
//! order) when the graph is well formed, or every problem found (never only the first). Backends
//! and the interpreter accept only graphs that verified. Checks: node names unique, operand
//! positions `0..n` and counts per the op schema, weight handles in the arena, weight shapes that
//! fit each op, inferred shapes of every op, dtypes, no cycles, at least one output, element
//! counts that fit in memory arithmetic. A node whose operand failed is not checked again (no
//! cascades of errors).
//!
//! Each problem is located at a node, a weight or the graph, and its message is self-contained:
//! it names the op, the values (`x`) and weights (`@name`) involved and the numbers. Verification
//! reads only types, never weight values, so seeded random weights stay ungenerated and
//! verifying a large network takes time proportional to its node count.
//!
//! Invariant of the result: for every node `n`, `info.ty(n)` is the type [`infer`] gives for
//! `n`'s op over its operands' types, and its element count fits `usize`.

mod infer;

#[cfg(test)]
mod tests;

pub(crate) use infer::{Operand, infer, resolve_axis, transpose_perm};

/// The type a node with `op` would define over value operands of the given names and types (in
/// operand order), or the message the verifier would give. For front ends that build a graph
/// node by node and need each value's type as they go; it reads no weight values.
pub fn infer_type(
    op: &Op,
    weights: &crate::weights::Weights,
    operands: &[(&str, &TensorType)],
) -> Result<TensorType, String> {
    let named: Vec<Operand<'_>> = operands
        .iter()
        .map(|&(name, ty)| Operand { name, ty })
        .collect();
    infer(op, weights, &named)
}

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::types::TensorType;
use crate::weights::WeightId;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

/// What [`verify`] learned about a well-formed graph.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphInfo {
    /// Every node, operands before users; ties broken by smallest id.
    pub order: Vec<NodeId>,
    types: Vec<Option<TensorType>>,
}

impl GraphInfo {
    /// The type of the value `id` defines.
    pub fn ty(&self, id: NodeId) -> &TensorType {
        self.types[id.index()]
            .as_ref()
            .expect("GraphInfo covers every node of its graph")
    }

    /// The type of the value `id` defines, or `None` for a node this info does not cover.
    pub fn get(&self, id: NodeId) -> Option<&TensorType> {
        self.types.get(id.index()).and_then(Option::as_ref)
    }
}

/// Where a verification problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Graph,
    Node(NodeId),
    Weight(WeightId),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VerifyError {
    pub at: Location,
    pub message: String,
}

/// Collects problems in the order they are found: graph-level lists, weights, names, cycles,
/// then nodes in topological order.
struct Problems(Vec<VerifyError>);

impl Problems {
    fn push(&mut self, at: Location, message: impl Into<String>) {
        self.0.push(VerifyError {
            at,
            message: message.into(),
        });
    }
}

pub fn verify(graph: &Graph) -> Result<GraphInfo, Vec<VerifyError>> {
    let mut problems = Problems(Vec::new());
    check_io_lists(graph, &mut problems);
    let bad_weights = check_weights(graph, &mut problems);
    check_names(graph, &mut problems);

    let order = match graph.topological_order() {
        Ok(order) => order,
        Err(stuck) => {
            report_cycles(graph, &mut problems);
            acyclic_part(graph, &stuck)
        }
    };

    let bound = graph.node_ids().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut types: Vec<Option<TensorType>> = vec![None; bound];
    for &id in &order {
        types[id.index()] = check_node(graph, id, &types, &bad_weights, &mut problems);
    }

    if problems.0.is_empty() {
        Ok(GraphInfo { order, types })
    } else {
        Err(problems.0)
    }
}

/// At least one output; inputs and outputs name live nodes; the input list holds exactly the
/// `input` nodes, each once.
fn check_io_lists(graph: &Graph, problems: &mut Problems) {
    if graph.outputs().is_empty() {
        problems.push(Location::Graph, "the network has no outputs");
    }
    for (k, &id) in graph.outputs().iter().enumerate() {
        if !graph.contains(id) {
            problems.push(
                Location::Graph,
                format!("output #{k} refers to a node that no longer exists"),
            );
        }
    }
    let mut listed = BTreeSet::new();
    for (k, &id) in graph.inputs().iter().enumerate() {
        if !graph.contains(id) {
            problems.push(
                Location::Graph,
                format!("input #{k} refers to a node that no longer exists"),
            );
            continue;
        }
        let node = graph.node(id);
        if !matches!(node.op, Op::Input(_)) {
            problems.push(
                Location::Node(id),
                format!(
                    "`{}` is listed as a network input but is a {} node",
                    node.name,
                    node.op.name()
                ),
            );
        } else if !listed.insert(id) {
            problems.push(
                Location::Node(id),
                format!(
                    "input `{}` is listed twice among the network inputs",
                    node.name
                ),
            );
        }
    }
    for id in graph.node_ids() {
        if matches!(graph.node(id).op, Op::Input(_)) && !graph.inputs().contains(&id) {
            problems.push(
                Location::Node(id),
                format!(
                    "input `{}` is not listed among the network inputs, so it never gets a value",
                    graph.node(id).name
                ),
            );
        }
    }
}

/// Every weight in the arena is f32 with a countable shape, and any values it already holds
/// match that shape. Returns the weights that failed, so their users stay quiet.
fn check_weights(graph: &Graph, problems: &mut Problems) -> BTreeSet<WeightId> {
    let mut bad = BTreeSet::new();
    for (id, w) in graph.weights.iter() {
        if let Err(message) = infer::check_weight_type(w) {
            problems.push(Location::Weight(id), message);
            bad.insert(id);
            continue;
        }
        // Only values already in memory are compared: `values()` on a materialized weight is a
        // reference-count increment, and an ungenerated random weight is generated to its type.
        if w.is_materialized() {
            let (held, want) = (w.values().len(), w.ty.shape.checked_len().unwrap_or(0));
            if held != want {
                problems.push(
                    Location::Weight(id),
                    format!(
                        "@{} : {} holds {held} values but its type needs {want}",
                        w.name, w.ty
                    ),
                );
                bad.insert(id);
            }
        }
    }
    bad
}

/// Node names are unique; a repeated name is reported at every node after the first.
fn check_names(graph: &Graph, problems: &mut Problems) {
    let mut first: HashMap<&str, NodeId> = HashMap::new();
    for id in graph.node_ids() {
        let name = graph.node(id).name.as_str();
        if let Some(&earlier) = first.get(name) {
            problems.push(
                Location::Node(id),
                format!(
                    "duplicate name: `{name}` is already defined (by a {} node)",
                    graph.node(earlier).op.name()
                ),
            );
        } else {
            first.insert(name, id);
        }
    }
}

/// The most names a cycle message lists before eliding the middle of the loop.
const CYCLE_SHOWN: usize = 12;

/// One error per cycle (strongly connected component with a loop), at its smallest node id,
/// naming the nodes around the loop in data-flow order. Kosaraju's algorithm runs on petgraph's
/// iterative walkers, so a long cycle cannot exhaust the stack.
fn report_cycles(graph: &Graph, problems: &mut Problems) {
    let by_index: HashMap<usize, NodeId> = graph.node_ids().map(|id| (id.index(), id)).collect();
    let mut cycles: Vec<Vec<NodeId>> = petgraph::algo::kosaraju_scc(graph.petgraph())
        .into_iter()
        .map(|scc| {
            let mut ids: Vec<NodeId> = scc.iter().map(|ix| by_index[&ix.index()]).collect();
            ids.sort_unstable();
            ids
        })
        .filter(|ids| ids.len() > 1 || graph.users(ids[0]).iter().any(|(u, _)| *u == ids[0]))
        .collect();
    cycles.sort_unstable();
    for scc in cycles {
        let start = scc[0];
        let path = loop_through(graph, start, &scc.iter().copied().collect());
        let names: Vec<&str> = path.iter().map(|&n| graph.node(n).name.as_str()).collect();
        // A long loop shows its first and last steps and how many values it passes.
        let through = if names.len() > CYCLE_SHOWN {
            let tail = &names[names.len() - CYCLE_SHOWN / 2..];
            format!(
                "{} -> ... -> {} ({} values on the cycle)",
                names[..CYCLE_SHOWN / 2].join(" -> "),
                tail.join(" -> "),
                names.len() - 1
            )
        } else {
            names.join(" -> ")
        };
        problems.push(
            Location::Node(start),
            format!("cycle: this value depends on itself through {through}"),
        );
    }
}

/// The shortest loop `start -> ... -> start` along operand-to-user edges inside `scc`.
fn loop_through(graph: &Graph, start: NodeId, scc: &BTreeSet<NodeId>) -> Vec<NodeId> {
    let mut parent: HashMap<NodeId, NodeId> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for (user, _) in graph.users(n) {
            if user == start {
                let mut path = vec![start];
                let mut at = n;
                while at != start {
                    path.push(at);
                    at = parent[&at];
                }
                path.push(start);
                // `path` is start, n, ..., start with the middle walked backwards; flip it.
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if scc.contains(&user) && user != start && !parent.contains_key(&user) {
                parent.insert(user, n);
                queue.push_back(user);
            }
        }
    }
    // Every strongly connected component with a loop has one through each of its nodes.
    vec![start, start]
}

/// A topological order of the nodes that are neither on a cycle nor downstream of one (`stuck`
/// holds those), ties broken by smallest id. Such nodes have no stuck operands.
fn acyclic_part(graph: &Graph, stuck: &[NodeId]) -> Vec<NodeId> {
    let stuck: BTreeSet<NodeId> = stuck.iter().copied().collect();
    let live: Vec<NodeId> = graph.node_ids().filter(|id| !stuck.contains(id)).collect();
    let mut pending: HashMap<NodeId, usize> = live
        .iter()
        .map(|&id| (id, graph.operands(id).len()))
        .collect();
    let mut ready: BinaryHeap<Reverse<NodeId>> = live
        .iter()
        .filter(|id| pending[id] == 0)
        .map(|&id| Reverse(id))
        .collect();
    let mut order = Vec::with_capacity(live.len());
    while let Some(Reverse(id)) = ready.pop() {
        order.push(id);
        for (user, _) in graph.users(id) {
            if let Some(n) = pending.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    ready.push(Reverse(user));
                }
            }
        }
    }
    order
}

/// Checks one node whose operands come earlier in the order; returns its type, or `None` when it
/// failed (reported here) or one of its operands or weights failed (reported elsewhere).
fn check_node(
    graph: &Graph,
    id: NodeId,
    types: &[Option<TensorType>],
    bad_weights: &BTreeSet<WeightId>,
    problems: &mut Problems,
) -> Option<TensorType> {
    let node = graph.node(id);
    let op = node.op.name();
    let positions = graph.operand_positions(id);
    if positions.iter().enumerate().any(|(i, &p)| p as usize != i) {
        problems.push(
            Location::Node(id),
            format!(
                "{op}: operand positions are {positions:?} but must be exactly 0..{}",
                positions.len()
            ),
        );
        return None;
    }
    let operands = graph.operands(id);
    let mut operand_types = Vec::with_capacity(operands.len());
    for &o in &operands {
        // An operand without a type failed (or sits on a cycle) and was reported there.
        let ty = types.get(o.index()).and_then(Option::as_ref)?;
        operand_types.push(Operand {
            name: &graph.node(o).name,
            ty,
        });
    }
    if node.op.weights().iter().any(|w| bad_weights.contains(w)) {
        return None;
    }
    match infer(&node.op, &graph.weights, &operand_types) {
        Ok(ty) if ty.shape.checked_len().is_none() => {
            problems.push(
                Location::Node(id),
                format!("{op}: the result {ty} has more elements than fit in memory (the count overflows)"),
            );
            None
        }
        Ok(ty) => Some(ty),
        Err(message) => {
            problems.push(Location::Node(id), message);
            None
        }
    }
}
