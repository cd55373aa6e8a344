//! Whole pipelines on the large examples, with every weight generated before timing starts (the
//! figures exclude weight generation): VGG-16 (138M parameters) through the deep-compression
//! preset, and VGG-16's fc6 (25088×4096, dense) pruned to 4%, 5-bit shared and Huffman-coded.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sprig_passes::{Pipeline, run_pipeline};
use std::path::Path;
use std::time::Duration;

/// VGG-16's fc6 with dense trained-like weights, before any pruning.
const FC6: &str = "network fc6\ninput x : f32[25088]\n\
    weight @fc6.weight : f32[4096, 25088] = random(normal(0, 0.01), seed = 6)\n\
    output y = dense(x, @fc6.weight)\n";

fn loaded(name: &str) -> sprig_front::Parsed {
    let parsed = if name == "fc6" {
        sprig_front::parse_text(FC6, "fc6.sprig", None).expect("parses")
    } else {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        sprig_front::load_model(&path).expect("example loads")
    };
    for (_, w) in parsed.graph.weights.iter() {
        w.values();
    }
    parsed
}

fn bench(c: &mut Criterion, label: &str, example: &str, pipeline: &Pipeline) {
    let parsed = loaded(example);
    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function(label, |b| {
        b.iter_batched(
            || {
                // Each run owns its weights, as a freshly loaded model does (a clone would share
                // them and make the passes copy before writing in place).
                let mut graph = parsed.graph.clone();
                let ids: Vec<_> = graph.weights.iter().map(|(id, _)| id).collect();
                for id in ids {
                    graph.weights.get_mut(id).values_mut();
                }
                (graph, parsed.info.clone())
            },
            |(mut graph, info)| run_pipeline(&mut graph, info, pipeline, None).expect("runs"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn pipelines(c: &mut Criterion) {
    let fc6 = Pipeline::parse("prune(sparsity=0.96), quantize(bits=5), huffman").expect("parses");
    bench(c, "fc6: prune to 4%, 5-bit, huffman", "fc6", &fc6);
    let preset = Pipeline::preset("deep-compression").expect("preset");
    bench(c, "vgg16: deep-compression preset", "vgg16.sprig", &preset);
}

criterion_group!(benches, pipelines);
criterion_main!(benches);
