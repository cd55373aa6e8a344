//! Executing a [`Program`]: the machine state of `sprig_eie::isa` (per-PE pointer and matrix
//! memories, codebook, bias registers and accumulators, activation buffers, host tensors), every
//! instruction's semantics, and the per-layer accounting of cycles, accesses and energy.
//!
//! Contract: `execute` follows the semantics documented in `sprig_eie::isa` exactly; outputs are
//! bit-exact fixed point. A program that would make the machine fault (or that does not fit the
//! configured machine) gives a [`SimError`] naming the instruction and the reason, never a panic,
//! whether or not the program came through the decoder.
//!
//! Cycle accounting (documented choices):
//! - Only `run` takes PE cycles: its compute window (see [`crate::engine`]), then
//!   `pipeline_stages - 1` drain cycles when it issued any entry, then, after the last column tile
//!   of a row tile, `ceil(rows per PE / writeback_outputs_per_cycle)` write-back cycles (the
//!   activation function and the destination write, one output per PE per cycle by default).
//!   Runs do not overlap: a run starts when the previous one has written back.
//! - Loads (codebook, pointers, matrix, biases) fill on-chip memories before inference, as the
//!   paper's measurements assume a resident model; they take no cycles and are reported as the
//!   bytes they move. `configure` takes no cycle; the accumulators are set from the bias
//!   registers in parallel as the run starts.
//! - Host transfers (`load.input`, `read.output`) and host operations take no PE cycles; host
//!   operations are counted per element written (`host_ops`) and charged `host_op_pj` each.
//!
//! The PE memories are held as the load instructions that wrote them (borrowing the program's
//! data, see `WriteLog`): a run reads its tile's pointers and entries in place unless several
//! writes overlap them: a run copies nothing, and its host work is one scan of the tile's
//! pointers and stored entries (how far the pointers reach, the stored density) plus the columns
//! and entries it walks.

use crate::config::{ConfigError, SimConfig};
use crate::engine::{self, Fault, PeSlice, RunCounters, Scratch, Tile, Timing};
use crate::stepping::{self, CycleRecord};
use serde::Serialize;
use sprig_eie::isa::{
    self, BufferSlice, HostOp, HostPost, Instruction, MATRIX_ENTRIES, POINTER_WORDS, Program,
    TileConfig,
};
use std::borrow::Cow;
use std::ops::Range;

/// Why a program could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "the program was lowered for {program} PEs but the simulator is configured with {configured}; lower it again for {configured} PEs"
    )]
    PeMismatch { program: usize, configured: usize },
    #[error("the program has {expected} inputs, {given} were given")]
    InputCount { expected: usize, given: usize },
    #[error("input {index} (`{name}`) needs {expected} elements, {given} were given")]
    InputLength {
        index: usize,
        name: String,
        expected: u64,
        given: usize,
    },
    #[error("instruction {index} ({mnemonic}): {reason}")]
    Instruction {
        index: usize,
        mnemonic: &'static str,
        reason: String,
    },
    #[error("the program ends without a halt instruction")]
    NoHalt,
    #[error("output {index} (`{name}`) received {given} elements, expected {expected}")]
    OutputLength {
        index: usize,
        name: String,
        expected: u64,
        given: usize,
    },
}

/// How `run` instructions are simulated; both give identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stepping {
    /// Broadcast by broadcast, skipping ahead over cycles (fast).
    #[default]
    SkipAhead,
    /// One cycle at a time (slow; records traces).
    EveryCycle,
}

/// A per-cycle record of one `run`, for traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTrace {
    /// Index into `Program::layers`.
    pub layer: usize,
    /// Cycle of the program at which the run started.
    pub start_cycle: u64,
    pub cycles: Vec<CycleRecord>,
}

/// A host output after `halt`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Output {
    pub name: String,
    pub shape: Vec<u32>,
    /// Fractional bits of `values`.
    pub frac: u8,
    /// The machine's values, Q(frac).
    pub values: Vec<i16>,
    /// Dequantized, then the host post-function.
    pub real: Vec<f32>,
}

/// Per-PE cycle categories summed over a layer or the program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeCycles {
    pub busy: u64,
    pub stall: u64,
    pub starved: u64,
}

