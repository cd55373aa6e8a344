//! How a weight is stored, stage by stage: dense f32, then pruned, shared (k-means codebook),
//! Huffman-coded, and partitioned across processing elements.
//!
//! Invariants:
//! - A weight's values (`Weight::values`) are always the decoded result of its encoding: a pass
//!   that changes an encoding stores the values the encoding decodes to, so the interpreter runs
//!   the compressed network as it is.
//! - Pruned: the kept weights are exactly the non-zero values; `nonzeros` counts them.
//! - Shared: `codes` holds one code per stored value in row-major order — per non-zero when the
//!   weight is pruned, per element otherwise — and `values[i] == codebook[code]`. When
//!   `zero_code` is set, code 0 means "zero" (padding and filler entries) and is never the code of
//!   a kept weight; the codebook's entry 0 is then 0.0.
//! - Stage records hold what a reader needs to decode; derived statistics are recomputed, not
//!   stored.

use std::fmt;
use std::sync::Arc;

/// The encoding stages applied to a weight, in pipeline order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoding {
    pub pruned: Option<Pruned>,
    pub shared: Option<Shared>,
    pub huffman: Option<Huffman>,
    pub partition: Option<Partition>,
}

impl Encoding {
    pub fn is_dense(&self) -> bool {
        *self == Encoding::default()
    }
}

/// Magnitude pruning: the surviving weights are the non-zero values.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    /// Non-zero weights kept.
    pub nonzeros: u64,
    /// Element count of the weight, for the density.
    pub len: u64,
}

impl Pruned {
    pub fn density(&self) -> f64 {
        if self.len == 0 {
            0.0
        } else {
            self.nonzeros as f64 / self.len as f64
        }
    }
}

/// How k-means centroids are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CentroidInit {
    /// Evenly spaced over [min, max] (the paper's choice: keeps the rare large weights).
    Linear,
    /// Evenly spaced on the CDF's y axis.
    Density,
    /// Forgy: distinct data values chosen at random (seeded).
    Random,
    /// k-means++ (seeded).
    KMeansPlusPlus,
}

impl CentroidInit {
    pub const ALL: [CentroidInit; 4] = [
        CentroidInit::Linear,
        CentroidInit::Density,
        CentroidInit::Random,
        CentroidInit::KMeansPlusPlus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CentroidInit::Linear => "linear",
            CentroidInit::Density => "density",
            CentroidInit::Random => "random",
            CentroidInit::KMeansPlusPlus => "kmeans++",
        }
    }

    pub fn from_name(name: &str) -> Option<CentroidInit> {
        CentroidInit::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// Weight sharing: every stored value is one of at most `2^bits` codebook values.
#[derive(Clone, Debug, PartialEq)]
pub struct Shared {
    pub bits: u8,
    pub init: CentroidInit,
    /// The shared values; entry 0 is 0.0 when `zero_code` is set.
    pub codebook: Vec<f32>,
    /// Whether code 0 is reserved for "zero" (pruned layers, the EIE convention).
    pub zero_code: bool,
    /// One code per stored value (see the module invariants).
    pub codes: Arc<[u16]>,
}

/// Storage of a shared layer: its stored entries (survivors plus filler zeros) with relative
/// indices of `index_width` bits, and the Huffman coding of both streams.
#[derive(Clone, Debug, PartialEq)]
pub struct Huffman {
    /// Bits of a relative index (0 for a layer stored dense, which has no indices).
    pub index_width: u8,
    /// Stored entries: survivors plus filler zeros (every element for a dense layer).
    pub entries: u64,
    /// Filler zeros among the entries.
    pub fillers: u64,
    /// Average Huffman-coded bits per weight code.
    pub weight_bits: f64,
    /// Average Huffman-coded bits per relative index.
    pub index_bits: f64,
}

/// How a layer's rows are spread over processing elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionScheme {
    /// Row `i` goes to PE `i mod pes` (EIE).
    Interleave,
}

impl PartitionScheme {
    pub fn name(self) -> &'static str {
        match self {
            PartitionScheme::Interleave => "interleave",
        }
    }

    /// The PE that owns row `row`.
    pub fn pe_of(self, row: usize, pes: usize) -> usize {
        match self {
            PartitionScheme::Interleave => row % pes,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    pub pes: usize,
    pub scheme: PartitionScheme,
}

impl fmt::Display for Encoding {
    /// The dump suffix, e.g. `pruned(0.08) shared(5 bits, linear, zero code)`; empty when dense.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.pruned {
            parts.push(format!("pruned({:.4})", p.density()));
        }
        if let Some(s) = &self.shared {
            let zero = if s.zero_code { ", zero code" } else { "" };
            parts.push(format!("shared({} bits, {}{zero})", s.bits, s.init.name()));
        }
        if let Some(h) = &self.huffman {
            parts.push(format!(
                "huffman({:.2} b/w, {:.2} b/idx)",
                h.weight_bits, h.index_bits
            ));
        }
        if let Some(p) = &self.partition {
            parts.push(format!("pes({}, {})", p.pes, p.scheme.name()));
        }
        f.write_str(&parts.join(" "))
    }
}
