//! Dense f32 tensors: the values the interpreter computes with and the CLI reads and writes.
//!
//! Invariant: `data.len() == shape.len()`, row-major.

use crate::types::Shape;

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `shape` holding `data` (row-major). Panics when the lengths differ.
    pub fn new(shape: impl Into<Shape>, data: Vec<f32>) -> Tensor {
        let shape = shape.into();
        assert_eq!(
            shape.len(),
            data.len(),
            "tensor data does not match its shape"
        );
        Tensor { shape, data }
    }

    pub fn zeros(shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        let data = vec![0.0; shape.len()];
        Tensor { shape, data }
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
