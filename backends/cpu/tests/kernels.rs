//! Every kernel variant against the reference interpreter, on property-generated layers: shapes,
//! weight and activation densities, code widths (4, 5, 8 bits, unquantized pruned, dense), with
//! and without a partition, thread counts 1 to 3, bias and fused relu.

use proptest::prelude::*;
use sprig_cpu::{Executor, Isa, Options, Traversal};
use sprig_ir::encoding::{CentroidInit, Encoding, Partition, PartitionScheme, Pruned, Shared};
use sprig_ir::op::{Dense, Op};
use sprig_ir::{Graph, Tensor, TensorType, Weight};
use std::sync::Arc;

/// Every supported variant, each with the column kernels of machines with fast and with slow
/// gathers ([`Isa::gathers_are_fast`]): all of them run on any machine. Forcing the choice is
/// process-wide, and harmless to tests running beside: every choice gives the same bits.
fn variants() -> Vec<(Isa, bool)> {
    Isa::supported()
        .into_iter()
        .flat_map(|isa| [(isa, true), (isa, false)])
        .collect()
}

/// How the generated weight is encoded.
#[derive(Clone, Copy, Debug)]
enum Coding {
    Dense,
    Pruned,
    /// Weight sharing with this many bits; pruned ones reserve code 0 for zero.
    Shared {
        bits: u8,
        pruned: bool,
    },
}

fn coding() -> impl Strategy<Value = Coding> {
    prop_oneof![
        Just(Coding::Dense),
        Just(Coding::Pruned),
        (prop_oneof![Just(4u8), Just(5), Just(8)], any::<bool>())
            .prop_map(|(bits, pruned)| Coding::Shared { bits, pruned }),
    ]
}

/// A small deterministic generator (tests draw many values from one seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        ((self.next() + self.next() + self.next() - 1.5) * 2.0) as f32
    }
}

/// A weight `[rows, cols]` with about `density` non-zeros, encoded as `coding` says.
fn weight(rows: usize, cols: usize, density: f64, coding: Coding, rng: &mut Lcg) -> Weight {
    let len = rows * cols;
    let mut values: Vec<f32> = (0..len)
        .map(|_| {
            if rng.next() < density {
                rng.normal()
            } else {
                0.0
            }
        })
        .collect();
    let mut encoding = Encoding::default();
    match coding {
        Coding::Dense => {}
        Coding::Pruned => {
            encoding.pruned = Some(Pruned {
                nonzeros: values.iter().filter(|&&v| v != 0.0).count() as u64,
                len: len as u64,
            });
        }
        Coding::Shared { bits, pruned } => {
            let size = 1usize << bits;
            let mut codebook: Vec<f32> = (0..size).map(|k| (k as f32 - 7.3) * 0.21).collect();
            if pruned {
                codebook[0] = 0.0;
            }
            let mut codes = Vec::new();
            for v in values.iter_mut() {
                if pruned && *v == 0.0 {
                    continue;
                }
                let lowest = usize::from(pruned);
                let code =
                    lowest + (rng.next() * (size - lowest) as f64) as usize % (size - lowest);
                *v = codebook[code];
                codes.push(code as u16);
            }
            if pruned {
                encoding.pruned = Some(Pruned {
                    nonzeros: values.iter().filter(|&&v| v != 0.0).count() as u64,
                    len: len as u64,
                });
            }
            encoding.shared = Some(Shared {
                bits,
                init: CentroidInit::Linear,
                codebook,
                zero_code: pruned,
                codes: Arc::from(codes),
            });
        }
    }
    let mut w = Weight::computed("w", TensorType::f32([rows, cols]), values).expect("sized");
    w.encoding = encoding;
    w
}

/// `relu(dense(x, @w, @b))` or `dense(x, @w)`.
fn layer(w: Weight, bias: Option<Vec<f32>>, relu: bool) -> Graph {
    let (rows, cols) = (w.ty.shape.dims()[0], w.ty.shape.dims()[1]);
    let mut g = Graph::new("layer");
    let x = g.add_input("x", TensorType::f32([cols]));
    let weight = g.add_weight(w);
    let bias = bias
        .map(|b| g.add_weight(Weight::computed("b", TensorType::f32([rows]), b).expect("sized")));
    let h = g.add_node("h", Op::Dense(Dense { weight, bias }), &[x]);
    let out = if relu {
        g.add_node("y", Op::Relu, &[h])
    } else {
        h
    };
    g.add_output(out);
    g
}

/// Every traversal, forced, and the automatic choice.
const TRAVERSALS: [Traversal; 3] = [Traversal::Columns, Traversal::Rows, Traversal::Auto];

