//! The EIE instruction set: the machine state a program acts on, every instruction with its exact
//! semantics, the [`Program`] container, and the fixed-point arithmetic both the simulator and any
//! reference model must reproduce bit for bit.
//!
//! This module has no dependency on the IR; the simulator reads programs through it only.
//! [`encode`] / [`decode`] give the binary form (documented byte by byte in [`crate::binary`]),
//! [`disassemble`] the text listing.
//!
//! # Machine
//!
//! A program is compiled for `N = Program::pes` processing elements (1..=[`MAX_PES`]).
//!
//! * **Per PE** `k` (`0..N`):
//!   * a pointer memory of [`POINTER_WORDS`] `u16` words (32 KB),
//!   * a sparse-matrix memory of [`MATRIX_ENTRIES`] one-byte entries (128 KB, read as 64-bit rows
//!     of 8 entries), each entry `e` holding a weight code `v = e & 0xF` and a zero run
//!     `z = e >> 4`,
//!   * a slice of the accumulators and of the bias registers: PE `k` owns the tile rows `i` with
//!     `i % N == k`, held at local index `i / N`.
//!
//!   All of these start zeroed and keep their contents until overwritten.
//! * **Codebook**: 16 `i16` weights in `Q(wf)` (see [`TileConfig::weight_frac`]) broadcast to
//!   every PE; entry 0 is always 0, so code 0 is a zero (padding) weight. Starts all zero.
//! * **Activation buffers**: the vectors of `i16` activations the program declares in
//!   [`Program::buffers`], numbered by their position. Element `j` of a buffer lives in PE
//!   `j % N`'s activation memory. Every buffer starts zeroed. A buffer carries no format: each
//!   instruction that reads or writes one names the format. The chip's activation SRAM holds
//!   [`ACT_SRAM_ENTRIES_PER_PE`] entries per PE; [`Program::activation_entries_per_pe`] is what a
//!   program needs (not a validity rule: a program that needs more models a chip with a larger
//!   activation SRAM, and the lowering reports the figure).
//! * **Host**: holds the program's input tensors (converted to `Q(frac)` by [`quantize`] with the
//!   input's [`IoSpec::frac`] when the run starts) and the output tensors being filled by
//!   [`Instruction::ReadOutput`]; it also executes the element-wise [`HostOp`]s (the LSTM gate
//!   math), which cost no PE cycles and are counted as host operations.
//!
//! # Sparse storage of a tile (per PE)
//!
//! A tile of `rows × cols` weights is split by rows over the PEs (row `i` → PE `i % N`, local row
//! `i / N`). Each PE stores its local rows column by column (CSC): for tile column `j`,
//! `p[j] .. p[j+1]` are the entries of column `j`, where `p[j]` is the pointer word at address
//! `ptr_base + j` and entry addresses are `matrix_base + p[j]`. Walking a column's entries in order
//! with a position counter `pos` that starts at 0: `pos += z`; if `v != 0` the entry is the weight
//! `codebook[v]` at local row `pos`; then `pos += 1` (see [`ColumnWalk`]). A padding entry
//! (`v = 0, z = 15`) thus skips 16 positions. An entry with `v != 0` whose local row addresses a
//! tile row `>= rows` is a machine fault, as are pointers that decrease or address past the matrix
//! memory.
//!
//! # Arithmetic of [`Instruction::Run`] (bit-exact)
//!
//! With `wf`, `af`, `of` the weight, input and output fractional bits of the configured tile,
//! `s = wf + af - of` (0..=[`MAX_FRAC`], checked by [`decode`]):
//!
//! * product `p = (w as i32) * (a as i32)` (exact, `Q(wf + af)`),
//! * `acc[i] = acc[i].saturating_add(`[`shift_round`]`(p, s))` (arithmetic shift right by `s`
//!   rounding half up; `p` itself when `s == 0`), see [`mac`],
//! * columns are processed in increasing column order and, within a column, entries in storage
//!   order, so the accumulation order of every row is fixed and all models agree bit for bit.
//!   Zero activations are skipped (no PE work).
//!
//! After the last column tile of a row tile, `out = activation(saturate_i16(acc[i]))` is written to
//! the destination buffer (see [`Instruction::Run`]).

use std::fmt;

