//! `sprig compile --target eie` and `sprig disasm` on the command line: the per-layer report and
//! its JSON, deterministic programs, `--pes`, the listing, and the errors of a corrupted program,
//! an unsupported model and a misused option.

mod common;

use common::{assert_fails_with, assert_succeeds, path_str, sprig, stderr, stdout};

#[test]
fn compile_eie_writes_a_program_with_a_report_that_disasm_lists() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("lenet.eie");
    let json = dir.path().join("report.json");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "-o",
        path_str(&program),
        "--report-json",
        path_str(&json),
    ]);
    assert_succeeds(&out);
    let text = stdout(&out);
    for column in [
        "layer",
        "rows×cols",
        "tiles",
        "padding",
        "PE max/mean",
        "w·a→o",
        "bytes",
    ] {
        assert!(text.contains(column), "{text}");
    }
    assert!(text.contains("ip1.weight"), "{text}");
    assert!(text.contains("the host applies softmax to `y`"), "{text}");
    let bytes = std::fs::read(&program).unwrap();
    assert!(text.contains(&format!("({} bytes)", bytes.len())), "{text}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["target"], "eie");
    assert_eq!(report["pes"].as_u64(), Some(64));
    assert_eq!(
        report["total"]["program_bytes"].as_u64(),
        Some(bytes.len() as u64)
    );
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["shape"], serde_json::json!([300, 784]));
    for key in [
        "name",
        "nonzeros",
        "density",
        "tiles",
        "padding_entries",
        "pe_max_entries",
        "pe_mean_entries",
        "weight_frac",
        "input_frac",
        "output_frac",
        "bytes",
    ] {
        assert!(
            layers[0].get(key).is_some(),
            "{key} missing from {}",
            layers[0]
        );
    }

    // Same model and options, same bytes; another PE count, another program.
    let again = dir.path().join("again.eie");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "-o",
        path_str(&again),
    ]);
    assert_succeeds(&out);
    assert_eq!(std::fs::read(&again).unwrap(), bytes);

    let out = sprig(&["disasm", path_str(&program)]);
    assert_succeeds(&out);
    let listing = stdout(&out);
    assert!(
        listing.starts_with("; EIE program `lenet_300_100`: 64 PEs"),
        "{listing}"
    );
    assert!(listing.contains("configure"), "{listing}");
    assert!(listing.trim_end().ends_with("halt"), "{listing}");

    let eight = dir.path().join("eight.eie");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "--pes",
        "8",
        "-o",
        path_str(&eight),
    ]);
    assert_succeeds(&out);
    let out = sprig(&["disasm", path_str(&eight)]);
    assert!(stdout(&out).starts_with("; EIE program `lenet_300_100`: 8 PEs"));
}

#[test]
fn disasm_names_the_byte_offset_of_a_corrupted_program() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("mlp.eie");
    let out = sprig(&[
        "compile",
        "tests/cases/eie/mlp.sprig",
        "--target",
        "eie",
        "--pes",
        "4",
        "-o",
        path_str(&program),
    ]);
    assert_succeeds(&out);
    let mut bytes = std::fs::read(&program).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    let broken = dir.path().join("broken.eie");
    std::fs::write(&broken, &bytes).unwrap();
    let out = sprig(&["disasm", path_str(&broken)]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("broken.eie: byte 12: checksum mismatch"),
        "{message}"
    );

    std::fs::write(&broken, &bytes[..7]).unwrap();
    let out = sprig(&["disasm", path_str(&broken)]);
    assert_fails_with(&out, "byte 6: truncated flags");
}

#[test]
fn compile_eie_refuses_what_it_cannot_lower() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.eie");
    // --pes belongs to the eie preset.
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "--passes",
        "prune(quality=1.7)",
        "--pes",
        "8",
        "-o",
        path_str(&out_path),
    ]);
    assert_fails_with(&out, "--pes sets the eie preset's PE count");
    // A pipeline that does not quantize leaves nothing EIE can store.
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "--passes",
        "prune(quality=1.7), partition(pes=4)",
        "-o",
        path_str(&out_path),
    ]);
    assert_fails_with(&out, "@ip1.weight is not quantized");
    assert!(!out_path.exists());
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "--pes",
        "300",
        "-o",
        path_str(&out_path),
    ]);
    assert_eq!(out.status.code(), Some(2), "--pes is 1-256");
}

const DIGITS: &str = "npz:tests/data/mnist_test_1000.npz";

/// `sprig eval --json` on the bundled digits: (accuracy, status, stderr).
fn eval(model: &str, engine: &str, extra: &[&str]) -> (Option<f64>, Option<i32>, String) {
    let mut args = vec![
        "eval",
        model,
        "--dataset",
        DIGITS,
        "--engine",
        engine,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = sprig(&args);
    let accuracy = serde_json::from_str::<serde_json::Value>(&stdout(&out))
        .ok()
        .and_then(|v| v["accuracy"].as_f64());
    (accuracy, out.status.code(), stderr(&out))
}

#[test]
fn eval_on_the_eie_simulator_matches_the_interpreter_on_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("lenet.sprigpack");
    let program = dir.path().join("lenet.eie");
    // EIE's storage: 4-bit codes with code 0 for zero, partitioned over 16 PEs.
    let passes = "prune(quality=1.0), partition(pes=16), quantize(bits=4, zero_code=true)";
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "cpu",
        "--passes",
        passes,
        "-o",
        path_str(&artifact),
    ]);
    assert_succeeds(&out);

    let (interp, code, err) = eval(path_str(&artifact), "interp", &[]);
    assert_eq!(code, Some(0), "{err}");
    let (eie, code, err) = eval(path_str(&artifact), "eie", &[]);
    assert_eq!(code, Some(0), "{err}");
    let (interp, eie) = (interp.unwrap(), eie.unwrap());
    assert!(interp > 0.9, "interpreter accuracy {interp}");
    // 16-bit fixed point changes at most a couple of the 1000 argmaxes.
    assert!(
        (interp - eie).abs() <= 0.002 + 1e-9,
        "interpreter {interp} vs EIE {eie}"
    );

    // A program lowered by `compile --target eie` evaluates as it is; its activation formats
    // come from seeded calibration inputs rather than digits, so it may round differently.
    let out = sprig(&[
        "compile",
        path_str(&artifact),
        "--target",
        "eie",
        "--passes",
        "partition(pes=16)",
        "-o",
        path_str(&program),
    ]);
    assert_succeeds(&out);
    let (from_program, code, err) = eval(path_str(&program), "eie", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        (interp - from_program.unwrap()).abs() <= 0.01,
        "interpreter {interp} vs program {from_program:?}"
    );
    let (_, code, err) = eval(path_str(&program), "interp", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("runs only on --engine eie"), "{err}");
}

#[test]
fn eval_on_the_eie_simulator_refuses_uncompressed_weights() {
    let (_, code, err) = eval("examples/lenet_300_100.sprig", "eie", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("examples/lenet_300_100.sprig") && err.contains("is not quantized"),
        "{err}"
    );
    let (_, code, err) = eval("examples/lenet_300_100.sprig", "interp", &["--pes", "8"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("apply to --engine eie"), "{err}");
}
