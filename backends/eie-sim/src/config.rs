//! The simulated machine's parameters and the per-access energy table.
//!
//! Contract: every timing or energy choice the EIE paper leaves open is a named field here with a
//! documented default; `SimConfig::validate` accepts exactly the machines the simulator models
//! (1..=256 PEs, FIFO depth 1..=4096, an SRAM width that is a whole number of 8-bit entries) and
//! names the offending field otherwise. The energy defaults are 45 nm figures derived from the
//! paper's Table I and its per-PE power breakdown (see [`EnergyTable::eie_45nm`]); a JSON file with
//! any subset of the fields overrides them.

use serde::{Deserialize, Serialize};

/// Bits of one sparse-matrix entry: a 4-bit weight code and a 4-bit relative row index.
pub const ENTRY_BITS: u32 = 8;

/// The machine the simulator models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Processing elements (1..=256). PE k owns the output rows i with i mod N == k. A program is
    /// lowered for one PE count; the simulator refuses a program lowered for another.
    pub pes: usize,
    /// Depth of each PE's activation FIFO (1..=4096; EIE uses 8).
    pub fifo_depth: usize,
    /// Width of one sparse-matrix SRAM read in bits (a multiple of 8, 8..=1024; EIE uses 64, so
    /// one read delivers 8 entries). Only the number of reads and their energy depend on it: the
    /// row buffer is refilled ahead of use, so the entry stream never waits for a read.
    pub sram_width_bits: u32,
    /// Clock in MHz (EIE: 800), used to turn cycles into latency.
    pub clock_mhz: f64,
    /// Cycles a PE's pointer unit needs to read p[j] and p[j+1] from its even and odd banks
    /// (both banks in parallel, so 1 by default). The pointer unit is not pipelined: it takes
    /// the next column from the FIFO only after this many cycles.
    pub pointer_read_cycles: u32,
    /// Stages of the arithmetic pipeline (EIE: 4 — codebook lookup ∥ address accumulation;
    /// accumulator read ∥ multiply; shift and add; write). After a run's last entry enters
    /// stage 1, `stages - 1` cycles drain the pipeline.
    pub pipeline_stages: u32,
    /// Outputs each PE passes through the activation function and writes back per cycle after a
    /// layer's last column tile (1: one write port on the destination register file).
    pub writeback_outputs_per_cycle: u32,
    /// Per-access energies.
    pub energy: EnergyTable,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            pes: 64,
            fifo_depth: 8,
            sram_width_bits: 64,
            clock_mhz: 800.0,
            pointer_read_cycles: 1,
            pipeline_stages: 4,
            writeback_outputs_per_cycle: 1,
            energy: EnergyTable::eie_45nm(),
        }
    }
}

/// A parameter outside the range the simulator models.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("simulator parameter `{field}` is {value}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl SimConfig {
    /// Checks every field against the range the simulator models.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: String, reason| {
            Err(ConfigError {
                field,
                value,
                reason,
            })
        };
        if !(1..=256).contains(&self.pes) {
            return bad("pes", self.pes.to_string(), "must be 1..=256");
        }
        if !(1..=4096).contains(&self.fifo_depth) {
            return bad(
                "fifo_depth",
                self.fifo_depth.to_string(),
                "must be 1..=4096",
            );
        }
        if self.sram_width_bits < ENTRY_BITS
            || self.sram_width_bits > 1024
            || !self.sram_width_bits.is_multiple_of(ENTRY_BITS)
        {
            return bad(
                "sram_width_bits",
                self.sram_width_bits.to_string(),
                "must be a multiple of 8 in 8..=1024",
            );
        }
        if !(self.clock_mhz.is_finite() && self.clock_mhz > 0.0) {
            return bad(
                "clock_mhz",
                self.clock_mhz.to_string(),
                "must be a positive number",
            );
        }
        if !(1..=64).contains(&self.pointer_read_cycles) {
            return bad(
                "pointer_read_cycles",
                self.pointer_read_cycles.to_string(),
                "must be 1..=64",
            );
        }
        if !(1..=64).contains(&self.pipeline_stages) {
            return bad(
                "pipeline_stages",
                self.pipeline_stages.to_string(),
                "must be 1..=64",
            );
        }
        if !(1..=4096).contains(&self.writeback_outputs_per_cycle) {
            return bad(
                "writeback_outputs_per_cycle",
                self.writeback_outputs_per_cycle.to_string(),
                "must be 1..=4096",
            );
        }
        self.energy.validate()
    }

    /// Sparse-matrix entries delivered by one SRAM read.
    pub fn entries_per_read(&self) -> u32 {
        self.sram_width_bits / ENTRY_BITS
    }
}

/// Energy per access in picojoules (45 nm unless overridden).
///
/// The simulator charges: one sparse-matrix read per SRAM row fetched (its energy scales with
/// the width: `matrix_read_pj_per_bit × sram_width_bits`), one pointer read per bank access (two
/// per column a PE processes), one codebook lookup and one multiply-add per entry, one
/// accumulator read per entry whose read is not bypassed and one accumulator write per entry,
/// one source-activation read per element the leading-non-zero detector scans, one FIFO push per
/// PE per broadcast and one pop per column taken, one destination write per output written back,
/// and `static_pj_per_pe_cycle` for every PE in every cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyTable {
    /// Sparse-matrix SRAM (128 KB per PE), per bit read.
    pub matrix_read_pj_per_bit: f64,
    /// Pointer SRAM (one 16 KB bank of 16-bit words), per 16-bit read.
    pub pointer_read_pj: f64,
    /// 16-entry codebook lookup of a 16-bit weight.
    pub codebook_lookup_pj: f64,
    /// 16 × 16-bit fixed-point multiply.
    pub multiply_pj: f64,
    /// 32-bit shift-and-add into the accumulator.
    pub add_pj: f64,
    /// Accumulator (destination register file) read.
    pub accumulator_read_pj: f64,
    /// Accumulator (destination register file) write, also per output written back.
    pub accumulator_write_pj: f64,
    /// Source activation read by the leading-non-zero detector, per element.
    pub activation_read_pj: f64,
    /// Activation FIFO push or pop.
    pub fifo_access_pj: f64,
    /// One element-wise host operation (LSTM gate math).
    pub host_op_pj: f64,
    /// Leakage and clock per PE per cycle; the paper does not separate it from the dynamic
    /// power, so the default is 0 (all energy is charged per access).
    pub static_pj_per_pe_cycle: f64,
}

