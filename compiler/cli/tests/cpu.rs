//! The CPU engine on the command line: `sprig run --engine cpu` gives the interpreter's results
//! on the examples (text models and compiled artifacts), `SPRIG_CPU` forces a kernel variant,
//! and `sprig bench` reports its table and JSON.

mod common;

use common::{assert_fails_with, assert_succeeds, root, sprig, stderr, stdout};
use std::path::Path;
use std::process::Command;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Runs `model` on `input` with `engine` (and extra arguments), returning the saved outputs.
fn outputs(
    model: &str,
    input: &str,
    engine: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("y.npy");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sprig"));
    cmd.current_dir(root()).args([
        "run",
        model,
        "--input",
        input,
        "--engine",
        engine,
        "-o",
        path_str(&out_path),
    ]);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("sprig runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    sprig_front::files::read_npy(&out_path).expect("reads").data
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            a == b || (a - b).abs() <= 1e-5 * b.abs().max(1e-6),
            "{what}: output {i}: cpu {a} vs interpreter {b}"
        );
    }
}

#[test]
fn the_examples_run_on_the_cpu_engine_with_the_interpreters_results() {
    let digits = "examples/inputs/mnist_digits_8.npy";
    let cases = [
        ("examples/lenet_300_100.sprig", digits),
        ("examples/lenet5.sprig", digits),
        (
            "examples/neuraltalk_lstm.sprig",
            "random:density=0.6,seed=3",
        ),
    ];
    for (model, input) in cases {
        let want = outputs(model, input, "interp", &[], &[]);
        for (isa, threads) in [("scalar", "1"), ("", "2")] {
            let got = outputs(
                model,
                input,
                "cpu",
                &["--threads", threads],
                &[("SPRIG_CPU", isa)],
            );
            assert_close(&got, &want, &format!("{model} ({isa}, {threads} threads)"));
        }
    }
}

#[test]
fn a_compressed_artifact_runs_on_the_cpu_engine() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("lenet.sprigpack");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "cpu",
        "-o",
        path_str(&artifact),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let digits = "examples/inputs/mnist_digits_8.npy";
    let want = outputs(path_str(&artifact), digits, "interp", &[], &[]);
    let got = outputs(path_str(&artifact), digits, "cpu", &[], &[]);
    assert_close(&got, &want, "compressed LeNet-300-100");
}

#[test]
fn an_unknown_kernel_variant_is_an_input_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_sprig"))
        .current_dir(root())
        .args([
            "run",
            "examples/lenet_300_100.sprig",
            "--input",
            "random:density=1,seed=1",
            "--engine",
            "cpu",
        ])
        .env("SPRIG_CPU", "sse9")
        .output()
        .expect("sprig runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SPRIG_CPU=sse9"), "{}", stderr(&out));
}

#[test]
fn bench_reports_every_dense_layer_with_both_baselines() {
    let out = sprig(&[
        "bench",
        "examples/lenet_300_100.sprig",
        "--passes",
        "prune(quality=1.7), quantize(bits=4)",
        "--input",
        "examples/inputs/mnist_digits_8.npy",
        "--samples",
        "3",
        "--min-ms",
        "1",
        "--no-bandwidth",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let layers = report["layers"].as_array().expect("layers");
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["lenet_300_100/h1", "lenet_300_100/h2", "lenet_300_100/h3"]
    );
    for layer in layers {
        assert_eq!(layer["kernel"], "sparse-code4");
        assert_eq!(layer["threads"], 1);
        for key in [
            "median_us",
            "min_us",
            "baseline_dense_us",
            "baseline_csr_us",
        ] {
            assert!(
                layer[key].as_f64().is_some_and(|t| t > 0.0),
                "{key}: {layer}"
            );
        }
    }

    let table = sprig(&[
        "bench",
        "examples/eie/ntwe.sprig",
        "--samples",
        "2",
        "--min-ms",
        "1",
        "--no-bandwidth",
    ]);
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.contains("geometric mean speed-up"), "{text}");
    assert!(text.contains("sparse-f32"), "{text}");
}

#[test]
fn bench_times_two_thread_counts_side_by_side_and_forces_a_traversal() {
    let out = sprig(&[
        "bench",
        "examples/eie/ntlstm.sprig",
        "--passes",
        "prune(quality=0), quantize(bits=4)",
        "--traversal",
        "columns",
        "--scaling-threads",
        "2",
        "--samples",
        "2",
        "--min-ms",
        "1",
        "--no-bandwidth",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let layer = &report["layers"][0];
    assert_eq!(layer["traversal"], "columns");
    assert_eq!(layer["scaling"]["threads"], 2);
    for key in ["median_us", "min_us", "speedup_median", "speedup_min"] {
        assert!(
            layer["scaling"][key].as_f64().is_some_and(|t| t > 0.0),
            "{key}: {layer}"
        );
    }

    let bad = sprig(&[
        "bench",
        "examples/eie/ntlstm.sprig",
        "--traversal",
        "diagonal",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected auto, columns or rows"),
        "{}",
        stderr(&bad)
    );
}

/// Products over `[in, out]` weights (an ONNX MatMul before simplify) are refused by bench, by
/// name, and timed once `simplify` rewrites them as dense layers.
#[test]
fn bench_refuses_unnormalised_products_and_times_them_after_simplify() {
    let model = "tests/fixtures/onnx/sklearn_mlp.onnx";
    let timing = [
        "--samples",
        "3",
        "--min-ms",
        "1",
        "--no-bandwidth",
        "--json",
    ];
    let refused = sprig(&[&["bench", model][..], &timing].concat());
    assert_fails_with(
        &refused,
        "`add_result`, `add_result1` multiply by [in, out] weights",
    );
    let out = sprig(&[&["bench", model, "--passes", "simplify"][..], &timing].concat());
    assert_succeeds(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(report["layers"].as_array().expect("layers").len(), 2);
}