/// One layer's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub rows: u32,
    pub cols: u32,
    /// `run` instructions (tiles) of the layer.
    pub tiles: u64,
    pub cycles: u64,
    pub latency_us: f64,
    pub compute_cycles: u64,
    pub drain_cycles: u64,
    pub writeback_cycles: u64,
    /// Non-zero weights stored in the layer's tiles over rows × cols of the tiles run.
    pub weight_density: f64,
    /// Non-zero activations broadcast over columns of the tiles run.
    pub activation_density: f64,
    /// 1 − starved PE-cycles / PE-cycles of the compute windows.
    pub load_balance_efficiency: f64,
    /// Padding entries stored in the layer's tiles.
    pub padding_entries: u64,
    /// Entries through the arithmetic pipeline: useful + padding.
    pub macs: u64,
    pub useful_macs: u64,
    pub padding_macs: u64,
    pub busiest_pe_entries: u64,
    pub broadcasts: u64,
    pub ccu_stall_cycles: u64,
    pub bypasses: u64,
    pub matrix_reads: u64,
    pub pointer_reads: u64,
    pub activation_reads: u64,
    pub energy_uj: f64,
    pub busy_cycles: u64,
    pub stall_cycles: u64,
    pub starved_cycles: u64,
}

/// Totals over the program.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TotalReport {
    pub cycles: u64,
    pub clock_mhz: f64,
    pub latency_us: f64,
    pub pes: usize,
    pub fifo_depth: usize,
    pub load_balance_efficiency: f64,
    pub padding_entries: u64,
    pub macs: u64,
    pub useful_macs: u64,
    pub padding_macs: u64,
    pub energy_uj: f64,
    pub matrix_reads: u64,
    pub pointer_reads: u64,
    pub activation_reads: u64,
    pub host_ops: u64,
    pub loaded_bytes: u64,
    pub sram_width_bits: u32,
    /// Per PE, summed over every run.
    pub per_pe: Vec<PeCycles>,
}

/// Everything a simulation measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub program: String,
    pub layers: Vec<LayerReport>,
    pub total: TotalReport,
}

/// The outputs and the report of one execution.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    pub outputs: Vec<Output>,
    pub report: Report,
}

/// Converts f32 host inputs to the program's input formats (round half away from zero,
/// saturating), checking their number and lengths.
pub fn quantize_inputs(program: &Program, inputs: &[Vec<f32>]) -> Result<Vec<Vec<i16>>, SimError> {
    check_inputs(program, inputs.iter().map(Vec::len))?;
    Ok(program
        .inputs
        .iter()
        .zip(inputs)
        .map(|(spec, values)| {
            values
                .iter()
                .map(|&x| isa::quantize(x, spec.frac))
                .collect()
        })
        .collect())
}

fn check_inputs(
    program: &Program,
    lens: impl ExactSizeIterator<Item = usize>,
) -> Result<(), SimError> {
    if lens.len() != program.inputs.len() {
        return Err(SimError::InputCount {
            expected: program.inputs.len(),
            given: lens.len(),
        });
    }
    for (index, (spec, len)) in program.inputs.iter().zip(lens).enumerate() {
        if spec.elements() != len as u64 {
            return Err(SimError::InputLength {
                index,
                name: spec.name.clone(),
                expected: spec.elements(),
                given: len,
            });
        }
    }
    Ok(())
}

/// Runs `program` on the machine `config` describes, with host inputs already in the inputs'
/// fixed-point formats.
pub fn execute(
    program: &Program,
    config: &SimConfig,
    inputs: &[Vec<i16>],
) -> Result<Simulation, SimError> {
    execute_with(program, config, inputs, Stepping::SkipAhead, None)
}