impl Default for EnergyTable {
    fn default() -> EnergyTable {
        EnergyTable::eie_45nm()
    }
}

/// The paper's 45 nm SRAM figure (Table I): reading 32 bits from a 32 KB SRAM costs 5 pJ.
const TABLE1_SRAM_32KB_READ_32BIT_PJ: f64 = 5.0;
/// Table I: a 32-bit integer multiply costs 3.1 pJ, a 32-bit integer add 0.1 pJ.
const TABLE1_INT32_MULT_PJ: f64 = 3.1;
const TABLE1_INT32_ADD_PJ: f64 = 0.1;
/// Per-PE power breakdown (mW) of the units that Table I does not cover, and the clock (MHz)
/// at which it was measured: every unit active once per cycle.
const PE_ACT_RW_MW: f64 = 1.122;
const PE_ACT_QUEUE_MW: f64 = 0.112;
const PE_ARITHM_UNIT_MW: f64 = 1.162;
const PAPER_CLOCK_MHZ: f64 = 800.0;

impl EnergyTable {
    /// 45 nm defaults. Derivations (documented choices, not fitted to any result):
    /// - SRAM reads start from Table I (32 KB, 32-bit read: 5 pJ, 0.156 pJ/bit) and scale per bit
    ///   with the square root of the capacity (bit-line length): the 128 KB sparse-matrix SRAM
    ///   costs 2 × 0.156 = 0.3125 pJ/bit (20 pJ per 64-bit read); a 16 KB pointer bank
    ///   0.156 / √2 pJ/bit, 1.77 pJ per 16-bit pointer.
    /// - Multiply: a 16 × 16 multiplier has a quarter of the partial products of Table I's 32-bit
    ///   one: 3.1 / 4 = 0.775 pJ. Add: Table I's 32-bit add, 0.1 pJ.
    /// - Codebook lookup: the arithmetic unit's power per cycle (1.162 mW / 800 MHz = 1.45 pJ)
    ///   minus the multiply and add it contains.
    /// - Register file and FIFO: the per-PE ActRW power (1.122 mW, one read and one write per
    ///   cycle) gives 0.70 pJ per access; ActQueue (0.112 mW, one push and one pop) 0.07 pJ.
    /// - Host operation: a multiply and an add (Table I, 32-bit integers): 3.2 pJ.
    pub fn eie_45nm() -> EnergyTable {
        let sram_pj_per_bit_32kb = TABLE1_SRAM_32KB_READ_32BIT_PJ / 32.0;
        let per_cycle = |milliwatts: f64| milliwatts / PAPER_CLOCK_MHZ * 1000.0;
        let multiply_pj = TABLE1_INT32_MULT_PJ / 4.0;
        let add_pj = TABLE1_INT32_ADD_PJ;
        EnergyTable {
            matrix_read_pj_per_bit: sram_pj_per_bit_32kb * (128.0f64 / 32.0).sqrt(),
            pointer_read_pj: 16.0 * sram_pj_per_bit_32kb * (16.0f64 / 32.0).sqrt(),
            codebook_lookup_pj: per_cycle(PE_ARITHM_UNIT_MW) - multiply_pj - add_pj,
            multiply_pj,
            add_pj,
            accumulator_read_pj: per_cycle(PE_ACT_RW_MW) / 2.0,
            accumulator_write_pj: per_cycle(PE_ACT_RW_MW) / 2.0,
            activation_read_pj: per_cycle(PE_ACT_RW_MW) / 2.0,
            fifo_access_pj: per_cycle(PE_ACT_QUEUE_MW) / 2.0,
            host_op_pj: TABLE1_INT32_MULT_PJ + TABLE1_INT32_ADD_PJ,
            static_pj_per_pe_cycle: 0.0,
        }
    }

    /// Parses a JSON object whose fields (any subset) override the 45 nm defaults.
    pub fn from_json(text: &str) -> Result<EnergyTable, serde_json::Error> {
        let table: EnergyTable = serde_json::from_str(text)?;
        Ok(table)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("matrix_read_pj_per_bit", self.matrix_read_pj_per_bit),
            ("pointer_read_pj", self.pointer_read_pj),
            ("codebook_lookup_pj", self.codebook_lookup_pj),
            ("multiply_pj", self.multiply_pj),
            ("add_pj", self.add_pj),
            ("accumulator_read_pj", self.accumulator_read_pj),
            ("accumulator_write_pj", self.accumulator_write_pj),
            ("activation_read_pj", self.activation_read_pj),
            ("fifo_access_pj", self.fifo_access_pj),
            ("host_op_pj", self.host_op_pj),
            ("static_pj_per_pe_cycle", self.static_pj_per_pe_cycle),
        ];
        for (field, value) in fields {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError {
                    field,
                    value: value.to_string(),
                    reason: "an energy must be a finite, non-negative number of picojoules",
                });
            }
        }
        Ok(())
    }
}
