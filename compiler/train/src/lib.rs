//! sprig-train: training for compression — retraining after pruning with masks, trained
//! quantization (centroids trained with the summed gradients of their weights), iterative
//! prune → retrain schedules, DSD, least-squares refinement of centroids from calibration
//! inputs, and sensitivity analysis of each layer to pruning.
//!
//! - [`net`]: the trainable chain of a graph ([`Net`]), batched forward and backward passes,
//!   and [`Net::store`], which writes trained values back consistently with the encodings.
//! - [`train`]: SGD with momentum and weight decay ([`Trainer`]), seeded shuffling, batched
//!   evaluation ([`evaluate`]).
//! - [`schedule`]: per-layer densities of a prune step, and the steps of an iterative schedule.
//! - [`sensitivity`]: accuracy of the network with one layer pruned at a sweep of sparsities,
//!   and the per-layer sparsity that stays within an accuracy budget.
//! - [`refine`]: least-squares centroid refinement without labels.
//!
//! Contract: no IO and no printing (progress goes through callbacks); the same graph, data,
//! options and seed give bit-identical weights on every run, whatever the number of threads.

pub mod gemm;
pub mod net;
pub mod refine;
pub mod schedule;
pub mod sensitivity;
pub mod train;

pub use net::{Net, Param, SharedParam};
pub use train::{
    Accuracy, EpochStats, LrSchedule, Samples, TrainOptions, Trainer, evaluate, loss_and_gradients,
    predict, shuffled,
};

/// Why a graph cannot be trained, or a schedule cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// A node of the network that training does not support.
    #[error("`{node}`: {reason}")]
    Unsupported { node: String, reason: String },
    /// The network or its weights do not have the shape training needs.
    #[error("{0}")]
    Shape(String),
    /// A pass run by a schedule failed.
    #[error("{0}")]
    Pass(#[from] sprig_passes::PassError),
}
