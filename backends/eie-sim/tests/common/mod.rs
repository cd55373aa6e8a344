//! Test and benchmark support: random quantized layers, and a small encoder of a dense code matrix
//! into an EIE program (per-PE CSC with 4-bit relative indices and padding entries, column tiles
//! that accumulate partial sums), built directly from the ISA types.

#![allow(dead_code)]

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sprig_eie::isa::{
    Activation, BufferDecl, BufferSlice, HostPost, Instruction, IoSpec, LayerDecl, MAX_ZERO_RUN,
    Program, TileConfig, pack_entry,
};
use sprig_eie_sim::reference::DenseLayer;

/// Fixed-point formats of a layer: weight, input and output fractional bits.
#[derive(Clone, Copy, Debug)]
pub struct Formats {
    pub wf: u8,
    pub af: u8,
    pub of: u8,
}

/// A random layer: each weight non-zero with probability `density`, codes 1..16 uniformly, a
/// codebook of distinct non-zero weights of magnitude up to 2^(wf-1) (|w| < 0.5), small biases.
pub fn random_layer(
    rows: usize,
    cols: usize,
    density: f64,
    formats: Formats,
    activation: Activation,
    seed: u64,
) -> DenseLayer {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut codebook = [0i16; 16];
    let half = 1i32 << (formats.wf - 1);
    for slot in codebook.iter_mut().skip(1) {
        let mut w = 0;
        while w == 0 {
            w = rng.random_range(-half..half);
        }
        *slot = w as i16;
    }
    let codes = (0..rows * cols)
        .map(|_| {
            if rng.random::<f64>() < density {
                rng.random_range(1..16u8)
            } else {
                0
            }
        })
        .collect();
    let bias_range = 1i32 << formats.of;
    let bias = (0..rows)
        .map(|_| rng.random_range(-bias_range..bias_range))
        .collect();
    DenseLayer {
        rows,
        cols,
        codes,
        codebook,
        bias,
        shift: formats.wf + formats.af - formats.of,
        activation,
    }
}

/// A random source vector in Q(af): non-zero with probability `density`, |N(0,1)|-like values
/// below 4.0 (ReLU of a normal).
pub fn random_activations(cols: usize, density: f64, af: u8, seed: u64) -> Vec<i16> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED);
    let max = (4i32 << af).min(i32::from(i16::MAX));
    (0..cols)
        .map(|_| {
            if rng.random::<f64>() < density {
                rng.random_range(1..max) as i16
            } else {
                0
            }
        })
        .collect()
}

