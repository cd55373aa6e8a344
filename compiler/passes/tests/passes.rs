//! The passes on real descriptions: exact pruning counts, load balance, weight sharing that the
//! interpreter runs, option handling, and the manager's verify/stop-after contract.

use sprig_front::{Parsed, parse_text};
use sprig_ir::{Graph, Tensor};
use sprig_passes::{PassError, Pipeline, run_pipeline};
use std::collections::BTreeSet;
use std::path::Path;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn load(name: &str) -> Parsed {
    sprig_front::load_model(&examples().join(name)).expect("example loads")
}

fn compress(mut parsed: Parsed, pipeline: &str) -> Result<Parsed, PassError> {
    let pipeline = Pipeline::parse(pipeline)?;
    let (info, _) = run_pipeline(&mut parsed.graph, parsed.info, &pipeline, None)?;
    Ok(Parsed {
        graph: parsed.graph,
        info,
    })
}

fn weight_values(graph: &Graph, name: &str) -> Vec<f32> {
    let id = graph.weights.find(name).expect("weight exists");
    graph.weights[id].values().to_vec()
}

fn nonzeros(v: &[f32]) -> usize {
    v.iter().filter(|&&x| x != 0.0).count()
}

#[test]
fn sparsity_keeps_exactly_the_requested_count_of_largest_weights() {
    let before = load("lenet_300_100.sprig");
    let original = weight_values(&before.graph, "ip1.weight");
    let after = compress(before, "prune(sparsity=0.92, ip3.sparsity=0.74)").expect("prunes");
    let ip1 = weight_values(&after.graph, "ip1.weight");
    assert_eq!(nonzeros(&ip1), (0.08f64 * 235_200.0).round() as usize);
    let ip3 = weight_values(&after.graph, "ip3.weight");
    assert_eq!(nonzeros(&ip3), 260);
    // Survivors keep their values, and no pruned weight is larger than a survivor.
    let smallest_kept = ip1
        .iter()
        .filter(|v| **v != 0.0)
        .map(|v| v.abs())
        .fold(f32::INFINITY, f32::min);
    for (o, p) in original.iter().zip(&ip1) {
        assert!(*p == 0.0 || p == o);
        if *p == 0.0 {
            assert!(o.abs() <= smallest_kept);
        }
    }
    // Biases stay dense by default.
    assert_eq!(nonzeros(&weight_values(&after.graph, "ip1.bias")), 300);
}

#[test]
fn quality_rule_keeps_weights_beyond_q_sigma() {
    let before = load("lenet_300_100.sprig");
    let w = weight_values(&before.graph, "ip2.weight");
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sigma = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let expected = w
        .iter()
        .filter(|&&v| (v.abs() as f64) > 1.7 * sigma)
        .count();
    let after = compress(before, "prune(quality=1.7)").expect("prunes");
    assert_eq!(
        nonzeros(&weight_values(&after.graph, "ip2.weight")),
        expected
    );
}

#[test]
fn load_balanced_pruning_gives_every_pe_the_same_work() {
    let after = compress(
        load("eie/alex8.sprig"),
        "prune(density=0.05, balance_pes=64), partition(pes=64)",
    )
    .expect("prunes");
    let w = weight_values(&after.graph, "alex8.weight");
    let per_pe = sprig_passes::partition::nonzeros_per_pe(
        &w,
        4096,
        64,
        sprig_ir::encoding::PartitionScheme::Interleave,
    );
    let distinct: BTreeSet<u64> = per_pe.iter().copied().collect();
    assert_eq!(distinct.len(), 1, "per-PE non-zeros differ: {distinct:?}");
    assert_eq!(per_pe[0], (0.05f64 * 4096.0 * 1000.0).round() as u64 / 64);
}

#[test]
fn quantized_layers_hold_only_codebook_values_and_keep_the_pruned_set() {
    let after = compress(
        load("lenet_300_100.sprig"),
        "prune(sparsity=0.9), quantize(bits=5)",
    )
    .expect("compresses");
    for name in ["ip1.weight", "ip2.weight", "ip3.weight"] {
        let id = after.graph.weights.find(name).expect("weight");
        let w = &after.graph.weights[id];
        let shared = w.encoding.shared.as_ref().expect("shared");
        let pruned = w.encoding.pruned.as_ref().expect("pruned");
        assert!(shared.zero_code);
        assert_eq!(shared.codebook.len(), 32);
        assert_eq!(shared.codebook[0], 0.0);
        let values = w.values();
        assert_eq!(
            nonzeros(&values) as u64,
            pruned.nonzeros,
            "{name}: pruned set changed"
        );
        assert_eq!(shared.codes.len() as u64, pruned.nonzeros);
        let mut codes = shared.codes.iter();
        for &v in values.iter().filter(|v| **v != 0.0) {
            let code = *codes.next().expect("a code per survivor") as usize;
            assert!(code != 0);
            assert_eq!(shared.codebook[code].to_bits(), v.to_bits());
        }
    }
}

