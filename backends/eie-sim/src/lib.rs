//! sprig-eie-sim: a cycle-level simulator of the EIE accelerator.
//!
//! Contract: it reads encoded EIE programs only and knows nothing of the graph IR; whatever it runs
//! came through the program types of `sprig_eie::isa`. Same program, inputs and parameters give
//! the same outputs, cycles and energy on every run. Outputs are bit-exact fixed point and equal
//! the plain software model ([`reference`]).
//!
//! * [`config`]: the machine's parameters and the 45 nm energy table.
//! * [`engine`]: one run's timing and arithmetic, broadcast by broadcast (skip-ahead).
//! * [`stepping`]: the same run stepped cycle by cycle (the statement of the cycle semantics the
//!   engine must reproduce; per-cycle traces).
//! * [`machine`]: executing a whole [`Program`](sprig_eie::isa::Program); per-layer reports.
//! * [`reference`]: the dense fixed-point matrix-vector product, without cycles.
//! * [`trace`]: per-cycle traces as CSV or Chrome trace JSON.

pub mod config;
pub mod engine;
pub mod machine;
pub mod reference;
pub mod stepping;
pub mod trace;

pub use config::{ConfigError, EnergyTable, SimConfig};
pub use machine::{
    LayerReport, Output, Report, RunTrace, SimError, Simulation, Stepping, TotalReport, execute,
    execute_with, quantize_inputs,
};
