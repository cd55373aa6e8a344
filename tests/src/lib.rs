//! sprig-tests: the project's cross-crate tests, driven by data.
//!
//! - `tests/text.rs`: every description under `cases/text/ok/` parses, verifies, prints, and
//!   reads back to an equal graph (insta snapshots of the printed IR); every description under
//!   `cases/text/err/` fails with diagnostics (insta snapshots of the rendered errors), and none
//!   panics. Add a case by adding a file, not a test function.
//! - `tests/examples.rs`: the bundled examples round-trip and print stably; the LeNet examples
//!   reproduce, through the reference interpreter, the accuracy their training script measured.
//! - `tests/pack.rs`: each description under `cases/pack/` (its first line names a pipeline) is
//!   compressed and packed; the snapshot shows the size report, the artifact section by section
//!   and the graph read back from it, which must equal the packed graph and pack to the same bytes.
//!
//! Paths in snapshots are relative to this crate, so they are the same on every machine.
