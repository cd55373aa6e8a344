//! `sprig eval`, `sprig finetune`, `sprig sensitivity` and `sprig compile --train-data` on small
//! subsets of the bundled MNIST digits.

mod common;

use common::{sprig, stderr, stdout};

const DIGITS: &str = "npz:tests/data/mnist_test_1000.npz";

#[test]
fn eval_reports_top1_and_top5_as_json() {
    let out = sprig(&[
        "eval",
        "examples/lenet_300_100.sprig",
        "--dataset",
        DIGITS,
        "--samples",
        "200",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["samples"].as_u64(), Some(200));
    assert_eq!(v["engine"].as_str(), Some("interp"));
    let top1 = v["accuracy"].as_f64().unwrap();
    let top5 = v["top5_accuracy"].as_f64().unwrap();
    assert!(top1 > 0.95 && top5 >= top1, "{v}");
}

#[test]
fn eval_gives_the_same_accuracy_on_the_interpreter_and_the_cpu_engine() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("lenet.sprigpack");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "cpu",
        "-o",
        artifact.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let eval = |engine: &str| {
        let out = sprig(&[
            "eval",
            artifact.to_str().unwrap(),
            "--dataset",
            DIGITS,
            "--samples",
            "300",
            "--engine",
            engine,
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["engine"].as_str(), Some(engine));
        (
            v["accuracy"].as_f64().unwrap(),
            v["top5_accuracy"].as_f64().unwrap(),
        )
    };
    assert_eq!(eval("interp"), eval("cpu"));
}

#[test]
fn eval_rejects_a_mismatched_data_set() {
    let out = sprig(&[
        "eval",
        "tests/fixtures/onnx/cnn.onnx",
        "--dataset",
        DIGITS,
        "--samples",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("values"), "{}", stderr(&out));
}

fn finetune(out_path: &std::path::Path, seed: &str) -> Vec<u8> {
    let out = sprig(&[
        "finetune",
        "examples/lenet_300_100.sprig",
        "--train-data",
        DIGITS,
        "--train-samples",
        "128",
        "--epochs",
        "1",
        "--seed",
        seed,
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("epoch 1/1"), "{}", stderr(&out));
    std::fs::read(out_path).unwrap()
}

#[test]
fn finetune_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let a = finetune(&dir.path().join("a.sprigpack"), "5");
    let b = finetune(&dir.path().join("b.sprigpack"), "5");
    let c = finetune(&dir.path().join("c.sprigpack"), "6");
    assert_eq!(a, b);
    assert_ne!(a, c);
    let out = sprig(&[
        "eval",
        dir.path().join("a.sprigpack").to_str().unwrap(),
        "--dataset",
        DIGITS,
        "--samples",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("top-1"), "{}", stdout(&out));
}

#[test]
fn compile_retrains_between_passes_and_keeps_the_artifact_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("lenet.sprigpack");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "cpu",
        "-o",
        artifact.to_str().unwrap(),
        "--train-data",
        DIGITS,
        "--train-samples",
        "128",
        "--epochs",
        "1",
        "--prune-rounds",
        "2",
        "--calibration-data",
        DIGITS,
        "--calibration-samples",
        "32",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("prune round 2/2"), "{err}");
    assert!(err.contains("trained quantization: epoch 1/1"), "{err}");
    assert!(
        err.contains("least-squares refinement of @ip1.weight"),
        "{err}"
    );
    assert!(stdout(&out).contains("compressed"), "{}", stdout(&out));
    let out = sprig(&["check", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn sensitivity_prints_a_table_and_plots_one_curve_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("sensitivity.svg");
    let out = sprig(&[
        "sensitivity",
        "examples/lenet_300_100.sprig",
        "--data",
        DIGITS,
        "--sweep",
        "0,0.5,0.9,0.99",
        "--budget",
        "0.02",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for name in ["ip1.weight", "ip2.weight", "ip3.weight", "99%"] {
        assert!(text.contains(name), "{text}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let curves = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert_eq!(curves, 3);
}