/// [`execute`], choosing how runs are stepped; with `trace`, every run is stepped cycle by cycle
/// and its records appended.
pub fn execute_with(
    program: &Program,
    config: &SimConfig,
    inputs: &[Vec<i16>],
    stepping: Stepping,
    trace: Option<&mut Vec<RunTrace>>,
) -> Result<Simulation, SimError> {
    config.validate()?;
    if usize::from(program.pes) != config.pes {
        return Err(SimError::PeMismatch {
            program: usize::from(program.pes),
            configured: config.pes,
        });
    }
    check_inputs(program, inputs.iter().map(Vec::len))?;
    let mut machine = Machine::new(program, config, inputs);
    machine.trace = trace;
    if stepping == Stepping::EveryCycle || machine.trace.is_some() {
        machine.every_cycle = true;
    }
    let mut halted = false;
    for (index, instruction) in program.instructions.iter().enumerate() {
        let fail = |reason: String| SimError::Instruction {
            index,
            mnemonic: instruction.mnemonic(),
            reason,
        };
        if matches!(instruction, Instruction::Halt) {
            halted = true;
            break;
        }
        machine.step(instruction).map_err(fail)?;
    }
    if !halted {
        return Err(SimError::NoHalt);
    }
    machine.finish()
}

/// Per-layer sums while running.
#[derive(Clone, Debug)]
struct LayerAccount {
    tiles: u64,
    counters: RunCounters,
    drain_cycles: u64,
    writeback_cycles: u64,
    writeback_outputs: u64,
    stored_useful: u64,
    stored_padding: u64,
    tile_cells: u64,
    columns: u64,
    busiest_pe_entries: u64,
}

/// A PE memory as the writes that filled it, oldest first (each load instruction's data,
/// borrowed from the program). A read borrows the data of the newest write it meets when that
/// write covers the whole read, and otherwise assembles the words (unwritten words read as 0).
#[derive(Debug)]
struct WriteLog<'p, T> {
    writes: Vec<(usize, &'p [T])>,
}

impl<'p, T: Copy + Default> WriteLog<'p, T> {
    fn new() -> Self {
        WriteLog { writes: Vec::new() }
    }

    fn write(&mut self, start: usize, data: &'p [T]) {
        let end = start + data.len();
        // Writes the new one hides entirely can never be read again.
        self.writes
            .retain(|&(at, old)| at < start || at + old.len() > end);
        if !data.is_empty() {
            self.writes.push((start, data));
        }
    }

    fn read(&self, range: Range<usize>) -> Cow<'p, [T]> {
        if range.is_empty() {
            return Cow::Borrowed(&[]);
        }
        let overlaps =
            |&&(at, data): &&(usize, &[T])| at < range.end && range.start < at + data.len();
        if let Some(&(at, data)) = self.writes.iter().rev().find(overlaps)
            && at <= range.start
            && range.end <= at + data.len()
        {
            return Cow::Borrowed(&data[range.start - at..range.end - at]);
        }
        let mut words = vec![T::default(); range.len()];
        for &(at, data) in self.writes.iter().filter(overlaps) {
            let from = at.max(range.start);
            let to = (at + data.len()).min(range.end);
            words[from - range.start..to - range.start].copy_from_slice(&data[from - at..to - at]);
        }
        Cow::Owned(words)
    }
}

struct Machine<'p, 't> {
    program: &'p Program,
    config: &'p SimConfig,
    pes: usize,
    /// Per PE: the pointer memory's writes, and whether any `load.pointers` reached it.
    pointers: Vec<WriteLog<'p, u16>>,
    pointers_loaded: Vec<bool>,
    /// Per PE: the sparse-matrix memory's writes, and how far the memory is held (the furthest
    /// write, or the furthest a run's pointers reached, within the memory's size).
    matrix: Vec<WriteLog<'p, u8>>,
    matrix_held: Vec<usize>,
    scratch: Scratch,
    codebook: [i16; 16],
    current: Option<TileConfig>,
    bias: Vec<i32>,
    acc: Vec<i32>,
    /// The configuration of the last run, to check that a continuing column tile follows it.
    last_run: Option<TileConfig>,
    buffers: Vec<Vec<i16>>,
    inputs: &'p [Vec<i16>],
    outputs: Vec<Vec<i16>>,
    layers: Vec<LayerAccount>,
    cycle: u64,
    host_ops: u64,
    loaded_bytes: u64,
    every_cycle: bool,
    trace: Option<&'t mut Vec<RunTrace>>,
}

