//! sprig-eie-sim: a cycle-level simulator of the EIE accelerator.
//!
//! Contract: it reads encoded EIE programs only and knows nothing of the graph IR; whatever it runs
//! came through the program encoding of `sprig-eie`. Same program and parameters give the same
//! cycles, outputs and energy on every run.
