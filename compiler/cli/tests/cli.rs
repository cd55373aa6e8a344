//! The command line as users meet it: exit statuses, outputs, and no partial files on error.

mod common;

use common::{assert_fails_with, assert_succeeds, root, sprig, stderr, stdout};

#[test]
fn check_summarises_a_valid_model() {
    let out = sprig(&["check", "examples/vgg16.sprig"]);
    assert_succeeds(&out);
    let text = stdout(&out);
    assert!(text.starts_with("vgg16: ok"), "{text}");
    assert!(text.contains("138,357,544 parameters"), "{text}");
    assert!(text.contains("outputs  y : f32[1000]"), "{text}");
}

#[test]
fn malformed_models_exit_1_with_located_diagnostics() {
    let out = sprig(&["check", "tests/cases/text/err/many_errors.sprig"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("tests/cases/text/err/many_errors.sprig:4:14"),
        "{err}"
    );
    assert!(err.contains("4 errors in"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn unreadable_and_binary_models_exit_1() {
    let out = sprig(&["check", "no/such/model.sprig"]);
    assert_fails_with(&out, "no/such/model.sprig");
    let out = sprig(&["check", "examples/lenet_300_100.safetensors"]);
    assert_fails_with(&out, "not a sprig text description");
}

#[test]
fn bad_command_lines_exit_2() {
    assert_eq!(sprig(&[]).status.code(), Some(2));
    assert_eq!(sprig(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        sprig(&["dump", "examples/lenet5.sprig", "--format", "yaml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        sprig(&["run", "examples/lenet5.sprig"]).status.code(),
        Some(2)
    );
}

#[test]
fn dump_text_reads_back_and_json_and_dot_are_well_formed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text_path = dir.path().join("alex7.sprig");
    let out = sprig(&[
        "dump",
        "examples/eie/alex7.sprig",
        "-o",
        text_path.to_str().expect("utf-8"),
    ]);
    assert_succeeds(&out);
    let original =
        sprig_front::load_model(&root().join("examples/eie/alex7.sprig")).expect("loads");
    let dumped = sprig_front::load_model(&text_path).expect("dump reads back");
    assert_eq!(dumped.graph, original.graph);

    let out = sprig(&["dump", "examples/lenet5.sprig", "--format", "json"]);
    assert_succeeds(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(json["network"], "lenet5");
    assert_eq!(json["parameters"], 431_080);
    assert_eq!(json["nodes"].as_array().expect("nodes").len(), 9);
    assert_eq!(json["nodes"][0]["op"], "conv2d");
    assert_eq!(
        json["nodes"][0]["type"]["shape"],
        serde_json::json!([20, 24, 24])
    );

    let out = sprig(&["dump", "examples/lenet5.sprig", "--format", "dot"]);
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph \"lenet5\" {"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 9);
}

#[test]
fn run_writes_outputs_and_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("y.npy");
    let out = sprig(&[
        "run",
        "examples/lenet_300_100.sprig",
        "--input",
        "tests/data/mnist_test_1000.npz",
        "-o",
        out_path.to_str().expect("utf-8"),
    ]);
    // The archive holds x and y: with two arrays and one input named `x`, `x` is taken by name.
    assert_succeeds(&out);
    let y = sprig_front::files::read_npy(&out_path).expect("output written");
    assert_eq!(y.dims(), &[1000, 10]);
    for row in y.data.chunks(10) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "softmax rows sum to 1");
    }

    let out = sprig(&[
        "run",
        "examples/eie/ntwe.sprig",
        "--input",
        "random:density=0.5,seed=3",
    ]);
    assert_succeeds(&out);
    assert!(stdout(&out).starts_with("y : f32[600]"), "{}", stdout(&out));
}

#[test]
fn run_errors_leave_no_output_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("y.npy");
    let bad_input = dir.path().join("x.npy");
    std::fs::write(&bad_input, b"\x93NUMPY garbage").expect("write");
    for input in [
        bad_input.to_str().expect("utf-8"),
        "random:density=2",
        "missing.npy",
        "tests/data/lenet_300_100_probs_1000.npy",
    ] {
        let out = sprig(&[
            "run",
            "examples/lenet_300_100.sprig",
            "--input",
            input,
            "-o",
            out_path.to_str().expect("utf-8"),
        ]);
        assert_eq!(out.status.code(), Some(1), "{input}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
        assert!(!out_path.exists(), "{input}: partial output left behind");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "only the input file remains");
}

#[test]
fn dump_runs_pipelines_and_stops_after_any_pass() {
    let out = sprig(&[
        "dump",
        "examples/lenet_300_100.sprig",
        "--preset",
        "deep-compression",
        "-v",
        "--time-passes",
    ]);
    assert_succeeds(&out);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(
        err.contains("prune:") && err.contains("quantize:") && err.contains("huffman:"),
        "{err}"
    );
    assert!(err.contains("pass timings:"), "{err}");
    assert!(
        err.contains("simplify:") && err.contains("stop reason: saturated"),
        "{err}"
    );
    assert!(
        text.contains("shared(5 bits, linear, zero code) huffman("),
        "{text}"
    );

    let out = sprig(&[
        "dump",
        "examples/lenet_300_100.sprig",
        "--preset",
        "deep-compression",
        "--stop-after",
        "quantize",
    ]);
    assert_succeeds(&out);
    assert!(stdout(&out).contains("shared(5 bits"));
    assert!(!stdout(&out).contains("huffman("));

    // A small network's dump after passes reads back; elided values say how to keep them.
    let dir = tempfile::tempdir().expect("temp dir");
    let small = dir.path().join("small.sprig");
    let out = sprig(&[
        "dump",
        "examples/eie/ntwe.sprig",
        "--passes",
        "prune(sparsity=0.9)",
        "-o",
        small.to_str().expect("utf-8"),
    ]);
    assert_succeeds(&out);
    let out = sprig(&["check", small.to_str().expect("utf-8")]);
    assert_fails_with(&out, "--save-weights FILE or --full");
    let out = sprig(&[
        "dump",
        "examples/lenet5.sprig",
        "--passes",
        "prune(sparsity=0.5), quantize(bits=4)",
        "--full",
        "-o",
        small.to_str().expect("utf-8"),
    ]);
    assert_succeeds(&out);
    assert_eq!(
        sprig(&["check", small.to_str().expect("utf-8")])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn bad_pipelines_exit_1() {
    for args in [
        &[
            "dump",
            "examples/lenet5.sprig",
            "--passes",
            "prune(sparsity=2)",
        ][..],
        &["dump", "examples/lenet5.sprig", "--passes", "shrink"],
        &["dump", "examples/lenet5.sprig", "--preset", "tiny"],
        &["dump", "examples/lenet5.sprig", "--stop-after", "prune"],
        &[
            "dump",
            "examples/lenet5.sprig",
            "--passes",
            "prune(density=0.5)",
            "--stop-after",
            "huffman",
        ],
    ] {
        let out = sprig(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    }
}
