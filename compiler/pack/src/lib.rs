//! sprig-pack: the packed artifact (`.sprigpack`), a versioned binary container for a compressed
//! model: the graph, and per weight its codebook, Huffman tables, Huffman-coded weight codes and
//! relative indices, bit-packed codes or raw values, closed by a checksum.
//!
//! - [`pack`] writes a verified graph and reports, per weight, the bytes actually written
//!   ([`SizeReport`]); [`unpack`] reads an artifact back into an equal graph and verifies it.
//! - [`looks_like_artifact`] recognises an artifact by its magic bytes.
//!
//! Invariants:
//! - `unpack(pack(g)) == g` (graph equality compares weights with their encodings and values),
//!   and packing the unpacked graph gives the same bytes. The same graph always packs to the same
//!   bytes.
//! - Sizes are honest: `report.total.packed_bytes == bytes.len()`, and the per-weight `bytes`
//!   plus `other_bytes` add up to it exactly; every weight's `bytes` is the length of its section.
//! - The packer decodes every section it writes and compares the result with the weight it came
//!   from (values bit for bit, encoding, provenance), so it never writes an artifact that does
//!   not read back to the graph it was given.
//! - A malformed artifact is a [`PackError`] naming the file, the byte offset and the reason,
//!   never a panic; nothing is allocated before the bytes that justify it have been checked to be
//!   present (see "Limits" below).
//!
//! # FORMAT (version 1)
//!
//! All integers are little-endian; `f32` values are IEEE-754 binary32, little-endian, written
//! bit for bit (no rounding, NaN payloads and signs kept). Bit streams are MSB-first: bit `i` of
//! a stream is bit `7 − i % 8` of byte `i / 8`, and the unused low bits of the last byte are zero.
//! `str` is a `u32` byte length followed by that many bytes of UTF-8.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "SPRIGPK\0" (53 50 52 49 47 50 4B 00)
//! 8       2     version, u16 = 1
//! 10      2     reserved, u16 = 0
//! 12      4     weight count W, u32
//! 16            graph section
//!               W weight sections, in the order of the graph's weights arena
//! end − 4 4     CRC-32 (IEEE 802.3, as zlib and crc32fast compute it) of every byte before it
//! ```
//!
//! Every section is framed as `kind: u8` (1 = graph, 2 = weight), `length: u64`, then `length`
//! bytes of body; a body is read exactly to its end (bytes left over are an error).
//!
//! **Graph section body**
//! ```text
//! u8   1 when the graph names a weights file, else 0
//! str  the weights file name, as written in the description (only when the byte above is 1)
//! ...  the rest of the body: the graph in sprig's text format, as `sprig_ir::print` writes it
//! ```
//! In that text every weight is declared (`weight @NAME : f32[DIMS] = ...`) in arena order and no
//! `weights "FILE"` line appears, so it parses without any other file. A weight whose values
//! come from a seeded generator and that has no pruned or shared encoding is declared with its
//! generator (`random(...)`), which is all it stores: its values are a pure function of it. Every
//! other weight is declared with the placeholder `random(uniform(0, 0), density = 0, seed = 0)`;
//! its values and encoding come from its weight section.
//!
//! **Weight section body**
//! ```text
//! u8   provenance: 0 computed (by a pass), 1 literal, 2 file (then: str, the key in the
//!      weights file), 3 seeded (the generator in the graph text)
//! u8   encoding flags: bit 0 pruned, bit 1 shared, bit 2 huffman (needs shared),
//!      bit 3 partitioned; the other bits are 0
//! if shared:
//!   u8   bits b, 1..=16
//!   u8   centroid initialisation: 0 linear, 1 density, 2 random, 3 kmeans++
//!   u8   zero code: 1 when code 0 means zero (then codebook[0] = 0.0), else 0
//!   u32  codebook length K, at most 2^b
//!   K ×  f32, the codebook
//! if huffman:
//!   u8   relative index width w: 1..=16 when pruned, 0 otherwise
//! if partitioned:
//!   u32  processing elements, at least 1
//!   u8   scheme: 0 interleave (row i on PE i mod PEs)
//! payload (N = the weight's element count, from its type in the graph text):
//!   seeded, neither pruned nor shared: nothing
//!   neither pruned nor shared:        N × f32, row-major
//!   pruned, not shared:               mask: ⌈N/8⌉ bytes, bit i set when element i is kept
//!                                     (a bit stream as above); then one f32 per kept element,
//!                                     in row-major order
//!   shared, not huffman:              when pruned, the mask as above; then the codes (one per
//!                                     kept element when pruned, per element otherwise), b bits
//!                                     each, as one bit stream of ⌈M·b/8⌉ bytes
//!   shared and huffman:               u32 table length, then the weight-code Huffman table
//!                                     (`HuffmanCode::to_bytes`: code lengths only);
//!                                     u64 entries E; u64 bit length B, then ⌈B/8⌉ bytes: the E
//!                                     entry codes, Huffman-coded;
//!                                     when pruned also: u32 table length and the index
//!                                     Huffman table; u64 bit length, then its bytes: the E
//!                                     relative indices, Huffman-coded
//! ```
//! Entries follow `sprig_passes::algo::sparse`: the kept elements in row-major order of the whole
//! tensor, each with the number of zeros skipped before it (`w` bits at most), plus filler
//! entries (code 0, index `2^w − 1`) where a gap is wider; with a zero code an entry with code 0
//! is a filler. Without pruning the entries are every element's code, with no index stream.
//!
//! Decoding gives each weight's values: raw values as written; kept elements from the f32 list
//! or `codebook[code]`; every other element +0.0. The encoding record is rebuilt from the
//! section: `Pruned { nonzeros, len }` from the mask or the entries, `Shared` from the fields and
//! the codes, `Huffman { entries, fillers, weight_bits = B / E, index_bits }` from the streams,
//! exactly as the `huffman` pass computes them.
//!
//! **Canonical form.** The reader accepts only what the writer produces: zero padding bits,
//! fillers exactly where the relative-index encoding puts them, kept elements non-zero, codes
//! inside the codebook, no zero code on a kept element.
//!
//! **Limits.** A reader materialises at most [`MAX_ELEMENTS_PER_BYTE`] weight elements per byte
//! of the artifact (sparse layers decode to more elements than they take bytes, and this bounds
//! how far), and the writer refuses to write an artifact beyond that bound.
//!
//! **Compatibility.** A reader rejects any version but its own; a change to any field bumps
//! the version.

