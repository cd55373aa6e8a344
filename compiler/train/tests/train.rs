//! Training checked against independent computations: forward passes against the reference
//! interpreter, gradients against finite differences, masks and codes preserved, determinism.

use sprig_front::files::{Dataset, read_npz_dataset};
use sprig_ir::{Graph, GraphInfo, Tensor};
use sprig_train::{Net, Samples, TrainOptions, Trainer, evaluate, loss_and_gradients, predict};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(name: &str) -> (Graph, GraphInfo) {
    let parsed = sprig_front::load_model(&root().join(name)).expect("example loads");
    (parsed.graph, parsed.info)
}

fn digits(n: usize) -> Dataset {
    let mut data = read_npz_dataset(&root().join("tests/data/mnist_test_1000.npz")).unwrap();
    data.images.data.truncate(n * 784);
    data.labels.truncate(n);
    data
}

fn samples(data: &Dataset) -> Samples<'_> {
    Samples {
        inputs: &data.images.data,
        labels: &data.labels,
    }
}

fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn assert_matches_interpreter(graph: &Graph, info: &GraphInfo, inputs: &[f32]) {
    let net = Net::from_graph(graph, info).unwrap();
    let per = net.input_len();
    let logits = predict(&net, inputs);
    let shape = info.ty(graph.inputs()[0]).shape.clone();
    for (s, z) in logits.chunks_exact(net.classes()).enumerate() {
        let x = Tensor::new(shape.clone(), inputs[s * per..(s + 1) * per].to_vec());
        let want = sprig_ir::interpret(graph, info, &[x]).unwrap();
        for (a, b) in softmax(z).iter().zip(&want[0].data) {
            assert!((a - b).abs() < 1e-5, "sample {s}: {a} vs {b}");
        }
    }
}

#[test]
fn forward_passes_match_the_reference_interpreter() {
    let data = digits(16);
    for model in ["examples/lenet_300_100.sprig", "examples/lenet5.sprig"] {
        let (graph, info) = load(model);
        assert_matches_interpreter(&graph, &info, &data.images.data);
    }
}

/// Every supported op in one small chain: a constant shift, convolution with stride and
/// padding, relu, max pooling, average pooling, flatten, dense, sigmoid, tanh, a constant scale.
const TINY: &str = r#"
network tiny
input x : f32[1, 7, 7]
weight @shift : f32[1] = [0.25]
weight @scale : f32[3] = [1.5, -0.5, 2]
weight @k : f32[4, 1, 3, 3] = random(normal(0, 0.5), seed = 1)
weight @kb : f32[4] = random(normal(0, 0.1), seed = 2)
weight @w1 : f32[6, 64] = random(normal(0, 0.4), seed = 3)
weight @b1 : f32[6] = random(normal(0, 0.1), seed = 4)
weight @w2 : f32[3, 6] = random(normal(0, 0.6), seed = 5)
let shift = constant(@shift)
let scale = constant(@scale)
let xc = sub(x, shift)
let c = conv2d(xc, @k, @kb, stride = 2, padding = [1, 1, 1, 1])
let r = relu(c)
let m = maxpool2d(r, kernel = 2, stride = 1)
let a = avgpool2d(m, kernel = 2, stride = 1, padding = [1, 1, 1, 1])
let f = flatten(a)
let h = dense(f, @w1, @b1)
let s = sigmoid(h)
let d = dense(s, @w2)
let t = tanh(d)
let z = mul(t, scale)
output y = softmax(z)
"#;

fn tiny() -> (Graph, GraphInfo) {
    let parsed = sprig_front::parse_text(TINY, "tiny.sprig", None).expect("tiny parses");
    (parsed.graph, parsed.info)
}

fn tiny_data(n: usize) -> (Vec<f32>, Vec<u32>) {
    let inputs: Vec<f32> = (0..n * 49)
        .map(|i| ((i * 7919 % 101) as f32) / 50.0 - 1.0)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    (inputs, labels)
}

#[test]
fn tiny_chain_matches_the_interpreter() {
    let (graph, info) = tiny();
    let (inputs, _) = tiny_data(5);
    assert_matches_interpreter(&graph, &info, &inputs);
}

#[test]
fn gradients_match_finite_differences() {
    let (graph, info) = tiny();
    let (inputs, labels) = tiny_data(6);
    let data = Samples {
        inputs: &inputs,
        labels: &labels,
    };
    let net = Net::from_graph(&graph, &info).unwrap();
    let (_, grads) = loss_and_gradients(&net, data);
    let eps = 1e-2f32;
    for (p, grad) in grads.iter().enumerate() {
        for i in (0..grad.len()).step_by(3) {
            let mut plus = net.clone();
            plus.params[p].values[i] += eps;
            let mut minus = net.clone();
            minus.params[p].values[i] -= eps;
            let numeric = (loss_and_gradients(&plus, data).0 - loss_and_gradients(&minus, data).0)
                / (2.0 * f64::from(eps));
            let analytic = f64::from(grad[i]);
            assert!(
                (numeric - analytic).abs() <= 2e-3 + 0.05 * analytic.abs(),
                "param {} element {i}: numeric {numeric} analytic {analytic}",
                net.params[p].name
            );
        }
    }
}

fn compress(graph: &mut Graph, info: GraphInfo, text: &str) -> GraphInfo {
    let pipeline = sprig_passes::Pipeline::parse(text).unwrap();
    sprig_passes::run_pipeline(graph, info, &pipeline, None)
        .unwrap()
        .0
}

