//! Criterion benchmarks of the CPU kernels on EIE benchmark layers (examples/eie), compressed as
//! the EIE paper does (4-bit shared weights, zero code), batch 1, at the paper's activation
//! densities: every kernel variant the machine supports on one thread, both traversals forced
//! (columns, rows) on the widest variant, one and two threads side by side on the widest variant
//! (ids `…/1`, `…/2`), and the two baselines (dense f32 by faer, plain f32 CSR) on the same weights
//! and input. The machine's read bandwidth is probed first and each layer's bytes read by the
//! chosen traversal are printed with the time they take at that bandwidth.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sprig_cpu::baseline::{CsrBaseline, DenseBaseline, read_bandwidth};
use sprig_cpu::{Activation, Active, Isa, MatrixSource, PackedMatrix, Runtime, Traversal};
use sprig_ir::op::Op;
use sprig_ir::{Distribution, RandomInit};
use std::path::Path;

/// Layers benchmarked here (the largest ones are left to `sprig bench`, which runs all nine):
/// file name and activation density (EIE paper, Table III).
const LAYERS: [(&str, f64); 4] = [
    ("alex8", 0.375),
    ("vgg7", 0.375),
    ("ntwe", 1.0),
    ("ntlstm", 1.0),
];

fn kernels(c: &mut Criterion) {
    let bandwidth = read_bandwidth(512 << 20);
    #[allow(clippy::print_stderr)]
    {
        eprintln!("read bandwidth: {:.1} GB/s", bandwidth / 1e9);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/eie");
    for (name, activation_density) in LAYERS {
        let parsed = sprig_front::load_model(&root.join(format!("{name}.sprig"))).expect("loads");
        let mut graph = parsed.graph;
        let pipeline =
            sprig_passes::Pipeline::parse("prune(quality=0), quantize(bits=4)").expect("parses");
        sprig_passes::run_pipeline(&mut graph, parsed.info, &pipeline, None).expect("compresses");
        let weight = graph
            .node_ids()
            .find_map(|id| match &graph.node(id).op {
                Op::Dense(d) => Some(d.weight),
                _ => None,
            })
            .expect("a dense layer");
        let w = &graph.weights[weight];
        let (rows, cols) = (w.ty.shape.dims()[0], w.ty.shape.dims()[1]);
        let values = w.values();
        let x: Vec<f32> = RandomInit {
            dist: Distribution::Normal {
                mean: 0.0,
                std: 1.0,
            },
            density: activation_density,
            seed: 1,
        }
        .generate(cols)
        .into_iter()
        .map(f32::abs)
        .collect();
        let mut y = vec![0.0f32; rows];
        let mut active = Active::default();
        active.gather(&x);
        let mut group = c.benchmark_group(name);
        let widest = Isa::detect();
        for threads in [1, 2] {
            let m = PackedMatrix::build(MatrixSource::whole(w, &values, rows, cols), threads)
                .expect("packs");
            let mut variants: Vec<(Isa, Traversal)> = vec![(widest, Traversal::Auto)];
            if threads == 1 {
                variants.extend(
                    Isa::supported()
                        .into_iter()
                        .filter(|&i| i != widest)
                        .map(|i| (i, Traversal::Auto)),
                );
                variants.extend([(widest, Traversal::Columns), (widest, Traversal::Rows)]);
                let chosen = m.traversal_for(Traversal::Auto, &active.index);
                let bytes = m.bytes_read(chosen, &active.index) + rows * 4;
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "{name}: {} traversal reads {bytes} bytes: {:.1} us at the read bandwidth",
                        chosen.name(),
                        bytes as f64 / bandwidth * 1e6
                    );
                }
            }
            for (isa, traversal) in variants {
                let rt = Runtime::new(isa, threads)
                    .expect("runtime")
                    .with_traversal(traversal);
                let id = BenchmarkId::new(
                    format!("{}-{isa}-{}", m.kind().name(), traversal.name()),
                    threads,
                );
                group.bench_function(id, |b| {
                    b.iter(|| m.matvec(&rt, &x, None, Activation::Identity, &mut y))
                });
            }
        }
        let mut dense = DenseBaseline::new(&values, rows, cols);
        group.bench_function("baseline-dense-faer", |b| b.iter(|| dense.run(&x, &mut y)));
        let csr = CsrBaseline::new(&values, rows, cols);
        group.bench_function("baseline-csr", |b| b.iter(|| csr.run(&x, &mut y)));
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = kernels
}
criterion_main!(benches);