impl<'p, 't> Machine<'p, 't> {
    fn new(program: &'p Program, config: &'p SimConfig, inputs: &'p [Vec<i16>]) -> Self {
        let pes = config.pes;
        Machine {
            program,
            config,
            pes,
            pointers: (0..pes).map(|_| WriteLog::new()).collect(),
            pointers_loaded: vec![false; pes],
            matrix: (0..pes).map(|_| WriteLog::new()).collect(),
            matrix_held: vec![0; pes],
            scratch: Scratch::default(),
            codebook: [0; 16],
            current: None,
            bias: Vec::new(),
            acc: Vec::new(),
            last_run: None,
            buffers: program
                .buffers
                .iter()
                .map(|b| vec![0; b.len as usize])
                .collect(),
            inputs,
            outputs: vec![Vec::new(); program.outputs.len()],
            layers: vec![
                LayerAccount {
                    tiles: 0,
                    counters: RunCounters::new(pes),
                    drain_cycles: 0,
                    writeback_cycles: 0,
                    writeback_outputs: 0,
                    stored_useful: 0,
                    stored_padding: 0,
                    tile_cells: 0,
                    columns: 0,
                    busiest_pe_entries: 0,
                };
                program.layers.len()
            ],
            cycle: 0,
            host_ops: 0,
            loaded_bytes: 0,
            every_cycle: false,
            trace: None,
        }
    }

    fn slice(&self, at: BufferSlice, len: u32) -> Result<std::ops::Range<usize>, String> {
        let buffer = self
            .buffers
            .get(usize::from(at.buffer))
            .ok_or_else(|| format!("buffer {} does not exist", at.buffer))?;
        let start = at.offset as usize;
        let end = start + len as usize;
        if end > buffer.len() {
            return Err(format!(
                "elements {start}..{end} are outside buffer {} (`{}`, {} elements)",
                at.buffer,
                self.program.buffers[usize::from(at.buffer)].name,
                buffer.len()
            ));
        }
        Ok(start..end)
    }

    fn pe(&self, pe: u16) -> Result<usize, String> {
        let pe = usize::from(pe);
        if pe >= self.pes {
            return Err(format!("PE {pe} does not exist ({} PEs)", self.pes));
        }
        Ok(pe)
    }

    fn step(&mut self, instruction: &'p Instruction) -> Result<(), String> {
        match instruction {
            Instruction::Configure(config) => self.configure(config),
            Instruction::LoadCodebook { weights } => {
                if weights[0] != 0 {
                    return Err(format!("codebook entry 0 is {}, must be 0", weights[0]));
                }
                self.codebook = *weights;
                self.loaded_bytes += 32;
                Ok(())
            }
            Instruction::LoadPointers {
                pe,
                address,
                pointers,
            } => {
                let pe = self.pe(*pe)?;
                let start = usize::from(*address);
                let end = start + pointers.len();
                if end > POINTER_WORDS as usize {
                    return Err(format!(
                        "words {start}..{end} are outside the {POINTER_WORDS}-word pointer memory"
                    ));
                }
                self.pointers[pe].write(start, pointers);
                self.pointers_loaded[pe] = true;
                self.loaded_bytes += 2 * pointers.len() as u64;
                Ok(())
            }
            Instruction::LoadMatrix {
                pe,
                address,
                entries,
            } => {
                let pe = self.pe(*pe)?;
                let start = *address as usize;
                let end = start + entries.len();
                if end > MATRIX_ENTRIES as usize {
                    return Err(format!(
                        "entries {start}..{end} are outside the {MATRIX_ENTRIES}-entry sparse-matrix memory"
                    ));
                }
                // Memories are held only as far as written or read (the rest reads as zeros).
                self.matrix[pe].write(start, entries);
                self.matrix_held[pe] = self.matrix_held[pe].max(end);
                self.loaded_bytes += entries.len() as u64;
                Ok(())
            }
            Instruction::LoadBias { values } => {
                let current = self.current.ok_or("no tile is configured".to_string())?;
                if !current.first_col_tile {
                    return Err("the configured tile is not a first column tile".into());
                }
                if values.len() != current.rows as usize {
                    return Err(format!(
                        "{} biases for a tile of {} rows",
                        values.len(),
                        current.rows
                    ));
                }
                self.bias.copy_from_slice(values);
                self.loaded_bytes += 4 * values.len() as u64;
                Ok(())
            }
            Instruction::LoadInput {
                input,
                start,
                dst,
                len,
            } => {
                let host = self
                    .inputs
                    .get(usize::from(*input))
                    .ok_or_else(|| format!("input {input} does not exist"))?;
                let from = *start as usize;
                let to = from + *len as usize;
                if to > host.len() {
                    return Err(format!(
                        "elements {from}..{to} are outside input {input} ({} elements)",
                        host.len()
                    ));
                }
                let range = self.slice(*dst, *len)?;
                self.buffers[usize::from(dst.buffer)][range].copy_from_slice(&host[from..to]);
                Ok(())
            }
            Instruction::Run => self.run(),
            Instruction::ReadOutput { output, src, len } => {
                let range = self.slice(*src, *len)?;
                let out = self
                    .outputs
                    .get_mut(usize::from(*output))
                    .ok_or_else(|| format!("output {output} does not exist"))?;
                out.extend_from_slice(&self.buffers[usize::from(src.buffer)][range]);
                Ok(())
            }
            Instruction::Host(op) => self.host(op),
            Instruction::Halt => Ok(()),
        }
    }

