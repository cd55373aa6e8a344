//! The binary form of a [`Program`]: [`encode`] and [`decode`], with `encode(decode(b)) == b` for
//! every stream `decode` accepts, and `decode` accepting exactly the valid programs.
//!
//! # Layout (all integers little-endian)
//!
//! Header, 16 bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `b"EIEP"` ([`MAGIC`]) |
//! | 4 | 2 | format version `u16` = [`FORMAT_VERSION`] |
//! | 6 | 2 | flags `u16`, 0 |
//! | 8 | 4 | body length `u32`: the bytes after the header (the file is exactly `16 + body`) |
//! | 12 | 4 | CRC-32 (IEEE, as `crc32fast`) of the body |
//!
//! Body, in order (`str` = `u16` byte length then UTF-8 bytes):
//!
//! * `str` name, `u16` pes;
//! * inputs: `u16` count, each `str` name, `u8` rank, rank × `u32` dims, `u8` frac, `u8` post
//!   (0 none, 1 softmax; inputs use 0);
//! * outputs: the same;
//! * buffers: `u16` count, each `str` name, `u32` len;
//! * layers: `u16` count, each `str` name, `u32` rows, `u32` cols;
//! * `u32` instruction count, then the instructions, each an opcode byte and its fields
//!   (a slice `S` = `u16` buffer, `u32` offset):
//!
//! | opcode | instruction | fields |
//! | --- | --- | --- |
//! | `0x01` | configure | `u16` layer, `u32` rows, `u32` cols, `u16` pes, `u8` wf, `u8` af, `u8` of, `u8` activation (0 none, 1 relu), `u16` src, `u16` dst, `u32` row_offset, `u32` col_offset, `u8` flags (bit 0 first column tile, bit 1 last), `u16` ptr_base, `u32` matrix_base |
//! | `0x02` | load.codebook | 16 × `i16` |
//! | `0x03` | load.pointers | `u16` pe, `u16` address, `u32` count, count × `u16` |
//! | `0x04` | load.matrix | `u16` pe, `u32` address, `u32` count, count × `u8` |
//! | `0x05` | load.bias | `u32` count, count × `i32` |
//! | `0x06` | load.input | `u16` input, `u32` start, `S` dst, `u32` len |
//! | `0x07` | run | |
//! | `0x08` | read.output | `u16` output, `S` src, `u32` len |
//! | `0x10` | host.sigmoid | `S` dst, `S` src, `u32` len, `u8` src_frac, `u8` dst_frac |
//! | `0x11` | host.tanh | as host.sigmoid |
//! | `0x12` | host.mul | `S` dst, `S` a, `S` b, `u32` len, `u8` a_frac, `u8` b_frac, `u8` dst_frac |
//! | `0x13` | host.add | as host.mul |
//! | `0x14` | host.copy | `S` dst, `S` src, `u32` len |
//! | `0x15` | host.fill | `S` dst, `u32` len, `i16` value |
//! | `0xFF` | halt | |
//!
//! The body ends with the halt instruction.
//!
//! # Validation
//!
//! Besides the syntax, [`decode`] checks every rule of [`crate::isa`] that does not depend on the
//! data loaded at run time: indices in range, slices inside their buffers, formats and shifts in
//! range, tiles inside the register files and memories, the sequencing of configurations, runs
//! and column tiles, input and output element counts, and a single final halt. Every error names
//! the byte offset of the field (or instruction) at fault. Nothing is allocated beyond what the
//! bytes present justify: every count is checked against the remaining bytes first.

use std::fmt;

use crate::isa::{
    ACT_REGS_PER_PE, Activation, BufferDecl, BufferSlice, CODEBOOK_LEN, ENTRIES_PER_SRAM_ROW,
    HostOp, HostPost, Instruction, IoSpec, LayerDecl, MATRIX_ENTRIES, MAX_FRAC, MAX_PES,
    POINTER_WORDS, Program, TileConfig,
};

/// The first four bytes of every program.
pub const MAGIC: [u8; 4] = *b"EIEP";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 16;

const OP_CONFIGURE: u8 = 0x01;
const OP_LOAD_CODEBOOK: u8 = 0x02;
const OP_LOAD_POINTERS: u8 = 0x03;
const OP_LOAD_MATRIX: u8 = 0x04;
const OP_LOAD_BIAS: u8 = 0x05;
const OP_LOAD_INPUT: u8 = 0x06;
const OP_RUN: u8 = 0x07;
const OP_READ_OUTPUT: u8 = 0x08;
const OP_SIGMOID: u8 = 0x10;
const OP_TANH: u8 = 0x11;
const OP_MUL: u8 = 0x12;
const OP_ADD: u8 = 0x13;
const OP_COPY: u8 = 0x14;
const OP_FILL: u8 = 0x15;
const OP_HALT: u8 = 0xFF;

