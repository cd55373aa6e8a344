//! `sprig compile` and artifacts on the command line: the report, `--report-json`, and `check`,
//! `dump`, `run` reading what `compile` wrote.

mod common;

use common::{assert_fails_with, assert_succeeds, path_str, sprig, stderr, stdout};

#[test]
fn compile_writes_an_artifact_that_dump_and_run_read() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("lenet.sprigpack");
    let json = dir.path().join("report.json");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "cpu",
        "-o",
        path_str(&artifact),
        "--report-json",
        path_str(&json),
    ]);
    assert_succeeds(&out);
    let text = stdout(&out);
    for column in [
        "layer",
        "#weights",
        "weights%",
        "weight bits",
        "index bits",
        "Huffman b/w",
    ] {
        assert!(text.contains(column), "{text}");
    }
    assert!(text.contains("ip1.weight"), "{text}");
    assert!(text.contains("compressed 38."), "{text}");

    let size = std::fs::metadata(&artifact).unwrap().len();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let total = &report["total"];
    assert_eq!(total["packed_bytes"].as_u64(), Some(size));
    assert_eq!(total["dense_bytes"].as_u64(), Some(4 * 266_610));
    assert!(total["ratio"].as_f64().unwrap() >= 30.0);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6);
    let mut sum = report["other_bytes"].as_u64().unwrap();
    for layer in layers {
        let keys: Vec<&str> = layer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "name",
            "shape",
            "params",
            "density",
            "weight_bits",
            "index_bits",
            "huffman_weight_bits",
            "huffman_index_bits",
            "bytes",
        ] {
            assert!(keys.contains(&key), "{key} missing from {layer}");
        }
        sum += layer["bytes"].as_u64().unwrap();
    }
    assert_eq!(sum, size);
    assert_eq!(layers[0]["name"], "ip1.weight");
    assert_eq!(layers[0]["shape"], serde_json::json!([300, 784]));

    // The same command gives the same bytes.
    let again = dir.path().join("again.sprigpack");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "cpu",
        "--preset",
        "deep-compression",
        "-o",
        path_str(&again),
    ]);
    assert_succeeds(&out);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&artifact).unwrap()
    );

    let out = sprig(&["check", path_str(&artifact)]);
    assert_succeeds(&out);
    assert!(
        stdout(&out).starts_with("lenet_300_100: ok"),
        "{}",
        stdout(&out)
    );

    let out = sprig(&["dump", path_str(&artifact)]);
    assert_succeeds(&out);
    assert!(
        stdout(&out).contains("huffman(3.77 b/w, 4.13 b/idx)"),
        "{}",
        stdout(&out)
    );

    // Running the artifact equals running the same pipeline on the description.
    let run = |model: &str, extra: &[&str]| {
        let y = dir.path().join(format!("y{}.npy", extra.len()));
        let mut args = vec![
            "run",
            model,
            "--input",
            "examples/inputs/mnist_digits_8.npy",
            "-o",
            path_str(&y),
        ];
        args.extend_from_slice(extra);
        let out = sprig(&args);
        assert_succeeds(&out);
        std::fs::read(&y).unwrap()
    };
    let from_artifact = run(path_str(&artifact), &[]);
    let out = sprig(&[
        "dump",
        "examples/lenet_300_100.sprig",
        "--preset",
        "deep-compression",
        "--full",
        "-o",
        path_str(&dir.path().join("compressed.sprig")),
    ]);
    assert_succeeds(&out);
    let from_text = run(
        path_str(&dir.path().join("compressed.sprig")),
        &["--engine", "interp"],
    );
    assert_eq!(from_artifact, from_text);
}

#[test]
fn compile_rejects_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.sprigpack");
    let out = sprig(&[
        "compile",
        "examples/lenet5.sprig",
        "--target",
        "eie",
        "-o",
        path_str(&out_path),
    ]);
    assert_fails_with(&out, "does not support `c1` (conv2d), `p1` (maxpool2d)");
    assert!(!out_path.exists());

    let out = sprig(&[
        "compile",
        "examples/lenet5.sprig",
        "-o",
        path_str(&out_path),
    ]);
    assert_eq!(out.status.code(), Some(2), "--target is required");

    let out = sprig(&[
        "compile",
        "examples/lenet5.sprig",
        "--target",
        "cpu",
        "--passes",
        "nonsense",
        "-o",
        path_str(&out_path),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!out_path.exists());
}

#[test]
fn damaged_artifacts_exit_1_naming_file_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("small.sprigpack");
    let out = sprig(&[
        "compile",
        "tests/cases/passes/prune_quantize_small.sprig",
        "--target",
        "cpu",
        "--passes",
        "prune(density=0.5), quantize(bits=2), huffman(index_bits=2)",
        "-o",
        path_str(&artifact),
    ]);
    assert_succeeds(&out);
    let mut bytes = std::fs::read(&artifact).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    let damaged = dir.path().join("damaged.sprigpack");
    std::fs::write(&damaged, &bytes).unwrap();
    for command in ["check", "dump"] {
        let out = sprig(&[command, path_str(&damaged)]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("damaged.sprigpack: byte "), "{err}");
        assert!(err.contains("checksum mismatch"), "{err}");
    }
    std::fs::write(&damaged, &bytes[..20]).unwrap();
    let out = sprig(&["run", path_str(&damaged), "--input", "random:seed=1"]);
    assert_fails_with(&out, "damaged.sprigpack: byte ");
}

/// `--plots` writes a histogram per layer and stage; `--eval-data` measures accuracy before and
/// after on the same samples and records it in the JSON report.
#[test]
fn compile_plots_and_evaluates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("l.sprigpack");
    let plots = dir.path().join("plots");
    let json = dir.path().join("report.json");
    let o = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sprig"))
        .args([
            "compile",
            "examples/lenet_300_100.sprig",
            "--target",
            "cpu",
            "-o",
            &o(&out),
            "--plots",
            &o(&plots),
            "--eval-data",
            "npz:tests/data/mnist_test_1000.npz",
            "--eval-samples",
            "200",
            "--report-json",
            &o(&json),
        ])
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("runs");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&plots)
        .expect("plots written")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = ["ip1", "ip2", "ip3"]
        .iter()
        .flat_map(|l| ["dense", "prune", "quantize"].map(|s| format!("{l}.weight-{s}.svg")))
        .collect();
    assert_eq!(names, expected);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    assert_eq!(report["eval"]["samples"], 200);
    let before = report["eval"]["accuracy_before"].as_f64().expect("number");
    let after = report["eval"]["accuracy_after"].as_f64().expect("number");
    // The uncompressed model gets 983 of the first 1000 right; on the first 200 it is above 97%.
    assert!(before > 0.97, "{before}");
    assert!(after > 0.5 && after <= 1.0, "{after}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("top-1 accuracy on 200 samples"), "{stdout}");
}