mod bits;
mod read;
mod write;

pub use read::{looks_like_artifact, unpack};
pub use write::pack;

/// The first eight bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"SPRIGPK\0";
/// The format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Bytes before the graph section: magic, version, reserved, weight count.
pub const HEADER_BYTES: usize = 16;
/// Bytes that frame a section: kind and body length.
pub const SECTION_FRAME_BYTES: usize = 9;
/// Bytes of the trailing checksum.
pub const CHECKSUM_BYTES: usize = 4;
/// Weight elements a reader materialises per byte of artifact, at most.
pub const MAX_ELEMENTS_PER_BYTE: u64 = 1 << 12;

/// An artifact and the accounting of its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub bytes: Vec<u8>,
    pub report: SizeReport,
}

/// Where the bytes of an artifact go.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeReport {
    /// One entry per weight, in the order of the graph's weights arena.
    pub layers: Vec<LayerSize>,
    /// Header, graph section and checksum: every byte not in a weight section.
    pub other_bytes: u64,
    pub total: Total,
}

/// One weight's storage.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSize {
    /// The weight's name (`ip1.weight`).
    pub name: String,
    pub shape: Vec<usize>,
    /// Elements of the dense tensor.
    pub params: u64,
    /// Fraction of elements kept: the pruned density, 1 for unpruned weights.
    pub density: f64,
    /// Bits per stored weight before Huffman coding: the code width of a shared weight, 32 for
    /// f32 values, 0 for a weight stored as its generator.
    pub weight_bits: u32,
    /// Index bits per kept weight before Huffman coding: the relative index width of a
    /// Huffman-coded pruned weight, the mask's bits per kept weight (`params / kept`) for a
    /// pruned weight stored with a mask, 0 for unpruned weights.
    pub index_bits: f64,
    /// Huffman-coded bits per entry code (`B / E`), for Huffman-coded weights.
    pub huffman_weight_bits: Option<f64>,
    /// Huffman-coded bits per relative index, for Huffman-coded pruned weights.
    pub huffman_index_bits: Option<f64>,
    /// Bytes of the weight's section, framing included.
    pub bytes: u64,
}

/// Totals over the artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct Total {
    /// Every weight as dense f32: 4 bytes per element.
    pub dense_bytes: u64,
    /// The artifact's length in bytes.
    pub packed_bytes: u64,
    /// `dense_bytes / packed_bytes`.
    pub ratio: f64,
}

/// Why a graph cannot be packed or an artifact cannot be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PackError {
    /// The artifact is not a valid version-1 artifact.
    #[error("{file}: byte {offset}: {reason}")]
    Malformed {
        file: String,
        offset: u64,
        reason: String,
    },
    /// A weight's encoding or values cannot be stored as they are.
    #[error("cannot pack weight `@{weight}`: {reason}")]
    Weight { weight: String, reason: String },
    /// The graph as a whole cannot be stored.
    #[error("cannot pack the graph: {reason}")]
    Graph { reason: String },
}
