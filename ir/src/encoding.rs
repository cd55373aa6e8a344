//! How a weight is stored, stage by stage: dense f32, then pruned, shared, Huffman-coded and
//! partitioned across processing elements.
//!
//! Invariant: decoding any encoding gives back exactly the values the next stage and the backends
//! use; a weight whose encoding is [`Encoding::is_dense`] is stored as its plain f32 values. The
//! stage records below are what the compression passes fill in; each stage's record holds the
//! parameters a reader needs, not the bulk data (that is written by the artifact writer).

use std::fmt;

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

/// Magnitude pruning: the surviving weights as a sparse matrix with relative indices.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    /// Non-zero weights kept.
    pub nonzeros: u64,
    /// Width of a relative index (the difference to the previous non-zero); gaps wider than
    /// `2^index_bits - 1` are bridged by filler zeros.
    pub index_bits: u8,
}

/// How k-means centroids are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CentroidInit {
    Linear,
    Density,
    Random,
    KMeansPlusPlus,
}

impl CentroidInit {
    pub fn name(self) -> &'static str {
        match self {
            CentroidInit::Linear => "linear",
            CentroidInit::Density => "density",
            CentroidInit::Random => "random",
            CentroidInit::KMeansPlusPlus => "kmeans++",
        }
    }
}

/// Weight sharing: every surviving weight is one of `2^bits` codebook values.
#[derive(Clone, Debug, PartialEq)]
pub struct Shared {
    pub bits: u8,
    pub init: CentroidInit,
    pub codebook: Vec<f32>,
    /// Whether code 0 is reserved for "zero weight" (the EIE convention).
    pub zero_code: bool,
}

/// Huffman coding of the weight codes and the relative indices, as average bits per symbol.
#[derive(Clone, Debug, PartialEq)]
pub struct Huffman {
    pub weight_bits: f64,
    pub index_bits: f64,
}

/// How a layer's rows are spread over processing elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionScheme {
    /// Row `i` goes to PE `i mod pes` (EIE).
    Interleave,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    pub pes: usize,
    pub scheme: PartitionScheme,
}

impl fmt::Display for Encoding {
    /// The dump suffix, e.g. `pruned(0.080) shared(6 bits, linear)`; empty for dense weights.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.pruned {
            parts.push(format!(
                "pruned({} nonzeros, {}-bit index)",
                p.nonzeros, p.index_bits
            ));
        }
        if let Some(s) = &self.shared {
            parts.push(format!("shared({} bits, {})", s.bits, s.init.name()));
        }
        if let Some(h) = &self.huffman {
            parts.push(format!(
                "huffman({:.2} b/w, {:.2} b/idx)",
                h.weight_bits, h.index_bits
            ));
        }
        if let Some(p) = &self.partition {
            let scheme = match p.scheme {
                PartitionScheme::Interleave => "interleave",
            };
            parts.push(format!("pes({}, {scheme})", p.pes));
        }
        f.write_str(&parts.join(" "))
    }
}
