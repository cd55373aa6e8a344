//! The EIE cost estimate ranks graphs as the cycle-level simulator does, on the alternatives
//! `simplify` chooses between: the NeuralTalk LSTM example's four input-gate products over one
//! input, separate or stacked into one product with a slice per gate (ESE's gate stacking, the
//! layout of EIE's NT-LSTM layer), and pairs of dense layers with nothing between them, separate
//! or merged into one (a wide pair, where the merged layer is small, and a narrow bottleneck,
//! where it is large and dense).
//!
//! Each alternative is built here from its weights (the merged weight is computed here, in f64,
//! independently of the rule), estimated with `simplify::graph_cost`, then compressed with the
//! eie preset without simplify and with every non-zero kept (`quality = 0`, so the simulated
//! matrices are exactly the estimated ones), lowered, and simulated on a dense input. The order of
//! the estimates must be the order of the simulated cycles, and `simplify` must pick the
//! alternative the simulator finds faster. Each simulated output is checked against the
//! interpreter's on the compressed graph, so the slices of a stacked product are its right parts.

use sprig_eie::lower::{LowerOptions, eie_pipeline, lower};
use sprig_eie_sim::{SimConfig, execute, quantize_inputs};
use sprig_ir::op::{Dense, Slice};
use sprig_ir::{
    Distribution, Graph, GraphInfo, Op, RandomInit, Tensor, TensorType, Weight, WeightId,
    interpret, verify,
};
use sprig_passes::options::{OptEntry, OptValue};
use sprig_passes::run_pipeline;
use sprig_passes::simplify::{Limits, cost::Target, graph_cost, simplify};
use std::path::Path;

const PES: usize = 64;

/// A `[rows, cols]` weight with its values, row-major.
struct Matrix {
    name: &'static str,
    rows: usize,
    cols: usize,
    values: Vec<f32>,
}

fn seeded(name: &'static str, rows: usize, cols: usize, density: f64, seed: u64) -> Matrix {
    let init = RandomInit {
        dist: Distribution::Normal {
            mean: 0.0,
            std: 0.1,
        },
        density,
        seed,
    };
    Matrix {
        name,
        rows,
        cols,
        values: init.generate(rows * cols),
    }
}

fn add_weight(graph: &mut Graph, m: &Matrix) -> WeightId {
    graph.weights.add(
        Weight::computed(
            m.name,
            TensorType::f32(vec![m.rows, m.cols]),
            m.values.clone(),
        )
        .expect("values fit the shape"),
    )
}

/// `x → dense(W) → ...` through `layers`, one output at the end.
fn chain(name: &str, layers: &[&Matrix]) -> Graph {
    let mut g = Graph::new(name);
    let mut v = g.add_input("x", TensorType::f32(vec![layers[0].cols]));
    for (k, m) in layers.iter().enumerate() {
        let weight = add_weight(&mut g, m);
        v = g.add_node(
            format!("h{k}"),
            Op::Dense(Dense { weight, bias: None }),
            &[v],
        );
    }
    g.add_output(v);
    g
}

/// One dense product per matrix over one input, each an output.
fn separate(name: &str, products: &[Matrix]) -> Graph {
    let mut g = Graph::new(name);
    let x = g.add_input("x", TensorType::f32(vec![products[0].cols]));
    for m in products {
        let weight = add_weight(&mut g, m);
        let y = g.add_node(m.name, Op::Dense(Dense { weight, bias: None }), &[x]);
        g.add_output(y);
    }
    g
}

/// The same products as one stacked product with a slice per original result.
fn stacked(name: &str, products: &[Matrix]) -> Graph {
    let mut g = Graph::new(name);
    let x = g.add_input("x", TensorType::f32(vec![products[0].cols]));
    let all = Matrix {
        name: "stacked",
        rows: products.iter().map(|m| m.rows).sum(),
        cols: products[0].cols,
        values: products.iter().flat_map(|m| m.values.clone()).collect(),
    };
    let weight = add_weight(&mut g, &all);
    let s = g.add_node("s", Op::Dense(Dense { weight, bias: None }), &[x]);
    let mut start = 0;
    for m in products {
        let slice = Slice {
            axis: -1,
            start,
            len: m.rows,
        };
        let y = g.add_node(m.name, Op::Slice(slice), &[s]);
        g.add_output(y);
        start += m.rows;
    }
    g
}

