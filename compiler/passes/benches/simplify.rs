//! `simplify` on every example and every ONNX fixture (whose MatMuls and Gemms without transB
//! import as `matmul`, for `gemm-transb-normal-form`), for both targets' cost models: the pass
//! must finish in well under a second on each. Weights are generated before timing starts, as a loaded model's are
//! once a pass has read them.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sprig_passes::{Pipeline, run_pipeline};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for (dir, ext) in [
        (root.join("examples"), "sprig"),
        (root.join("examples/eie"), "sprig"),
        (root.join("tests/fixtures/onnx"), "onnx"),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("model directory")
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

fn simplify(c: &mut Criterion) {
    let mut group = c.benchmark_group("simplify");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for path in examples() {
        let parsed = sprig_front::load_model(&path).expect("example loads");
        for (_, w) in parsed.graph.weights.iter() {
            w.values();
        }
        let stem = path.file_stem().expect("file name").to_string_lossy();
        for target in ["cpu", "eie"] {
            let pipeline = Pipeline::parse(&format!("simplify(target={target})")).expect("parses");
            group.bench_function(format!("{stem} ({target})"), |b| {
                b.iter_batched(
                    || (parsed.graph.clone(), parsed.info.clone()),
                    |(mut graph, info)| {
                        run_pipeline(&mut graph, info, &pipeline, None).expect("runs")
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, simplify);
criterion_main!(benches);
