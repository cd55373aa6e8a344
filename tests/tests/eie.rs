//! The EIE backend end to end: golden cases under `cases/eie/` (first line `# eie: pes=N`) are
//! compressed with the eie preset, lowered, and snapshotted as the per-layer report and the
//! disassembly; every EIE benchmark layer and LeNet-300-100 lower. For every program, the
//! encoding round-trips byte for byte and the weights read back out of the PE memories are
//! exactly the quantized weights of the graph.

use sprig_eie::isa::{Program, decode, disassemble, encode, quantize};
use sprig_eie::lower::{LowerOptions, Lowered, eie_pipeline, lower, stack_lstms};
use sprig_eie::matrix::decode_program_weights;
use sprig_front::load_model;
use sprig_ir::{Graph, GraphInfo, Op};
use sprig_passes::layers::nonzero_positions;
use sprig_passes::run_pipeline;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Loads, stacks LSTMs, compresses with the eie preset for `pes` PEs and lowers.
fn compile(path: &Path, pes: usize, samples: usize) -> (Graph, GraphInfo, Lowered) {
    let parsed = load_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    compile_parsed(parsed, path, pes, samples)
}

fn compile_parsed(
    parsed: sprig_front::Parsed,
    path: &Path,
    pes: usize,
    samples: usize,
) -> (Graph, GraphInfo, Lowered) {
    let mut graph = parsed.graph;
    let info = if stack_lstms(&mut graph).is_empty() {
        parsed.info
    } else {
        sprig_ir::verify(&graph).expect("stacked graph verifies")
    };
    let pipeline = eie_pipeline(&graph, &info, pes).expect("eie preset");
    let (info, _) = run_pipeline(&mut graph, info, &pipeline, None).expect("pipeline runs");
    let options = LowerOptions {
        seeded_samples: samples,
        ..LowerOptions::default()
    };
    let lowered =
        lower(&graph, &info, &options).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (graph, info, lowered)
}

/// The dense or stacked-LSTM weights of a graph, in the order the lowering declares layers.
fn layer_weights(graph: &Graph, info: &GraphInfo) -> Vec<sprig_ir::WeightId> {
    info.order
        .iter()
        .filter_map(|&id| match &graph.node(id).op {
            Op::Dense(d) => Some(d.weight),
            Op::LstmStacked(l) => Some(l.weight),
            _ => None,
        })
        .collect()
}

/// Encoding round trip, and the weights stored in the PE memories equal the graph's quantized
/// weights: every non-zero at its row and column with its code, and the codebook entry in
/// `Q(weight_frac)` equal to the quantized codebook value.
fn check_program(graph: &Graph, info: &GraphInfo, lowered: &Lowered) {
    let bytes = encode(&lowered.program).expect("encodes");
    assert_eq!(bytes, lowered.bytes);
    let back: Program = decode(&bytes).expect("decodes");
    assert_eq!(back, lowered.program);
    assert_eq!(encode(&back).expect("re-encodes"), bytes);

    let stored = decode_program_weights(&back).expect("tiles decode");
    let weights = layer_weights(graph, info);
    assert_eq!(stored.len(), weights.len());
    for (layer, (&id, stored)) in weights.iter().zip(&stored).enumerate() {
        let w = &graph.weights[id];
        let shared = w.encoding.shared.as_ref().expect("quantized");
        let cols = w.ty.shape.dims()[1];
        let values = w.values();
        let expected: Vec<(u32, u32, f32)> = nonzero_positions(&values)
            .into_iter()
            .map(|i| ((i / cols) as u32, (i % cols) as u32, values[i]))
            .collect();
        assert_eq!(
            stored.weights.len(),
            expected.len(),
            "layer {layer} (@{}): non-zero count",
            w.name
        );
        for (s, &(row, col, value)) in stored.weights.iter().zip(&expected) {
            assert_eq!((s.row, s.col), (row, col), "layer {layer} (@{})", w.name);
            assert_eq!(
                shared.codebook[usize::from(s.code)],
                value,
                "@{} ({row}, {col}): code",
                w.name
            );
            assert_eq!(
                s.weight,
                quantize(value, stored.weight_frac),
                "@{} ({row}, {col}): Q weight",
                w.name
            );
        }
        assert_eq!(
            stored.padding, lowered.layers[layer].padding,
            "@{}: padding",
            w.name
        );
        assert_eq!(
            stored.tiles, lowered.layers[layer].tiles,
            "@{}: tiles",
            w.name
        );
    }
}

fn report(lowered: &Lowered) -> String {
    let mut out = String::new();
    for l in &lowered.layers {
        let _ = writeln!(
            out,
            "{} {} {}x{} tiles {}x{} ({}{}) nonzeros {} padding {} pe max {} mean {:.2} formats w{} a{} o{} {} steps {} bytes {}",
            l.name,
            l.kind,
            l.rows,
            l.cols,
            l.row_tiles,
            l.col_tiles,
            l.tiles,
            if l.resident { ", resident" } else { "" },
            l.nonzeros,
            l.padding,
            l.pe_max_entries,
            l.pe_mean_entries,
            l.weight_frac,
            l.input_frac,
            l.output_frac,
            l.activation,
            l.steps,
            l.bytes
        );
    }
    for note in &lowered.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(out, "program bytes {}", lowered.bytes.len());
    out
}