pub use crate::binary::{DecodeError, FORMAT_VERSION, MAGIC, decode, encode};
pub use crate::disasm::disassemble;

/// Most PEs a program may target.
pub const MAX_PES: u16 = 256;
/// `u16` words in each PE's pointer memory (32 KB).
pub const POINTER_WORDS: u32 = 16 * 1024;
/// One-byte entries in each PE's sparse-matrix memory (128 KB).
pub const MATRIX_ENTRIES: u32 = 128 * 1024;
/// Entries delivered by one 64-bit sparse-matrix SRAM read; `TileConfig::matrix_base` is a
/// multiple of it.
pub const ENTRIES_PER_SRAM_ROW: u32 = 8;
/// 16-bit registers per PE in each of the source and destination activation register files:
/// a tile has at most `64 * N` rows and `64 * N` columns.
pub const ACT_REGS_PER_PE: u32 = 64;
/// 16-bit entries per PE in the activation SRAM (2 KB) that holds the program's buffers.
pub const ACT_SRAM_ENTRIES_PER_PE: u32 = 1024;
/// Entries of a codebook.
pub const CODEBOOK_LEN: usize = 16;
/// Largest fractional-bit count of any fixed-point format, and largest product shift.
pub const MAX_FRAC: u8 = 30;
/// The weight code that means "zero" (padding entries use it).
pub const ZERO_CODE: u8 = 0;
/// Largest zero run of one entry; `(v = 0, z = MAX_ZERO_RUN)` is a padding entry covering
/// `MAX_ZERO_RUN + 1` positions.
pub const MAX_ZERO_RUN: u8 = 15;

/// An encoded EIE program: header metadata and the instruction stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The network's name (UTF-8, at most 65535 bytes).
    pub name: String,
    /// PEs the program's data is partitioned over (1..=[`MAX_PES`]); every
    /// [`TileConfig::pes`] equals it.
    pub pes: u16,
    /// Host input tensors, numbered by position ([`Instruction::LoadInput::input`]).
    pub inputs: Vec<IoSpec>,
    /// Host output tensors, numbered by position ([`Instruction::ReadOutput::output`]).
    pub outputs: Vec<IoSpec>,
    /// Activation buffers, numbered by position (`buffer` fields of instructions).
    pub buffers: Vec<BufferDecl>,
    /// Layers, numbered by position ([`TileConfig::layer`]); used to attribute cycles and counts.
    pub layers: Vec<LayerDecl>,
    /// The instruction stream, executed in order; the last instruction is [`Instruction::Halt`]
    /// and no other is.
    pub instructions: Vec<Instruction>,
}

impl Program {
    /// Activation-buffer entries of the whole program (the sum of the buffer lengths).
    pub fn activation_entries(&self) -> u64 {
        self.buffers.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Activation-buffer entries per PE: each buffer of length `L` puts `ceil(L / N)` entries in the
    /// most loaded PE (compare with [`ACT_SRAM_ENTRIES_PER_PE`]).
    pub fn activation_entries_per_pe(&self) -> u64 {
        let pes = u64::from(self.pes.max(1));
        self.buffers
            .iter()
            .map(|b| u64::from(b.len).div_ceil(pes))
            .sum()
    }
}

/// A host tensor: its name, shape, fixed-point format and what the host does after reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoSpec {
    /// Name of the graph value (UTF-8).
    pub name: String,
    /// Shape; the element count is the product (1 for a scalar).
    pub shape: Vec<u32>,
    /// Fractional bits of the `i16` values on the machine side (0..=[`MAX_FRAC`]): inputs are
    /// converted by [`quantize`], outputs by [`dequantize`].
    pub frac: u8,
    /// Host-side f32 function applied to an output after [`dequantize`] (always
    /// [`HostPost::None`] for inputs).
    pub post: HostPost,
}

impl IoSpec {
    /// Elements of the tensor.
    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| u64::from(d)).product()
    }
}

/// A function the host applies in f32 to a whole output after reading it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostPost {
    /// The dequantized values are the output.
    None,
    /// `softmax` over all elements in f32 (max-subtracted `exp`, then divided by the sum), as the
    /// reference interpreter computes it.
    Softmax,
}