const FLAG_FIRST: u8 = 1;
const FLAG_LAST: u8 = 2;

/// A malformed or invalid program: the byte offset at fault and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset from the start of the stream of the field or instruction at fault.
    pub offset: usize,
    pub reason: String,
}

/// Why a [`Program`] cannot be encoded: a field too long for its encoding, or the encoded program
/// does not pass [`decode`]'s validation (the reason names the instruction).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid program: {reason}")]
pub struct EncodeError {
    pub reason: String,
}

/// Encodes a program, then checks that [`decode`] accepts the bytes, so only valid programs are
/// ever written.
pub fn encode(program: &Program) -> Result<Vec<u8>, EncodeError> {
    let (bytes, starts) = write(program)?;
    if let Err(error) = decode(&bytes) {
        let body_offset = error.offset.saturating_sub(HEADER_LEN);
        let place = match starts.partition_point(|&s| s <= body_offset) {
            0 => "header".to_string(),
            n => format!(
                "instruction {} ({})",
                n - 1,
                program.instructions[n - 1].mnemonic()
            ),
        };
        return Err(EncodeError {
            reason: format!("{place}: {}", error.reason),
        });
    }
    Ok(bytes)
}

/// Bytes of one encoded instruction (opcode and fields).
pub fn encoded_len(instruction: &Instruction) -> usize {
    let mut writer = Writer::default();
    match writer.instruction(instruction) {
        Ok(()) => writer.bytes.len(),
        // A payload too long to encode: its count field alone fails; report its raw size.
        Err(_) => usize::MAX,
    }
}

/// Writes the bytes of a program without validating it (only lengths that overflow their fields
/// fail): for tools and tests that need invalid streams. [`decode`] rejects what is invalid.
pub fn encode_unchecked(program: &Program) -> Result<Vec<u8>, EncodeError> {
    Ok(write(program)?.0)
}

