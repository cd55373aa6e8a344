//! Lowering: a verified, compressed graph → an EIE [`Program`].
//!
//! Accepted graphs: one or more inputs; chains of `dense` layers (each optionally followed by
//! `relu`, fused into the layer's write-back); `flatten`, `reshape`, `identity` and `dropout`,
//! which do not move data, nor does a `cast` to f32 (every value the machine holds is f32); a
//! `slice` of one vector (a stacked product's part), which the host copies into its own buffer
//! ([`HostOp::Copy`]); a `softmax` that is a graph output, which the host applies after reading
//! the output back ([`HostPost::Softmax`]); and `lstm_stacked` (ESE's gate stacking), lowered as one
//! sparse product per time step over `[x_t; h; 1]` with the gate math as host operations. Every
//! other op is refused, all of them named in one error; an unstacked `lstm` is refused with the
//! advice to stack it before quantization (see [`stack_lstms`]).
//!
//! Every dense or stacked-LSTM weight must be quantized with at most 16 shared values and code 0
//! reserved for zero, and partitioned over the same PE count (the [`eie_pipeline`] does this).
//!
//! # Fixed-point formats (dynamic fixed point, chosen per layer from the data)
//!
//! * Weights: `wf` is the largest fractional-bit count (≤ [`MAX_FRAC`]) at which the codebook's
//!   largest magnitude still fits an `i16`: the 16 shared values are known exactly, so no headroom.
//! * Activations: the reference interpreter runs the graph on calibration inputs (given, or
//!   [`LowerOptions::seeded_samples`] seeded samples of `|N(0, 1)|` per element, the CLI's
//!   `random:` inputs at density 1) and records every value's largest magnitude `m`; a value's
//!   format is the largest fraction with `m · 2^(frac + headroom) ≤ 32767`
//!   ([`LowerOptions::headroom_bits`], default 1: twice the calibrated range). A value that is zero
//!   on every calibration input gets `Q15`.
//! * A layer's input format is its producer's output format; if the product shift
//!   `wf + af − of` would be negative, `of` is lowered to `wf + af`; above [`MAX_FRAC`], `wf` is
//!   lowered. Biases are rounded to `i32` in `Q(of)`.
//! * LSTM: the stacked input `[x_t; h; 1]` shares one format, at most `Q14` so that the constant 1
//!   is exact, and large enough for `|x|` and `|h| < 1`; gate pre-activations and the cell state get
//!   calibrated formats (the calibration runs the stacked LSTM step by step in f32 on the quantized
//!   weights); sigmoid and tanh results are `Q15`.
//!
//! # Tiling and memory layout
//!
//! A tile has at most `64 · N` rows and `64 · N` columns (the activation register files), and at
//! most 65535 entries in any PE (16-bit pointers relative to the tile's matrix base). Rows split
//! into row tiles of `64 · N`; within a row tile, columns are taken greedily while the tile stays
//! within those limits. When all tiles of a layer fit the PE memories together, each gets its own
//! pointer and matrix base and they are loaded once (an LSTM's tiles then stay resident across
//! steps); otherwise every tile is loaded at base 0 just before it runs.
//!
//! Every value the machine holds has its own activation buffer (the program's input and every
//! layer's output), so a listing names them after the graph's values.

use crate::binary::{self, EncodeError};
use crate::isa::{
    ACT_REGS_PER_PE, Activation, BufferDecl, BufferSlice, CODEBOOK_LEN, ENTRIES_PER_SRAM_ROW,
    HostOp, HostPost, Instruction, IoSpec, LayerDecl, MATRIX_ENTRIES, MAX_FRAC, MAX_PES,
    POINTER_WORDS, Program, TileConfig, quantize,
};
use crate::matrix::{CodeRows, PeColumns, encode_row_tile};
use sprig_ir::op::{Dense, LstmStacked, Slice};
use sprig_ir::{
    DType, Distribution, Graph, GraphInfo, NodeId, Op, RandomInit, Tensor, TensorType, Weight,
    WeightId,
};
use sprig_passes::options::{OptEntry, OptValue};
use sprig_passes::{PassError, Pipeline};
use std::collections::BTreeMap;

/// Largest entry count of one tile in one PE: pointers are 16 bits.
pub const MAX_TILE_ENTRIES: u32 = u16::MAX as u32;
/// The format of sigmoid and tanh results in the LSTM gate math.
pub const GATE_FRAC: u8 = 15;
/// The largest format of an LSTM's stacked input (1.0 must be exact).
pub const LSTM_INPUT_MAX_FRAC: u8 = 14;
/// A layer whose weights are at most this dense before pruning counts as already pruned for
/// [`eie_pipeline`].
pub const ALREADY_SPARSE_DENSITY: f64 = 0.5;

/// How to lower.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// Calibration samples, each one tensor per graph input; when empty, seeded samples are used.
    pub calibration: Vec<Vec<Tensor>>,
    /// Seeded calibration samples when none are given.
    pub seeded_samples: usize,
    /// Seed of the first seeded sample.
    pub seed: u64,
    /// Extra bits of range above the calibrated maximum of every activation.
    pub headroom_bits: u8,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            calibration: Vec::new(),
            seeded_samples: 8,
            seed: 0,
            headroom_bits: 1,
        }
    }
}

/// Why a graph cannot be lowered.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error(
        "the EIE target does not support {}: it runs dense layers (with relu), flatten/reshape/identity/dropout/cast to f32, slices of a vector and a final softmax (on the host) and stacked LSTMs",
        list_ops(.0)
    )]
    Unsupported(Vec<(String, String)>),
    #[error("`{node}`: {reason}")]
    Node { node: String, reason: String },
    #[error("calibration: {0}")]
    Calibration(String),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

fn list_ops(ops: &[(String, String)]) -> String {
    ops.iter()
        .map(|(node, op)| format!("`{node}` ({op})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn node_error(node: &str, reason: impl Into<String>) -> LowerError {
    LowerError::Node {
        node: node.to_string(),
        reason: reason.into(),
    }
}

/// What the lowering made of one weight layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// The weight's name.
    pub name: String,
    /// `dense` or `lstm`.
    pub kind: &'static str,
    pub rows: u32,
    pub cols: u32,
    pub row_tiles: u32,
    /// Column tiles of the widest row tile.
    pub col_tiles: u32,
    pub tiles: u32,
    pub nonzeros: u64,
    pub padding: u64,
    /// Entries (non-zeros and padding) of the most loaded PE, over all tiles.
    pub pe_max_entries: u64,
    pub pe_mean_entries: f64,
    pub weight_frac: u8,
    pub input_frac: u8,
    pub output_frac: u8,
    pub activation: Activation,
    /// Runs of the layer's product (LSTM time steps; 1 for dense).
    pub steps: u32,
    /// Whether the tiles are loaded once and stay resident.
    pub resident: bool,
    /// Encoded bytes of the layer's instructions.
    pub bytes: u64,
}

/// A lowered program, its encoding and the per-layer report.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub program: Program,
    pub bytes: Vec<u8>,
    pub layers: Vec<LayerReport>,
    /// Observations worth telling the user (saturation risk, resized formats).
    pub notes: Vec<String>,
}