fn close(got: &[f32], want: &[f32]) -> Result<(), String> {
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        if (a - b).abs() > 1e-5 * b.abs().max(1e-30) && a != b {
            return Err(format!("output {i}: {a} vs interpreter {b}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_variant_matches_the_interpreter(
        rows in 1usize..70,
        cols in 1usize..90,
        weight_density in 0.0f64..1.0,
        activation_density in 0.0f64..1.0,
        coding in coding(),
        partition in proptest::option::of(1usize..9),
        with_bias in any::<bool>(),
        relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Lcg(seed);
        let mut w = weight(rows, cols, weight_density, coding, &mut rng);
        if let Some(pes) = partition {
            w.encoding.partition = Some(Partition { pes, scheme: PartitionScheme::Interleave });
        }
        let bias = with_bias.then(|| (0..rows).map(|_| rng.normal()).collect());
        let g = layer(w, bias, relu);
        let info = sprig_ir::verify(&g).expect("verifies");
        let x: Vec<f32> = (0..cols)
            .map(|_| if rng.next() < activation_density { rng.normal() } else { 0.0 })
            .collect();
        let input = [Tensor::new([cols], x)];
        let want = sprig_ir::interpret(&g, &info, &input).expect("runs");
        let mut first: Option<Vec<f32>> = None;
        for (isa, gathers) in variants() {
            Isa::force_gathers(Some(gathers));
            for threads in 1..=3 {
                for traversal in TRAVERSALS {
                    let options = Options { threads, isa, traversal };
                    let ex = Executor::new(&g, &info, &options).expect("packs");
                    let got = ex.run(&input).expect("runs");
                    prop_assert_eq!(&got[0].shape, &want[0].shape);
                    let at = format!("{isa} (fast gathers: {gathers}), {threads} threads, {} traversal, {coding:?}", traversal.name());
                    if let Err(e) = close(&got[0].data, &want[0].data) {
                        return Err(TestCaseError::fail(format!("{at}: {e}")));
                    }
                    // Bit-identical across variants, thread counts and traversals.
                    let bits: Vec<u32> = got[0].data.iter().map(|v| v.to_bits()).collect();
                    match &first {
                        Some(f) => prop_assert_eq!(
                            &bits,
                            &f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            "{}", at
                        ),
                        None => first = Some(got[0].data.clone()),
                    }
                }
            }
        }
    }
}

/// Long columns (more rows than a slice holds, so cut into many slices) and long rows with wide
/// gaps (windows a chunk has no entry in) exercise slice, chunk and window boundaries of every
/// variant in both traversals.
#[test]
fn long_sparse_columns_and_rows_with_padding() {
    let mut rng = Lcg(7);
    let shapes = [(9000, 3, 0.004), (5, 9000, 0.002), (4, 20000, 0.0002)];
    for ((rows, cols, density), coding) in shapes.into_iter().flat_map(|shape| {
        [
            Coding::Shared {
                bits: 4,
                pruned: true,
            },
            Coding::Shared {
                bits: 8,
                pruned: true,
            },
            Coding::Pruned,
        ]
        .map(|coding| (shape, coding))
    }) {
        let w = weight(rows, cols, density, coding, &mut rng);
        let g = layer(w, None, false);
        let info = sprig_ir::verify(&g).expect("verifies");
        let x = (0..cols).map(|_| rng.normal()).collect();
        let input = [Tensor::new([cols], x)];
        let want = sprig_ir::interpret(&g, &info, &input).expect("runs");
        for (isa, gathers) in variants() {
            Isa::force_gathers(Some(gathers));
            for traversal in TRAVERSALS {
                let options = Options {
                    threads: 2,
                    isa,
                    traversal,
                };
                let ex = Executor::new(&g, &info, &options).expect("packs");
                assert_eq!(
                    ex.run(&input).expect("runs"),
                    want,
                    "{isa} (fast gathers: {gathers}) {coding:?} {traversal:?}"
                );
            }
        }
    }
}

#[test]
fn forcing_an_unknown_variant_is_an_error() {
    assert!(Isa::forced("sse9").is_err());
    assert_eq!(Isa::forced("scalar").expect("always there"), Isa::Scalar);
}

/// 4-bit codes with at least one weight in eight non-zero are stored as dense codes, sparser ones
/// as sparse entries; both give the interpreter's bits in every variant, on row counts that fill
/// no whole band of 128 rows and with slices cut by a partition.
#[test]
fn dense_codes_from_one_weight_in_eight() {
    let mut rng = Lcg(11);
    let coding = Coding::Shared {
        bits: 4,
        pruned: true,
    };
    for (rows, cols, density, partition, kind) in [
        (300, 70, 0.30, None, "dense-code4"),
        (131, 9, 0.9, Some(7), "dense-code4"),
        (300, 70, 0.06, None, "sparse-code4"),
    ] {
        let mut w = weight(rows, cols, density, coding, &mut rng);
        if let Some(pes) = partition {
            w.encoding.partition = Some(Partition {
                pes,
                scheme: PartitionScheme::Interleave,
            });
        }
        let g = layer(w, None, true);
        let info = sprig_ir::verify(&g).expect("verifies");
        let x = (0..cols)
            .map(|_| if rng.next() < 0.5 { rng.normal() } else { 0.0 })
            .collect();
        let input = [Tensor::new([cols], x)];
        let want = sprig_ir::interpret(&g, &info, &input).expect("runs");
        for isa in Isa::supported() {
            for threads in 1..=3 {
                let options = Options {
                    threads,
                    isa,
                    traversal: Traversal::Auto,
                };
                let ex = Executor::new(&g, &info, &options).expect("packs");
                assert_eq!(ex.matrices()[0].matrix.kind().name(), kind);
                let got = ex.run(&input).expect("runs");
                let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got[0]),
                    bits(&want[0]),
                    "{isa} {threads} threads {kind}"
                );
            }
        }
    }
}
