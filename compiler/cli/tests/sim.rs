//! `sprig sim` on the command line: a program compiled by `sprig compile --target eie`, the JSON
//! report, traces, sweeps with their plot, outputs, and the errors of a mismatched PE count, an
//! oversized trace and a bad energy file.

mod common;

use common::{assert_fails_with, assert_succeeds, path_str, sprig, stdout};

#[test]
fn sim_runs_a_compiled_program_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("lenet.eie");
    let out = sprig(&[
        "compile",
        "examples/lenet_300_100.sprig",
        "--target",
        "eie",
        "--pes",
        "16",
        "-o",
        path_str(&program),
    ]);
    assert_succeeds(&out);
    let p = path_str(&program);
    let input = "random:density=0.5,seed=1";

    // The JSON report, with DESIGN's keys.
    let out = sprig(&["sim", p, "--input", input, "--json"]);
    assert_succeeds(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let total = &report["total"];
    for key in [
        "cycles",
        "clock_mhz",
        "latency_us",
        "pes",
        "fifo_depth",
        "load_balance_efficiency",
        "padding_entries",
        "macs",
        "energy_uj",
    ] {
        assert!(total.get(key).is_some(), "total.{key} missing: {total}");
    }
    assert_eq!(total["pes"].as_u64(), Some(16));
    assert_eq!(report["layers"].as_array().unwrap().len(), 3);
    let cycles = total["cycles"].as_u64().unwrap();
    assert!(cycles > 0);
    let latency = total["latency_us"].as_f64().unwrap();
    assert!((latency - cycles as f64 / 800.0).abs() < 1e-9);

    // The table, outputs saved, same numbers on a second run.
    let npy = dir.path().join("y.npy");
    let out = sprig(&["sim", p, "--input", input, "-o", path_str(&npy)]);
    assert_succeeds(&out);
    let text = stdout(&out);
    assert!(
        text.contains("load balance") && text.contains("ip1"),
        "{text}"
    );
    assert!(text.contains(&format!("total: {cycles} cycles")), "{text}");
    assert!(npy.exists());

    // A trace of every cycle.
    let csv = dir.path().join("trace.csv");
    let out = sprig(&["sim", p, "--input", input, "--trace", path_str(&csv)]);
    assert_succeeds(&out);
    let trace = std::fs::read_to_string(&csv).unwrap();
    assert!(trace.starts_with("cycle,layer,unit,state,column,row,fifo\n"));
    let chrome = dir.path().join("trace.json");
    let out = sprig(&["sim", p, "--input", input, "--trace", path_str(&chrome)]);
    assert_succeeds(&out);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chrome).unwrap()).unwrap();
    assert!(json["traceEvents"].as_array().unwrap().len() > 17);

    // A FIFO sweep with its plot.
    let svg = dir.path().join("fifo.svg");
    let out = sprig(&[
        "sim",
        p,
        "--input",
        input,
        "--sweep",
        "fifo=1,2,4,8",
        "--plot",
        path_str(&svg),
    ]);
    assert_succeeds(&out);
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.contains("ip2")).count(),
        4,
        "{text}"
    );
    let drawing = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&drawing).unwrap();
    let lines = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .count();
    assert_eq!(lines, 3);

    // A program lowered for 16 PEs does not run on 64; a PE sweep needs the model.
    let out = sprig(&["sim", p, "--input", input, "--pes", "64"]);
    assert_fails_with(&out, "lowered for 16 PEs");
    let out = sprig(&["sim", p, "--input", input, "--sweep", "pes=1,2"]);
    assert_fails_with(&out, "needs the model");

    // A bad energy file names the file and the place.
    let energy = dir.path().join("energy.json");
    std::fs::write(&energy, "{\n  \"multiply_pj\": \"x\"\n}\n").unwrap();
    let out = sprig(&["sim", p, "--input", input, "--energy", path_str(&energy)]);
    assert_fails_with(&out, "energy.json:2:");
    std::fs::write(&energy, "{\"multiply_pj\": 0.0, \"add_pj\": 0.0}").unwrap();
    let out = sprig(&[
        "sim",
        p,
        "--input",
        input,
        "--json",
        "--energy",
        path_str(&energy),
    ]);
    assert_succeeds(&out);
    let cheaper: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(cheaper["total"]["energy_uj"].as_f64().unwrap() < total["energy_uj"].as_f64().unwrap());
}

#[test]
fn sim_lowers_a_model_and_refuses_oversized_traces() {
    let dir = tempfile::tempdir().unwrap();
    // A model is lowered for --pes; a PE sweep lowers it once per PE count.
    let out = sprig(&[
        "sim",
        "examples/lenet_300_100.sprig",
        "--input",
        "random:density=0.3,seed=2",
        "--sweep",
        "pes=4,16",
        "--json",
    ]);
    assert_succeeds(&out);
    let sweep: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let runs = sweep["sweep"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let cycles: Vec<u64> = runs
        .iter()
        .map(|r| r["total"]["cycles"].as_u64().unwrap())
        .collect();
    assert!(cycles[1] < cycles[0], "{cycles:?}");

    let trace = dir.path().join("t.csv");
    let out = sprig(&[
        "sim",
        "examples/lenet_300_100.sprig",
        "--pes",
        "1",
        "--input",
        "random:density=1,seed=2",
        "--trace",
        path_str(&trace),
        "--trace-limit",
        "1000",
    ]);
    assert_fails_with(&out, "above the limit");
    assert!(!trace.exists());
}
