//! Tests of `simplify`: one golden case per rule under `cases/simplify/` (the IR before, the
//! pass report and the IR after; the case's first line may name the target, `# target: eie`),
//! and the semantics check: on every ONNX fixture and every example, the interpreter's outputs
//! before and after simplify agree within 1e-5 relative, for both targets, no cast to a
//! value's own type is left, and every product is in the dense normal form (no `matmul`).

use sprig_ir::{DType, Graph, GraphInfo, Tensor, interpret};
use sprig_passes::simplify::{Limits, SimplifyStats, cost::Target, rules::RULES, simplify};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Deterministic inputs in [-1, 1) (a 64-bit LCG, high bits), or valid indices for i64 inputs.
fn seeded_inputs(graph: &Graph, info: &GraphInfo, seed: u64) -> Vec<Tensor> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f64 / (1u64 << 24) as f64
    };
    graph
        .inputs()
        .iter()
        .map(|&id| {
            let ty = info.ty(id);
            let len = ty.shape.dims().iter().product();
            let data = (0..len)
                .map(|_| match ty.dtype {
                    // Small indices are rows of every table in the fixtures.
                    DType::I64 => (next() * 4.0).floor() as f32,
                    _ => (next() * 2.0 - 1.0) as f32,
                })
                .collect();
            Tensor::new(ty.shape.clone(), data)
        })
        .collect()
}

/// Checks |a - b| <= 1e-5 · max(|a|, |b|, s), where s is the largest magnitude in the output: a
/// relative bound that does not blow up for elements that round to near zero.
fn assert_agree(name: &str, before: &[Tensor], after: &[Tensor]) {
    assert_eq!(before.len(), after.len(), "{name}: output count");
    for (k, (a, b)) in before.iter().zip(after).enumerate() {
        assert_eq!(a.dims(), b.dims(), "{name}: output {k} shape");
        let scale = a.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
            let bound = 1e-5 * x.abs().max(y.abs()).max(scale);
            assert!(
                (x - y).abs() <= bound,
                "{name}: output {k} element {i}: {x} before, {y} after"
            );
        }
    }
}

fn run(graph: &Graph, info: &GraphInfo, inputs: &[Tensor]) -> Vec<Tensor> {
    interpret(graph, info, inputs).unwrap_or_else(|e| panic!("{}: {e}", graph.name))
}

/// Simplifies and verifies the result.
fn simplified(
    graph: &Graph,
    info: &GraphInfo,
    target: Target,
) -> (Graph, GraphInfo, SimplifyStats) {
    let (out, stats) = simplify(graph, info, target, Limits::default());
    let out_info = sprig_ir::verify(&out).unwrap_or_else(|e| {
        panic!(
            "{} does not verify after simplify: {e:?}\n{}",
            graph.name,
            sprig_ir::print(&out, None)
        )
    });
    (out, out_info, stats)
}

#[test]
fn simplify_golden() {
    insta::glob!("../cases/simplify", "*.sprig", |path| {
        let source = std::fs::read_to_string(path).expect("readable");
        let target = match source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# target:"))
        {
            Some(t) if t.trim() == "eie" => Target::Eie,
            _ => Target::Cpu,
        };
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let parsed = sprig_front::parse_text(&source, &name, Some(Path::new("cases/simplify")))
            .unwrap_or_else(|d| panic!("{d}"));
        let (after, after_info, stats) = simplified(&parsed.graph, &parsed.info, target);
        let report = sprig_passes::simplify::report(&stats);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== before ==\n{}",
            sprig_ir::print(&parsed.graph, Some(&parsed.info))
        );
        let _ = writeln!(out, "== simplify(target={}) ==", target.name());
        for row in report.rows.iter().filter(|r| r[1] != "0") {
            let _ = writeln!(out, "{}", row.join(" | "));
        }
        for note in &report.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(
            out,
            "\n== after ==\n{}",
            sprig_ir::print(&after, Some(&after_info))
        );
        // The case also keeps its semantics.
        let inputs = seeded_inputs(&parsed.graph, &parsed.info, 1);
        assert_agree(
            &name,
            &run(&parsed.graph, &parsed.info, &inputs),
            &run(&after, &after_info, &inputs),
        );
        // And the simplified graph reads back from its dump.
        let printed = sprig_ir::print(&after, None);
        let back = sprig_front::parse_text(&printed, &name, Some(Path::new("cases/simplify")))
            .unwrap_or_else(|d| panic!("simplified {name} does not parse:\n{d}\n{printed}"));
        // Computed weights read back as literals, so compare the text.
        assert_eq!(
            sprig_ir::print(&back.graph, None),
            printed,
            "simplified {name} reads back differently"
        );
        insta::assert_snapshot!(out);
    });
}

