//! The numeric kernels behind the compression passes, as pure functions over slices.
//!
//! Nothing here knows about graphs, weights arenas or files: each module takes plain slices and
//! returns plain vectors, so the passes (and the backends that decode what the passes wrote) can
//! share them and tests can check them against independent reference implementations.
//!
//! - [`kmeans`]: 1-D k-means for weight sharing (sorted Lloyd iterations, O(k log n) each).
//! - [`huffman`]: canonical, length-limited Huffman codes with a compact table format and a
//!   table-driven decoder.
//! - [`sparse`]: relative (difference) indices with filler entries, as in Deep Compression and EIE.
//!
//! Contract shared by all three: deterministic (same inputs give the same outputs, seeded RNGs
//! only), no printing, and no panics on any input: malformed input gives a typed error.

pub mod huffman;
pub mod kmeans;
pub mod sparse;