/// An activation buffer: a name for listings and its length in `i16` elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferDecl {
    pub name: String,
    /// Elements (at least 1).
    pub len: u32,
}

/// A layer of the source network, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDecl {
    /// Name (the weight's or the node's name in the graph).
    pub name: String,
    /// Rows (outputs) of the whole layer matrix.
    pub rows: u32,
    /// Columns (inputs) of the whole layer matrix.
    pub cols: u32,
}

/// The activation function of a tile's output write-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `out = saturate_i16(acc)`.
    None,
    /// `out = max(saturate_i16(acc), 0)`.
    Relu,
}

/// A position in an activation buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferSlice {
    /// Buffer number (index into [`Program::buffers`]).
    pub buffer: u16,
    /// First element.
    pub offset: u32,
}

/// The configuration of one tile of a layer: a `rows × cols` block of the layer's matrix at
/// (`row_offset`, `col_offset`), stored in every PE's memories at `ptr_base` / `matrix_base`.
///
/// Tile column `j` reads the activation `src[col_offset + j]` (in `Q(input_frac)`); tile row `i`
/// is layer row `row_offset + i` and, after the last column tile, writes `dst[row_offset + i]`
/// (in `Q(output_frac)`). The column tiles of one row tile follow each other: the first has
/// `first_col_tile`, the last `last_col_tile` (both for a single tile), and all of them share
/// `layer`, `rows`, `row_offset`, `dst`, formats and activation ([`decode`] checks this).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileConfig {
    /// Layer number (index into [`Program::layers`]).
    pub layer: u16,
    /// Tile rows, 1..=`64 * pes`.
    pub rows: u32,
    /// Tile columns, 1..=`64 * pes`.
    pub cols: u32,
    /// PE count; equals [`Program::pes`].
    pub pes: u16,
    /// Fractional bits `wf` of the codebook weights.
    pub weight_frac: u8,
    /// Fractional bits `af` of the source activations.
    pub input_frac: u8,
    /// Fractional bits `of` of the accumulators, biases and outputs; `wf + af - of` is in
    /// 0..=[`MAX_FRAC`].
    pub output_frac: u8,
    /// Applied at write-back.
    pub activation: Activation,
    /// Source buffer (holds the layer's input vector).
    pub src: u16,
    /// Destination buffer (receives the layer's output vector).
    pub dst: u16,
    /// Layer row of tile row 0.
    pub row_offset: u32,
    /// Layer column of tile column 0 (and its source element).
    pub col_offset: u32,
    /// The accumulators start from the biases at [`Instruction::Run`].
    pub first_col_tile: bool,
    /// [`Instruction::Run`] ends by writing the outputs to `dst`.
    pub last_col_tile: bool,
    /// Pointer-memory address of `p[0]`; `ptr_base + cols + 1 <= POINTER_WORDS`.
    pub ptr_base: u16,
    /// Matrix-memory address that pointers are relative to; a multiple of
    /// [`ENTRIES_PER_SRAM_ROW`], below [`MATRIX_ENTRIES`].
    pub matrix_base: u32,
}

impl TileConfig {
    /// The product shift `s = wf + af - of` (may be out of range in an unchecked value).
    pub fn shift(&self) -> i32 {
        i32::from(self.weight_frac) + i32::from(self.input_frac) - i32::from(self.output_frac)
    }
}

