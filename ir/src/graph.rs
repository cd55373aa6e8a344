//! The graph: named value nodes over a petgraph `StableDiGraph`, plus the weights arena.
//!
//! Invariants:
//! - [`NodeId`]s survive the removal of other nodes (the graph is stable), so passes can hold ids
//!   across rewrites.
//! - An edge `a -> b` with weight `k` means "`a` is operand `k` of `b`"; operand positions of a
//!   node are exactly `0..n` once the graph verifies.
//! - Every node defines exactly one value, named by [`Node::name`]; names are unique in a graph
//!   that verifies.
//! - Graph equality is structural and independent of node ids: same network name, weights file,
//!   weights, the same named nodes with the same ops and operand names, the same input and output
//!   order. Spans never take part.

use crate::op::Op;
use crate::types::Span;
use crate::weights::{Weight, WeightId, Weights};
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

/// A node handle; stays valid while the node exists.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex<u32>);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0.index())
    }
}

/// One operation and the value it defines.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub span: Option<Span>,
}

/// A network: inputs, operations, outputs and the weights they use.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The network's name (`network NAME`).
    pub name: String,
    /// The weights file named in the description, as written (resolved by the front end).
    pub weights_file: Option<String>,
    pub weights: Weights,
    graph: StableDiGraph<Node, u32>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a network input; its op is [`Op::Input`] with the declared type.
    pub fn add_input(&mut self, name: impl Into<String>, ty: crate::TensorType) -> NodeId {
        let id = self.add_node(name, Op::Input(crate::op::Input { ty }), &[]);
        self.inputs.push(id);
        id
    }

    /// Adds a node whose value operands are `operands`, in order.
    pub fn add_node(&mut self, name: impl Into<String>, op: Op, operands: &[NodeId]) -> NodeId {
        let id = NodeId(self.graph.add_node(Node {
            name: name.into(),
            op,
            span: None,
        }));
        for (pos, &operand) in operands.iter().enumerate() {
            self.graph.add_edge(operand.0, id.0, pos as u32);
        }
        id
    }

    /// Makes `operand` operand number `pos` of `user`.
    pub fn add_edge_at(&mut self, operand: NodeId, user: NodeId, pos: u32) {
        self.graph.add_edge(operand.0, user.0, pos);
    }

    pub fn add_weight(&mut self, weight: Weight) -> WeightId {
        self.weights.add(weight)
    }

    /// Marks a value as a network output (outputs keep the order they were added in).
    pub fn add_output(&mut self, id: NodeId) {
        self.outputs.push(id);
    }

    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.graph[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.graph[id.0]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.graph.contains_node(id.0)
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// All live nodes in id order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.graph.node_indices().map(NodeId)
    }

    /// The node named `name`, if any (the first one in id order).
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.node_ids().find(|&id| self.node(id).name == name)
    }

    /// The value operands of `id`, by operand position.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(u32, NodeId)> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect();
        edges.sort_unstable();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// The operand positions of `id`, sorted (for the verifier's arity checks).
    pub fn operand_positions(&self, id: NodeId) -> Vec<u32> {
        let mut pos: Vec<u32> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| *e.weight())
            .collect();
        pos.sort_unstable();
        pos
    }

    /// The nodes that use `id`, with the operand position, sorted by user id then position.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, u32)> {
        let mut users: Vec<(NodeId, u32)> = self
            .graph
            .edges_directed(id.0, Direction::Outgoing)
            .map(|e| (NodeId(e.target()), *e.weight()))
            .collect();
        users.sort_unstable();
        users
    }

    /// Makes every use of `old` (as an operand or an output) a use of `new`. The inputs list is
    /// left alone: an input stays an input even when nothing uses it any more.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        for (user, pos) in self.users(old) {
            let edge = self
                .graph
                .find_edge(old.0, user.0)
                .expect("user edge exists");
            self.graph.remove_edge(edge);
            self.graph.add_edge(new.0, user.0, pos);
        }
        for out in &mut self.outputs {
            if *out == old {
                *out = new;
            }
        }
    }

    /// Removes a node and its edges; it must no longer be an input or output.
    pub fn remove_node(&mut self, id: NodeId) -> Node {
        self.inputs.retain(|&i| i != id);
        self.outputs.retain(|&o| o != id);
        self.graph.remove_node(id.0).expect("node exists")
    }

    /// A deterministic topological order (ready nodes taken smallest id first), or the nodes on
    /// cycles when there is none.
    pub fn topological_order(&self) -> Result<Vec<NodeId>, Vec<NodeId>> {
        let mut pending: BTreeMap<NodeId, usize> = self
            .node_ids()
            .map(|id| {
                let n = self.graph.edges_directed(id.0, Direction::Incoming).count();
                (id, n)
            })
            .collect();
        let mut ready: BinaryHeap<std::cmp::Reverse<NodeId>> = pending
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(&id, _)| std::cmp::Reverse(id))
            .collect();
        let mut order = Vec::with_capacity(pending.len());
        while let Some(std::cmp::Reverse(id)) = ready.pop() {
            order.push(id);
            for e in self.graph.edges_directed(id.0, Direction::Outgoing) {
                let n = pending.get_mut(&NodeId(e.target())).expect("live node");
                *n -= 1;
                if *n == 0 {
                    ready.push(std::cmp::Reverse(NodeId(e.target())));
                }
            }
        }
        if order.len() == pending.len() {
            Ok(order)
        } else {
            let done: std::collections::BTreeSet<NodeId> = order.into_iter().collect();
            Err(pending
                .keys()
                .filter(|id| !done.contains(id))
                .copied()
                .collect())
        }
    }

    /// Read access to the underlying petgraph, for graph algorithms.
    pub fn petgraph(&self) -> &StableDiGraph<Node, u32> {
        &self.graph
    }

    /// The signature of every node by name: op and operand names, for structural equality.
    fn by_name(&self) -> BTreeMap<&str, (&Op, Vec<&str>)> {
        self.node_ids()
            .map(|id| {
                let node = self.node(id);
                let operands = self
                    .operands(id)
                    .into_iter()
                    .map(|o| self.node(o).name.as_str())
                    .collect();
                (node.name.as_str(), (&node.op, operands))
            })
            .collect()
    }

    fn names(&self, ids: &[NodeId]) -> Vec<&str> {
        ids.iter().map(|&i| self.node(i).name.as_str()).collect()
    }
}

impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.name == other.name
            && self.weights_file == other.weights_file
            && self.node_count() == other.node_count()
            && self.names(&self.inputs) == other.names(&other.inputs)
            && self.names(&self.outputs) == other.names(&other.outputs)
            && self.by_name() == other.by_name()
            && self.weights == other.weights
    }
}
