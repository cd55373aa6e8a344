//! sprig-cpu: the packed CPU format of compressed weights and the kernels that run it.
//!
//! Contract: kernels read the packed weights directly (codebook lookup, relative indices decoded on
//! the fly, zero activations skipped) and agree with the reference interpreter on the decoded
//! weights. Accepts only verified graphs.
