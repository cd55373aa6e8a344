//! The binary encoding: random valid programs round-trip exactly (`decode(encode(p)) == p` and
//! `encode(decode(b)) == b`), corrupted streams give errors naming the byte offset and the reason,
//! and arbitrary byte damage never panics.

use proptest::prelude::*;
use sprig_eie::binary::{HEADER_LEN, encode_unchecked};
use sprig_eie::isa::{
    Activation, BufferDecl, BufferSlice, HostOp, HostPost, Instruction, IoSpec, LayerDecl, Program,
    TileConfig, decode, encode, pack_entry,
};

fn at(buffer: u16, offset: u32) -> BufferSlice {
    BufferSlice { buffer, offset }
}

fn tile(rows: u32, cols: u32, pes: u16) -> TileConfig {
    TileConfig {
        layer: 0,
        rows,
        cols,
        pes,
        weight_frac: 8,
        input_frac: 8,
        output_frac: 8,
        activation: Activation::Relu,
        src: 0,
        dst: 1,
        row_offset: 0,
        col_offset: 0,
        first_col_tile: true,
        last_col_tile: true,
        ptr_base: 0,
        matrix_base: 0,
    }
}

/// A small valid program: a 3×4 layer over 2 PEs, a host op, one output.
fn base() -> Program {
    Program {
        name: "tiny".into(),
        pes: 2,
        inputs: vec![IoSpec {
            name: "x".into(),
            shape: vec![4],
            frac: 8,
            post: HostPost::None,
        }],
        outputs: vec![IoSpec {
            name: "y".into(),
            shape: vec![3],
            frac: 8,
            post: HostPost::Softmax,
        }],
        buffers: vec![
            BufferDecl {
                name: "x".into(),
                len: 4,
            },
            BufferDecl {
                name: "y".into(),
                len: 3,
            },
            BufferDecl {
                name: "t".into(),
                len: 3,
            },
        ],
        layers: vec![LayerDecl {
            name: "fc".into(),
            rows: 3,
            cols: 4,
        }],
        instructions: vec![
            Instruction::LoadInput {
                input: 0,
                start: 0,
                dst: at(0, 0),
                len: 4,
            },
            Instruction::LoadCodebook {
                weights: [0, 256, -128, 64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -300],
            },
            Instruction::Configure(tile(3, 4, 2)),
            Instruction::LoadPointers {
                pe: 0,
                address: 0,
                pointers: vec![0, 1, 1, 2, 2],
            },
            Instruction::LoadMatrix {
                pe: 0,
                address: 0,
                entries: vec![pack_entry(1, 0), pack_entry(2, 1)],
            },
            Instruction::LoadPointers {
                pe: 1,
                address: 0,
                pointers: vec![0, 0, 1, 1, 1],
            },
            Instruction::LoadMatrix {
                pe: 1,
                address: 0,
                entries: vec![pack_entry(3, 0)],
            },
            Instruction::LoadBias {
                values: vec![1, -2, 3],
            },
            Instruction::Run,
            Instruction::Host(HostOp::Sigmoid {
                dst: at(2, 0),
                src: at(1, 0),
                len: 3,
                src_frac: 8,
                dst_frac: 15,
            }),
            Instruction::Host(HostOp::Add {
                dst: at(1, 0),
                a: at(1, 0),
                b: at(2, 0),
                len: 3,
                a_frac: 8,
                b_frac: 15,
                dst_frac: 8,
            }),
            Instruction::ReadOutput {
                output: 0,
                src: at(1, 0),
                len: 3,
            },
            Instruction::Halt,
        ],
    }
}

