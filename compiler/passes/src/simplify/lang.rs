//! The e-graph language of sprig graphs, its analysis, and the conversion of a [`Graph`] into an
//! e-graph.
//!
//! Invariants:
//! - An [`ENode`] is one IR op over child e-classes (its value operands, in operand order).
//!   Weights stay handles inside the op and attributes stay in the op: both are payload, never
//!   child e-classes, so two e-nodes are equal exactly when their ops (attributes and weight
//!   handles) and children are equal.
//! - Network inputs carry their position in the graph's input list, so two inputs of the same
//!   type never merge.
//! - The analysis owns the weights arena the e-graph's handles point into: the graph's weights
//!   first, then every weight a rewrite computed, appended and never removed during a run.
//! - Every e-class knows its tensor type (all e-nodes of a class define the same value) and the
//!   earliest original node in it, which names the class when the graph is rebuilt.

use egg::{Analysis, DidMerge, EGraph, Id, Language};
use sprig_ir::{Graph, GraphInfo, NodeId, Op, OpKind, TensorType, WeightId, Weights};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// One IR op over child e-classes.
#[derive(Clone, Debug)]
pub struct ENode {
    pub op: Op,
    /// The position in the graph's input list for [`Op::Input`]; 0 for every other op.
    pub input: usize,
    pub children: Vec<Id>,
}

impl ENode {
    pub fn new(op: Op, children: Vec<Id>) -> ENode {
        ENode {
            op,
            input: 0,
            children,
        }
    }

    /// The op's identity without its children: kind, input position, weight handles and
    /// attributes in their text form (distinct values print distinctly).
    fn key(&self) -> (OpKind, usize, Vec<WeightId>, String) {
        let attrs = self
            .op
            .attrs()
            .iter()
            .map(|(n, v)| format!("{n}={v};"))
            .collect::<String>();
        let extra = match &self.op {
            Op::Input(i) => format!("{}", i.ty),
            _ => String::new(),
        };
        (
            self.op.kind(),
            self.input,
            self.op.weights(),
            attrs + &extra,
        )
    }
}

impl PartialEq for ENode {
    fn eq(&self, other: &ENode) -> bool {
        self.input == other.input && self.children == other.children && self.op == other.op
    }
}

impl Eq for ENode {}

impl Hash for ENode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.op.kind().hash(state);
        self.input.hash(state);
        self.op.weights().hash(state);
        self.children.hash(state);
    }
}

impl PartialOrd for ENode {
    fn partial_cmp(&self, other: &ENode) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ENode {
    fn cmp(&self, other: &ENode) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.children.cmp(&other.children))
    }
}

impl Language for ENode {
    type Discriminant = (OpKind, usize);

    fn discriminant(&self) -> Self::Discriminant {
        (self.op.kind(), self.input)
    }

    fn matches(&self, other: &ENode) -> bool {
        self.input == other.input
            && self.op == other.op
            && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

/// What every e-class knows.
#[derive(Clone, Debug)]
pub struct ClassData {
    /// The value's type; `None` only for an e-node whose type cannot be inferred, which the
    /// rewrites never add (they check types before adding).
    pub ty: Option<TensorType>,
    /// The earliest original node in the class: (position in the graph's topological order,
    /// name).
    pub origin: Option<(usize, String)>,
}

/// The analysis: the weights arena and the memory of computed weights.
#[derive(Debug, Default)]
pub struct Meta {
    pub weights: Weights,
    /// Computed weights by the rewrite and source weights they came from, so a rewrite that
    /// matches again adds the same e-node instead of a copy with fresh weights.
    pub memo: HashMap<(&'static str, Vec<WeightId>), Vec<WeightId>>,
    /// Weights computed by rewrites, with the name of the weight each replaces (the rebuilt
    /// graph gives it that name when the original is no longer used).
    pub computed: HashMap<WeightId, String>,
    /// Weights of stacked products (`stack-dense`), which are never stacked again.
    pub stacked: HashSet<WeightId>,
}

pub type SGraph = EGraph<ENode, Meta>;

impl Analysis<ENode> for Meta {
    type Data = ClassData;

    fn make(egraph: &mut SGraph, enode: &ENode, _id: Id) -> ClassData {
        ClassData {
            ty: node_type(egraph, enode),
            origin: None,
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let mut changed_a = false;
        if a.ty.is_none() && b.ty.is_some() {
            a.ty = b.ty.clone();
            changed_a = true;
        }
        let origin = match (&a.origin, &b.origin) {
            (Some(x), Some(y)) => Some(if y < x { y.clone() } else { x.clone() }),
            (x, y) => x.clone().or_else(|| y.clone()),
        };
        if origin != a.origin {
            a.origin = origin.clone();
            changed_a = true;
        }
        let changed_b = b.origin != origin || b.ty != a.ty;
        DidMerge(changed_a, changed_b)
    }
}

/// The type `enode` defines over its children's types, if it is well formed.
pub fn node_type(egraph: &SGraph, enode: &ENode) -> Option<TensorType> {
    if let Op::Input(i) = &enode.op {
        return Some(i.ty.clone());
    }
    let types: Vec<TensorType> = enode
        .children
        .iter()
        .map(|&c| egraph[c].data.ty.clone())
        .collect::<Option<_>>()?;
    let operands: Vec<(&str, &TensorType)> = types.iter().map(|t| ("x", t)).collect();
    sprig_ir::verify::infer_type(&enode.op, &egraph.analysis.weights, &operands).ok()
}

/// A graph loaded into an e-graph.
#[derive(Debug)]
pub struct Loaded {
    pub egraph: SGraph,
    /// The class of each network output, in output order.
    pub outputs: Vec<Id>,
    /// The class of each network input, in input order.
    pub inputs: Vec<Id>,
}

/// Adds every node of a verified graph to a fresh e-graph, in topological order.
pub fn load(graph: &Graph, info: &GraphInfo) -> Loaded {
    let meta = Meta {
        weights: graph.weights.clone(),
        ..Meta::default()
    };
    let mut egraph = SGraph::new(meta);
    let mut class: HashMap<NodeId, Id> = HashMap::new();
    for (position, &id) in info.order.iter().enumerate() {
        let node = graph.node(id);
        let children = graph.operands(id).iter().map(|o| class[o]).collect();
        let mut enode = ENode::new(node.op.clone(), children);
        if matches!(node.op, Op::Input(_)) {
            enode.input = graph
                .inputs()
                .iter()
                .position(|&i| i == id)
                .unwrap_or(usize::MAX);
        }
        let c = egraph.add(enode);
        let data = &mut egraph[c].data;
        let origin = (position, node.name.clone());
        if data.origin.as_ref().is_none_or(|o| origin < *o) {
            data.origin = Some(origin);
        }
        class.insert(id, c);
    }
    egraph.rebuild();
    Loaded {
        outputs: graph.outputs().iter().map(|o| class[o]).collect(),
        inputs: graph.inputs().iter().map(|i| class[i]).collect(),
        egraph,
    }
}