/// `outer · inner` (`[o, m] · [m, i]`), summed in f64.
fn product(name: &'static str, outer: &Matrix, inner: &Matrix) -> Matrix {
    let (o, m, i) = (outer.rows, outer.cols, inner.cols);
    assert_eq!(inner.rows, m);
    let mut values = vec![0.0f32; o * i];
    for r in 0..o {
        for c in 0..i {
            let sum: f64 = (0..m)
                .map(|k| f64::from(outer.values[r * m + k]) * f64::from(inner.values[k * i + c]))
                .sum();
            values[r * i + c] = sum as f32;
        }
    }
    Matrix {
        name,
        rows: o,
        cols: i,
        values,
    }
}

/// Simulated cycles of `graph` on EIE: the eie preset without simplify, every non-zero kept,
/// lowered and run on a dense input.
fn simulated_cycles(graph: &Graph, info: &GraphInfo) -> u64 {
    let mut pipeline = eie_pipeline(graph, info, PES).expect("eie preset");
    pipeline.steps.retain(|s| s.pass != "simplify");
    for step in &mut pipeline.steps {
        if step.pass == "prune" {
            for layer in sprig_passes::layers::layers(graph, info) {
                if layer.is_bias {
                    continue;
                }
                for (key, value) in [("quality", 0.0), ("balance_pes", 1.0)] {
                    step.options.entries.push(OptEntry {
                        layer: Some(layer.weight_name.clone()),
                        key: key.to_string(),
                        value: OptValue::Number(value),
                    });
                }
            }
        }
    }
    let mut compressed = graph.clone();
    let (info, _) = run_pipeline(&mut compressed, info.clone(), &pipeline, None)
        .unwrap_or_else(|e| panic!("{}: {e}", graph.name));
    let options = LowerOptions {
        seeded_samples: 2,
        ..LowerOptions::default()
    };
    let lowered =
        lower(&compressed, &info, &options).unwrap_or_else(|e| panic!("{}: {e}", graph.name));
    let inputs: Vec<Vec<f32>> = compressed
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            let len = info.ty(id).shape.len();
            let init = RandomInit {
                dist: Distribution::Normal {
                    mean: 0.0,
                    std: 1.0,
                },
                density: 1.0,
                seed: 100 + k as u64,
            };
            init.generate(len)
                .into_iter()
                .map(|v| v.abs() + 0.01)
                .collect()
        })
        .collect();
    let quantized = quantize_inputs(&lowered.program, &inputs).expect("inputs fit");
    let config = SimConfig {
        pes: PES,
        ..SimConfig::default()
    };
    let simulation = execute(&lowered.program, &config, &quantized)
        .unwrap_or_else(|e| panic!("{}: {e}", graph.name));
    // The program computes the compressed graph: every output (a stacked product's slices
    // included) is the interpreter's up to the fixed-point formats' rounding.
    let tensors: Vec<Tensor> = inputs
        .iter()
        .zip(compressed.inputs())
        .map(|(v, &id)| Tensor::new(info.ty(id).shape.clone(), v.clone()))
        .collect();
    let expected = interpret(&compressed, &info, &tensors).expect("interprets");
    for (got, want) in simulation.outputs.iter().zip(&expected) {
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.real.iter().zip(&want.data) {
            assert!(
                (g - w).abs() <= 0.02 * scale,
                "{}: output `{}`: simulated {g}, interpreted {w}",
                graph.name,
                got.name
            );
        }
    }
    simulation.report.total.cycles
}

struct Ranked {
    estimate: u64,
    cycles: u64,
}

fn rank(graph: &Graph) -> (GraphInfo, Ranked) {
    let info = verify(graph).unwrap_or_else(|e| panic!("{}: {e:?}", graph.name));
    let estimate = graph_cost(graph, &info, Target::Eie);
    let cycles = simulated_cycles(graph, &info);
    (info, Ranked { estimate, cycles })
}