/// The bytes of a program and the body offset of each instruction.
fn write(program: &Program) -> Result<(Vec<u8>, Vec<usize>), EncodeError> {
    let mut writer = Writer::default();
    let mut starts = Vec::with_capacity(program.instructions.len());
    writer.program(program, &mut starts)?;
    let body = writer.bytes;
    let body_len = u32::try_from(body.len()).map_err(|_| EncodeError {
        reason: format!("body of {} bytes exceeds 4 GiB", body.len()),
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&body_len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok((bytes, starts))
}

#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn i16(&mut self, v: i16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    fn count16(&mut self, n: usize, what: &str) -> Result<(), EncodeError> {
        let n = u16::try_from(n).map_err(|_| EncodeError {
            reason: format!("{what}: {n} exceeds {}", u16::MAX),
        })?;
        self.u16(n);
        Ok(())
    }
    fn count32(&mut self, n: usize, what: &str) -> Result<(), EncodeError> {
        let n = u32::try_from(n).map_err(|_| EncodeError {
            reason: format!("{what}: {n} exceeds {}", u32::MAX),
        })?;
        self.u32(n);
        Ok(())
    }
    fn str(&mut self, s: &str, what: &str) -> Result<(), EncodeError> {
        self.count16(s.len(), &format!("{what} length"))?;
        self.bytes.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn slice(&mut self, s: BufferSlice) {
        self.u16(s.buffer);
        self.u32(s.offset);
    }
    fn io(&mut self, specs: &[IoSpec], what: &str) -> Result<(), EncodeError> {
        self.count16(specs.len(), what)?;
        for spec in specs {
            self.str(&spec.name, "tensor name")?;
            let rank = u8::try_from(spec.shape.len()).map_err(|_| EncodeError {
                reason: format!("{what} `{}`: rank above 255", spec.name),
            })?;
            self.u8(rank);
            for &d in &spec.shape {
                self.u32(d);
            }
            self.u8(spec.frac);
            self.u8(match spec.post {
                HostPost::None => 0,
                HostPost::Softmax => 1,
            });
        }
        Ok(())
    }

    fn program(&mut self, p: &Program, starts: &mut Vec<usize>) -> Result<(), EncodeError> {
        self.str(&p.name, "program name")?;
        self.u16(p.pes);
        self.io(&p.inputs, "inputs")?;
        self.io(&p.outputs, "outputs")?;
        self.count16(p.buffers.len(), "buffers")?;
        for b in &p.buffers {
            self.str(&b.name, "buffer name")?;
            self.u32(b.len);
        }
        self.count16(p.layers.len(), "layers")?;
        for l in &p.layers {
            self.str(&l.name, "layer name")?;
            self.u32(l.rows);
            self.u32(l.cols);
        }
        self.count32(p.instructions.len(), "instructions")?;
        for instruction in &p.instructions {
            starts.push(self.bytes.len());
            self.instruction(instruction)?;
        }
        Ok(())
    }

    fn instruction(&mut self, instruction: &Instruction) -> Result<(), EncodeError> {
        match instruction {
            Instruction::Configure(c) => {
                self.u8(OP_CONFIGURE);
                self.u16(c.layer);
                self.u32(c.rows);
                self.u32(c.cols);
                self.u16(c.pes);
                self.u8(c.weight_frac);
                self.u8(c.input_frac);
                self.u8(c.output_frac);
                self.u8(match c.activation {
                    Activation::None => 0,
                    Activation::Relu => 1,
                });
                self.u16(c.src);
                self.u16(c.dst);
                self.u32(c.row_offset);
                self.u32(c.col_offset);
                let mut flags = 0;
                if c.first_col_tile {
                    flags |= FLAG_FIRST;
                }
                if c.last_col_tile {
                    flags |= FLAG_LAST;
                }
                self.u8(flags);
                self.u16(c.ptr_base);
                self.u32(c.matrix_base);
            }
            Instruction::LoadCodebook { weights } => {
                self.u8(OP_LOAD_CODEBOOK);
                for &w in weights {
                    self.i16(w);
                }
            }
            Instruction::LoadPointers {
                pe,
                address,
                pointers,
            } => {
                self.u8(OP_LOAD_POINTERS);
                self.u16(*pe);
                self.u16(*address);
                self.count32(pointers.len(), "pointers")?;
                for &p in pointers {
                    self.u16(p);
                }
            }
            Instruction::LoadMatrix {
                pe,
                address,
                entries,
            } => {
                self.u8(OP_LOAD_MATRIX);
                self.u16(*pe);
                self.u32(*address);
                self.count32(entries.len(), "entries")?;
                self.bytes.extend_from_slice(entries);
            }
            Instruction::LoadBias { values } => {
                self.u8(OP_LOAD_BIAS);
                self.count32(values.len(), "biases")?;
                for &v in values {
                    self.i32(v);
                }
            }
            Instruction::LoadInput {
                input,
                start,
                dst,
                len,
            } => {
                self.u8(OP_LOAD_INPUT);
                self.u16(*input);
                self.u32(*start);
                self.slice(*dst);
                self.u32(*len);
            }
            Instruction::Run => self.u8(OP_RUN),
            Instruction::ReadOutput { output, src, len } => {
                self.u8(OP_READ_OUTPUT);
                self.u16(*output);
                self.slice(*src);
                self.u32(*len);
            }
            Instruction::Host(op) => self.host(op),
            Instruction::Halt => self.u8(OP_HALT),
        }
        Ok(())
    }

    fn host(&mut self, op: &HostOp) {
        match *op {
            HostOp::Sigmoid {
                dst,
                src,
                len,
                src_frac,
                dst_frac,
            }
            | HostOp::Tanh {
                dst,
                src,
                len,
                src_frac,
                dst_frac,
            } => {
                self.u8(if matches!(op, HostOp::Sigmoid { .. }) {
                    OP_SIGMOID
                } else {
                    OP_TANH
                });
                self.slice(dst);
                self.slice(src);
                self.u32(len);
                self.u8(src_frac);
                self.u8(dst_frac);
            }
            HostOp::Mul {
                dst,
                a,
                b,
                len,
                a_frac,
                b_frac,
                dst_frac,
            }
            | HostOp::Add {
                dst,
                a,
                b,
                len,
                a_frac,
                b_frac,
                dst_frac,
            } => {
                self.u8(if matches!(op, HostOp::Mul { .. }) {
                    OP_MUL
                } else {
                    OP_ADD
                });
                self.slice(dst);
                self.slice(a);
                self.slice(b);
                self.u32(len);
                self.u8(a_frac);
                self.u8(b_frac);
                self.u8(dst_frac);
            }
            HostOp::Copy { dst, src, len } => {
                self.u8(OP_COPY);
                self.slice(dst);
                self.slice(src);
                self.u32(len);
            }
            HostOp::Fill { dst, len, value } => {
                self.u8(OP_FILL);
                self.slice(dst);
                self.u32(len);
                self.i16(value);
            }
        }
    }
}

/// Decodes and validates a program (see the module docs for the layout and the checks).
pub fn decode(bytes: &[u8]) -> Result<Program, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.take(4, "magic")?;
    if magic != MAGIC {
        return Err(r.error_at(
            0,
            format!("bad magic {magic:02x?}, expected {MAGIC:02x?} (\"EIEP\")"),
        ));
    }
    let version_at = r.pos;
    let version = r.u16("format version")?;
    if version != FORMAT_VERSION {
        return Err(r.error_at(
            version_at,
            format!("unsupported format version {version}, this build reads {FORMAT_VERSION}"),
        ));
    }
    let flags_at = r.pos;
    let flags = r.u16("flags")?;
    if flags != 0 {
        return Err(r.error_at(flags_at, format!("unknown header flags {flags:#06x}")));
    }
    let body_len = r.u32("body length")? as usize;
    let crc = r.u32("checksum")?;
    let actual_body = bytes.len() - HEADER_LEN;
    if body_len != actual_body {
        return Err(r.error_at(
            8,
            format!("header declares a body of {body_len} bytes but {actual_body} follow"),
        ));
    }
    let computed = crc32fast::hash(&bytes[HEADER_LEN..]);
    if computed != crc {
        return Err(r.error_at(
            12,
            format!("checksum mismatch: header says {crc:#010x}, body hashes to {computed:#010x}"),
        ));
    }
    r.program()
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error_at(&self, offset: usize, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            offset,
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.error_at(
                self.pos,
                format!(
                    "truncated {what}: needs {n} bytes, {} remain",
                    self.remaining()
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a count of items of `item_bytes` each, checked against the bytes that remain.
    fn count32(&mut self, item_bytes: usize, what: &str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.u32(what)? as usize;
        self.check_count(at, n, item_bytes, what)?;
        Ok(n)
    }
    fn count16(&mut self, item_bytes: usize, what: &str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = usize::from(self.u16(what)?);
        self.check_count(at, n, item_bytes, what)?;
        Ok(n)
    }
    fn check_count(
        &self,
        at: usize,
        n: usize,
        item_bytes: usize,
        what: &str,
    ) -> Result<(), DecodeError> {
        if n.saturating_mul(item_bytes) > self.remaining() {
            return Err(self.error_at(
                at,
                format!(
                    "{what} count {n} needs at least {} bytes, only {} remain",
                    n.saturating_mul(item_bytes),
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn str(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = self.count16(1, &format!("{what} length"))?;
        let at = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|e| {
            self.error_at(
                at + e.utf8_error().valid_up_to(),
                format!("{what} is not UTF-8"),
            )
        })
    }

    fn frac(&mut self, what: &str) -> Result<u8, DecodeError> {
        let at = self.pos;
        let f = self.u8(what)?;
        if f > MAX_FRAC {
            return Err(self.error_at(at, format!("{what} {f} exceeds {MAX_FRAC} fractional bits")));
        }
        Ok(f)
    }

    fn io(&mut self, what: &str, input: bool) -> Result<Vec<IoSpec>, DecodeError> {
        // Smallest spec: empty name (2) + rank (1) + frac (1) + post (1).
        let n = self.count16(5, what)?;
        let mut specs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str("tensor name")?;
            let rank_at = self.pos;
            let rank = usize::from(self.u8("rank")?);
            self.check_count(rank_at, rank, 4, "dimension")?;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(self.u32("dimension")?);
            }
            let frac = self.frac("tensor format")?;
            let post_at = self.pos;
            let post = match self.u8("host post-processing")? {
                0 => HostPost::None,
                1 if !input => HostPost::Softmax,
                1 => {
                    return Err(self.error_at(
                        post_at,
                        format!("input `{name}` has a host post-processing function"),
                    ));
                }
                other => {
                    return Err(
                        self.error_at(post_at, format!("unknown host post-processing {other}"))
                    );
                }
            };
            specs.push(IoSpec {
                name,
                shape,
                frac,
                post,
            });
        }
        Ok(specs)
    }

    fn program(&mut self) -> Result<Program, DecodeError> {
        let name = self.str("program name")?;
        let pes_at = self.pos;
        let pes = self.u16("PE count")?;
        if pes == 0 || pes > MAX_PES {
            return Err(self.error_at(pes_at, format!("PE count {pes} outside 1..={MAX_PES}")));
        }
        let inputs = self.io("inputs", true)?;
        let outputs = self.io("outputs", false)?;
        let n = self.count16(6, "buffers")?;
        let mut buffers = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str("buffer name")?;
            let at = self.pos;
            let len = self.u32("buffer length")?;
            if len == 0 {
                return Err(self.error_at(at, format!("buffer `{name}` has length 0")));
            }
            buffers.push(BufferDecl { name, len });
        }
        let n = self.count16(10, "layers")?;
        let mut layers = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str("layer name")?;
            let rows = self.u32("layer rows")?;
            let cols = self.u32("layer cols")?;
            layers.push(LayerDecl { name, rows, cols });
        }
        let mut program = Program {
            name,
            pes,
            inputs,
            outputs,
            buffers,
            layers,
            instructions: Vec::new(),
        };
        let count = self.count32(1, "instruction")?;
        program.instructions.reserve(count);
        let mut checker = Checker::new(&program);
        for index in 0..count {
            let at = self.pos;
            let instruction = self.instruction(&program)?;
            checker
                .check(&program, &instruction, index + 1 == count)
                .map_err(|reason| {
                    self.error_at(at, format!("{}: {reason}", instruction.mnemonic()))
                })?;
            program.instructions.push(instruction);
        }
        if count == 0 {
            return Err(self.error_at(
                self.pos,
                "the program has no instructions (it must end with halt)",
            ));
        }
        if self.remaining() != 0 {
            return Err(self.error_at(
                self.pos,
                format!("{} bytes follow the final halt", self.remaining()),
            ));
        }
        Ok(program)
    }

    fn buffer_slice(
        &mut self,
        program: &Program,
        len_hint: &str,
    ) -> Result<(BufferSlice, usize), DecodeError> {
        let at = self.pos;
        let buffer = self.u16("buffer number")?;
        if usize::from(buffer) >= program.buffers.len() {
            return Err(self.error_at(
                at,
                format!(
                    "buffer {buffer} does not exist ({} declared) for {len_hint}",
                    program.buffers.len()
                ),
            ));
        }
        let offset = self.u32("buffer offset")?;
        Ok((BufferSlice { buffer, offset }, at))
    }

    fn instruction(&mut self, program: &Program) -> Result<Instruction, DecodeError> {
        let op_at = self.pos;
        let opcode = self.u8("opcode")?;
        let instruction = match opcode {
            OP_CONFIGURE => Instruction::Configure(self.configure(program)?),
            OP_LOAD_CODEBOOK => {
                let mut weights = [0i16; CODEBOOK_LEN];
                let at = self.pos;
                for w in &mut weights {
                    *w = self.i16("codebook weight")?;
                }
                if weights[0] != 0 {
                    return Err(self.error_at(
                        at,
                        format!(
                            "codebook entry 0 is {}, must be 0 (the zero code)",
                            weights[0]
                        ),
                    ));
                }
                Instruction::LoadCodebook { weights }
            }
            OP_LOAD_POINTERS => {
                let pe = self.pe(program)?;
                let address_at = self.pos;
                let address = self.u16("pointer address")?;
                let count_at = self.pos;
                let count = self.count32(2, "pointer")?;
                if u64::from(address) + count as u64 > u64::from(POINTER_WORDS) {
                    return Err(self.error_at(
                        if count as u64 > u64::from(POINTER_WORDS) {
                            count_at
                        } else {
                            address_at
                        },
                        format!(
                            "pointers {address}..{} exceed the {POINTER_WORDS}-word pointer memory",
                            u64::from(address) + count as u64
                        ),
                    ));
                }
                let mut pointers = Vec::with_capacity(count);
                for _ in 0..count {
                    pointers.push(self.u16("pointer")?);
                }
                Instruction::LoadPointers {
                    pe,
                    address,
                    pointers,
                }
            }
            OP_LOAD_MATRIX => {
                let pe = self.pe(program)?;
                let address_at = self.pos;
                let address = self.u32("matrix address")?;
                let count = self.count32(1, "matrix entry")?;
                if u64::from(address) + count as u64 > u64::from(MATRIX_ENTRIES) {
                    return Err(self.error_at(
                        address_at,
                        format!(
                            "entries {address}..{} exceed the {MATRIX_ENTRIES}-entry matrix memory",
                            u64::from(address) + count as u64
                        ),
                    ));
                }
                let entries = self.take(count, "matrix entries")?.to_vec();
                Instruction::LoadMatrix {
                    pe,
                    address,
                    entries,
                }
            }
            OP_LOAD_BIAS => {
                let count = self.count32(4, "bias")?;
                let mut values = Vec::with_capacity(count);
                for _ in 0..count {
                    let b = self.take(4, "bias")?;
                    values.push(i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
                Instruction::LoadBias { values }
            }
            OP_LOAD_INPUT => {
                let input_at = self.pos;
                let input = self.u16("input number")?;
                let Some(spec) = program.inputs.get(usize::from(input)) else {
                    return Err(self.error_at(
                        input_at,
                        format!(
                            "input {input} does not exist ({} declared)",
                            program.inputs.len()
                        ),
                    ));
                };
                let start_at = self.pos;
                let start = self.u32("input start")?;
                let (dst, dst_at) = self.buffer_slice(program, "the destination")?;
                let len = self.u32("length")?;
                if u64::from(start) + u64::from(len) > spec.elements() {
                    return Err(self.error_at(
                        start_at,
                        format!(
                            "input elements {start}..{} exceed input `{}` of {} elements",
                            u64::from(start) + u64::from(len),
                            spec.name,
                            spec.elements()
                        ),
                    ));
                }
                self.check_slice(program, dst, len, dst_at)?;
                Instruction::LoadInput {
                    input,
                    start,
                    dst,
                    len,
                }
            }
            OP_RUN => Instruction::Run,
            OP_READ_OUTPUT => {
                let output_at = self.pos;
                let output = self.u16("output number")?;
                if usize::from(output) >= program.outputs.len() {
                    return Err(self.error_at(
                        output_at,
                        format!(
                            "output {output} does not exist ({} declared)",
                            program.outputs.len()
                        ),
                    ));
                }
                let (src, src_at) = self.buffer_slice(program, "the source")?;
                let len = self.u32("length")?;
                self.check_slice(program, src, len, src_at)?;
                Instruction::ReadOutput { output, src, len }
            }
            OP_SIGMOID | OP_TANH => {
                let (dst, dst_at) = self.buffer_slice(program, "the destination")?;
                let (src, src_at) = self.buffer_slice(program, "the source")?;
                let len = self.u32("length")?;
                let src_frac = self.frac("source format")?;
                let dst_frac = self.frac("destination format")?;
                self.check_slice(program, dst, len, dst_at)?;
                self.check_slice(program, src, len, src_at)?;
                Instruction::Host(if opcode == OP_SIGMOID {
                    HostOp::Sigmoid {
                        dst,
                        src,
                        len,
                        src_frac,
                        dst_frac,
                    }
                } else {
                    HostOp::Tanh {
                        dst,
                        src,
                        len,
                        src_frac,
                        dst_frac,
                    }
                })
            }
            OP_MUL | OP_ADD => {
                let (dst, dst_at) = self.buffer_slice(program, "the destination")?;
                let (a, a_at) = self.buffer_slice(program, "operand a")?;
                let (b, b_at) = self.buffer_slice(program, "operand b")?;
                let len = self.u32("length")?;
                let fracs_at = self.pos;
                let a_frac = self.frac("operand a format")?;
                let b_frac = self.frac("operand b format")?;
                let dst_frac = self.frac("destination format")?;
                if opcode == OP_MUL && a_frac + b_frac > 2 * MAX_FRAC {
                    return Err(self.error_at(fracs_at, "product format out of range"));
                }
                self.check_slice(program, dst, len, dst_at)?;
                self.check_slice(program, a, len, a_at)?;
                self.check_slice(program, b, len, b_at)?;
                Instruction::Host(if opcode == OP_MUL {
                    HostOp::Mul {
                        dst,
                        a,
                        b,
                        len,
                        a_frac,
                        b_frac,
                        dst_frac,
                    }
                } else {
                    HostOp::Add {
                        dst,
                        a,
                        b,
                        len,
                        a_frac,
                        b_frac,
                        dst_frac,
                    }
                })
            }
            OP_COPY => {
                let (dst, dst_at) = self.buffer_slice(program, "the destination")?;
                let (src, src_at) = self.buffer_slice(program, "the source")?;
                let len = self.u32("length")?;
                self.check_slice(program, dst, len, dst_at)?;
                self.check_slice(program, src, len, src_at)?;
                Instruction::Host(HostOp::Copy { dst, src, len })
            }
            OP_FILL => {
                let (dst, dst_at) = self.buffer_slice(program, "the destination")?;
                let len = self.u32("length")?;
                let value = self.i16("fill value")?;
                self.check_slice(program, dst, len, dst_at)?;
                Instruction::Host(HostOp::Fill { dst, len, value })
            }
            OP_HALT => Instruction::Halt,
            other => return Err(self.error_at(op_at, format!("unknown opcode {other:#04x}"))),
        };
        Ok(instruction)
    }

    fn check_slice(
        &self,
        program: &Program,
        slice: BufferSlice,
        len: u32,
        at: usize,
    ) -> Result<(), DecodeError> {
        let decl = &program.buffers[usize::from(slice.buffer)];
        let end = u64::from(slice.offset) + u64::from(len);
        if end > u64::from(decl.len) {
            return Err(self.error_at(
                at,
                format!(
                    "elements {}..{end} exceed buffer `{}` of {} elements",
                    slice.offset, decl.name, decl.len
                ),
            ));
        }
        Ok(())
    }

    fn pe(&mut self, program: &Program) -> Result<u16, DecodeError> {
        let at = self.pos;
        let pe = self.u16("PE number")?;
        if pe >= program.pes {
            return Err(self.error_at(
                at,
                format!(
                    "PE {pe} does not exist (the program has {} PEs)",
                    program.pes
                ),
            ));
        }
        Ok(pe)
    }

    fn configure(&mut self, program: &Program) -> Result<TileConfig, DecodeError> {
        let layer_at = self.pos;
        let layer = self.u16("layer number")?;
        let Some(decl) = program.layers.get(usize::from(layer)) else {
            return Err(self.error_at(
                layer_at,
                format!(
                    "layer {layer} does not exist ({} declared)",
                    program.layers.len()
                ),
            ));
        };
        let regs = ACT_REGS_PER_PE * u32::from(program.pes);
        let rows_at = self.pos;
        let rows = self.u32("tile rows")?;
        if rows == 0 || rows > regs {
            return Err(self.error_at(
                rows_at,
                format!(
                    "tile rows {rows} outside 1..={regs} (64 registers × {} PEs)",
                    program.pes
                ),
            ));
        }
        let cols_at = self.pos;
        let cols = self.u32("tile cols")?;
        if cols == 0 || cols > regs {
            return Err(self.error_at(
                cols_at,
                format!(
                    "tile cols {cols} outside 1..={regs} (64 registers × {} PEs)",
                    program.pes
                ),
            ));
        }
        let pes_at = self.pos;
        let pes = self.u16("PE count")?;
        if pes != program.pes {
            return Err(self.error_at(
                pes_at,
                format!(
                    "tile PE count {pes} differs from the program's {}",
                    program.pes
                ),
            ));
        }
        let fracs_at = self.pos;
        let weight_frac = self.frac("weight format")?;
        let input_frac = self.frac("input format")?;
        let output_frac = self.frac("output format")?;
        let shift = i32::from(weight_frac) + i32::from(input_frac) - i32::from(output_frac);
        if !(0..=i32::from(MAX_FRAC)).contains(&shift) {
            return Err(self.error_at(
                fracs_at,
                format!("product shift wf + af - of = {weight_frac} + {input_frac} - {output_frac} = {shift} outside 0..={MAX_FRAC}"),
            ));
        }
        let act_at = self.pos;
        let activation = match self.u8("activation")? {
            0 => Activation::None,
            1 => Activation::Relu,
            other => {
                return Err(self.error_at(act_at, format!("unknown activation function {other}")));
            }
        };
        let src_at = self.pos;
        let src = self.u16("source buffer")?;
        let dst_at = self.pos;
        let dst = self.u16("destination buffer")?;
        let row_offset_at = self.pos;
        let row_offset = self.u32("row offset")?;
        let col_offset_at = self.pos;
        let col_offset = self.u32("column offset")?;
        let flags_at = self.pos;
        let flags = self.u8("tile flags")?;
        if flags & !(FLAG_FIRST | FLAG_LAST) != 0 {
            return Err(self.error_at(flags_at, format!("unknown tile flags {flags:#04x}")));
        }
        let ptr_at = self.pos;
        let ptr_base = self.u16("pointer base")?;
        let matrix_at = self.pos;
        let matrix_base = self.u32("matrix base")?;
        if u32::from(ptr_base) + cols + 1 > POINTER_WORDS {
            return Err(self.error_at(
                ptr_at,
                format!(
                    "pointers {ptr_base}..={} exceed the {POINTER_WORDS}-word pointer memory",
                    u32::from(ptr_base) + cols
                ),
            ));
        }
        if matrix_base >= MATRIX_ENTRIES || matrix_base % ENTRIES_PER_SRAM_ROW != 0 {
            return Err(self.error_at(matrix_at, format!("matrix base {matrix_base} is not a multiple of {ENTRIES_PER_SRAM_ROW} below {MATRIX_ENTRIES}")));
        }
        if u64::from(row_offset) + u64::from(rows) > u64::from(decl.rows) {
            return Err(self.error_at(
                row_offset_at,
                format!(
                    "tile rows {row_offset}..{} exceed layer `{}` of {} rows",
                    u64::from(row_offset) + u64::from(rows),
                    decl.name,
                    decl.rows
                ),
            ));
        }
        if u64::from(col_offset) + u64::from(cols) > u64::from(decl.cols) {
            return Err(self.error_at(
                col_offset_at,
                format!(
                    "tile cols {col_offset}..{} exceed layer `{}` of {} cols",
                    u64::from(col_offset) + u64::from(cols),
                    decl.name,
                    decl.cols
                ),
            ));
        }
        for (buffer, at, end, what) in [
            (
                src,
                src_at,
                u64::from(col_offset) + u64::from(cols),
                "source",
            ),
            (
                dst,
                dst_at,
                u64::from(row_offset) + u64::from(rows),
                "destination",
            ),
        ] {
            let Some(b) = program.buffers.get(usize::from(buffer)) else {
                return Err(self.error_at(
                    at,
                    format!(
                        "{what} buffer {buffer} does not exist ({} declared)",
                        program.buffers.len()
                    ),
                ));
            };
            if end > u64::from(b.len) {
                return Err(self.error_at(
                    at,
                    format!(
                        "{what} elements ..{end} exceed buffer `{}` of {} elements",
                        b.name, b.len
                    ),
                ));
            }
        }
        Ok(TileConfig {
            layer,
            rows,
            cols,
            pes,
            weight_frac,
            input_frac,
            output_frac,
            activation,
            src,
            dst,
            row_offset,
            col_offset,
            first_col_tile: flags & FLAG_FIRST != 0,
            last_col_tile: flags & FLAG_LAST != 0,
            ptr_base,
            matrix_base,
        })
    }
}

/// The sequencing rules of a program, checked instruction by instruction.
struct Checker {
    /// The current configuration and whether it has run.
    current: Option<(TileConfig, bool)>,
    /// Elements appended to each output so far.
    output_filled: Vec<u64>,
    halted: bool,
}

impl Checker {
    fn new(program: &Program) -> Self {
        Checker {
            current: None,
            output_filled: vec![0; program.outputs.len()],
            halted: false,
        }
    }

    /// Whether a configured row tile has not yet run its last column tile.
    fn row_tile_open(&self) -> bool {
        matches!(self.current, Some((c, ran)) if !(ran && c.last_col_tile))
    }

    fn check(
        &mut self,
        program: &Program,
        instruction: &Instruction,
        last: bool,
    ) -> Result<(), String> {
        if self.halted {
            return Err("instruction after halt".into());
        }
        match instruction {
            Instruction::Configure(next) => {
                match self.current {
                    Some((_, false)) => return Err("the previous configuration never ran".into()),
                    Some((prev, true)) if !prev.last_col_tile => {
                        // A continuation of the open row tile.
                        if next.first_col_tile {
                            return Err(format!(
                                "starts a new row tile while the row tile at row {} of layer {} still has columns from {}",
                                prev.row_offset,
                                prev.layer,
                                prev.col_offset + prev.cols
                            ));
                        }
                        let same = prev.layer == next.layer
                            && prev.rows == next.rows
                            && prev.row_offset == next.row_offset
                            && prev.dst == next.dst
                            && prev.weight_frac == next.weight_frac
                            && prev.input_frac == next.input_frac
                            && prev.output_frac == next.output_frac
                            && prev.activation == next.activation;
                        if !same {
                            return Err("a continuing column tile must keep the layer, rows, row offset, destination, formats and activation of its row tile".into());
                        }
                        if next.col_offset != prev.col_offset + prev.cols {
                            return Err(format!(
                                "column tile starts at column {}, expected {} (column tiles run in increasing, contiguous order)",
                                next.col_offset,
                                prev.col_offset + prev.cols
                            ));
                        }
                    }
                    _ => {
                        if !next.first_col_tile {
                            return Err("continues a row tile but none is open (first-column-tile flag missing)".into());
                        }
                        if next.col_offset != 0 {
                            return Err(format!(
                                "the first column tile starts at column {}, expected 0",
                                next.col_offset
                            ));
                        }
                    }
                }
                let layer_cols = program.layers[usize::from(next.layer)].cols;
                let end = next.col_offset + next.cols;
                if next.last_col_tile != (end == layer_cols) {
                    return Err(format!(
                        "the last-column-tile flag is {} but the tile ends at column {end} of {layer_cols}",
                        next.last_col_tile
                    ));
                }
                self.current = Some((*next, false));
            }
            Instruction::LoadBias { values } => {
                match self.current {
                    Some((c, false)) if c.first_col_tile => {
                        if values.len() != c.rows as usize {
                            return Err(format!(
                                "{} biases for a tile of {} rows",
                                values.len(),
                                c.rows
                            ));
                        }
                    }
                    _ => return Err(
                        "biases load only after configuring a first column tile, before it runs"
                            .into(),
                    ),
                }
            }
            Instruction::Run => match &mut self.current {
                Some((_, ran @ false)) => *ran = true,
                Some((_, true)) => return Err("the configuration already ran".into()),
                None => return Err("no configuration to run".into()),
            },
            Instruction::ReadOutput { output, len, .. } => {
                let index = usize::from(*output);
                let spec = &program.outputs[index];
                let filled = self.output_filled[index] + u64::from(*len);
                if filled > spec.elements() {
                    return Err(format!(
                        "output `{}` would receive {filled} of its {} elements",
                        spec.name,
                        spec.elements()
                    ));
                }
                self.output_filled[index] = filled;
            }
            Instruction::Halt => {
                if !last {
                    return Err("halt before the last instruction".into());
                }
                if self.row_tile_open() {
                    return Err("a row tile is left unfinished".into());
                }
                for (spec, &filled) in program.outputs.iter().zip(&self.output_filled) {
                    if filled != spec.elements() {
                        return Err(format!(
                            "output `{}` received {filled} of its {} elements",
                            spec.name,
                            spec.elements()
                        ));
                    }
                }
                self.halted = true;
            }
            Instruction::LoadCodebook { .. }
            | Instruction::LoadPointers { .. }
            | Instruction::LoadMatrix { .. }
            | Instruction::LoadInput { .. }
            | Instruction::Host(_) => {}
        }
        if last && !self.halted {
            return Err("the program does not end with halt".into());
        }
        Ok(())
    }
}

impl fmt::Display for Program {
    /// The disassembly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::disasm::disassemble(self))
    }
}