#[test]
fn every_rule_has_a_golden_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/simplify");
    for (rule, _) in RULES {
        assert!(
            dir.join(format!("{rule}.sprig")).exists(),
            "rule `{rule}` has no case cases/simplify/{rule}.sprig"
        );
    }
}

fn sprig_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// Models whose interpretation in a debug build takes too long for the test suite; they are
/// still simplified and verified.
const NOT_INTERPRETED: &[&str] = &["vgg16.sprig"];

#[test]
fn simplify_keeps_semantics_of_fixtures_and_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut models = sprig_files(&root.join("fixtures/onnx"), "onnx");
    models.extend(sprig_files(&root.join("../examples"), "sprig"));
    models.extend(sprig_files(&root.join("../examples/eie"), "sprig"));
    for path in models {
        let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let interpreted = !NOT_INTERPRETED.contains(&name.as_str());
        let inputs = seeded_inputs(&parsed.graph, &parsed.info, 7);
        let before = interpreted.then(|| run(&parsed.graph, &parsed.info, &inputs));
        for target in [Target::Cpu, Target::Eie] {
            let (after, after_info, stats) = simplified(&parsed.graph, &parsed.info, target);
            assert!(
                stats.cost_after <= stats.cost_before,
                "{name} ({}): cost rose from {} to {}",
                target.name(),
                stats.cost_before,
                stats.cost_after
            );
            if stats.applied.iter().all(|&(_, n)| n == 0) {
                assert_eq!(
                    after, parsed.graph,
                    "{name}: nothing applied, yet the graph changed"
                );
            }
            // The casts the importer keeps as written are gone when they change nothing, and
            // every product the importer kept as a matmul is dense.
            for id in after.node_ids() {
                assert!(
                    !matches!(after.node(id).op, sprig_ir::Op::MatMul(_)),
                    "{name} ({}): `{}` is still a matmul",
                    target.name(),
                    after.node(id).name
                );
                if let sprig_ir::Op::Cast(c) = &after.node(id).op {
                    let operand = after.operands(id)[0];
                    assert_ne!(
                        after_info.ty(operand).dtype,
                        c.to,
                        "{name}: a no-op cast is left"
                    );
                }
            }
            if let Some(before) = &before {
                let label = format!("{name} ({})", target.name());
                assert_agree(&label, before, &run(&after, &after_info, &inputs));
            }
        }
    }
}

