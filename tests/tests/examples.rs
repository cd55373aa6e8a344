//! The bundled examples: they verify, round-trip and print stably, and the trained LeNet
//! examples reproduce through the reference interpreter what their training script measured.

use sprig_front::{files, load_model};
use sprig_ir::{Tensor, WeightInit};
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn examples_round_trip_and_print_stably() {
    insta::glob!("../../examples", "**/*.sprig", |path| {
        let parsed = load_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let dir = path.parent().expect("example has a directory");
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        let printed = sprig_ir::print(&parsed.graph, None);
        let reparsed = sprig_front::parse_text(&printed, &name, Some(dir))
            .unwrap_or_else(|d| panic!("printed {name} does not parse:\n{d}"));
        assert_eq!(reparsed.graph, parsed.graph, "round trip changed {name}");
        assert_eq!(sprig_ir::print(&reparsed.graph, None), printed);
        insta::assert_snapshot!(sprig_ir::print(&parsed.graph, Some(&parsed.info)));
    });
}

/// `sprig check` on VGG-16 must not generate its 138M random weights: describing and verifying a
/// network leaves every generator untouched.
#[test]
fn verifying_vgg16_materialises_no_weights() {
    let parsed = load_model(&examples_dir().join("vgg16.sprig")).expect("vgg16 loads");
    assert_eq!(parsed.graph.weights.parameter_count(), 138_357_544);
    for (_, w) in parsed.graph.weights.iter() {
        assert!(matches!(w.init, WeightInit::Random(_)));
        assert!(!w.is_materialized(), "@{} was generated", w.name);
    }
}

/// Seeded generators give the same values on every run, and the density they were asked for.
#[test]
fn random_weights_are_reproducible_and_at_density() {
    let path = examples_dir().join("eie/alex8.sprig");
    let a = load_model(&path).expect("alex8 loads");
    let b = load_model(&path).expect("alex8 loads");
    let (_, wa) = a.graph.weights.iter().next().expect("one weight");
    let (_, wb) = b.graph.weights.iter().next().expect("one weight");
    let (va, vb) = (wa.values(), wb.values());
    assert!(
        va.iter()
            .zip(vb.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
    let nonzero = va.iter().filter(|v| **v != 0.0).count() as f64 / va.len() as f64;
    // 4M Bernoulli(0.25) draws: the standard deviation of the fraction is about 2e-4.
    assert!((nonzero - 0.25).abs() < 2e-3, "density {nonzero}");
    let mean = va.iter().map(|&v| v as f64).sum::<f64>() / va.len() as f64;
    let var = va.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / (nonzero * va.len() as f64);
    assert!(mean.abs() < 1e-4, "mean {mean}");
    assert!((var.sqrt() - 0.01).abs() < 1e-4, "std {}", var.sqrt());
}

struct Expected {
    correct_first_1000: usize,
}

fn expected(model: &str) -> Expected {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lenet_expected.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("expected values"))
            .expect("json");
    Expected {
        correct_first_1000: json[model]["correct_first_1000"].as_u64().expect("count") as usize,
    }
}

/// Runs a trained LeNet over the first 1000 MNIST test digits and compares with the training
/// script's own (NumPy) forward pass: the same predictions and probabilities within 1e-5.
fn check_lenet(model: &str) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let parsed = load_model(&examples_dir().join(format!("{model}.sprig"))).expect("model loads");
    let arrays = files::read_npz(&data.join("mnist_test_1000.npz")).expect("digits");
    let images = &arrays.iter().find(|(n, _)| n == "x").expect("x").1;
    let labels = &arrays.iter().find(|(n, _)| n == "y").expect("y").1;
    let reference = files::read_npy(&data.join(format!("{model}_probs_1000.npy"))).expect("probs");
    let input = parsed.graph.inputs()[0];
    let shape = parsed.info.ty(input).shape.clone();
    let mut correct = 0;
    let mut max_err = 0.0f32;
    for i in 0..1000 {
        let pixels: Vec<f32> = images.data[i * 784..(i + 1) * 784]
            .iter()
            .map(|p| p / 255.0)
            .collect();
        let out = sprig_ir::interpret(
            &parsed.graph,
            &parsed.info,
            &[Tensor::new(shape.clone(), pixels)],
        )
        .expect("interpret");
        let probs = &out[0].data;
        let predicted = (0..10)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .expect("10 classes");
        if predicted == labels.data[i] as usize {
            correct += 1;
        }
        for (p, r) in probs.iter().zip(&reference.data[i * 10..(i + 1) * 10]) {
            max_err = max_err.max((p - r).abs());
        }
    }
    assert_eq!(
        correct,
        expected(model).correct_first_1000,
        "{model}: correct predictions"
    );
    assert!(max_err < 1e-5, "{model}: max |p - p_numpy| = {max_err}");
}

#[test]
fn lenet_300_100_matches_its_training_script_on_mnist() {
    check_lenet("lenet_300_100");
}

#[test]
fn lenet5_matches_its_training_script_on_mnist() {
    check_lenet("lenet5");
}

/// The generator's values are part of every model that uses it: they must never change. The
/// snapshot pins the first values (as bits) of a normal and a uniform generator.
#[test]
fn generator_values_are_pinned() {
    use sprig_ir::{Distribution, RandomInit};
    let normal = RandomInit {
        dist: Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        },
        density: 0.5,
        seed: 42,
    };
    let uniform = RandomInit {
        dist: Distribution::Uniform {
            low: -1.0,
            high: 1.0,
        },
        density: 1.0,
        seed: 7,
    };
    // The second chunk starts its own stream: elements from 65536 on are pinned too.
    let n = normal.generate(65_544);
    let u = uniform.generate(8);
    let show = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:?} ({:#010x})", x.to_bits()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let text = format!(
        "normal(0, 1), density 0.5, seed 42:\n{}\n...\n{}\nuniform(-1, 1), seed 7:\n{}",
        show(&n[..8]),
        show(&n[65_536..]),
        show(&u)
    );
    insta::assert_snapshot!(text);
}