    fn configure(&mut self, config: &TileConfig) -> Result<(), String> {
        let pes = usize::from(config.pes);
        if pes != self.pes {
            return Err(format!(
                "the tile is partitioned over {pes} PEs, the machine has {}",
                self.pes
            ));
        }
        if usize::from(config.layer) >= self.program.layers.len() {
            return Err(format!("layer {} does not exist", config.layer));
        }
        if config.rows == 0 || config.cols == 0 {
            return Err(format!("a {}×{} tile is empty", config.rows, config.cols));
        }
        let shift = config.shift();
        if !(0..=i32::from(isa::MAX_FRAC)).contains(&shift) {
            return Err(format!(
                "product shift wf + af - of = {shift} is outside 0..=30"
            ));
        }
        if u32::from(config.ptr_base) + config.cols + 1 > POINTER_WORDS {
            return Err(format!(
                "pointers {}..={} are outside the {POINTER_WORDS}-word pointer memory",
                config.ptr_base,
                u32::from(config.ptr_base) + config.cols
            ));
        }
        if config.matrix_base >= MATRIX_ENTRIES {
            return Err(format!(
                "matrix base {} is outside the {MATRIX_ENTRIES}-entry sparse-matrix memory",
                config.matrix_base
            ));
        }
        let src = BufferSlice {
            buffer: config.src,
            offset: config.col_offset,
        };
        let dst = BufferSlice {
            buffer: config.dst,
            offset: config.row_offset,
        };
        self.slice(src, config.cols)?;
        self.slice(dst, config.rows)?;
        if config.first_col_tile {
            self.bias.clear();
            self.bias.resize(config.rows as usize, 0);
        } else {
            let continues = self.last_run.is_some_and(|last| {
                !last.last_col_tile
                    && last.layer == config.layer
                    && last.rows == config.rows
                    && last.row_offset == config.row_offset
                    && last.dst == config.dst
            });
            if !continues {
                return Err(
                    "a continuing column tile must follow a run of the previous column tile of the same row tile"
                        .into(),
                );
            }
        }
        self.current = Some(*config);
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        let config = self.current.ok_or("no tile is configured".to_string())?;
        if !config.first_col_tile && self.last_run.is_none_or(|last| last.last_col_tile) {
            return Err("a continuing column tile must follow the previous column tile".into());
        }
        let (rows, cols) = (config.rows as usize, config.cols as usize);
        if config.first_col_tile {
            self.acc.clear();
            self.acc.extend_from_slice(&self.bias);
        }
        let src_range = self.slice(
            BufferSlice {
                buffer: config.src,
                offset: config.col_offset,
            },
            config.cols,
        )?;
        let acts = &self.buffers[usize::from(config.src)][src_range];
        // Each PE's view of the tile: its pointers, and its sparse-matrix memory from the base
        // as far as the pointers reach. Untouched memories read as zeros; a PE's matrix memory
        // is held as far as this tile's pointers reach (within the memory's size).
        let base = config.ptr_base as usize;
        let matrix_base = config.matrix_base as usize;
        let mut views = Vec::with_capacity(self.pes);
        for p in 0..self.pes {
            let pointers = self.pointers[p].read(base..base + cols + 1);
            let reach = if self.pointers_loaded[p] {
                let reach = pointers.iter().copied().max().map_or(0, usize::from);
                let need = (matrix_base + reach).min(MATRIX_ENTRIES as usize);
                self.matrix_held[p] = self.matrix_held[p].max(need);
                reach
            } else {
                0
            };
            let available = self.matrix_held[p].saturating_sub(matrix_base);
            let entries = self.matrix[p].read(matrix_base..matrix_base + reach.min(available));
            views.push((pointers, entries, available));
        }
        let tile = Tile {
            pes: views
                .iter()
                .map(|(pointers, entries, available)| PeSlice {
                    pointers,
                    entries,
                    available: *available,
                    matrix_base: config.matrix_base,
                })
                .collect(),
            cols,
            rows,
            codebook: self.codebook,
            shift: config.shift() as u8,
        };
        let timing = Timing {
            fifo_depth: self.config.fifo_depth,
            pointer_read_cycles: u64::from(self.config.pointer_read_cycles),
            entries_per_read: self.config.entries_per_read(),
        };
        let mut counters = RunCounters::new(self.pes);
        let layer = usize::from(config.layer);
        let describe = |fault: Fault| format!("machine fault in layer {layer}: {fault}");
        if self.every_cycle {
            let mut records = Vec::new();
            let sink = self.trace.is_some().then_some(&mut records);
            stepping::run_tile_stepped(&timing, &tile, acts, &mut self.acc, &mut counters, sink)
                .map_err(describe)?;
            if let Some(trace) = self.trace.as_deref_mut() {
                trace.push(RunTrace {
                    layer,
                    start_cycle: self.cycle,
                    cycles: records,
                });
            }
        } else {
            engine::run_tile(
                &timing,
                &tile,
                acts,
                &mut self.acc,
                &mut counters,
                &mut self.scratch,
            )
            .map_err(describe)?;
        }
        // Stored weights and padding of the whole tile (every column), for the report.
        let (mut useful, mut padding) = (0u64, 0u64);
        for slice in &tile.pes {
            let (first, last) = (
                usize::from(slice.pointers[0]),
                usize::from(slice.pointers[cols]),
            );
            if first <= last && last <= slice.available {
                // `last` is within the pointers' reach, so within `entries`.
                let stored = &slice.entries[first..last];
                let zero_codes = engine::zero_codes(stored);
                useful += stored.len() as u64 - zero_codes;
                padding += zero_codes;
            }
        }
        let issued = counters.useful_macs + counters.padding_macs;
        let drain = if issued > 0 {
            u64::from(self.config.pipeline_stages - 1)
        } else {
            0
        };
        let mut writeback = 0;
        if config.last_col_tile {
            let per_pe = engine::local_rows(rows, self.pes, 0) as u64;
            writeback = per_pe.div_ceil(u64::from(self.config.writeback_outputs_per_cycle));
            let dst = &mut self.buffers[usize::from(config.dst)];
            let at = config.row_offset as usize;
            for (out, &acc) in dst[at..at + rows].iter_mut().zip(&self.acc) {
                *out = isa::write_back(acc, config.activation);
            }
        }
        self.cycle += counters.compute_cycles + drain + writeback;
        let account = &mut self.layers[layer];
        account.tiles += 1;
        account.drain_cycles += drain;
        account.writeback_cycles += writeback;
        if config.last_col_tile {
            account.writeback_outputs += rows as u64;
        }
        account.stored_useful += useful;
        account.stored_padding += padding;
        account.tile_cells += (rows * cols) as u64;
        account.columns += cols as u64;
        account.busiest_pe_entries += counters.busy.iter().copied().max().unwrap_or(0);
        account.counters.add(&counters);
        self.last_run = Some(config);
        Ok(())
    }

