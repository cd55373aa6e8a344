//! The f32 reference interpreter.

use crate::graph::Graph;
use crate::tensor::Tensor;
use crate::verify::GraphInfo;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("{0}")]
    Input(String),
}

pub fn interpret(graph: &Graph, info: &GraphInfo, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    let _ = (graph, info, inputs);
    todo!()
}
