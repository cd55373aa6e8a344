//! sprig-eie: the EIE accelerator's instruction set and the lowering of a compressed graph into a
//! program for it.
//!
//! * [`isa`]: the machine, the instructions and their exact semantics, the fixed-point arithmetic,
//!   [`Program`](isa::Program); no IR dependency (the simulator uses this crate with
//!   `default-features = false`).
//! * [`binary`]: the documented little-endian encoding (magic, version, CRC-32) and the validating
//!   decoder whose errors name the byte offset.
//! * [`disasm`]: the text listing.
//! * [`matrix`]: per-PE sparse storage of weight tiles (encoding, and reading a program's weights
//!   back).
//! * `lower` (feature `lower`, default): verified compressed graph → program.

pub mod binary;
pub mod disasm;
pub mod isa;
#[cfg(feature = "lower")]
pub mod lower;
pub mod matrix;