#[test]
fn batchnorm_and_dropout_disappear_from_the_exported_cnn() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx/cnn_bn_dropout.onnx");
    let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let kinds =
        |g: &Graph| -> Vec<&'static str> { g.node_ids().map(|id| g.node(id).op.name()).collect() };
    // The exporter wrote BatchNormalization and Dropout nodes (the importer already passes
    // Dropout through; simplify removes whatever is left).
    let bytes = std::fs::read(&path).expect("fixture");
    for op in [&b"BatchNormalization"[..], b"Dropout"] {
        assert!(bytes.windows(op.len()).any(|w| w == op));
    }
    assert!(kinds(&parsed.graph).contains(&"batchnorm"));
    for target in [Target::Cpu, Target::Eie] {
        let (after, after_info, _) = simplified(&parsed.graph, &parsed.info, target);
        let left = kinds(&after);
        assert!(
            !left.contains(&"batchnorm") && !left.contains(&"dropout"),
            "{}: {left:?}",
            target.name()
        );
        // Same outputs as onnxruntime's for the fixture's own input, sample by sample.
        let x = sprig_front::files::read_npy(&path.with_file_name("cnn_bn_dropout.input.npy"))
            .expect("input");
        let expected =
            sprig_front::files::read_npz(&path.with_file_name("cnn_bn_dropout.expected.npz"))
                .expect("expected outputs");
        let per_sample: usize = x.dims()[1..].iter().product();
        let classes = expected[0].1.dims()[1];
        for (s, sample) in x.data.chunks(per_sample).enumerate() {
            let mut dims = x.dims().to_vec();
            dims[0] = 1;
            let y = run(&after, &after_info, &[Tensor::new(dims, sample.to_vec())]);
            let want = &expected[0].1.data[s * classes..(s + 1) * classes];
            for (got, want) in y[0].data.iter().zip(want) {
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1e-2),
                    "{got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn neuraltalk_lstm_becomes_one_stacked_product_per_step() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/neuraltalk_lstm.sprig");
    let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let (after, _, stats) = simplified(&parsed.graph, &parsed.info, Target::Eie);
    let stacked: Vec<_> = after
        .node_ids()
        .filter_map(|id| match &after.node(id).op {
            sprig_ir::Op::LstmStacked(l) => Some(l.weight),
            sprig_ir::Op::Lstm(_) => panic!("an unstacked lstm is left"),
            _ => None,
        })
        .collect();
    assert_eq!(stacked.len(), 1);
    // EIE's NT-LSTM layer: 2400 gate rows over 600 inputs, 600 hidden units and the bias.
    assert_eq!(after.weights[stacked[0]].ty.shape.dims(), [2400, 1201]);
    assert!(stats.cost_after < stats.cost_before);
}

/// The graphs simplify makes with `slice` and `cast` nodes run on the CPU executor with
/// exactly the interpreter's results.
#[test]
fn stacked_and_cast_graphs_run_on_the_cpu_as_interpreted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (case, target) in [
        ("stack-dense.sprig", Target::Eie),
        ("drop-noop-cast.sprig", Target::Cpu),
    ] {
        let path = root.join("cases/simplify").join(case);
        let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
        let (after, info, _) = simplified(&parsed.graph, &parsed.info, target);
        let kinds: Vec<&str> = after
            .node_ids()
            .map(|id| after.node(id).op.name())
            .collect();
        assert!(
            kinds.contains(&"slice") || kinds.contains(&"cast"),
            "{case}: {kinds:?}"
        );
        let inputs = seeded_inputs(&after, &info, 3);
        let options = sprig_cpu::Options::from_env(1).expect("a CPU variant");
        let executor = sprig_cpu::Executor::new(&after, &info, &options).expect("prepares");
        let got = executor.run(&inputs).expect("runs");
        assert_eq!(got, run(&after, &info, &inputs), "{case}");
    }
}

/// The ONNX fixtures with Gemm(transB = 0) and MatMul import as `matmul` (weight [in, out]),
/// exactly where the model has them, and simplify turns every one into `dense`.
#[test]
fn onnx_matmuls_import_faithfully_and_simplify_to_dense() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx");
    for (fixture, matmuls) in [
        ("gemm_variants.onnx", &["g1", "a2"][..]),
        ("sklearn_mlp.onnx", &["add_result", "add_result1"][..]),
    ] {
        let parsed = sprig_front::load_model(&root.join(fixture)).unwrap_or_else(|e| panic!("{e}"));
        let g = &parsed.graph;
        let found: Vec<&str> = g
            .node_ids()
            .filter(|&id| matches!(g.node(id).op, sprig_ir::Op::MatMul(_)))
            .map(|id| g.node(id).name.as_str())
            .collect();
        assert_eq!(found, matmuls, "{fixture}");
        let (after, _, stats) = simplified(g, &parsed.info, Target::Cpu);
        let applied = stats
            .applied
            .iter()
            .find(|(rule, _)| *rule == "gemm-transb-normal-form")
            .map(|&(_, n)| n);
        assert_eq!(applied, Some(matmuls.len()), "{fixture}");
        for name in matmuls {
            let id = after.find(name).expect("the product keeps its name");
            assert!(
                matches!(after.node(id).op, sprig_ir::Op::Dense(_)),
                "{fixture}: `{name}` is {}",
                after.node(id).op.name()
            );
        }
    }
}