fn quick_options(seed: u64) -> TrainOptions {
    TrainOptions {
        epochs: 1,
        batch: 32,
        lr: 0.01,
        seed,
        ..TrainOptions::default()
    }
}

fn train_once(graph: &Graph, info: &GraphInfo, data: Samples<'_>, seed: u64) -> Net {
    let mut trainer = Trainer::new(Net::from_graph(graph, info).unwrap(), quick_options(seed));
    trainer.epoch(data, 0, &mut |_, _| {});
    trainer.into_net()
}

#[test]
fn retraining_keeps_pruned_weights_zero_and_recovers_accuracy() {
    let data = digits(400);
    let (mut graph, info) = load("examples/lenet_300_100.sprig");
    let info = compress(&mut graph, info, "prune(sparsity=0.97)");
    let before = Net::from_graph(&graph, &info).unwrap();
    let pruned_accuracy = evaluate(&before, samples(&data)).top1;
    let mut trainer = Trainer::new(before.clone(), quick_options(7));
    for epoch in 0..2 {
        trainer.epoch(samples(&data), epoch, &mut |_, _| {});
    }
    let after = trainer.into_net();
    let retrained_accuracy = evaluate(&after, samples(&data)).top1;
    assert!(
        retrained_accuracy > pruned_accuracy,
        "{pruned_accuracy} -> {retrained_accuracy}"
    );
    for (b, a) in before.params.iter().zip(&after.params) {
        for (x, y) in b.values.iter().zip(&a.values) {
            assert_eq!(*x == 0.0, *y == 0.0, "@{}: the pruned set changed", b.name);
        }
    }
    after.store(&mut graph).unwrap();
    let info = sprig_ir::verify(&graph).unwrap();
    sprig_pack::pack(&graph, &info).expect("the retrained graph packs");
}

#[test]
fn trained_quantization_moves_centroids_and_keeps_codes() {
    let data = digits(300);
    let (mut graph, info) = load("examples/lenet_300_100.sprig");
    let info = compress(
        &mut graph,
        info,
        "prune(fc.quality=1.7), quantize(bits=4), huffman",
    );
    let codes_before: Vec<_> = graph
        .weights
        .iter()
        .filter_map(|(_, w)| {
            w.encoding
                .shared
                .as_ref()
                .map(|s| (s.codes.clone(), s.codebook.clone()))
        })
        .collect();
    let net = train_once(&graph, &info, samples(&data), 3);
    net.store(&mut graph).unwrap();
    let info = sprig_ir::verify(&graph).unwrap();
    let mut moved = false;
    let shared: Vec<_> = graph
        .weights
        .iter()
        .filter(|(_, w)| w.encoding.shared.is_some())
        .collect();
    assert_eq!(shared.len(), codes_before.len());
    for ((_, w), (codes, codebook)) in shared.into_iter().zip(&codes_before) {
        let s = w.encoding.shared.as_ref().unwrap();
        assert_eq!(&s.codes, codes, "@{}: codes changed", w.name);
        moved |= s.codebook != *codebook;
        assert_eq!(s.codebook[0], 0.0);
        // Values are the codebook's, at the surviving positions in order.
        let values = w.values();
        let kept: Vec<f32> = values.iter().copied().filter(|&v| v != 0.0).collect();
        assert_eq!(kept.len(), s.codes.len());
        for (v, &c) in kept.iter().zip(s.codes.iter()) {
            assert_eq!(*v, s.codebook[c as usize]);
        }
    }
    assert!(moved, "no centroid moved");
    let packed = sprig_pack::pack(&graph, &info).unwrap();
    let (unpacked, _) = sprig_pack::unpack(&packed.bytes, "retrained").unwrap();
    assert_eq!(unpacked, graph);
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    let data = digits(200);
    let (graph, info) = load("examples/lenet_300_100.sprig");
    let a = train_once(&graph, &info, samples(&data), 11);
    let b = train_once(&graph, &info, samples(&data), 11);
    let c = train_once(&graph, &info, samples(&data), 12);
    let bits = |n: &Net| -> Vec<u32> {
        n.params
            .iter()
            .flat_map(|p| p.values.iter().map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&c));
    assert_eq!(
        evaluate(&a, samples(&data)).top1,
        evaluate(&b, samples(&data)).top1
    );
}

#[test]
fn least_squares_refinement_reduces_the_output_error() {
    let data = digits(200);
    let (graph, info) = load("examples/lenet_300_100.sprig");
    let original = Net::from_graph(&graph, &info).unwrap();
    let mut compressed_graph = graph.clone();
    let info = compress(
        &mut compressed_graph,
        info,
        "prune(fc.quality=1.7), quantize(bits=3)",
    );
    let mut compressed = Net::from_graph(&compressed_graph, &info).unwrap();
    let report =
        sprig_train::refine::refine_centroids(&original, &mut compressed, &data.images.data)
            .unwrap();
    assert_eq!(report.len(), 3);
    for layer in &report {
        assert!(
            layer.mse_after < layer.mse_before,
            "@{}: {} -> {}",
            layer.weight,
            layer.mse_before,
            layer.mse_after
        );
    }
}

#[test]
fn unsupported_networks_name_the_node() {
    let text = "network branch\ninput x : f32[4]\nlet a = relu(x)\nlet b = sigmoid(x)\noutput y = add(a, b)\n";
    let parsed = sprig_front::parse_text(text, "branch.sprig", None).unwrap();
    let err = Net::from_graph(&parsed.graph, &parsed.info).unwrap_err();
    assert!(err.to_string().contains('`'), "{err}");
}