#[test]
fn eie_golden() {
    insta::glob!("../cases/eie", "*.sprig", |path| {
        let source = std::fs::read_to_string(path).expect("readable");
        let pes: usize = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# eie: pes="))
            .expect("first line names the PE count")
            .trim()
            .parse()
            .expect("a PE count");
        let (graph, info, lowered) = compile(path, pes, 4);
        check_program(&graph, &info, &lowered);
        // Same input and options, same bytes.
        assert_eq!(compile(path, pes, 4).2.bytes, lowered.bytes);
        let text = format!("{}\n{}", report(&lowered), disassemble(&lowered.program));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn lenet_300_100_lowers_and_stores_its_quantized_weights() {
    let (graph, info, lowered) = compile(&examples_dir().join("lenet_300_100.sprig"), 64, 2);
    check_program(&graph, &info, &lowered);
    assert_eq!(lowered.layers.len(), 3);
    assert_eq!(
        lowered.program.outputs[0].post,
        sprig_eie::isa::HostPost::Softmax
    );
}

#[test]
fn every_eie_benchmark_layer_lowers() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(examples_dir().join("eie"))
        .expect("examples/eie")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sprig"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 9);
    for path in names {
        let parsed = load_model(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let source_nonzeros = {
            let (_, w) = parsed.graph.weights.iter().next().expect("one weight");
            nonzero_positions(&w.values()).len() as u64
        };
        let (graph, info, lowered) = compile_parsed(parsed, &path, 64, 1);
        check_program(&graph, &info, &lowered);
        let layer = &lowered.layers[0];
        // The benchmark layers are already sparse: the eie preset keeps exactly their non-zeros.
        assert_eq!(layer.nonzeros, source_nonzeros, "{}", path.display());
        if path.ends_with("vgg6.sprig") {
            assert_eq!(
                (layer.row_tiles, layer.col_tiles),
                (1, 7),
                "VGG-6: 25088 columns in 4096-column tiles"
            );
        }
        if path.ends_with("ntwd.sprig") {
            assert_eq!(layer.row_tiles, 3, "NT-Wd: 8791 rows in 4096-row tiles");
        }
    }
}

/// The simulator runs what the lowering produced and agrees with the reference interpreter on the
/// quantized graph within the error the fixed-point formats allow. Per output row `i` the bound
/// is `Σ_j |w_ij|·δa + |a_j|·δw + δa·δw + δp` over the row's non-zero terms, where
/// `δa = 2^-(af+1)` (input rounding), `δw = 2^-(wf+1)` (codebook rounding) and
/// `δp = 2^-(of+1)` (the rounding shift of each product), plus f32 rounding; ReLU does not widen
/// it. Inputs stay well inside the formats' ranges (calibrated on the same distribution), so
/// nothing saturates.
#[test]
fn simulator_agrees_with_the_interpreter_on_lowered_layers() {
    use sprig_eie_sim::{SimConfig, execute, quantize_inputs};
    for (file, density) in [("alex8.sprig", 0.385), ("ntwe.sprig", 1.0)] {
        let path = examples_dir().join("eie").join(file);
        let pes = 64;
        let (graph, info, lowered) = compile(&path, pes, 8);
        let layer = &lowered.layers[0];
        let init = sprig_ir::RandomInit {
            dist: sprig_ir::Distribution::Normal {
                mean: 0.0,
                std: 1.0,
            },
            density,
            seed: 5,
        };
        let input: Vec<f32> = init
            .generate(layer.cols as usize)
            .into_iter()
            .map(f32::abs)
            .collect();
        let x = sprig_ir::Tensor::new(vec![layer.cols as usize], input.clone());
        let expected = sprig_ir::interpret(&graph, &info, &[x]).expect("interprets");
        let config = SimConfig {
            pes,
            ..SimConfig::default()
        };
        let quantized =
            quantize_inputs(&lowered.program, std::slice::from_ref(&input)).expect("inputs fit");
        let simulated = execute(&lowered.program, &config, &quantized).expect("simulates");

        let w = &graph.weights[layer_weights(&graph, &info)[0]];
        let values = w.values();
        let cols = layer.cols as usize;
        let da = 0.5f64.powi(i32::from(layer.input_frac) + 1);
        let dw = 0.5f64.powi(i32::from(layer.weight_frac) + 1);
        let dp = 0.5f64.powi(i32::from(layer.output_frac) + 1);
        let got = &simulated.outputs[0].real;
        let want = &expected[0].data;
        assert_eq!(got.len(), want.len(), "{file}");
        let mut worst = 0.0f64;
        for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
            let row = &values[i * cols..(i + 1) * cols];
            let bound: f64 = row
                .iter()
                .zip(&input)
                .filter(|(w, a)| **w != 0.0 && **a != 0.0)
                .map(|(&w, &a)| {
                    f64::from(w).abs() * da + f64::from(a).abs() * dw + da * dw + dp + 1e-6
                })
                .sum();
            let error = (f64::from(g) - f64::from(e)).abs();
            assert!(
                error <= bound,
                "{file} row {i}: simulator {g}, interpreter {e}, error {error} > bound {bound}"
            );
            worst = worst.max(error);
        }
        assert!(worst > 0.0 || got.iter().all(|&v| v == 0.0), "{file}");
    }
}