/// One PE's CSC of a tile: pointers (cols + 1) and entries.
pub fn encode_pe(
    layer: &DenseLayer,
    pes: usize,
    pe: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> (Vec<u16>, Vec<u8>) {
    let mut pointers = vec![0u16];
    let mut entries = Vec::new();
    for j in cols {
        let mut zeros = 0usize;
        let mut i = rows.start + pe;
        while i < rows.end {
            let code = layer.codes[i * layer.cols + j];
            if code == 0 {
                zeros += 1;
            } else {
                while zeros > usize::from(MAX_ZERO_RUN) {
                    entries.push(pack_entry(0, MAX_ZERO_RUN));
                    zeros -= usize::from(MAX_ZERO_RUN) + 1;
                }
                entries.push(pack_entry(code, zeros as u8));
                zeros = 0;
            }
            i += pes;
        }
        pointers.push(u16::try_from(entries.len()).expect("tile fits 16-bit pointers"));
    }
    (pointers, entries)
}

/// A `rows × cols` layer of density `density` for `pes` PEs encoded straight into per-PE CSC
/// (geometric gaps between non-zeros, no dense matrix), as one program with column tiles of at
/// most `col_tile` columns; codes uniform in 1..16. For layers too large to hold densely.
pub fn sparse_program(
    rows: usize,
    cols: usize,
    density: f64,
    pes: usize,
    formats: Formats,
    col_tile: usize,
    seed: u64,
) -> Program {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shell = DenseLayer {
        rows: 0,
        cols,
        codes: Vec::new(),
        codebook: random_layer(1, 1, 1.0, formats, Activation::Relu, seed).codebook,
        bias: vec![0; rows],
        shift: formats.wf + formats.af - formats.of,
        activation: Activation::Relu,
    };
    let mut program = encode_program(
        &DenseLayer {
            rows: 0,
            ..shell.clone()
        },
        pes,
        formats,
        col_tile,
    );
    let max_rows = 64 * pes;
    let col_tile = col_tile.min(64 * pes).max(1);
    let log_miss = (1.0 - density.clamp(1e-9, 1.0 - 1e-9)).ln();
    let mut instructions = program.instructions[..2].to_vec();
    for r0 in (0..rows).step_by(max_rows) {
        let r1 = (r0 + max_rows).min(rows);
        let tiles: Vec<usize> = (0..cols).step_by(col_tile).collect();
        for (t, &c0) in tiles.iter().enumerate() {
            let c1 = (c0 + col_tile).min(cols);
            instructions.push(Instruction::Configure(TileConfig {
                layer: 0,
                rows: (r1 - r0) as u32,
                cols: (c1 - c0) as u32,
                pes: pes as u16,
                weight_frac: formats.wf,
                input_frac: formats.af,
                output_frac: formats.of,
                activation: Activation::Relu,
                src: 0,
                dst: 1,
                row_offset: r0 as u32,
                col_offset: c0 as u32,
                first_col_tile: t == 0,
                last_col_tile: t + 1 == tiles.len(),
                ptr_base: 0,
                matrix_base: 0,
            }));
            for p in 0..pes {
                let local = (r1 - r0).saturating_sub(p).div_ceil(pes);
                let mut pointers = vec![0u16];
                let mut entries = Vec::new();
                for _ in c0..c1 {
                    let mut row = 0usize;
                    loop {
                        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                        let mut zeros = if density >= 1.0 {
                            0
                        } else {
                            (u.ln() / log_miss) as usize
                        };
                        if row + zeros >= local {
                            break;
                        }
                        row += zeros + 1;
                        while zeros > usize::from(MAX_ZERO_RUN) {
                            entries.push(pack_entry(0, MAX_ZERO_RUN));
                            zeros -= usize::from(MAX_ZERO_RUN) + 1;
                        }
                        entries.push(pack_entry(rng.random_range(1..16u8), zeros as u8));
                    }
                    pointers.push(entries.len() as u16);
                }
                instructions.push(Instruction::LoadPointers {
                    pe: p as u16,
                    address: 0,
                    pointers,
                });
                instructions.push(Instruction::LoadMatrix {
                    pe: p as u16,
                    address: 0,
                    entries,
                });
            }
            if t == 0 {
                instructions.push(Instruction::LoadBias {
                    values: vec![0; r1 - r0],
                });
            }
            instructions.push(Instruction::Run);
        }
    }
    instructions.extend_from_slice(&program.instructions[program.instructions.len() - 2..]);
    if let Some(Instruction::ReadOutput { len, .. }) = instructions.iter_mut().rev().nth(1) {
        *len = rows as u32;
    }
    program.instructions = instructions;
    program.outputs[0].shape = vec![rows as u32];
    program.buffers[1].len = rows as u32;
    program.layers[0].rows = rows as u32;
    program
}

/// Encodes `layer` as a one-layer program for `pes` PEs, splitting columns into tiles of at most
/// `col_tile` columns (and rows into tiles of at most `64 * pes` rows).
pub fn encode_program(
    layer: &DenseLayer,
    pes: usize,
    formats: Formats,
    col_tile: usize,
) -> Program {
    let max_rows = 64 * pes;
    let col_tile = col_tile.min(64 * pes).max(1);
    let mut instructions = vec![
        Instruction::LoadInput {
            input: 0,
            start: 0,
            dst: BufferSlice {
                buffer: 0,
                offset: 0,
            },
            len: layer.cols as u32,
        },
        Instruction::LoadCodebook {
            weights: layer.codebook,
        },
    ];
    // Every tile's pointers and entries are loaded right before its run, at the start of the
    // PE memories.
    let (ptr_base, matrix_base) = (0usize, 0usize);
    for r0 in (0..layer.rows).step_by(max_rows) {
        let r1 = (r0 + max_rows).min(layer.rows);
        let tiles: Vec<usize> = (0..layer.cols).step_by(col_tile).collect();
        for (t, &c0) in tiles.iter().enumerate() {
            let c1 = (c0 + col_tile).min(layer.cols);
            let encoded: Vec<(Vec<u16>, Vec<u8>)> = (0..pes)
                .map(|p| encode_pe(layer, pes, p, r0..r1, c0..c1))
                .collect();
            let config = TileConfig {
                layer: 0,
                rows: (r1 - r0) as u32,
                cols: (c1 - c0) as u32,
                pes: pes as u16,
                weight_frac: formats.wf,
                input_frac: formats.af,
                output_frac: formats.of,
                activation: layer.activation,
                src: 0,
                dst: 1,
                row_offset: r0 as u32,
                col_offset: c0 as u32,
                first_col_tile: t == 0,
                last_col_tile: t + 1 == tiles.len(),
                ptr_base: ptr_base as u16,
                matrix_base: matrix_base as u32,
            };
            instructions.push(Instruction::Configure(config));
            for (p, (pointers, entries)) in encoded.into_iter().enumerate() {
                instructions.push(Instruction::LoadPointers {
                    pe: p as u16,
                    address: ptr_base as u16,
                    pointers,
                });
                if !entries.is_empty() {
                    instructions.push(Instruction::LoadMatrix {
                        pe: p as u16,
                        address: matrix_base as u32,
                        entries,
                    });
                }
            }
            if t == 0 {
                instructions.push(Instruction::LoadBias {
                    values: layer.bias[r0..r1].to_vec(),
                });
            }
            instructions.push(Instruction::Run);
        }
    }
    instructions.push(Instruction::ReadOutput {
        output: 0,
        src: BufferSlice {
            buffer: 1,
            offset: 0,
        },
        len: layer.rows as u32,
    });
    instructions.push(Instruction::Halt);
    Program {
        name: "random".into(),
        pes: pes as u16,
        inputs: vec![IoSpec {
            name: "x".into(),
            shape: vec![layer.cols as u32],
            frac: formats.af,
            post: HostPost::None,
        }],
        outputs: vec![IoSpec {
            name: "y".into(),
            shape: vec![layer.rows as u32],
            frac: formats.of,
            post: HostPost::None,
        }],
        buffers: vec![
            BufferDecl {
                name: "x".into(),
                len: layer.cols as u32,
            },
            BufferDecl {
                name: "y".into(),
                len: layer.rows as u32,
            },
        ],
        layers: vec![LayerDecl {
            name: "fc".into(),
            rows: layer.rows as u32,
            cols: layer.cols as u32,
        }],
        instructions,
    }
}