/// The interpreter runs the compressed network; on the first 100 test digits the quantized
/// LeNet-300-100 agrees with the uncompressed one on nearly every prediction.
#[test]
fn interpreter_runs_the_compressed_network() {
    let original = load("lenet_300_100.sprig");
    let compressed = compress(
        load("lenet_300_100.sprig"),
        "prune(sparsity=0.9), quantize(bits=6)",
    )
    .expect("compresses");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/mnist_test_1000.npz");
    let arrays = sprig_front::files::read_npz(&data).expect("digits");
    let x = &arrays.iter().find(|(n, _)| n == "x").expect("x").1;
    let argmax = |t: &Tensor| {
        (0..10)
            .max_by(|&a, &b| t.data[a].total_cmp(&t.data[b]))
            .expect("classes")
    };
    let mut agree = 0;
    for i in 0..100 {
        let input = Tensor::new(
            [784],
            x.data[i * 784..(i + 1) * 784]
                .iter()
                .map(|p| p / 255.0)
                .collect(),
        );
        let a = sprig_ir::interpret(
            &original.graph,
            &original.info,
            std::slice::from_ref(&input),
        )
        .expect("runs");
        let b = sprig_ir::interpret(&compressed.graph, &compressed.info, &[input]).expect("runs");
        agree += usize::from(argmax(&a[0]) == argmax(&b[0]));
    }
    assert!(agree >= 95, "only {agree} of 100 predictions agree");
}

#[test]
fn pipeline_errors_name_the_problem() {
    let err = |text: &str| Pipeline::parse(text).expect_err(text).to_string();
    assert!(err("prune(sparsity=0.9").contains("expected `,` or `)`"));
    assert!(err("prnue").contains("unknown pass `prnue`"));
    assert!(err("prune(sparsty=0.9)").contains("unknown option `sparsty`"));
    assert!(err("prune(sparsity)").contains("expected `=`"));
    assert!(err("").contains("expected a pass name"));
    let e = compress(load("lenet_300_100.sprig"), "prune(sparsity=1.5)").expect_err("out of range");
    assert!(e.to_string().contains("between 0 and 1"), "{e}");
    let e = compress(load("lenet_300_100.sprig"), "prune(ip9.sparsity=0.5)").expect_err("no layer");
    assert!(e.to_string().contains("no layer is named `ip9`"), "{e}");
}

#[test]
fn stop_after_runs_the_pipeline_up_to_that_pass() {
    let mut parsed = load("lenet_300_100.sprig");
    let pipeline = Pipeline::parse("prune(sparsity=0.9), quantize(bits=4)").expect("parses");
    let (_, runs) =
        run_pipeline(&mut parsed.graph, parsed.info, &pipeline, Some("prune")).expect("runs");
    assert_eq!(runs.len(), 1);
    let id = parsed.graph.weights.find("ip1.weight").expect("weight");
    assert!(parsed.graph.weights[id].encoding.pruned.is_some());
    assert!(parsed.graph.weights[id].encoding.shared.is_none());
    let mut parsed = load("lenet_300_100.sprig");
    let e = run_pipeline(&mut parsed.graph, parsed.info, &pipeline, Some("partition"))
        .expect_err("not in pipeline");
    assert!(e.to_string().contains("no pass of that name"), "{e}");
}

#[test]
fn kind_overrides_apply_below_layer_overrides() {
    let text = "network k\ninput x : f32[1, 6, 6]\n\
        weight @c : f32[4, 1, 3, 3] = random(normal(0, 1), seed = 1)\n\
        weight @f : f32[10, 64] = random(normal(0, 1), seed = 2)\n\
        weight @g : f32[10, 10] = random(normal(0, 1), seed = 3)\n\
        let a = conv2d(x, @c)\nlet b = flatten(a)\nlet h = dense(b, @f)\noutput y = dense(h, @g)\n";
    let parsed = parse_text(text, "k.sprig", None).expect("parses");
    let after = compress(
        parsed,
        "prune(density=0.5, conv.density=0.25, g.density=0.1)",
    )
    .expect("prunes");
    assert_eq!(nonzeros(&weight_values(&after.graph, "c")), 9);
    assert_eq!(nonzeros(&weight_values(&after.graph, "f")), 320);
    assert_eq!(nonzeros(&weight_values(&after.graph, "g")), 10);
}