    fn host(&mut self, op: &HostOp) -> Result<(), String> {
        let len = op.len();
        let read = |m: &Self, at: BufferSlice| -> Result<Vec<i16>, String> {
            let range = m.slice(at, len)?;
            Ok(m.buffers[usize::from(at.buffer)][range].to_vec())
        };
        let (dst, values): (BufferSlice, Vec<i16>) = match *op {
            HostOp::Sigmoid {
                dst,
                src,
                src_frac,
                dst_frac,
                ..
            }
            | HostOp::Tanh {
                dst,
                src,
                src_frac,
                dst_frac,
                ..
            } => {
                let apply: fn(i16, u8, u8) -> i16 = if matches!(op, HostOp::Sigmoid { .. }) {
                    isa::host_sigmoid
                } else {
                    isa::host_tanh
                };
                let values = read(self, src)?;
                (
                    dst,
                    values
                        .into_iter()
                        .map(|x| apply(x, src_frac, dst_frac))
                        .collect(),
                )
            }
            HostOp::Mul {
                dst,
                a,
                b,
                a_frac,
                b_frac,
                dst_frac,
                ..
            }
            | HostOp::Add {
                dst,
                a,
                b,
                a_frac,
                b_frac,
                dst_frac,
                ..
            } => {
                let apply: fn(i16, i16, u8, u8, u8) -> i16 = if matches!(op, HostOp::Mul { .. }) {
                    isa::host_mul
                } else {
                    isa::host_add
                };
                let (a, b) = (read(self, a)?, read(self, b)?);
                (
                    dst,
                    a.iter()
                        .zip(&b)
                        .map(|(&x, &y)| apply(x, y, a_frac, b_frac, dst_frac))
                        .collect(),
                )
            }
            HostOp::Copy { dst, src, .. } => (dst, read(self, src)?),
            HostOp::Fill { dst, value, .. } => (dst, vec![value; len as usize]),
        };
        let fracs_ok = match *op {
            HostOp::Sigmoid {
                src_frac, dst_frac, ..
            }
            | HostOp::Tanh {
                src_frac, dst_frac, ..
            } => src_frac.max(dst_frac) <= isa::MAX_FRAC,
            HostOp::Mul {
                a_frac,
                b_frac,
                dst_frac,
                ..
            }
            | HostOp::Add {
                a_frac,
                b_frac,
                dst_frac,
                ..
            } => a_frac.max(b_frac).max(dst_frac) <= isa::MAX_FRAC,
            HostOp::Copy { .. } | HostOp::Fill { .. } => true,
        };
        if !fracs_ok {
            return Err(format!("a fractional-bit count exceeds {}", isa::MAX_FRAC));
        }
        let range = self.slice(dst, len)?;
        self.buffers[usize::from(dst.buffer)][range].copy_from_slice(&values);
        self.host_ops += u64::from(len);
        Ok(())
    }

