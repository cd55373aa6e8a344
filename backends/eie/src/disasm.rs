//! The text disassembly of a [`Program`]: a header of `;` comment lines (name, PEs, inputs,
//! outputs, buffers, layers), then one instruction per line prefixed by its index. Large payloads
//! (pointers, matrix entries, biases) are summarised by their count, a few first values and, for
//! matrix entries, the number of padding entries. The text depends only on the program, so equal
//! programs disassemble to equal text.

use std::fmt::Write as _;

use crate::isa::{
    BufferSlice, HostOp, HostPost, Instruction, IoSpec, MAX_ZERO_RUN, Program, ZERO_CODE,
    entry_code, entry_zeros,
};

/// Values of a payload shown before the summary ellipsis.
const SHOWN_VALUES: usize = 8;

/// Disassembles a program into text (one instruction per line, a trailing newline).
pub fn disassemble(program: &Program) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; EIE program `{}`: {} PEs, {} instructions",
        program.name,
        program.pes,
        program.instructions.len()
    );
    for (i, spec) in program.inputs.iter().enumerate() {
        let _ = writeln!(out, "; input  {i} {}", io(spec));
    }
    for (i, spec) in program.outputs.iter().enumerate() {
        let _ = writeln!(out, "; output {i} {}", io(spec));
    }
    for (i, b) in program.buffers.iter().enumerate() {
        let _ = writeln!(out, "; buffer {i} `{}` [{}]", b.name, b.len);
    }
    for (i, l) in program.layers.iter().enumerate() {
        let _ = writeln!(out, "; layer  {i} `{}` {}x{}", l.name, l.rows, l.cols);
    }
    let width = program
        .instructions
        .len()
        .saturating_sub(1)
        .to_string()
        .len()
        .max(4);
    for (index, instruction) in program.instructions.iter().enumerate() {
        let line = format!(
            "{index:0width$}  {:<14}{}",
            instruction.mnemonic(),
            operands(program, instruction)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn io(spec: &IoSpec) -> String {
    let shape: Vec<String> = spec.shape.iter().map(u32::to_string).collect();
    let post = match spec.post {
        HostPost::None => String::new(),
        HostPost::Softmax => " then host softmax".to_string(),
    };
    format!(
        "`{}` [{}] Q{}{post}",
        spec.name,
        shape.join(", "),
        spec.frac
    )
}

fn slice(program: &Program, s: BufferSlice) -> String {
    let name = program
        .buffers
        .get(usize::from(s.buffer))
        .map_or("?", |b| b.name.as_str());
    format!("{}:`{name}`[{}..", s.buffer, s.offset)
}

fn range(program: &Program, s: BufferSlice, len: u32) -> String {
    format!(
        "{}{}]",
        slice(program, s),
        u64::from(s.offset) + u64::from(len)
    )
}

fn summary<T: ToString>(values: &[T]) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(SHOWN_VALUES)
        .map(ToString::to_string)
        .collect();
    let more = if values.len() > SHOWN_VALUES {
        ", …"
    } else {
        ""
    };
    format!("[{}{more}]", shown.join(", "))
}

fn operands(program: &Program, instruction: &Instruction) -> String {
    match instruction {
        Instruction::Configure(c) => {
            let layer = program
                .layers
                .get(usize::from(c.layer))
                .map_or("?", |l| l.name.as_str());
            let flags = match (c.first_col_tile, c.last_col_tile) {
                (true, true) => "first,last",
                (true, false) => "first",
                (false, true) => "last",
                (false, false) => "middle",
            };
            format!(
                "layer={}:`{layer}` rows={}+{} cols={}+{} pes={} q=w{}·a{}→o{} (shift {}) act={} src={} dst={} tile={flags} ptr@{} mat@{}",
                c.layer,
                c.row_offset,
                c.rows,
                c.col_offset,
                c.cols,
                c.pes,
                c.weight_frac,
                c.input_frac,
                c.output_frac,
                c.shift(),
                c.activation,
                c.src,
                c.dst,
                c.ptr_base,
                c.matrix_base
            )
        }
        Instruction::LoadCodebook { weights } => {
            let all: Vec<String> = weights.iter().map(i16::to_string).collect();
            format!("[{}]", all.join(", "))
        }
        Instruction::LoadPointers {
            pe,
            address,
            pointers,
        } => format!(
            "pe={pe} @{address} n={} {}",
            pointers.len(),
            summary(pointers)
        ),
        Instruction::LoadMatrix {
            pe,
            address,
            entries,
        } => {
            let padding = entries
                .iter()
                .filter(|&&e| entry_code(e) == ZERO_CODE && entry_zeros(e) == MAX_ZERO_RUN)
                .count();
            let shown: Vec<String> = entries
                .iter()
                .take(SHOWN_VALUES)
                .map(|&e| format!("{}/{}", entry_code(e), entry_zeros(e)))
                .collect();
            let more = if entries.len() > SHOWN_VALUES {
                ", …"
            } else {
                ""
            };
            format!(
                "pe={pe} @{address} n={} padding={padding} v/z=[{}{more}]",
                entries.len(),
                shown.join(", ")
            )
        }
        Instruction::LoadBias { values } => format!("n={} {}", values.len(), summary(values)),
        Instruction::LoadInput {
            input,
            start,
            dst,
            len,
        } => {
            let name = program
                .inputs
                .get(usize::from(*input))
                .map_or("?", |s| s.name.as_str());
            format!(
                "{} ← input {input}:`{name}`[{start}..{}]",
                range(program, *dst, *len),
                u64::from(*start) + u64::from(*len)
            )
        }
        Instruction::Run | Instruction::Halt => String::new(),
        Instruction::ReadOutput { output, src, len } => {
            let name = program
                .outputs
                .get(usize::from(*output))
                .map_or("?", |s| s.name.as_str());
            format!("output {output}:`{name}` ← {}", range(program, *src, *len))
        }
        Instruction::Host(op) => match *op {
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
            } => format!(
                "{} Q{dst_frac} ← {} Q{src_frac}",
                range(program, dst, len),
                range(program, src, len)
            ),
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
            } => format!(
                "{} Q{dst_frac} ← {} Q{a_frac}, {} Q{b_frac}",
                range(program, dst, len),
                range(program, a, len),
                range(program, b, len)
            ),
            HostOp::Copy { dst, src, len } => format!(
                "{} ← {}",
                range(program, dst, len),
                range(program, src, len)
            ),
            HostOp::Fill { dst, len, value } => {
                format!("{} ← {value}", range(program, dst, len))
            }
        },
    }
}
