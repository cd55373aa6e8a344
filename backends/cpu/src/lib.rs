//! sprig-cpu: the packed CPU format of compressed weights and the kernels that run it.
//!
//! Contract: kernels read the packed weights directly (codebook lookup, relative indices decoded on
//! the fly, zero activations skipped) and agree with the reference interpreter on the decoded
//! weights. Accepts only verified graphs.
//!
//! - [`layout`]: the CPU layout of a weight matrix ([`PackedMatrix`]), built from its encoding:
//!   columns for sparse activations, row chunks for dense ones ([`Traversal`]).
//! - [`kernels`]: column and row-chunk kernels in three variants ([`Isa`]: scalar, AVX2,
//!   AVX-512), chosen at run time; `SPRIG_CPU=scalar|avx2|avx512` forces one.
//! - [`matvec`]: products over row slices on a thread pool ([`Runtime`], [`pool`]), bias and
//!   activation fused.
//! - [`Executor`]: whole networks (dense, conv2d, LSTM on the packed layout; every other op of the
//!   IR by the executor's own kernels in [`ops`]).
//! - [`baseline`]: the reference points benchmarks compare against (a dense f32 product by faer, a
//!   plain f32 CSR kernel), and a read-bandwidth probe.
//!
//! Invariant: results do not depend on the kernel variant, the thread count or (for finite
//! inputs) the traversal (bit-identical).

pub mod baseline;
pub mod conv;
pub mod exec;
pub mod isa;
pub mod kernels;
pub mod layout;
pub mod lstm;
pub mod matvec;
pub mod ops;
pub mod pool;

pub use exec::{Executor, LayerMatrix};
pub use isa::Isa;
pub use kernels::Active;
pub use layout::{KernelKind, MatrixSource, PackedMatrix, Traversal};
pub use matvec::{Activation, Runtime};

/// How the executor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Worker threads (1: only the caller's thread).
    pub threads: usize,
    pub isa: Isa,
    /// How sparse matrices are walked ([`Traversal::Auto`]: per product, by input density).
    pub traversal: Traversal,
}

impl Options {
    /// One thread and the variant `SPRIG_CPU` names (or the widest the machine supports).
    pub fn from_env(threads: usize) -> Result<Options, CpuError> {
        Ok(Options {
            threads: threads.max(1),
            isa: Isa::from_env()?,
            traversal: Traversal::Auto,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("SPRIG_CPU={0}: unknown kernel variant (expected scalar, avx2 or avx512)")]
    UnknownIsa(String),
    #[error("the {0} kernels need CPU features this machine lacks")]
    UnsupportedIsa(Isa),
    #[error("cannot start the worker threads: {0}")]
    Threads(String),
    #[error("the matrix is too large for the CPU layout (over 2^32 entries or rows)")]
    TooLarge,
    #[error("bad weight encoding: {0}")]
    Layout(String),
    #[error("`{0}`: {1}")]
    Node(String, Box<CpuError>),
    #[error("{0}")]
    Input(String),
    #[error(
        "embedding `{node}`: index {index} at position {position} is not a row of @{table}, which has {rows} rows"
    )]
    Index {
        node: String,
        position: usize,
        index: f32,
        table: String,
        rows: usize,
    },
    #[error("the graph does not match its verification result (verify it again)")]
    Unverified,
}