    fn finish(self) -> Result<Simulation, SimError> {
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for (index, (spec, values)) in self.program.outputs.iter().zip(self.outputs).enumerate() {
            if values.len() as u64 != spec.elements() {
                return Err(SimError::OutputLength {
                    index,
                    name: spec.name.clone(),
                    expected: spec.elements(),
                    given: values.len(),
                });
            }
            let mut real: Vec<f32> = values
                .iter()
                .map(|&v| isa::dequantize(v, spec.frac))
                .collect();
            if spec.post == HostPost::Softmax {
                softmax(&mut real);
            }
            outputs.push(Output {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                frac: spec.frac,
                values,
                real,
            });
        }
        let config = self.config;
        let energy = &config.energy;
        let mhz = config.clock_mhz;
        let width = f64::from(config.sram_width_bits);
        let pes = self.pes;
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut per_pe = vec![PeCycles::default(); pes];
        let (mut total_cycles, mut total_energy_pj) = (0u64, 0f64);
        let (mut starved_all, mut window_all) = (0u64, 0u64);
        let mut sums = RunCounters::new(pes);
        let mut stored_padding = 0;
        for (decl, account) in self.program.layers.iter().zip(&self.layers) {
            let c = &account.counters;
            let cycles = c.compute_cycles + account.drain_cycles + account.writeback_cycles;
            let entries = c.useful_macs + c.padding_macs;
            let energy_pj = c.matrix_reads as f64 * width * energy.matrix_read_pj_per_bit
                + c.pointer_reads as f64 * energy.pointer_read_pj
                + entries as f64 * (energy.codebook_lookup_pj + energy.multiply_pj + energy.add_pj)
                + (entries - c.bypasses) as f64 * energy.accumulator_read_pj
                + (entries + account.writeback_outputs) as f64 * energy.accumulator_write_pj
                + c.activation_reads as f64 * energy.activation_read_pj
                + (c.fifo_pushes + c.fifo_pops) as f64 * energy.fifo_access_pj
                + (cycles * pes as u64) as f64 * energy.static_pj_per_pe_cycle;
            let starved: u64 = c.starved.iter().sum();
            let window = c.compute_cycles * pes as u64;
            let ratio = |num: u64, den: u64| {
                if den == 0 {
                    0.0
                } else {
                    num as f64 / den as f64
                }
            };
            layers.push(LayerReport {
                name: decl.name.clone(),
                rows: decl.rows,
                cols: decl.cols,
                tiles: account.tiles,
                cycles,
                latency_us: cycles as f64 / mhz,
                compute_cycles: c.compute_cycles,
                drain_cycles: account.drain_cycles,
                writeback_cycles: account.writeback_cycles,
                weight_density: ratio(account.stored_useful, account.tile_cells),
                activation_density: ratio(c.broadcasts, account.columns),
                load_balance_efficiency: efficiency(starved, window),
                padding_entries: account.stored_padding,
                macs: entries,
                useful_macs: c.useful_macs,
                padding_macs: c.padding_macs,
                busiest_pe_entries: account.busiest_pe_entries,
                broadcasts: c.broadcasts,
                ccu_stall_cycles: c.ccu_stall_cycles,
                bypasses: c.bypasses,
                matrix_reads: c.matrix_reads,
                pointer_reads: c.pointer_reads,
                activation_reads: c.activation_reads,
                energy_uj: energy_pj * 1e-6,
                busy_cycles: c.busy.iter().sum(),
                stall_cycles: c.stall.iter().sum(),
                starved_cycles: starved,
            });
            for (p, slot) in per_pe.iter_mut().enumerate() {
                slot.busy += c.busy[p];
                slot.stall += c.stall[p];
                slot.starved += c.starved[p];
            }
            total_cycles += cycles;
            total_energy_pj += energy_pj;
            starved_all += starved;
            window_all += window;
            stored_padding += account.stored_padding;
            sums.add(c);
        }
        total_energy_pj += self.host_ops as f64 * energy.host_op_pj;
        let total = TotalReport {
            cycles: total_cycles,
            clock_mhz: mhz,
            latency_us: total_cycles as f64 / mhz,
            pes,
            fifo_depth: config.fifo_depth,
            load_balance_efficiency: efficiency(starved_all, window_all),
            padding_entries: stored_padding,
            macs: sums.useful_macs + sums.padding_macs,
            useful_macs: sums.useful_macs,
            padding_macs: sums.padding_macs,
            energy_uj: total_energy_pj * 1e-6,
            matrix_reads: sums.matrix_reads,
            pointer_reads: sums.pointer_reads,
            activation_reads: sums.activation_reads,
            host_ops: self.host_ops,
            loaded_bytes: self.loaded_bytes,
            sram_width_bits: config.sram_width_bits,
            per_pe,
        };
        Ok(Simulation {
            outputs,
            report: Report {
                program: self.program.name.clone(),
                layers,
                total,
            },
        })
    }
}