/// The `eie` preset for `graph`, with `pes` PEs (partition and load balancing). Layers that are
/// already mostly zeros (density at most [`ALREADY_SPARSE_DENSITY`], such as the seeded benchmark
/// layers) keep exactly their non-zeros: they are pruned with `quality=0` and no balancing, so
/// their sparsity is the one the model describes. Layers are judged, and named, as the preset's
/// `simplify` step leaves them (it may stack, merge or fold layers), so the per-layer options
/// name the layers `prune` sees.
pub fn eie_pipeline(graph: &Graph, info: &GraphInfo, pes: usize) -> Result<Pipeline, PassError> {
    let mut pipeline = Pipeline::preset("eie")?;
    let simplified = match pipeline.steps.iter().find(|s| s.pass == "simplify") {
        Some(step) => {
            let mut g = graph.clone();
            let only = Pipeline {
                steps: vec![step.clone()],
            };
            let (i, _) = sprig_passes::run_pipeline(&mut g, info.clone(), &only, None)?;
            Some((g, i))
        }
        None => None,
    };
    let (graph, info) = simplified.as_ref().map_or((graph, info), |(g, i)| (g, i));
    let mut sparse_layers = Vec::new();
    for layer in sprig_passes::layers::layers(graph, info) {
        if layer.is_bias || layer.kind != sprig_passes::layers::LayerKind::Fc {
            continue;
        }
        let values = graph.weights[layer.weight].values();
        let nonzeros = values.iter().filter(|&&v| v != 0.0).count();
        if (nonzeros as f64) <= ALREADY_SPARSE_DENSITY * values.len().max(1) as f64 {
            sparse_layers.push(layer.weight_name.clone());
        }
    }
    for step in &mut pipeline.steps {
        let entry = |layer: Option<&str>, key: &str, value: OptValue| OptEntry {
            layer: layer.map(str::to_string),
            key: key.to_string(),
            value,
        };
        match step.pass {
            "prune" => {
                step.options
                    .entries
                    .push(entry(None, "balance_pes", OptValue::Number(pes as f64)));
                for name in &sparse_layers {
                    step.options
                        .entries
                        .push(entry(Some(name), "quality", OptValue::Number(0.0)));
                    step.options.entries.push(entry(
                        Some(name),
                        "balance_pes",
                        OptValue::Number(1.0),
                    ));
                }
            }
            "partition" => {
                step.options
                    .entries
                    .push(entry(None, "pes", OptValue::Number(pes as f64)))
            }
            _ => {}
        }
    }
    Ok(pipeline)
}