/// One instruction. Each variant's documentation is its exact semantics; "fault" means the
/// machine stops with an error (a valid program from the lowering never faults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// Make `config` the current tile configuration. If `first_col_tile`, the `rows` bias
    /// registers are reset to 0. Otherwise the accumulators keep the partial sums of the previous
    /// [`Instruction::Run`], which was of the previous column tile of the same row tile.
    Configure(TileConfig),
    /// Set the codebook (entry 0 is 0; [`decode`] checks). Stays until the next `LoadCodebook`.
    LoadCodebook {
        /// Weights in `Q(weight_frac)` of the tiles that use them.
        weights: [i16; CODEBOOK_LEN],
    },
    /// Write `pointers` into PE `pe`'s pointer memory at `address..address + len`
    /// (must fit in [`POINTER_WORDS`]).
    LoadPointers {
        pe: u16,
        address: u16,
        pointers: Vec<u16>,
    },
    /// Write `entries` into PE `pe`'s sparse-matrix memory at `address..address + len`
    /// (must fit in [`MATRIX_ENTRIES`]).
    LoadMatrix {
        pe: u16,
        address: u32,
        entries: Vec<u8>,
    },
    /// Set the bias registers of the current tile's rows: `values[i]` (in `Q(output_frac)`) is the
    /// bias of tile row `i` (held by PE `i % N`). Requires a current configuration with
    /// `first_col_tile`, and `values.len() == rows`.
    LoadBias { values: Vec<i32> },
    /// Host → machine: `buffer[offset + t] = host_input[input][start + t]` for `t` in `0..len`,
    /// the host input already in `Q(IoSpec::frac)`.
    LoadInput {
        input: u16,
        start: u32,
        dst: BufferSlice,
        len: u32,
    },
    /// Run the current tile. If `first_col_tile`, first `acc[i] = bias[i]` for every tile row.
    /// Then the CCU broadcasts, in increasing `j`, every column `j` whose activation
    /// `a = src[col_offset + j]` is non-zero; every PE walks its entries of column `j` and does
    /// `acc[row] = mac(acc[row], codebook[v], a, s)` for each entry with `v != 0`. If
    /// `last_col_tile`, finally `dst[row_offset + i] = activation(saturate_i16(acc[i]))` for every
    /// tile row `i`. Faults without a current configuration.
    Run,
    /// Machine → host: append `buffer[offset .. offset + len]` to host output `output` (in its
    /// `Q(IoSpec::frac)`). At [`Instruction::Halt`] every output has exactly its element count.
    ReadOutput {
        output: u16,
        src: BufferSlice,
        len: u32,
    },
    /// An element-wise fixed-point operation on buffers, executed by the host side.
    Host(HostOp),
    /// End of the program (the last instruction, and only there).
    Halt,
}

/// Element-wise host operations on buffer slices of `len` elements, for the LSTM gate math.
///
/// Each is computed as if every source element were read before any destination element is
/// written (so a destination may overlap its sources). Results saturate to `i16`. Formats are
/// fractional-bit counts in 0..=[`MAX_FRAC`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostOp {
    /// `dst[t] = `[`host_sigmoid`]`(src[t], src_frac, dst_frac)`.
    Sigmoid {
        dst: BufferSlice,
        src: BufferSlice,
        len: u32,
        src_frac: u8,
        dst_frac: u8,
    },
    /// `dst[t] = `[`host_tanh`]`(src[t], src_frac, dst_frac)`.
    Tanh {
        dst: BufferSlice,
        src: BufferSlice,
        len: u32,
        src_frac: u8,
        dst_frac: u8,
    },
    /// `dst[t] = `[`host_mul`]`(a[t], b[t], a_frac, b_frac, dst_frac)`.
    Mul {
        dst: BufferSlice,
        a: BufferSlice,
        b: BufferSlice,
        len: u32,
        a_frac: u8,
        b_frac: u8,
        dst_frac: u8,
    },
    /// `dst[t] = `[`host_add`]`(a[t], b[t], a_frac, b_frac, dst_frac)`.
    Add {
        dst: BufferSlice,
        a: BufferSlice,
        b: BufferSlice,
        len: u32,
        a_frac: u8,
        b_frac: u8,
        dst_frac: u8,
    },
    /// `dst[t] = src[t]` (no format change).
    Copy {
        dst: BufferSlice,
        src: BufferSlice,
        len: u32,
    },
    /// `dst[t] = value`.
    Fill {
        dst: BufferSlice,
        len: u32,
        value: i16,
    },
}

impl HostOp {
    /// Elements the operation writes.
    pub fn len(&self) -> u32 {
        match *self {
            HostOp::Sigmoid { len, .. }
            | HostOp::Tanh { len, .. }
            | HostOp::Mul { len, .. }
            | HostOp::Add { len, .. }
            | HostOp::Copy { len, .. }
            | HostOp::Fill { len, .. } => len,
        }
    }

    /// Whether the operation writes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mnemonic used by the disassembly.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            HostOp::Sigmoid { .. } => "host.sigmoid",
            HostOp::Tanh { .. } => "host.tanh",
            HostOp::Mul { .. } => "host.mul",
            HostOp::Add { .. } => "host.add",
            HostOp::Copy { .. } => "host.copy",
            HostOp::Fill { .. } => "host.fill",
        }
    }
}

