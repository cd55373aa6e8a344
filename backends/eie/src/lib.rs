//! sprig-eie: the EIE accelerator's instruction set and the lowering of a compressed graph into a
//! program for it.
//!
//! Contract (to be filled by the EIE backend): instructions configure a layer, load codebooks,
//! pointers, sparse-matrix entries, biases and input activations into the PEs' memories, run a layer
//! and read its outputs. Programs have a documented little-endian binary encoding with a magic
//! number, a version and a checksum; decoding rejects malformed streams with the byte offset at
//! fault. Lowering accepts only verified graphs.
