//! sprig-passes: the graph rewrites of the compiler and the pass manager that runs them.
//!
//! - [`manager`]: the table of passes, pipelines (`prune(sparsity=0.9),quantize(bits=5)`) with
//!   per-layer overrides, presets, and the runner that verifies after every pass, times it and
//!   can stop after any.
//! - [`layers`]: which weights are compressible layers (fc or conv) and their matrix view.
//! - [`simplify`]: equality saturation (egg) with the target's cost model, run first.
//! - [`prune`], [`partition`], [`quantize`], [`huffman`]: the compression passes.
//! - [`algo`]: the algorithms underneath (k-means, Huffman, relative indices), free of IR types.
//!
//! Contract: every pass takes a verified graph and leaves a graph that verifies, with each
//! weight's values equal to what its encoding decodes to; passes never print, they return
//! reports; the same graph and options give the same result on every run.

pub mod algo;
pub mod dead;
pub mod huffman;
pub mod layers;
pub mod manager;
pub mod options;
pub mod partition;
pub mod prune;
pub mod quantize;
pub mod simplify;

pub use manager::{
    PASSES, Pass, PassError, PassReport, PassRun, Pipeline, run_pipeline, run_pipeline_observed,
};
pub use options::Options;