/// The text of a pipeline, which [`Pipeline::parse`] reads back as the same pipeline.
pub fn pipeline_text(pipeline: &Pipeline) -> String {
    pipeline
        .steps
        .iter()
        .map(|step| {
            let options: Vec<String> = step
                .options
                .entries
                .iter()
                .map(|e| match &e.layer {
                    Some(layer) => format!("{layer}.{}={}", e.key, e.value),
                    None => format!("{}={}", e.key, e.value),
                })
                .collect();
            if options.is_empty() {
                step.pass.to_string()
            } else {
                format!("{}({})", step.pass, options.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces every `lstm` whose weights are not yet quantized by the equivalent `lstm_stacked`
/// over one `[4h, in + h + 1]` weight (rows `[W[j], R[j], Wb[j] + Rb[j]]`), so compression and
/// lowering see one product per step. Returns the names of the nodes rewritten. An `lstm` whose
/// `W` or `R` already carries an encoding is left alone (its codebooks cannot be merged), and the
/// lowering then refuses it.
pub fn stack_lstms(graph: &mut Graph) -> Vec<String> {
    let ids: Vec<NodeId> = graph.node_ids().collect();
    let mut rewritten = Vec::new();
    for id in ids {
        let Op::Lstm(lstm) = &graph.node(id).op else {
            continue;
        };
        let lstm = lstm.clone();
        let (w, r) = (&graph.weights[lstm.w], &graph.weights[lstm.r]);
        if !w.encoding.is_dense() || !r.encoding.is_dense() {
            continue;
        }
        let (wd, rd) = (w.ty.shape.dims().to_vec(), r.ty.shape.dims().to_vec());
        let (&[gates, inputs], &[gates_r, hidden]) = (&wd[..], &rd[..]) else {
            continue;
        };
        if gates != gates_r || gates != 4 * hidden {
            continue;
        }
        let (wv, rv) = (w.values(), r.values());
        let bias = lstm.b.map(|b| graph.weights[b].values());
        if bias.as_ref().is_some_and(|b| b.len() != 2 * gates) {
            continue;
        }
        let cols = inputs + hidden + 1;
        let mut stacked = Vec::with_capacity(gates * cols);
        for j in 0..gates {
            stacked.extend_from_slice(&wv[j * inputs..(j + 1) * inputs]);
            stacked.extend_from_slice(&rv[j * hidden..(j + 1) * hidden]);
            stacked.push(bias.as_ref().map_or(0.0, |b| b[j] + b[gates + j]));
        }
        let name = format!("{}.stacked", w.name);
        let Ok(weight) = Weight::computed(name, TensorType::f32([gates, cols]), stacked) else {
            continue;
        };
        let weight = graph.add_weight(weight);
        let node = graph.node_mut(id);
        node.op = Op::LstmStacked(LstmStacked {
            weight,
            h0: lstm.h0,
            c0: lstm.c0,
            last: lstm.last,
        });
        rewritten.push(node.name.clone());
    }
    rewritten
}

/// Where a value lives: a whole activation buffer, in `Q(frac)`.
#[derive(Clone, Copy, Debug)]
struct Loc {
    buffer: u16,
    frac: u8,
    len: u32,
}

/// Calibrated ranges: the largest magnitude of every value, and of an LSTM's gate
/// pre-activations and cell state.
#[derive(Debug, Default)]
struct Ranges {
    value: BTreeMap<NodeId, f64>,
    lstm: BTreeMap<NodeId, (f64, f64)>,
}

/// The largest fraction at which `max_abs · 2^(frac + headroom)` fits an `i16` (Q15 for 0).
pub fn frac_for(max_abs: f64, headroom_bits: u8) -> u8 {
    if max_abs.is_nan() || max_abs <= 0.0 {
        return 15;
    }
    let limit = f64::from(i16::MAX) / f64::from(1u32 << headroom_bits.min(15));
    let mut frac = 0u8;
    while frac < MAX_FRAC && max_abs * f64::from(1u32 << (frac + 1)) <= limit {
        frac += 1;
    }
    frac
}

fn lstm_input_frac(max_x: f64, headroom: u8) -> u8 {
    frac_for(max_x.max(1.0), headroom).min(LSTM_INPUT_MAX_FRAC)
}

/// Lowers a verified graph (see the module docs).
pub fn lower(
    graph: &Graph,
    info: &GraphInfo,
    options: &LowerOptions,
) -> Result<Lowered, LowerError> {
    check_supported(graph, info)?;
    require_dense_normal_form(graph, info)?;
    let samples = calibration_samples(graph, info, options)?;
    let ranges = calibrate(graph, info, &samples)?;
    let pes = graph_pes(graph, info)?;
    let mut b = Builder {
        graph,
        info,
        options,
        ranges,
        pes,
        program: Program {
            name: graph.name.clone(),
            pes,
            inputs: Vec::new(),
            outputs: Vec::new(),
            buffers: Vec::new(),
            layers: Vec::new(),
            instructions: Vec::new(),
        },
        loc: BTreeMap::new(),
        fused_relu: BTreeMap::new(),
        softmax_outputs: Vec::new(),
        ones: None,
        reports: Vec::new(),
        notes: Vec::new(),
    };
    for &id in &info.order {
        b.node(id)?;
    }
    b.outputs()?;
    b.program.instructions.push(Instruction::Halt);
    let bytes = binary::encode(&b.program)?;
    Ok(Lowered {
        program: b.program,
        bytes,
        layers: b.reports,
        notes: b.notes,
    })
}

/// Refuses a graph with ops the EIE target cannot run, naming all of them at once (what
/// [`lower`] checks first; callers may check before compressing). A `matmul` passes here, since
/// the simplify pass every EIE pipeline starts with rewrites it to dense; [`lower`] itself
/// refuses one still in the graph.
pub fn check_supported(graph: &Graph, info: &GraphInfo) -> Result<(), LowerError> {
    let mut refused = Vec::new();
    for &id in &info.order {
        let node = graph.node(id);
        match &node.op {
            Op::Input(_)
            | Op::Dense(_)
            | Op::Relu
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Identity
            | Op::Dropout(_)
            | Op::Softmax(_)
            | Op::Slice(_)
            | Op::LstmStacked(_) => {}
            Op::Cast(c) if c.to == DType::F32 => {}
            Op::Lstm(_) => {
                return Err(node_error(
                    &node.name,
                    "an lstm with separate W and R: EIE runs one stacked product per step; stack it before quantization (the simplify pass, or `sprig compile --target eie`, which stacks unquantized LSTMs)",
                ));
            }
            // Every EIE pipeline starts with simplify, which rewrites a matmul to dense;
            // `lower` refuses one left in a compressed graph (`require_dense_normal_form`).
            Op::MatMul(_) => {}
            other => refused.push((node.name.clone(), other.name().to_string())),
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(LowerError::Unsupported(refused))
    }
}

/// Refuses a graph that still holds a `matmul` (weight `[in, out]`): EIE runs dense products
/// over `[out, in]` weights, and the simplify pass rewrites every matmul into one.
fn require_dense_normal_form(graph: &Graph, info: &GraphInfo) -> Result<(), LowerError> {
    match info
        .order
        .iter()
        .find(|&&id| matches!(graph.node(id).op, Op::MatMul(_)))
    {
        Some(&id) => Err(node_error(
            &graph.node(id).name,
            "a matmul with its weight stored [in, out]: EIE runs dense products over [out, in] weights; run the simplify pass first (it rewrites every matmul to dense; the eie preset and `sprig compile --target eie` start with it)",
        )),
        None => Ok(()),
    }
}

/// The PE count every layer is partitioned over.
fn graph_pes(graph: &Graph, info: &GraphInfo) -> Result<u16, LowerError> {
    let mut found: Option<(usize, String)> = None;
    for &id in &info.order {
        let node = graph.node(id);
        let weight = match &node.op {
            Op::Dense(d) => d.weight,
            Op::LstmStacked(l) => l.weight,
            _ => continue,
        };
        let w = &graph.weights[weight];
        let Some(partition) = &w.encoding.partition else {
            return Err(node_error(
                &node.name,
                format!(
                    "@{} is not partitioned over PEs (run `partition(pes=N)`, part of the eie preset)",
                    w.name
                ),
            ));
        };
        match &found {
            Some((pes, first)) if *pes != partition.pes => {
                return Err(node_error(
                    &node.name,
                    format!(
                        "@{} is partitioned over {} PEs but @{first} over {pes}; a program has one PE count",
                        w.name, partition.pes
                    ),
                ));
            }
            Some(_) => {}
            None => found = Some((partition.pes, w.name.clone())),
        }
    }
    let pes = found.map_or(64, |(p, _)| p);
    if pes == 0 || pes > usize::from(MAX_PES) {
        return Err(LowerError::Calibration(format!(
            "{pes} PEs: EIE has 1..={MAX_PES}"
        )));
    }
    Ok(pes as u16)
}

fn calibration_samples(
    graph: &Graph,
    info: &GraphInfo,
    options: &LowerOptions,
) -> Result<Vec<Vec<Tensor>>, LowerError> {
    if !options.calibration.is_empty() {
        return Ok(options.calibration.clone());
    }
    let samples = options.seeded_samples.max(1);
    Ok((0..samples)
        .map(|s| {
            graph
                .inputs()
                .iter()
                .enumerate()
                .map(|(k, &id)| {
                    let ty = info.ty(id);
                    let init = RandomInit {
                        dist: Distribution::Normal {
                            mean: 0.0,
                            std: 1.0,
                        },
                        density: 1.0,
                        seed: options.seed.wrapping_add((s * 1000 + k) as u64),
                    };
                    let data = init
                        .generate(ty.shape.len())
                        .into_iter()
                        .map(f32::abs)
                        .collect();
                    Tensor::new(ty.shape.clone(), data)
                })
                .collect()
        })
        .collect())
}

/// Runs the interpreter on every sample with every value as an output and records the ranges.
fn calibrate(
    graph: &Graph,
    info: &GraphInfo,
    samples: &[Vec<Tensor>],
) -> Result<Ranges, LowerError> {
    let mut probe = graph.clone();
    let probed: Vec<NodeId> = info
        .order
        .iter()
        .copied()
        .filter(|&id| !matches!(graph.node(id).op, Op::Input(_)))
        .collect();
    probe.set_outputs(probed.clone());
    let probe_info = sprig_ir::verify(&probe).map_err(|errors| {
        LowerError::Calibration(
            errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut ranges = Ranges::default();
    let max_abs = |t: &Tensor| {
        t.data
            .iter()
            .fold(0.0f64, |m, &v| m.max(f64::from(v.abs())))
    };
    for sample in samples {
        let outputs = sprig_ir::interpret(&probe, &probe_info, sample)
            .map_err(|e| LowerError::Calibration(e.to_string()))?;
        let mut held: BTreeMap<NodeId, &Tensor> = BTreeMap::new();
        for (&id, tensor) in graph.inputs().iter().zip(sample) {
            held.insert(id, tensor);
        }
        for (&id, tensor) in probed.iter().zip(&outputs) {
            held.insert(id, tensor);
        }
        for (&id, tensor) in &held {
            let m = ranges.value.entry(id).or_insert(0.0);
            *m = m.max(max_abs(tensor));
        }
        for &id in &probed {
            if let Op::LstmStacked(l) = &graph.node(id).op {
                let operand = graph.operands(id)[0];
                let x = held[&operand];
                let (g, c) = lstm_ranges(&graph.weights[l.weight], x);
                let entry = ranges.lstm.entry(id).or_insert((0.0, 0.0));
                entry.0 = entry.0.max(g);
                entry.1 = entry.1.max(c);
            }
        }
    }
    Ok(ranges)
}

/// The largest gate pre-activation and cell-state magnitudes of a stacked LSTM over `x` in f32
/// (zero initial state; the lowering refuses non-zero ones).
fn lstm_ranges(weight: &Weight, x: &Tensor) -> (f64, f64) {
    let dims = weight.ty.shape.dims();
    let (rows, cols) = (dims[0], dims[1]);
    let hidden = rows / 4;
    let inputs = cols - hidden - 1;
    let values = weight.values();
    let mut nz: Vec<Vec<(usize, f32)>> = vec![Vec::new(); rows];
    for (r, row) in values.chunks(cols).enumerate() {
        nz[r] = row
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(c, &v)| (c, v))
            .collect();
    }
    let steps = x.data.len() / inputs.max(1);
    let mut z = vec![0.0f32; cols];
    z[cols - 1] = 1.0;
    let mut c = vec![0.0f32; hidden];
    let mut g = vec![0.0f32; rows];
    let (mut max_g, mut max_c) = (0.0f64, 0.0f64);
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    for t in 0..steps {
        z[..inputs].copy_from_slice(&x.data[t * inputs..(t + 1) * inputs]);
        for (r, out) in g.iter_mut().enumerate() {
            *out = nz[r].iter().map(|&(col, w)| w * z[col]).sum();
            max_g = max_g.max(f64::from(out.abs()));
        }
        for k in 0..hidden {
            let (i, o, f, cand) = (
                sigmoid(g[k]),
                sigmoid(g[hidden + k]),
                sigmoid(g[2 * hidden + k]),
                g[3 * hidden + k].tanh(),
            );
            c[k] = f * c[k] + i * cand;
            max_c = max_c.max(f64::from(c[k].abs()));
            z[inputs + k] = o * c[k].tanh();
        }
    }
    (max_g, max_c)
}

/// A row tile encoded for every PE, and its column tiles.
struct RowTile {
    row_offset: u32,
    rows: u32,
    pes: Vec<PeColumns>,
    /// `(col_offset, cols)` of each column tile.
    col_tiles: Vec<(u32, u32)>,
}

/// A layer's tiles and where they sit in the PE memories.
struct Tiling {
    row_tiles: Vec<RowTile>,
    /// `(ptr_base, matrix_base)` of each tile in row-tile-major order, all `(0, 0)` unless
    /// resident.
    bases: Vec<(u16, u32)>,
    resident: bool,
}

fn tile_layer(matrix: &CodeRows, pes: usize) -> Tiling {
    let limit = ACT_REGS_PER_PE as usize * pes;
    let mut row_tiles = Vec::new();
    let mut row = 0;
    while row < matrix.rows {
        let rows = limit.min(matrix.rows - row);
        let encoded = encode_row_tile(matrix, row, rows, pes);
        let mut col_tiles = Vec::new();
        let mut start = 0;
        while start < matrix.cols {
            let mut end = start + 1;
            while end < matrix.cols
                && end - start < limit
                && encoded
                    .iter()
                    .all(|pe| pe.entries_in(start, end + 1) <= MAX_TILE_ENTRIES)
            {
                end += 1;
            }
            col_tiles.push((start as u32, (end - start) as u32));
            start = end;
        }
        row_tiles.push(RowTile {
            row_offset: row as u32,
            rows: rows as u32,
            pes: encoded,
            col_tiles,
        });
        row += rows;
    }
    // Resident placement: consecutive pointer arrays, matrix bases on 64-bit SRAM rows.
    let mut bases = Vec::new();
    let (mut ptr, mut mat) = (0u64, 0u64);
    for rt in &row_tiles {
        for &(c0, cols) in &rt.col_tiles {
            bases.push((ptr, mat));
            ptr += u64::from(cols) + 1;
            let most = rt
                .pes
                .iter()
                .map(|pe| pe.entries_in(c0 as usize, (c0 + cols) as usize))
                .max()
                .unwrap_or(0);
            mat += u64::from(most).div_ceil(u64::from(ENTRIES_PER_SRAM_ROW))
                * u64::from(ENTRIES_PER_SRAM_ROW);
        }
    }
    let resident = ptr <= u64::from(POINTER_WORDS)
        && mat <= u64::from(MATRIX_ENTRIES)
        && bases.iter().all(|&(_, m)| m < u64::from(MATRIX_ENTRIES));
    let bases = if resident {
        bases
            .into_iter()
            .map(|(p, m)| (p as u16, m as u32))
            .collect()
    } else {
        vec![(0, 0); bases.len()]
    };
    Tiling {
        row_tiles,
        bases,
        resident,
    }
}

/// The non-zero codes of a quantized matrix weight and its codebook.
fn layer_codes(
    graph: &Graph,
    node: &str,
    weight: WeightId,
) -> Result<(CodeRows, Vec<f32>), LowerError> {
    let w = &graph.weights[weight];
    let dims = w.ty.shape.dims();
    let &[rows, cols] = dims else {
        return Err(node_error(node, format!("@{} is not a matrix", w.name)));
    };
    let Some(shared) = &w.encoding.shared else {
        return Err(node_error(
            node,
            format!(
                "@{} is not quantized: EIE stores 4-bit codes (compile with the eie preset, or quantize(bits=4, zero_code=true))",
                w.name
            ),
        ));
    };
    if !shared.zero_code {
        return Err(node_error(
            node,
            format!(
                "@{} has no zero code: EIE needs code 0 for zero and padding (quantize with zero_code=true)",
                w.name
            ),
        ));
    }
    if shared.codebook.len() > CODEBOOK_LEN {
        return Err(node_error(
            node,
            format!(
                "@{} has {} shared values: EIE's 4-bit codes index 16 (quantize with bits=4)",
                w.name,
                shared.codebook.len()
            ),
        ));
    }
    let values = w.values();
    let per_element = shared.codes.len() == values.len();
    let mut m = CodeRows {
        rows,
        cols,
        row_start: Vec::with_capacity(rows + 1),
        ..CodeRows::default()
    };
    let mut next = 0usize;
    for (r, row) in values.chunks(cols.max(1)).enumerate().take(rows) {
        m.row_start.push(m.col.len());
        for (c, &v) in row.iter().enumerate() {
            let code = if per_element {
                shared.codes[r * cols + c]
            } else if v != 0.0 {
                next += 1;
                *shared.codes.get(next - 1).ok_or_else(|| {
                    node_error(
                        node,
                        format!("@{}: fewer codes than non-zero weights", w.name),
                    )
                })?
            } else {
                continue;
            };
            if code == 0 {
                if v != 0.0 {
                    return Err(node_error(
                        node,
                        format!("@{}: weight ({r}, {c}) = {v} has the zero code", w.name),
                    ));
                }
                continue;
            }
            if usize::from(code) >= shared.codebook.len() {
                return Err(node_error(
                    node,
                    format!("@{}: code {code} outside the codebook", w.name),
                ));
            }
            m.col.push(c as u32);
            m.code.push(code as u8);
        }
    }
    m.row_start.push(m.col.len());
    if !per_element && next != shared.codes.len() {
        return Err(node_error(
            node,
            format!(
                "@{}: {} codes for {next} non-zero weights",
                w.name,
                shared.codes.len()
            ),
        ));
    }
    Ok((m, shared.codebook.clone()))
}

/// Formats and codebook of one layer's product.
struct Product {
    weight_frac: u8,
    input_frac: u8,
    output_frac: u8,
    codebook: [i16; CODEBOOK_LEN],
}

fn product_formats(codebook: &[f32], input_frac: u8, output_max: f64, headroom: u8) -> Product {
    let max_w = codebook
        .iter()
        .fold(0.0f64, |m, &w| m.max(f64::from(w.abs())));
    let mut weight_frac = frac_for(max_w, 0);
    let mut output_frac = frac_for(output_max, headroom);
    let shift = |w: u8, o: u8| i32::from(w) + i32::from(input_frac) - i32::from(o);
    if shift(weight_frac, output_frac) < 0 {
        output_frac = weight_frac + input_frac;
    }
    if shift(weight_frac, output_frac) > i32::from(MAX_FRAC) {
        weight_frac = output_frac + MAX_FRAC - input_frac;
    }
    let mut table = [0i16; CODEBOOK_LEN];
    for (slot, &w) in table.iter_mut().zip(codebook).skip(1) {
        *slot = quantize(w, weight_frac);
    }
    Product {
        weight_frac,
        input_frac,
        output_frac,
        codebook: table,
    }
}

struct Builder<'g> {
    graph: &'g Graph,
    info: &'g GraphInfo,
    options: &'g LowerOptions,
    ranges: Ranges,
    pes: u16,
    program: Program,
    loc: BTreeMap<NodeId, Loc>,
    /// Dense node → the relu fused into it.
    fused_relu: BTreeMap<NodeId, NodeId>,
    softmax_outputs: Vec<NodeId>,
    /// A buffer of 1.0 in Q14, for format changes by a host product.
    ones: Option<(u16, u32)>,
    reports: Vec<LayerReport>,
    notes: Vec<String>,
}

impl Builder<'_> {
    fn buffer(&mut self, name: &str, len: u32) -> u16 {
        self.program.buffers.push(BufferDecl {
            name: name.to_string(),
            len,
        });
        (self.program.buffers.len() - 1) as u16
    }

    fn range(&self, id: NodeId) -> f64 {
        self.ranges.value.get(&id).copied().unwrap_or(0.0)
    }

    fn operand_loc(&self, id: NodeId) -> Result<(NodeId, Loc), LowerError> {
        let node = self.graph.node(id);
        let operand = *self
            .graph
            .operands(id)
            .first()
            .ok_or_else(|| node_error(&node.name, "has no operand"))?;
        let loc = self.loc.get(&operand).copied().ok_or_else(|| {
            node_error(
                &node.name,
                format!(
                    "its operand `{}` is not held by the machine",
                    self.graph.node(operand).name
                ),
            )
        })?;
        Ok((operand, loc))
    }

    fn elements(&self, id: NodeId) -> Result<u32, LowerError> {
        let len = self.info.ty(id).shape.len();
        u32::try_from(len).map_err(|_| {
            node_error(
                &self.graph.node(id).name,
                format!("{len} elements are too many"),
            )
        })
    }

    fn node(&mut self, id: NodeId) -> Result<(), LowerError> {
        let graph = self.graph;
        let node = graph.node(id);
        match &node.op {
            Op::Input(_) => {
                let len = self.elements(id)?;
                let feeds_lstm = graph
                    .users(id)
                    .iter()
                    .any(|&(u, _)| matches!(graph.node(u).op, Op::LstmStacked(_)));
                let frac = if feeds_lstm {
                    lstm_input_frac(self.range(id), self.options.headroom_bits)
                } else {
                    frac_for(self.range(id), self.options.headroom_bits)
                };
                let buffer = self.buffer(&node.name, len);
                let shape = self
                    .info
                    .ty(id)
                    .shape
                    .dims()
                    .iter()
                    .map(|&d| d as u32)
                    .collect();
                self.program.inputs.push(IoSpec {
                    name: node.name.clone(),
                    shape,
                    frac,
                    post: HostPost::None,
                });
                self.program.instructions.push(Instruction::LoadInput {
                    input: (self.program.inputs.len() - 1) as u16,
                    start: 0,
                    dst: BufferSlice { buffer, offset: 0 },
                    len,
                });
                self.loc.insert(id, Loc { buffer, frac, len });
            }
            Op::Dense(d) => self.dense(id, d)?,
            Op::Relu => {
                let (operand, loc) = match self.fused_relu.iter().find(|&(_, &r)| r == id) {
                    Some((&dense, _)) => (dense, self.loc.get(&dense).copied()),
                    None => (id, None),
                };
                let Some(loc) = loc else {
                    return Err(node_error(
                        &node.name,
                        format!(
                            "relu of `{}`: EIE applies relu only in a dense layer's write-back",
                            graph.node(operand).name
                        ),
                    ));
                };
                self.loc.insert(id, loc);
            }
            Op::Flatten(_) | Op::Reshape(_) | Op::Identity | Op::Dropout(_) | Op::Cast(_) => {
                let (_, loc) = self.operand_loc(id)?;
                self.loc.insert(id, loc);
            }
            Op::Slice(sl) => self.slice(id, sl)?,
            Op::Softmax(_) => {
                let (_, loc) = self.operand_loc(id)?;
                let dims = self.info.ty(id).shape.dims().to_vec();
                let whole = dims.iter().rev().skip(1).all(|&d| d == 1);
                if !graph.outputs().contains(&id) || !graph.users(id).is_empty() || !whole {
                    return Err(node_error(
                        &node.name,
                        "softmax runs on the host only as a graph output over one vector",
                    ));
                }
                self.softmax_outputs.push(id);
                self.loc.insert(id, loc);
            }
            Op::LstmStacked(l) => self.lstm(id, l)?,
            other => {
                return Err(LowerError::Unsupported(vec![(
                    node.name.clone(),
                    other.name().to_string(),
                )]));
            }
        }
        Ok(())
    }

    /// A slice of one vector: the host copies its elements into a buffer of its own, in the
    /// operand's format.
    fn slice(&mut self, id: NodeId, sl: &Slice) -> Result<(), LowerError> {
        let graph = self.graph;
        let (operand, from) = self.operand_loc(id)?;
        let dims = self.info.ty(operand).shape.dims();
        let axis = usize::try_from(if sl.axis < 0 {
            sl.axis + dims.len() as i64
        } else {
            sl.axis
        })
        .map_err(|_| node_error(&graph.node(id).name, "axis out of range"))?;
        // The elements are contiguous when every axis before the sliced one has extent 1.
        if dims[..axis].iter().any(|&d| d != 1) {
            return Err(node_error(
                &graph.node(id).name,
                "EIE slices one vector: every axis before the sliced one must have extent 1",
            ));
        }
        let inner: usize = dims[axis + 1..].iter().product();
        let len = self.elements(id)?;
        let offset = u32::try_from(sl.start * inner).map_err(|_| {
            node_error(
                &graph.node(id).name,
                "the slice starts beyond 2^32 elements",
            )
        })?;
        let buffer = self.buffer(&graph.node(id).name, len);
        self.program
            .instructions
            .push(Instruction::Host(HostOp::Copy {
                dst: BufferSlice { buffer, offset: 0 },
                src: BufferSlice {
                    buffer: from.buffer,
                    offset,
                },
                len,
            }));
        self.loc.insert(
            id,
            Loc {
                buffer,
                frac: from.frac,
                len,
            },
        );
        Ok(())
    }

    fn dense(&mut self, id: NodeId, d: &Dense) -> Result<(), LowerError> {
        let graph = self.graph;
        let node = graph.node(id);
        let (_, x) = self.operand_loc(id)?;
        let (matrix, codebook) = layer_codes(graph, &node.name, d.weight)?;
        let weight_name = graph.weights[d.weight].name.clone();
        if matrix.cols != x.len as usize {
            return Err(node_error(
                &node.name,
                format!(
                    "its input holds {} values but @{weight_name} has {} columns (EIE runs one vector per layer, batch 1)",
                    x.len, matrix.cols
                ),
            ));
        }
        // A relu that is the dense node's only user, and not itself needed before it, is fused.
        let users = graph.users(id);
        let relu = match users.as_slice() {
            [(user, _)]
                if matches!(graph.node(*user).op, Op::Relu) && !graph.outputs().contains(&id) =>
            {
                Some(*user)
            }
            _ => None,
        };
        let out_node = relu.unwrap_or(id);
        let activation = if relu.is_some() {
            Activation::Relu
        } else {
            Activation::None
        };
        let product = product_formats(
            &codebook,
            x.frac,
            self.range(out_node),
            self.options.headroom_bits,
        );
        let bias = match d.bias {
            Some(b) => {
                let values = graph.weights[b].values();
                if values.len() != matrix.rows {
                    return Err(node_error(
                        &node.name,
                        format!("bias of {} values for {} rows", values.len(), matrix.rows),
                    ));
                }
                Some(
                    values
                        .iter()
                        .map(|&v| quantize_bias(v, product.output_frac))
                        .collect::<Vec<i32>>(),
                )
            }
            None => None,
        };
        let rows = matrix.rows as u32;
        let dst = self.buffer(&graph.node(out_node).name, rows);
        let layer = self.declare_layer(&weight_name, &matrix);
        let start = self.program.instructions.len();
        self.program.instructions.push(Instruction::LoadCodebook {
            weights: product.codebook,
        });
        let tiling = tile_layer(&matrix, usize::from(self.pes));
        if tiling.resident {
            self.emit_loads(&tiling);
        }
        self.emit_runs(
            &tiling,
            layer,
            &product,
            activation,
            x.buffer,
            dst,
            bias.as_deref(),
        );
        let loc = Loc {
            buffer: dst,
            frac: product.output_frac,
            len: rows,
        };
        self.loc.insert(out_node, loc);
        if let Some(r) = relu {
            self.fused_relu.insert(id, r);
            self.loc.insert(id, loc);
        }
        self.report(
            &weight_name,
            "dense",
            &matrix,
            &tiling,
            &product,
            activation,
            1,
            start,
        );
        Ok(())
    }

    fn declare_layer(&mut self, name: &str, matrix: &CodeRows) -> u16 {
        self.program.layers.push(LayerDecl {
            name: name.to_string(),
            rows: matrix.rows as u32,
            cols: matrix.cols as u32,
        });
        (self.program.layers.len() - 1) as u16
    }

    fn emit_loads(&mut self, tiling: &Tiling) {
        let mut index = 0;
        for rt in &tiling.row_tiles {
            for &(c0, cols) in &rt.col_tiles {
                let (ptr_base, matrix_base) = tiling.bases[index];
                self.emit_tile_loads(rt, c0, cols, ptr_base, matrix_base);
                index += 1;
            }
        }
    }

    fn emit_tile_loads(
        &mut self,
        rt: &RowTile,
        c0: u32,
        cols: u32,
        ptr_base: u16,
        matrix_base: u32,
    ) {
        for (pe, columns) in rt.pes.iter().enumerate() {
            let span = c0 as usize..=(c0 + cols) as usize;
            let first = columns.col_start[c0 as usize];
            let pointers = columns.col_start[span]
                .iter()
                .map(|&p| (p - first) as u16)
                .collect();
            self.program.instructions.push(Instruction::LoadPointers {
                pe: pe as u16,
                address: ptr_base,
                pointers,
            });
            let last = columns.col_start[(c0 + cols) as usize];
            if last > first {
                self.program.instructions.push(Instruction::LoadMatrix {
                    pe: pe as u16,
                    address: matrix_base,
                    entries: columns.entries[first as usize..last as usize].to_vec(),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_runs(
        &mut self,
        tiling: &Tiling,
        layer: u16,
        product: &Product,
        activation: Activation,
        src: u16,
        dst: u16,
        bias: Option<&[i32]>,
    ) {
        let mut index = 0;
        for rt in &tiling.row_tiles {
            let tiles = rt.col_tiles.len();
            for (k, &(c0, cols)) in rt.col_tiles.iter().enumerate() {
                let (ptr_base, matrix_base) = tiling.bases[index];
                index += 1;
                let config = TileConfig {
                    layer,
                    rows: rt.rows,
                    cols,
                    pes: self.pes,
                    weight_frac: product.weight_frac,
                    input_frac: product.input_frac,
                    output_frac: product.output_frac,
                    activation,
                    src,
                    dst,
                    row_offset: rt.row_offset,
                    col_offset: c0,
                    first_col_tile: k == 0,
                    last_col_tile: k + 1 == tiles,
                    ptr_base,
                    matrix_base,
                };
                self.program
                    .instructions
                    .push(Instruction::Configure(config));
                if !tiling.resident {
                    self.emit_tile_loads(rt, c0, cols, ptr_base, matrix_base);
                }
                if let (0, Some(bias)) = (k, bias) {
                    let rows = rt.row_offset as usize..(rt.row_offset + rt.rows) as usize;
                    self.program.instructions.push(Instruction::LoadBias {
                        values: bias[rows].to_vec(),
                    });
                }
                self.program.instructions.push(Instruction::Run);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        name: &str,
        kind: &'static str,
        matrix: &CodeRows,
        tiling: &Tiling,
        product: &Product,
        activation: Activation,
        steps: u32,
        start: usize,
    ) {
        let pes = usize::from(self.pes);
        let mut per_pe = vec![0u64; pes];
        let mut padding = 0;
        for rt in &tiling.row_tiles {
            for (pe, columns) in rt.pes.iter().enumerate() {
                per_pe[pe] += columns.entries.len() as u64;
                padding += columns.padding;
            }
        }
        let bytes = self.program.instructions[start..]
            .iter()
            .map(|i| binary::encoded_len(i) as u64)
            .sum();
        self.reports.push(LayerReport {
            name: name.to_string(),
            kind,
            rows: matrix.rows as u32,
            cols: matrix.cols as u32,
            row_tiles: tiling.row_tiles.len() as u32,
            col_tiles: tiling
                .row_tiles
                .iter()
                .map(|rt| rt.col_tiles.len() as u32)
                .max()
                .unwrap_or(0),
            tiles: tiling.bases.len() as u32,
            nonzeros: matrix.nonzeros() as u64,
            padding,
            pe_max_entries: per_pe.iter().copied().max().unwrap_or(0),
            pe_mean_entries: per_pe.iter().sum::<u64>() as f64 / pes as f64,
            weight_frac: product.weight_frac,
            input_frac: product.input_frac,
            output_frac: product.output_frac,
            activation,
            steps,
            resident: tiling.resident,
            bytes,
        });
    }

    /// A buffer of at least `len` ones in Q14, filled once.
    fn ones(&mut self, len: u32) -> u16 {
        match self.ones {
            Some((buffer, have)) if have >= len => buffer,
            _ => {
                let buffer = self.buffer("ones", len);
                self.program
                    .instructions
                    .push(Instruction::Host(HostOp::Fill {
                        dst: BufferSlice { buffer, offset: 0 },
                        len,
                        value: quantize(1.0, LSTM_INPUT_MAX_FRAC),
                    }));
                self.ones = Some((buffer, len));
                buffer
            }
        }
    }

    fn lstm(&mut self, id: NodeId, l: &LstmStacked) -> Result<(), LowerError> {
        let graph = self.graph;
        let node = graph.node(id);
        let (_, x) = self.operand_loc(id)?;
        for (init, what) in [(l.h0, "h0"), (l.c0, "c0")] {
            if let Some(w) = init
                && graph.weights[w].values().iter().any(|&v| v != 0.0)
            {
                return Err(node_error(
                    &node.name,
                    format!(
                        "a non-zero initial state {what}: the EIE program starts from zero state"
                    ),
                ));
            }
        }
        let (matrix, codebook) = layer_codes(graph, &node.name, l.weight)?;
        let weight_name = graph.weights[l.weight].name.clone();
        let (rows, cols) = (matrix.rows as u32, matrix.cols as u32);
        let hidden = rows / 4;
        if rows % 4 != 0 || cols <= hidden + 1 {
            return Err(node_error(
                &node.name,
                format!("@{weight_name} is {rows}×{cols}, not a stacked [4h, in + h + 1] weight"),
            ));
        }
        let inputs = cols - hidden - 1;
        if x.len % inputs != 0 {
            return Err(node_error(
                &node.name,
                format!(
                    "its input of {} values is not a sequence of {inputs}-vectors",
                    x.len
                ),
            ));
        }
        let steps = x.len / inputs;
        let headroom = self.options.headroom_bits;
        let input_frac = lstm_input_frac(self.range(self.operand_loc(id)?.0), headroom);
        let (max_g, max_c) = self.ranges.lstm.get(&id).copied().unwrap_or((0.0, 0.0));
        let product = product_formats(&codebook, input_frac, max_g, headroom);
        let gate_frac = product.output_frac;
        let cell_frac = frac_for(max_c, headroom);
        let name = &node.name;
        let stacked = self.buffer(&format!("{name}.xh1"), cols);
        let gates = self.buffer(&format!("{name}.gates"), rows);
        let act = self.buffer(&format!("{name}.act"), rows);
        let cell = self.buffer(&format!("{name}.c"), hidden);
        let tmp = self.buffer(&format!("{name}.tmp"), hidden);
        let out_len = if l.last { hidden } else { steps * hidden };
        let out = self.buffer(name, out_len);
        let layer = self.declare_layer(&weight_name, &matrix);
        let start = self.program.instructions.len();
        let at = |buffer: u16, offset: u32| BufferSlice { buffer, offset };
        let ones = (x.frac != input_frac).then(|| self.ones(inputs));
        self.program.instructions.push(Instruction::LoadCodebook {
            weights: product.codebook,
        });
        self.program
            .instructions
            .push(Instruction::Host(HostOp::Fill {
                dst: at(stacked, inputs + hidden),
                len: 1,
                value: quantize(1.0, input_frac),
            }));
        let tiling = tile_layer(&matrix, usize::from(self.pes));
        if tiling.resident {
            self.emit_loads(&tiling);
        }
        let h = at(stacked, inputs);
        for t in 0..steps {
            let x_t = at(x.buffer, t * inputs);
            self.program
                .instructions
                .push(Instruction::Host(match ones {
                    None => HostOp::Copy {
                        dst: at(stacked, 0),
                        src: x_t,
                        len: inputs,
                    },
                    Some(ones) => HostOp::Mul {
                        dst: at(stacked, 0),
                        a: x_t,
                        b: at(ones, 0),
                        len: inputs,
                        a_frac: x.frac,
                        b_frac: LSTM_INPUT_MAX_FRAC,
                        dst_frac: input_frac,
                    },
                }));
            self.emit_runs(
                &tiling,
                layer,
                &product,
                Activation::None,
                stacked,
                gates,
                None,
            );
            let host = [
                HostOp::Sigmoid {
                    dst: at(act, 0),
                    src: at(gates, 0),
                    len: 3 * hidden,
                    src_frac: gate_frac,
                    dst_frac: GATE_FRAC,
                },
                HostOp::Tanh {
                    dst: at(act, 3 * hidden),
                    src: at(gates, 3 * hidden),
                    len: hidden,
                    src_frac: gate_frac,
                    dst_frac: GATE_FRAC,
                },
                // c = f ⊙ c
                HostOp::Mul {
                    dst: at(cell, 0),
                    a: at(act, 2 * hidden),
                    b: at(cell, 0),
                    len: hidden,
                    a_frac: GATE_FRAC,
                    b_frac: cell_frac,
                    dst_frac: cell_frac,
                },
                // tmp = i ⊙ c̃
                HostOp::Mul {
                    dst: at(tmp, 0),
                    a: at(act, 0),
                    b: at(act, 3 * hidden),
                    len: hidden,
                    a_frac: GATE_FRAC,
                    b_frac: GATE_FRAC,
                    dst_frac: cell_frac,
                },
                HostOp::Add {
                    dst: at(cell, 0),
                    a: at(cell, 0),
                    b: at(tmp, 0),
                    len: hidden,
                    a_frac: cell_frac,
                    b_frac: cell_frac,
                    dst_frac: cell_frac,
                },
                HostOp::Tanh {
                    dst: at(tmp, 0),
                    src: at(cell, 0),
                    len: hidden,
                    src_frac: cell_frac,
                    dst_frac: GATE_FRAC,
                },
                // h = o ⊙ tanh(c), straight into the next step's input.
                HostOp::Mul {
                    dst: h,
                    a: at(act, hidden),
                    b: at(tmp, 0),
                    len: hidden,
                    a_frac: GATE_FRAC,
                    b_frac: GATE_FRAC,
                    dst_frac: input_frac,
                },
            ];
            self.program
                .instructions
                .extend(host.into_iter().map(Instruction::Host));
            if !l.last || t + 1 == steps {
                let offset = if l.last { 0 } else { t * hidden };
                self.program
                    .instructions
                    .push(Instruction::Host(HostOp::Copy {
                        dst: at(out, offset),
                        src: h,
                        len: hidden,
                    }));
            }
        }
        self.loc.insert(
            id,
            Loc {
                buffer: out,
                frac: input_frac,
                len: out_len,
            },
        );
        self.report(
            &weight_name,
            "lstm",
            &matrix,
            &tiling,
            &product,
            Activation::None,
            steps,
            start,
        );
        Ok(())
    }

    fn outputs(&mut self) -> Result<(), LowerError> {
        for &id in self.graph.outputs() {
            let node = self.graph.node(id);
            let loc =
                self.loc.get(&id).copied().ok_or_else(|| {
                    node_error(&node.name, "the output is not held by the machine")
                })?;
            let shape: Vec<u32> = self
                .info
                .ty(id)
                .shape
                .dims()
                .iter()
                .map(|&d| d as u32)
                .collect();
            let post = if self.softmax_outputs.contains(&id) {
                HostPost::Softmax
            } else {
                HostPost::None
            };
            self.program.outputs.push(IoSpec {
                name: node.name.clone(),
                shape,
                frac: loc.frac,
                post,
            });
            self.program.instructions.push(Instruction::ReadOutput {
                output: (self.program.outputs.len() - 1) as u16,
                src: BufferSlice {
                    buffer: loc.buffer,
                    offset: 0,
                },
                len: loc.len,
            });
        }
        let per_pe = self.program.activation_entries_per_pe();
        if per_pe > u64::from(crate::isa::ACT_SRAM_ENTRIES_PER_PE) {
            self.notes.push(format!(
                "the activation buffers need {per_pe} entries per PE, more than the {} of a 2 KB activation SRAM",
                crate::isa::ACT_SRAM_ENTRIES_PER_PE
            ));
        }
        Ok(())
    }
}

/// A bias in `Q(frac)` as `i32`, rounded half away from zero and saturated.
fn quantize_bias(v: f32, frac: u8) -> i32 {
    let scaled = (f64::from(v) * f64::from(1u32 << frac)).round();
    if scaled.is_nan() {
        0
    } else {
        scaled.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frac_for_leaves_headroom() {
        assert_eq!(frac_for(1.0, 0), 14);
        assert_eq!(frac_for(1.0, 1), 13);
        assert_eq!(frac_for(0.999, 0), 15);
        assert_eq!(frac_for(0.0, 1), 15);
        assert_eq!(frac_for(1e-9, 0), MAX_FRAC);
        assert_eq!(frac_for(1e9, 0), 0);
        // The chosen format holds the value with the headroom.
        for &m in &[0.003, 0.7, 5.0, 300.0] {
            let f = frac_for(m, 1);
            assert!(m * f64::from(1u32 << (f + 1)) <= 32767.0);
            assert!(m * f64::from(1u32 << (f + 2)) > 32767.0);
        }
    }

    #[test]
    fn product_formats_keep_the_shift_in_range() {
        let p = product_formats(&[0.0, 0.5, -0.25], 15, 1e-7, 1);
        assert!(
            (0..=i32::from(MAX_FRAC))
                .contains(&(i32::from(p.weight_frac) + 15 - i32::from(p.output_frac)))
        );
        let p = product_formats(&[0.0, 100.0], 0, 1e6, 1);
        assert!(i32::from(p.weight_frac) - i32::from(p.output_frac) >= 0);
        assert_eq!(p.codebook[0], 0);
    }
}