impl Instruction {
    /// The mnemonic used by the disassembly.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Instruction::Configure(_) => "configure",
            Instruction::LoadCodebook { .. } => "load.codebook",
            Instruction::LoadPointers { .. } => "load.pointers",
            Instruction::LoadMatrix { .. } => "load.matrix",
            Instruction::LoadBias { .. } => "load.bias",
            Instruction::LoadInput { .. } => "load.input",
            Instruction::Run => "run",
            Instruction::ReadOutput { .. } => "read.output",
            Instruction::Host(op) => op.mnemonic(),
            Instruction::Halt => "halt",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::None => "none",
            Activation::Relu => "relu",
        })
    }
}

impl fmt::Display for HostPost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostPost::None => "none",
            HostPost::Softmax => "softmax",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse entries.

/// Packs a weight code and a zero run into one entry byte.
pub fn pack_entry(code: u8, zeros: u8) -> u8 {
    debug_assert!(code < 16 && zeros <= MAX_ZERO_RUN);
    (zeros << 4) | (code & 0xF)
}

/// The weight code (low nibble) of an entry.
pub fn entry_code(entry: u8) -> u8 {
    entry & 0xF
}

/// The zero run (high nibble) of an entry.
pub fn entry_zeros(entry: u8) -> u8 {
    entry >> 4
}

/// Walks the entries of one column of one PE, yielding `(local_row, code)` for each entry with a
/// non-zero code, in storage order (see the module docs: `pos += z`, emit if `v != 0`,
/// `pos += 1`).
#[derive(Clone, Debug)]
pub struct ColumnWalk<'a> {
    entries: std::slice::Iter<'a, u8>,
    position: u32,
}

impl<'a> ColumnWalk<'a> {
    pub fn new(entries: &'a [u8]) -> Self {
        ColumnWalk {
            entries: entries.iter(),
            position: 0,
        }
    }
}

