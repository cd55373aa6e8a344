//! Criterion benchmarks of the CPU kernels on EIE benchmark layers (examples/eie), compressed as
//! the EIE paper does (4-bit shared weights, zero code), batch 1, at the paper's activation
//! densities: every kernel variant the machine supports on one thread, two threads on the widest
//! variant, and the two baselines (dense f32 by faer, plain f32 CSR) on the same weights and input.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sprig_cpu::baseline::{CsrBaseline, DenseBaseline};
use sprig_cpu::{Activation, Isa, MatrixSource, PackedMatrix, Runtime};
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
        let mut group = c.benchmark_group(name);
        for threads in [1, 2] {
            let m = PackedMatrix::build(MatrixSource::whole(w, &values, rows, cols), threads)
                .expect("packs");
            let isas = if threads == 1 {
                Isa::supported()
            } else {
                vec![Isa::detect()]
            };
            for isa in isas {
                let rt = Runtime::new(isa, threads).expect("runtime");
                let id = BenchmarkId::new(format!("{}-{isa}", m.kind().name()), threads);
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