#[test]
fn the_same_input_gives_the_same_result() {
    let a = compress(
        load("lenet5.sprig"),
        "prune(quality=1.0), quantize(init=kmeans++, seed=3)",
    )
    .expect("compresses");
    let b = compress(
        load("lenet5.sprig"),
        "prune(quality=1.0), quantize(init=kmeans++, seed=3)",
    )
    .expect("compresses");
    assert_eq!(a.graph, b.graph);
}

#[test]
fn huffman_records_entries_fillers_and_coded_bits() {
    let after = compress(
        load("lenet_300_100.sprig"),
        "prune(sparsity=0.92), quantize(bits=5), huffman(index_bits=4)",
    )
    .expect("compresses");
    let id = after.graph.weights.find("ip1.weight").expect("weight");
    let w = &after.graph.weights[id];
    let h = w.encoding.huffman.as_ref().expect("huffman");
    let nonzeros = w.encoding.pruned.as_ref().expect("pruned").nonzeros;
    // Fillers: a gap of g zeros before an entry needs floor(g / 16) fillers at 4 bits.
    let values = w.values();
    let mut previous: i64 = -1;
    let mut fillers = 0u64;
    for (i, v) in values.iter().enumerate() {
        if *v != 0.0 {
            fillers += ((i as i64 - previous - 1) / 16) as u64;
            previous = i as i64;
        }
    }
    assert_eq!(h.fillers, fillers);
    assert_eq!(h.entries, nonzeros + fillers);
    assert_eq!(h.index_width, 4);
    assert!(
        h.weight_bits > 0.0 && h.weight_bits <= 5.0,
        "{}",
        h.weight_bits
    );
    assert!(
        h.index_bits > 0.0 && h.index_bits <= 4.0,
        "{}",
        h.index_bits
    );
}

#[test]
fn deep_compression_preset_lands_near_the_papers_densities() {
    let parsed = load("lenet_300_100.sprig");
    let mut graph = parsed.graph;
    let (_, runs) = run_pipeline(
        &mut graph,
        parsed.info,
        &Pipeline::preset("deep-compression").expect("preset"),
        None,
    )
    .expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.pass).collect::<Vec<_>>(),
        ["simplify", "prune", "quantize", "huffman"]
    );
    for name in ["ip1.weight", "ip2.weight", "ip3.weight"] {
        let id = graph.weights.find(name).expect("weight");
        let density = graph.weights[id]
            .encoding
            .pruned
            .as_ref()
            .expect("pruned")
            .density();
        assert!(
            (0.04..=0.25).contains(&density),
            "{name}: density {density}"
        );
        assert_eq!(
            graph.weights[id]
                .encoding
                .shared
                .as_ref()
                .expect("shared")
                .bits,
            5
        );
    }
}

/// Removing dead neurons shrinks the layers and leaves the function unchanged.
#[test]
fn removing_dead_neurons_keeps_the_outputs() {
    let pipeline = "prune(sparsity=0.995, ip3.sparsity=0.5)";
    let kept = compress(load("lenet_300_100.sprig"), pipeline).expect("prunes");
    let removed = compress(
        load("lenet_300_100.sprig"),
        &format!("{}, remove_dead=true)", &pipeline[..pipeline.len() - 1]),
    )
    .expect("prunes and removes");
    let rows = |p: &Parsed, name: &str| {
        let id = p.graph.weights.find(name).expect("weight");
        p.graph.weights[id].ty.shape.dims().to_vec()
    };
    assert_eq!(rows(&kept, "ip1.weight"), [300, 784]);
    let ip1 = rows(&removed, "ip1.weight");
    let ip2 = rows(&removed, "ip2.weight");
    assert!(ip1[0] < 300, "ip1 kept every neuron: {ip1:?}");
    assert_eq!(rows(&removed, "ip1.bias"), [ip1[0]]);
    assert_eq!(ip2[1], ip1[0]);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/mnist_test_1000.npz");
    let arrays = sprig_front::files::read_npz(&data).expect("digits");
    let x = &arrays.iter().find(|(n, _)| n == "x").expect("x").1;
    for i in 0..20 {
        let input = Tensor::new(
            [784],
            x.data[i * 784..(i + 1) * 784]
                .iter()
                .map(|p| p / 255.0)
                .collect(),
        );
        let a = sprig_ir::interpret(&kept.graph, &kept.info, std::slice::from_ref(&input))
            .expect("runs");
        let b = sprig_ir::interpret(&removed.graph, &removed.info, &[input]).expect("runs");
        for (u, v) in a[0].data.iter().zip(&b[0].data) {
            assert!((u - v).abs() <= 1e-6 * u.abs().max(1e-3), "{u} vs {v}");
        }
    }
}