impl Iterator for ColumnWalk<'_> {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<(u32, u8)> {
        for &entry in self.entries.by_ref() {
            let at = self.position + u32::from(entry_zeros(entry));
            self.position = at + 1;
            let code = entry_code(entry);
            if code != ZERO_CODE {
                return Some((at, code));
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed-point arithmetic: the single definition shared by every model of the machine.

/// Saturates to `i16`.
pub fn saturate_i16(x: i64) -> i16 {
    x.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

/// Arithmetic right shift by `shift` (0..=30) rounding half up: `(p + (1 << (s-1))) >> s`,
/// computed without overflow; `p` when `shift == 0`.
pub fn shift_round(p: i32, shift: u8) -> i32 {
    if shift == 0 {
        p
    } else {
        ((i64::from(p) + (1i64 << (shift - 1))) >> shift) as i32
    }
}

/// One multiply-accumulate of the arithmetic unit: `acc.saturating_add(shift_round(w * a, s))`.
pub fn mac(acc: i32, weight: i16, activation: i16, shift: u8) -> i32 {
    acc.saturating_add(shift_round(
        i32::from(weight) * i32::from(activation),
        shift,
    ))
}

/// The write-back of one accumulator: `activation(saturate_i16(acc))`.
pub fn write_back(acc: i32, activation: Activation) -> i16 {
    let out = saturate_i16(i64::from(acc));
    match activation {
        Activation::None => out,
        Activation::Relu => out.max(0),
    }
}

/// Rescales a `Q(from)` value to `Q(to)` in `i64`: exact left shift when `to >= from`, otherwise
/// right shift rounding half up (as [`shift_round`]).
pub fn rescale(x: i64, from: u8, to: u8) -> i64 {
    if to >= from {
        x << (to - from)
    } else {
        let s = from - to;
        (x + (1i64 << (s - 1))) >> s
    }
}

/// `round_half_away_from_zero(x * 2^frac)` saturated to `i16`; NaN gives 0. The host's conversion
/// of f32 inputs (and of any real constant) to `Q(frac)`.
pub fn quantize(x: f32, frac: u8) -> i16 {
    quantize_f64(f64::from(x), frac)
}

/// [`quantize`] of an f64 value.
pub fn quantize_f64(x: f64, frac: u8) -> i16 {
    if x.is_nan() {
        return 0;
    }
    let scaled = (x * f64::from(1u32 << frac.min(31))).round();
    scaled.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// `v / 2^frac` as f32 (exact: every `i16` in every `Q(frac)` is an f32).
pub fn dequantize(v: i16, frac: u8) -> f32 {
    (f64::from(v) / f64::from(1u32 << frac.min(31))) as f32
}

/// Host sigmoid: `quantize_f64(1 / (1 + libm::exp(-x / 2^src_frac)), dst_frac)`, evaluated in
/// f64 with the `libm` crate so every platform gives the same bits.
pub fn host_sigmoid(x: i16, src_frac: u8, dst_frac: u8) -> i16 {
    let real = f64::from(x) / f64::from(1u32 << src_frac.min(31));
    quantize_f64(1.0 / (1.0 + libm::exp(-real)), dst_frac)
}

/// Host tanh: `quantize_f64(libm::tanh(x / 2^src_frac), dst_frac)` in f64.
pub fn host_tanh(x: i16, src_frac: u8, dst_frac: u8) -> i16 {
    let real = f64::from(x) / f64::from(1u32 << src_frac.min(31));
    quantize_f64(libm::tanh(real), dst_frac)
}

/// Host product: `saturate_i16(rescale(a * b, a_frac + b_frac, dst_frac))`.
pub fn host_mul(a: i16, b: i16, a_frac: u8, b_frac: u8, dst_frac: u8) -> i16 {
    let product = i64::from(a) * i64::from(b);
    saturate_i16(rescale(product, a_frac + b_frac, dst_frac))
}

/// Host sum: both operands are first brought to `Q(max(a_frac, b_frac, dst_frac))` exactly, added,
/// then `saturate_i16(rescale(sum, that, dst_frac))`.
pub fn host_add(a: i16, b: i16, a_frac: u8, b_frac: u8, dst_frac: u8) -> i16 {
    let wide = a_frac.max(b_frac).max(dst_frac);
    let sum = rescale(i64::from(a), a_frac, wide) + rescale(i64::from(b), b_frac, wide);
    saturate_i16(rescale(sum, wide, dst_frac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_walk_follows_the_paper_example() {
        // Column [0,0,1,2,0×18,3] → v=[1,2,0,3], z=[2,0,15,2].
        let entries = [
            pack_entry(1, 2),
            pack_entry(2, 0),
            pack_entry(0, 15),
            pack_entry(3, 2),
        ];
        let walked: Vec<_> = ColumnWalk::new(&entries).collect();
        assert_eq!(walked, vec![(2, 1), (3, 2), (22, 3)]);
    }

    #[test]
    fn shift_round_rounds_half_up() {
        assert_eq!(shift_round(5, 1), 3);
        assert_eq!(shift_round(-5, 1), -2);
        assert_eq!(shift_round(-6, 2), -1);
        assert_eq!(shift_round(i32::MAX, 30), 2);
        assert_eq!(shift_round(7, 0), 7);
    }

    #[test]
    fn mac_saturates() {
        assert_eq!(mac(i32::MAX, i16::MAX, i16::MAX, 0), i32::MAX);
        assert_eq!(mac(i32::MIN, i16::MIN, i16::MAX, 0), i32::MIN);
        assert_eq!(mac(10, 3, 4, 1), 16);
    }

    #[test]
    fn host_ops_round_and_saturate() {
        assert_eq!(host_sigmoid(0, 8, 15), 16384);
        assert_eq!(host_tanh(0, 8, 15), 0);
        assert_eq!(host_tanh(i16::MAX, 0, 15), i16::MAX);
        assert_eq!(host_mul(16384, 16384, 15, 15, 15), 8192);
        assert_eq!(host_add(256, 128, 8, 7, 8), 512);
        assert_eq!(host_add(i16::MAX, i16::MAX, 0, 0, 0), i16::MAX);
        assert_eq!(quantize(0.5, 15), 16384);
        assert_eq!(quantize(-2.0, 14), -32768);
        assert_eq!(quantize(f32::NAN, 3), 0);
        assert_eq!(dequantize(-16384, 15), -0.5);
    }
}