/// The estimates of `a` and `b` are ordered as their simulated cycles, and simplify on `a`
/// yields `b`'s form exactly when `b` simulates faster (`is_b` recognises that form).
fn check(label: &str, a: &Graph, b: &Graph, is_b: impl Fn(&Graph) -> bool) {
    let (a_info, ra) = rank(a);
    let (_, rb) = rank(b);
    assert_ne!(ra.cycles, rb.cycles, "{label}: the alternatives tie");
    assert_eq!(
        ra.estimate < rb.estimate,
        ra.cycles < rb.cycles,
        "{label}: estimates {} and {} rank the alternatives unlike the simulated cycles {} and {}",
        ra.estimate,
        rb.estimate,
        ra.cycles,
        rb.cycles
    );
    let (chosen, _) = simplify(a, &a_info, Target::Eie, Limits::default());
    assert_eq!(
        is_b(&chosen),
        rb.cycles < ra.cycles,
        "{label}: simplify chose\n{}",
        sprig_ir::print(&chosen, None)
    );
}

fn count(graph: &Graph, pick: fn(&Op) -> bool) -> usize {
    graph
        .node_ids()
        .filter(|&id| pick(&graph.node(id).op))
        .count()
}

#[test]
fn lstm_gate_products_rank_as_simulated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/neuraltalk_lstm.sprig");
    let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let (_, w) = parsed
        .graph
        .weights
        .iter()
        .find(|(_, w)| w.name == "lstm.w")
        .expect("the example's input weights");
    let dims = w.ty.shape.dims().to_vec();
    let (hidden, inputs) = (dims[0] / 4, dims[1]);
    let values = w.values();
    let gates: Vec<Matrix> = ["gate_i", "gate_o", "gate_f", "gate_c"]
        .into_iter()
        .enumerate()
        .map(|(k, name)| Matrix {
            name,
            rows: hidden,
            cols: inputs,
            values: values[k * hidden * inputs..(k + 1) * hidden * inputs].to_vec(),
        })
        .collect();
    check(
        "NT-LSTM gate products",
        &separate("gates", &gates),
        &stacked("gates", &gates),
        |g| count(g, |op| matches!(op, Op::Dense(_))) == 1,
    );
}

#[test]
fn dense_pairs_rank_as_simulated() {
    // A wide pair: 64 → 600 → 16 is one small 16 × 64 layer.
    let a = seeded("a", 600, 64, 0.2, 21);
    let b = seeded("b", 16, 600, 0.2, 22);
    let ab = product("ab", &b, &a);
    check(
        "wide pair",
        &chain("wide", &[&a, &b]),
        &chain("wide", &[&ab]),
        |g| count(g, |op| matches!(op, Op::Dense(_))) == 1,
    );
    // A bottleneck: 600 → 32 → 600 would be one large, mostly dense 600 × 600 layer.
    let c = seeded("c", 32, 600, 0.2, 23);
    let d = seeded("d", 600, 32, 0.2, 24);
    let cd = product("cd", &d, &c);
    check(
        "bottleneck",
        &chain("bottleneck", &[&c, &d]),
        &chain("bottleneck", &[&cd]),
        |g| count(g, |op| matches!(op, Op::Dense(_))) == 1,
    );
}

/// The eie preset, simplify included, stacks the golden case's three products into one and
/// lowers their slices as host copies of the stacked product's result.
#[test]
fn the_eie_preset_lowers_stacked_products() {
    use sprig_eie::isa::{HostOp, Instruction};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/simplify/stack-dense.sprig");
    let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let pipeline = eie_pipeline(&parsed.graph, &parsed.info, PES).expect("eie preset");
    let mut graph = parsed.graph;
    let (info, _) = run_pipeline(&mut graph, parsed.info, &pipeline, None).expect("compresses");
    let lowered = lower(&graph, &info, &LowerOptions::default()).expect("lowers");
    assert_eq!(lowered.layers.len(), 1, "one stacked product");
    assert_eq!((lowered.layers[0].rows, lowered.layers[0].cols), (40, 48));
    let copies: Vec<(u32, u32)> = lowered
        .program
        .instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Host(HostOp::Copy { src, len, .. }) => Some((src.offset, *len)),
            _ => None,
        })
        .collect();
    assert_eq!(copies, [(0, 16), (16, 8), (24, 16)]);
}
