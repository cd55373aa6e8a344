//! ONNX models through the command line: every fixture runs on the interpreter and matches
//! onnxruntime's outputs, dumps read back to the same graph, and what cannot be imported is said.

mod common;

use common::{root, sprig_in, stderr};

use sprig_ir::{Graph, WeightInit};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/onnx")
}

/// The fixture models, by stem.
fn models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_matches_onnxruntime() {
    let models = models();
    assert!(models.len() >= 7, "fixtures: {models:?}");
    let tmp = tempfile::tempdir().expect("temp dir");
    for m in &models {
        let input = ["npy", "npz"]
            .iter()
            .map(|e| fixtures().join(format!("{m}.input.{e}")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{m} has no input"));
        let out = tmp.path().join(format!("{m}.npz"));
        let model = fixtures().join(format!("{m}.onnx"));
        let o = sprig_in(
            &root(),
            &[
                "run",
                model.to_str().expect("utf-8"),
                "--input",
                input.to_str().expect("utf-8"),
                "--engine",
                "interp",
                "-o",
                out.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{m}: {}", stderr(&o));
        let got = sprig_front::files::read_npz(&out).expect("outputs");
        let expected = sprig_front::files::read_npz(&fixtures().join(format!("{m}.expected.npz")))
            .expect("expected outputs");
        assert!(!got.is_empty());
        for (name, g) in &got {
            let (_, e) = expected
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{m}: onnxruntime has no output `{name}`"));
            assert_eq!(g.shape, e.shape, "{m}: output `{name}` shape");
            let mut max_abs = 0.0f32;
            for (a, b) in g.data.iter().zip(&e.data) {
                let err = (a - b).abs();
                max_abs = max_abs.max(err);
                assert!(
                    err <= 1e-4 * b.abs().max(1.0),
                    "{m}: output `{name}`: {a} vs onnxruntime's {b} (max abs error so far {max_abs:e})"
                );
            }
            assert!(
                max_abs <= 1e-4,
                "{m}: output `{name}`: max abs error {max_abs:e}"
            );
        }
    }
}

#[test]
fn dropped_outputs_are_reported_on_stderr() {
    let o = sprig_in(&fixtures(), &["check", "sklearn_mlp.onnx"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("note: sklearn_mlp.onnx: dropped output `label`: it is computed by ArrayFeatureExtractor (domain ai.onnx.ml"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("probabilities"));
}

/// The graph the text at `path` describes.
fn load(path: &Path) -> Graph {
    sprig_front::load_model(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .graph
}

#[test]
fn dump_to_stdout_reads_back_next_to_the_model() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for m in models() {
        // External data must sit next to the model too.
        for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
            let p = entry.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            if name.starts_with(&format!("{m}.")) {
                std::fs::copy(&p, tmp.path().join(&name)).expect("copy");
            }
        }
        let onnx = format!("{m}.onnx");
        let o = sprig_in(tmp.path(), &["dump", &onnx]);
        assert_eq!(o.status.code(), Some(0), "{m}: {}", stderr(&o));
        let text_path = tmp.path().join(format!("{m}.sprig"));
        std::fs::write(&text_path, &o.stdout).expect("write dump");
        let imported = load(&tmp.path().join(&onnx));
        assert_eq!(
            load(&text_path),
            imported,
            "{m}: the dump reads back to another graph"
        );
    }
}

#[test]
fn dump_with_saved_weights_round_trips() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for m in models() {
        let model = fixtures().join(format!("{m}.onnx"));
        let weights = tmp.path().join(format!("{m}.safetensors"));
        let text = tmp.path().join(format!("{m}.sprig"));
        let o = sprig_in(
            &root(),
            &[
                "dump",
                model.to_str().expect("utf-8"),
                "--save-weights",
                weights.to_str().expect("utf-8"),
                "-o",
                text.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{m}: {}", stderr(&o));
        let dumped = std::fs::read_to_string(&text).expect("dump");
        assert!(
            dumped.contains(&format!("weights \"{m}.safetensors\"")),
            "{m}: {dumped}"
        );
        // The imported graph with every weight read from the saved file.
        let mut expected = load(&model);
        expected.weights_file = Some(format!("{m}.safetensors"));
        let ids: Vec<_> = expected.weights.iter().map(|(id, _)| id).collect();
        for id in ids {
            let w = expected.weights.get_mut(id);
            w.init = WeightInit::File {
                key: w.name.clone(),
            };
        }
        assert_eq!(load(&text), expected, "{m}: {dumped}");
    }
}

#[test]
fn unsupported_and_corrupt_models_exit_1() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let valid = std::fs::read(fixtures().join("mlp_gemm.onnx")).expect("fixture");
    let cut = tmp.path().join("cut.onnx");
    std::fs::write(&cut, &valid[..valid.len() - 100]).expect("write");
    let o = sprig_in(tmp.path(), &["check", "cut.onnx"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cut.onnx: not a readable ONNX model"),
        "{}",
        stderr(&o)
    );
    // Renaming the Relu op type (protobuf field 4, length 4) makes it an op sprig does not know.
    let mut renamed = valid.clone();
    let at = renamed
        .windows(6)
        .position(|w| w == b"\x22\x04Relu")
        .expect("fixture has a Relu node");
    renamed[at + 2..at + 6].copy_from_slice(b"Relx");
    std::fs::write(tmp.path().join("relx.onnx"), renamed).expect("write");
    let o = sprig_in(tmp.path(), &["run", "relx.onnx", "--input", "random:"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("relx.onnx: unsupported ops: 1 × Relx (node /relu/Relu)"),
        "{}",
        stderr(&o)
    );
}