/// Recomputes the header's body length and CRC after a patch of the body.
fn reseal(bytes: &mut [u8]) {
    let body_len = (bytes.len() - HEADER_LEN) as u32;
    bytes[8..12].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn raw(program: &Program) -> Vec<u8> {
    encode_unchecked(program).expect("lengths fit")
}

/// The byte offset of the `index`-th instruction of the base program's encoding.
fn instruction_offset(program: &Program, index: usize) -> usize {
    let mut prefix = program.clone();
    prefix.instructions.truncate(index);
    raw(&prefix).len()
}

fn with(edit: impl FnOnce(&mut Program)) -> Vec<u8> {
    let mut p = base();
    edit(&mut p);
    raw(&p)
}

fn configure(p: &mut Program) -> &mut TileConfig {
    match &mut p.instructions[2] {
        Instruction::Configure(c) => c,
        other => panic!("instruction 2 is {other:?}"),
    }
}

fn patched(offset: usize, value: u8) -> Vec<u8> {
    let mut bytes = raw(&base());
    bytes[offset] = value;
    reseal(&mut bytes);
    bytes
}

#[test]
fn the_base_program_round_trips() {
    let p = base();
    let bytes = encode(&p).expect("valid");
    let back = decode(&bytes).expect("decodes");
    assert_eq!(back, p);
    assert_eq!(encode(&back).expect("valid"), bytes);
}

#[test]
fn corrupted_programs_give_clear_errors() {
    let good = raw(&base());
    let configure_at = instruction_offset(&base(), 2);
    let halt_at = good.len() - 1;
    // (what, bytes, expected offset or None, text the reason contains)
    let cases: Vec<(&str, Vec<u8>, Option<usize>, &str)> = vec![
        ("empty stream", vec![], Some(0), "truncated magic"),
        (
            "truncated header",
            good[..10].to_vec(),
            Some(8),
            "truncated body length",
        ),
        (
            "bad magic",
            {
                let mut b = good.clone();
                b[0] = b'X';
                b
            },
            Some(0),
            "bad magic",
        ),
        (
            "future version",
            {
                let mut b = good.clone();
                b[4] = 2;
                b
            },
            Some(4),
            "unsupported format version 2",
        ),
        (
            "header flags",
            {
                let mut b = good.clone();
                b[6] = 1;
                b
            },
            Some(6),
            "unknown header flags",
        ),
        (
            "truncated body",
            good[..good.len() - 7].to_vec(),
            Some(8),
            "header declares a body of",
        ),
        (
            "appended bytes",
            {
                let mut b = good.clone();
                b.push(0);
                b
            },
            Some(8),
            "header declares a body of",
        ),
        (
            "bad checksum",
            {
                let mut b = good.clone();
                b[HEADER_LEN + 3] ^= 0x40;
                b
            },
            Some(12),
            "checksum mismatch",
        ),
        (
            "unknown opcode",
            patched(halt_at, 0x42),
            Some(halt_at),
            "unknown opcode 0x42",
        ),
        (
            "name not UTF-8",
            patched(HEADER_LEN + 2, 0xFF),
            Some(HEADER_LEN + 2),
            "not UTF-8",
        ),
        ("zero PEs", with(|p| p.pes = 0), None, "PE count 0"),
        ("too many PEs", with(|p| p.pes = 300), None, "PE count 300"),
        (
            "input with softmax",
            with(|p| p.inputs[0].post = HostPost::Softmax),
            None,
            "host post-processing",
        ),
        (
            "empty buffer",
            with(|p| p.buffers[2].len = 0),
            None,
            "has length 0",
        ),
        (
            "format above 30",
            with(|p| p.outputs[0].frac = 31),
            None,
            "exceeds 30 fractional bits",
        ),
        (
            "missing buffer",
            with(|p| {
                if let Instruction::LoadInput { dst, .. } = &mut p.instructions[0] {
                    dst.buffer = 9
                }
            }),
            None,
            "buffer 9 does not exist",
        ),
        (
            "input range past the input",
            with(|p| {
                if let Instruction::LoadInput { start, .. } = &mut p.instructions[0] {
                    *start = 2
                }
            }),
            None,
            "exceed input `x`",
        ),
        (
            "read past a buffer",
            with(|p| {
                if let Instruction::ReadOutput { src, .. } = &mut p.instructions[11] {
                    src.offset = 1
                }
            }),
            None,
            "exceed buffer `y`",
        ),
        (
            "missing layer",
            with(|p| configure(p).layer = 4),
            Some(configure_at + 1),
            "layer 4 does not exist",
        ),
        (
            "tile wider than the register files",
            with(|p| configure(p).rows = 129),
            None,
            "tile rows 129 outside 1..=128",
        ),
        (
            "tile PE count",
            with(|p| configure(p).pes = 3),
            None,
            "differs from the program's 2",
        ),
        (
            "negative shift",
            with(|p| configure(p).output_frac = 20),
            None,
            "product shift",
        ),
        (
            "unaligned matrix base",
            with(|p| configure(p).matrix_base = 5),
            None,
            "not a multiple of 8",
        ),
        (
            "pointers past the memory",
            with(|p| configure(p).ptr_base = 16380),
            None,
            "exceed the 16384-word pointer memory",
        ),
        (
            "pointer load past the memory",
            with(|p| {
                if let Instruction::LoadPointers { address, .. } = &mut p.instructions[3] {
                    *address = 16382
                }
            }),
            None,
            "pointer memory",
        ),
        (
            "matrix load past the memory",
            with(|p| {
                if let Instruction::LoadMatrix { address, .. } = &mut p.instructions[4] {
                    *address = 131071
                }
            }),
            None,
            "131072-entry matrix memory",
        ),
        (
            "missing PE",
            with(|p| {
                if let Instruction::LoadMatrix { pe, .. } = &mut p.instructions[6] {
                    *pe = 2
                }
            }),
            None,
            "PE 2 does not exist",
        ),
        (
            "codebook zero entry",
            with(|p| {
                if let Instruction::LoadCodebook { weights } = &mut p.instructions[1] {
                    weights[0] = 5
                }
            }),
            None,
            "codebook entry 0 is 5",
        ),
        (
            "bias count",
            with(|p| p.instructions[7] = Instruction::LoadBias { values: vec![1, 2] }),
            None,
            "2 biases for a tile of 3 rows",
        ),
        (
            "bias without configuration",
            with(|p| {
                p.instructions.remove(2);
            }),
            None,
            "biases load only after configuring",
        ),
        (
            "run without configuration",
            with(|p| {
                p.instructions.remove(7);
                p.instructions.remove(2);
            }),
            None,
            "no configuration to run",
        ),
        (
            "unfinished column tiles",
            with(|p| {
                configure(p).last_col_tile = false;
            }),
            None,
            "last-column-tile flag",
        ),
        (
            "missing halt",
            with(|p| {
                p.instructions.pop();
            }),
            None,
            "does not end with halt",
        ),
        (
            "halt in the middle",
            with(|p| p.instructions.insert(9, Instruction::Halt)),
            None,
            "halt before the last instruction",
        ),
        (
            "output not filled",
            with(|p| {
                if let Instruction::ReadOutput { len, .. } = &mut p.instructions[11] {
                    *len = 2
                }
            }),
            None,
            "received 2 of its 3 elements",
        ),
        (
            "count past the end",
            {
                let mut p = base();
                p.instructions.truncate(4);
                p.instructions.push(Instruction::LoadMatrix {
                    pe: 0,
                    address: 0,
                    entries: vec![1; 4],
                });
                let mut b = raw(&p);
                // The entry count (after opcode, PE and address) claims far more bytes than remain.
                let count_at = b.len() - 4 - 4;
                b[count_at..count_at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
                reseal(&mut b);
                b
            },
            None,
            "matrix entry count 1000000 needs at least 1000000 bytes",
        ),
        (
            "instruction count past the end",
            {
                let mut b = good.clone();
                let count_at = instruction_offset(&base(), 0) - 4;
                b[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                reseal(&mut b);
                b
            },
            None,
            "instruction count 4294967295",
        ),
        (
            "unknown activation",
            patched(configure_at + 16, 7),
            Some(configure_at + 16),
            "unknown activation function 7",
        ),
        (
            "unknown tile flags",
            patched(configure_at + 29, 0x80),
            Some(configure_at + 29),
            "unknown tile flags",
        ),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut reasons = std::collections::BTreeSet::new();
    for (what, bytes, offset, expected) in &cases {
        let error = decode(bytes).expect_err(what);
        assert!(
            error.reason.contains(expected),
            "{what}: reason `{}` does not contain `{expected}`",
            error.reason
        );
        assert!(
            error.offset <= bytes.len(),
            "{what}: offset {} past the end",
            error.offset
        );
        if let Some(offset) = offset {
            assert_eq!(error.offset, *offset, "{what}: {error}");
        }
        assert!(
            error
                .to_string()
                .starts_with(&format!("byte {}: ", error.offset))
        );
        reasons.insert(error.to_string());
    }
    assert_eq!(
        reasons.len(),
        cases.len(),
        "every corruption gives its own error"
    );
}

#[test]
fn encode_refuses_invalid_programs_naming_the_instruction() {
    let mut p = base();
    p.instructions.remove(7);
    p.instructions.remove(2);
    let error = encode(&p).expect_err("invalid");
    assert!(error.to_string().contains("instruction 6 (run)"), "{error}");
}

/// Random valid programs: a chain of tiles with random data, host ops and reads.
fn program_strategy() -> impl Strategy<Value = Program> {
    (
        1u16..=6,
        1u32..=40,
        1u32..=40,
        prop::collection::vec(any::<u8>(), 0..200),
        prop::array::uniform16(any::<i16>()),
        0u8..=15,
        0u8..=15,
        prop::collection::vec((0u8..6, 0u32..8, any::<i16>()), 0..6),
        1u32..=3,
    )
        .prop_map(
            |(pes, rows, cols, entries, mut codebook, wf, af, hosts, col_tiles)| {
                codebook[0] = 0;
                let rows = rows.min(64 * u32::from(pes));
                let cols = cols.min(64 * u32::from(pes)).max(col_tiles);
                let mut instructions = vec![
                    Instruction::LoadInput {
                        input: 0,
                        start: 0,
                        dst: at(0, 0),
                        len: cols,
                    },
                    Instruction::LoadCodebook { weights: codebook },
                ];
                let width = cols / col_tiles;
                for t in 0..col_tiles {
                    let col_offset = t * width;
                    let tile_cols = if t + 1 == col_tiles {
                        cols - col_offset
                    } else {
                        width
                    };
                    instructions.push(Instruction::Configure(TileConfig {
                        cols: tile_cols,
                        col_offset,
                        first_col_tile: t == 0,
                        last_col_tile: t + 1 == col_tiles,
                        weight_frac: wf,
                        input_frac: af,
                        output_frac: af,
                        ptr_base: (t * 100) as u16,
                        matrix_base: t * 64,
                        activation: if wf % 2 == 0 {
                            Activation::Relu
                        } else {
                            Activation::None
                        },
                        ..tile(rows, cols, pes)
                    }));
                    for pe in 0..pes {
                        let pointers: Vec<u16> = (0..=tile_cols)
                            .map(|j| (j * u32::from(pe)) as u16)
                            .collect();
                        instructions.push(Instruction::LoadPointers {
                            pe,
                            address: (t * 100) as u16,
                            pointers,
                        });
                        instructions.push(Instruction::LoadMatrix {
                            pe,
                            address: t * 64,
                            entries: entries.clone(),
                        });
                    }
                    if t == 0 {
                        instructions.push(Instruction::LoadBias {
                            values: (0..rows as i32).map(|r| r * 7 - 3).collect(),
                        });
                    }
                    instructions.push(Instruction::Run);
                }
                for (kind, offset, value) in hosts {
                    let len = rows.saturating_sub(offset).max(1).min(rows);
                    let offset = rows - len;
                    let (d, a, b) = (at(2, offset), at(1, offset), at(2, 0));
                    instructions.push(Instruction::Host(match kind {
                        0 => HostOp::Sigmoid {
                            dst: d,
                            src: a,
                            len,
                            src_frac: af,
                            dst_frac: 15,
                        },
                        1 => HostOp::Tanh {
                            dst: d,
                            src: a,
                            len,
                            src_frac: wf,
                            dst_frac: 14,
                        },
                        2 => HostOp::Mul {
                            dst: d,
                            a,
                            b,
                            len,
                            a_frac: af,
                            b_frac: wf,
                            dst_frac: 3,
                        },
                        3 => HostOp::Add {
                            dst: d,
                            a,
                            b,
                            len,
                            a_frac: wf,
                            b_frac: af,
                            dst_frac: 30,
                        },
                        4 => HostOp::Copy {
                            dst: d,
                            src: a,
                            len,
                        },
                        _ => HostOp::Fill { dst: d, len, value },
                    }));
                }
                instructions.push(Instruction::ReadOutput {
                    output: 0,
                    src: at(1, 0),
                    len: rows,
                });
                instructions.push(Instruction::Halt);
                Program {
                    name: format!("random {pes}×{rows}×{cols}"),
                    pes,
                    inputs: vec![IoSpec {
                        name: "x".into(),
                        shape: vec![1, cols],
                        frac: af,
                        post: HostPost::None,
                    }],
                    outputs: vec![IoSpec {
                        name: "y".into(),
                        shape: vec![rows],
                        frac: af,
                        post: HostPost::None,
                    }],
                    buffers: vec![
                        BufferDecl {
                            name: "x".into(),
                            len: cols,
                        },
                        BufferDecl {
                            name: "y".into(),
                            len: rows,
                        },
                        BufferDecl {
                            name: "t".into(),
                            len: rows,
                        },
                    ],
                    layers: vec![LayerDecl {
                        name: "l".into(),
                        rows,
                        cols,
                    }],
                    instructions,
                }
            },
        )
}

proptest! {
    #[test]
    fn programs_round_trip(p in program_strategy()) {
        let bytes = encode(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(encode(&back).expect("valid"), bytes);
    }

    #[test]
    fn damaged_streams_never_panic(
        p in program_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        reseal_it in any::<bool>(),
    ) {
        let mut bytes = encode(&p).expect("valid");
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if reseal_it {
            bytes.truncate(HEADER_LEN + cut.index(bytes.len() - HEADER_LEN + 1));
            reseal(&mut bytes);
        }
        match decode(&bytes) {
            Ok(program) => prop_assert_eq!(encode(&program).expect("decoded programs encode"), bytes),
            Err(error) => prop_assert!(error.offset <= bytes.len()),
        }
    }
}
