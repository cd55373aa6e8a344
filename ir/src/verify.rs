//! The verifier: checks a graph and infers every value's type.
//!
//! Contract: `verify(g)` returns [`GraphInfo`] (each node's type and a deterministic topological
//! order) when the graph is well formed, or every problem found (never only the first). Backends
//! and the interpreter accept only graphs that verified. Checks: node names unique, operand
//! positions `0..n` and counts per the op schema, weight handles in the arena, weight shapes that
//! fit each op, inferred shapes of every op, dtypes, no cycles, at least one output, element
//! counts that fit in memory arithmetic. A node whose operand failed is not checked again (no
//! cascades of errors).

use crate::graph::{Graph, NodeId};
use crate::types::TensorType;
use crate::weights::WeightId;

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
}

/// Where a verification problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Graph,
    Node(NodeId),
    Weight(WeightId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub at: Location,
    pub message: String,
}

pub fn verify(graph: &Graph) -> Result<GraphInfo, Vec<VerifyError>> {
    let _ = graph;
    todo!()
}