/// A `matmul` left unnormalised runs on the CPU executor exactly as interpreted, and every
/// consumer that needs the dense layout refuses it by name, saying to run simplify.
#[test]
fn unnormalised_matmul_runs_on_the_cpu_and_compression_refuses_it() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/simplify/gemm-transb-normal-form.sprig");
    let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let (graph, info) = (&parsed.graph, &parsed.info);
    let inputs = seeded_inputs(graph, info, 5);
    let options = sprig_cpu::Options::from_env(1).expect("a CPU variant");
    let executor = sprig_cpu::Executor::new(graph, info, &options).expect("prepares");
    assert_eq!(
        executor.run(&inputs).expect("runs"),
        run(graph, info, &inputs)
    );
    for pass in [
        "prune(sparsity=0.5)",
        "partition(pes=4)",
        "quantize(bits=4)",
        "huffman",
    ] {
        let mut g = graph.clone();
        let pipeline = sprig_passes::Pipeline::parse(pass).expect("parses");
        let err = sprig_passes::run_pipeline(&mut g, info.clone(), &pipeline, None)
            .expect_err("refuses a matmul")
            .to_string();
        assert!(
            err.contains("`h`, `y` are matmuls") && err.contains("run simplify first"),
            "{pass}: {err}"
        );
    }
    // EIE: `check_supported` lets a matmul pass (every EIE pipeline starts with simplify);
    // the lowering refuses it.
    let text = "network m\ninput x : f32[3]\nweight @w : f32[3, 2] = [1, 2, 3, 4, 5, 6]\noutput y = matmul(x, @w)\n";
    let small = sprig_front::parse_text(text, "m.sprig", None).unwrap_or_else(|d| panic!("{d}"));
    sprig_eie::lower::check_supported(&small.graph, &small.info).expect("passes the early check");
    let err = sprig_eie::lower::lower(
        &small.graph,
        &small.info,
        &sprig_eie::lower::LowerOptions::default(),
    )
    .expect_err("refuses a matmul")
    .to_string();
    assert!(
        err.contains("`y`") && err.contains("run the simplify pass first"),
        "{err}"
    );
    // After simplify, the same graph compresses.
    let mut g = graph.clone();
    let pipeline = sprig_passes::Pipeline::parse("simplify, prune(sparsity=0.5), quantize(bits=4)")
        .expect("parses");
    sprig_passes::run_pipeline(&mut g, info.clone(), &pipeline, None).expect("compresses");
}

#[test]
fn unknown_target_is_an_error_naming_the_known_ones() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/simplify/drop-identity.sprig");
    let parsed = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut graph = parsed.graph;
    for (text, reason) in [
        (
            "simplify(target=gpu)",
            "unknown target `gpu` (known: cpu, eie)",
        ),
        ("simplify(target=2)", "unknown target `2` (known: cpu, eie)"),
        ("simplify(iterations=0)", "iterations"),
    ] {
        let pipeline = sprig_passes::Pipeline::parse(text).expect("parses");
        let err = sprig_passes::run_pipeline(&mut graph, parsed.info.clone(), &pipeline, None)
            .expect_err("fails");
        assert!(err.to_string().contains(reason), "{text}: {err}");
    }
}