/// 1 − starved / window; 1 when there was no compute window at all (nothing to balance).
fn efficiency(starved: u64, window: u64) -> f64 {
    if window == 0 {
        1.0
    } else {
        1.0 - starved as f64 / window as f64
    }
}

/// The host's f32 softmax: max-subtracted exponentials divided by their sum.
fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::WriteLog;
    use std::borrow::Cow;

    #[test]
    fn write_logs_read_back_the_last_write_of_every_word() {
        let (first, second, third) = ([1u8, 2, 3, 4, 5, 6], [7u8, 8], [9u8; 3]);
        let mut log = WriteLog::new();
        log.write(2, &first);
        assert!(matches!(log.read(3..6), Cow::Borrowed([2, 3, 4])));
        log.write(4, &second);
        assert_eq!(*log.read(0..10), [0, 0, 1, 2, 7, 8, 5, 6, 0, 0]);
        assert!(matches!(log.read(4..6), Cow::Borrowed([7, 8])));
        // A write covering earlier ones drops them.
        log.write(1, &third);
        log.write(0, &first);
        assert_eq!(log.writes.len(), 2);
        assert!(matches!(log.read(0..6), Cow::Borrowed([1, 2, 3, 4, 5, 6])));
        assert_eq!(*log.read(5..9), [6, 5, 6, 0]);
        assert!(log.read(7..7).is_empty());
    }
}
