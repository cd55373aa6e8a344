//! sprig-passes: the graph rewrites of the compiler (simplify, prune, partition, quantize, huffman)
//! and the pass manager that runs them.
//!
//! Contract: every pass takes a verified graph and leaves a graph that verifies; the manager
//! checks this after each pass. Passes never print; they return their statistics.
