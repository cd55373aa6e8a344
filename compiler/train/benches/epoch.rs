//! One retraining epoch (SGD, batch 64, both cores) of the example LeNets.
//!
//! Data: MNIST's 60,000 training images from `$SPRIG_MNIST` (default `~/.cache/sprig/mnist`,
//! fetched by `../shared/data/fetch-mnist.sh`); without them, the bundled 1,000 test digits
//! repeated to 60,000 samples (the same arithmetic per sample). LeNet-300-100 is timed over the
//! whole epoch; LeNet-5 over a tenth of it (6,000 samples, reported per sample by the
//! throughput), so the benchmark finishes in minutes on two cores.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprig_front::files::{MnistSplit, read_mnist, read_npz_dataset};
use sprig_train::{Net, Samples, TrainOptions, Trainer};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn training_set() -> (Vec<f32>, Vec<u32>) {
    let dir = std::env::var_os("SPRIG_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sprig/mnist")
        });
    if let Ok(d) = read_mnist(&dir, MnistSplit::Train, None) {
        return (d.images.data, d.labels);
    }
    let d =
        read_npz_dataset(&root().join("tests/data/mnist_test_1000.npz")).expect("bundled digits");
    let mut inputs = Vec::with_capacity(60_000 * 784);
    let mut labels = Vec::with_capacity(60_000);
    while labels.len() < 60_000 {
        inputs.extend_from_slice(&d.images.data);
        labels.extend_from_slice(&d.labels);
    }
    inputs.truncate(60_000 * 784);
    labels.truncate(60_000);
    (inputs, labels)
}

fn bench_epochs(c: &mut Criterion) {
    let (inputs, labels) = training_set();
    let mut group = c.benchmark_group("retraining_epoch");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    for (model, samples) in [("lenet_300_100", 60_000usize), ("lenet5", 6_000)] {
        let parsed = sprig_front::load_model(&root().join(format!("examples/{model}.sprig")))
            .expect("example loads");
        let net = Net::from_graph(&parsed.graph, &parsed.info).expect("trainable");
        let data = Samples {
            inputs: &inputs[..samples * 784],
            labels: &labels[..samples],
        };
        let options = TrainOptions {
            epochs: 1,
            ..TrainOptions::default()
        };
        group.throughput(Throughput::Elements(samples as u64));
        group.measurement_time(Duration::from_secs(if model == "lenet5" { 40 } else { 25 }));
        group.bench_function(format!("{model}/{samples}"), |b| {
            b.iter(|| {
                let mut trainer = Trainer::new(net.clone(), options.clone());
                trainer.epoch(data, 0, &mut |_, _| {});
                trainer.into_net()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_epochs);
criterion_main!(benches);
