//! Interpreter tests: every op on small cases whose expected values are worked out by hand (or by
//! an independent, naive re-implementation written here), input checking, and properties.

use super::*;
use crate::op::{
    Axis, BatchNorm, Constant, Conv2d, Dense, Dropout, Embedding, Flatten, Lstm, MatMul, Pool2d,
    Reshape, Transpose,
};
use crate::types::{DType, Shape};
use crate::verify::verify;
use crate::weights::Weight;
use proptest::prelude::*;

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::f32(dims.to_vec())
}

fn lit(g: &mut Graph, name: &str, dims: &[usize], values: &[f32]) -> WeightId {
    g.add_weight(Weight::literal(name, f32t(dims), values.to_vec()).expect("count matches"))
}

fn t(dims: &[usize], data: &[f32]) -> Tensor {
    Tensor::new(dims.to_vec(), data.to_vec())
}

/// Verifies and runs `g`; both must succeed.
fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    let info = verify(g).unwrap_or_else(|e| panic!("does not verify: {e:?}"));
    interpret(g, &info, inputs).unwrap_or_else(|e| panic!("does not run: {e}"))
}

/// Runs `op` on one f32 input `x` and returns the single output.
fn run_one(x: &Tensor, op: impl FnOnce(&mut Graph) -> Op) -> Tensor {
    let mut g = Graph::new("t");
    let xi = g.add_input("x", f32t(x.dims()));
    let op = op(&mut g);
    let y = g.add_node("y", op, &[xi]);
    g.add_output(y);
    run(&g, std::slice::from_ref(x)).remove(0)
}

fn assert_close(got: &Tensor, dims: &[usize], want: &[f64], tol: f64) {
    assert_eq!(got.dims(), dims, "shape");
    assert_eq!(got.data.len(), want.len(), "length");
    for (i, (&g, &w)) in got.data.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (all: {:?})",
            got.data
        );
    }
}

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

// ---- op by op ----

#[test]
fn dense_computes_w_x_plus_b() {
    let dense = |g: &mut Graph| {
        let weight = lit(g, "w", &[3, 2], &[1.0, 2.0, 3.0, 4.0, -1.0, 0.5]);
        let bias = Some(lit(g, "b", &[3], &[0.5, -1.0, 2.0]));
        Op::Dense(Dense { weight, bias })
    };
    // [1*1 + 2*2 + 0.5, 3*1 + 4*2 - 1, -1*1 + 0.5*2 + 2]
    let y = run_one(&t(&[2], &[1.0, 2.0]), dense);
    assert_eq!(y, t(&[3], &[5.5, 10.0, 2.0]));
    // Leading axes are rows: the second row is x = [0, -2].
    let y = run_one(&t(&[2, 2], &[1.0, 2.0, 0.0, -2.0]), dense);
    assert_eq!(
        y,
        t(
            &[2, 3],
            &[5.5, 10.0, 2.0, 0.0 - 4.0 + 0.5, -8.0 - 1.0, -1.0 + 2.0]
        )
    );
    // Without bias.
    let y = run_one(&t(&[2], &[1.0, 2.0]), |g| {
        let weight = lit(g, "w", &[1, 2], &[-3.0, 0.25]);
        Op::Dense(Dense { weight, bias: None })
    });
    assert_eq!(y, t(&[1], &[-3.0 + 0.5]));
}

#[test]
fn matmul_computes_x_w_plus_b() {
    // W is [in = 2, out = 3]: the transpose of the dense test's [3, 2] weight.
    let matmul = |g: &mut Graph| {
        let weight = lit(g, "w", &[2, 3], &[1.0, 3.0, -1.0, 2.0, 4.0, 0.5]);
        let bias = Some(lit(g, "b", &[3], &[0.5, -1.0, 2.0]));
        Op::MatMul(MatMul { weight, bias })
    };
    // [1*1 + 2*2 + 0.5, 1*3 + 2*4 - 1, 1*-1 + 2*0.5 + 2]
    let y = run_one(&t(&[2], &[1.0, 2.0]), matmul);
    assert_eq!(y, t(&[3], &[5.5, 10.0, 2.0]));
    // Leading axes are rows: the second row is x = [0, -2].
    let y = run_one(&t(&[2, 2], &[1.0, 2.0, 0.0, -2.0]), matmul);
    assert_eq!(
        y,
        t(
            &[2, 3],
            &[5.5, 10.0, 2.0, 0.0 - 4.0 + 0.5, -8.0 - 1.0, -1.0 + 2.0]
        )
    );
    // Without bias, one output column.
    let y = run_one(&t(&[2], &[1.0, 2.0]), |g| {
        let weight = lit(g, "w", &[2, 1], &[-3.0, 0.25]);
        Op::MatMul(MatMul { weight, bias: None })
    });
    assert_eq!(y, t(&[1], &[-3.0 + 0.5]));
}

proptest! {
    /// matmul over W equals dense over W^T bit for bit: both sum each output in increasing
    /// input index from zero and add the bias last.
    #[test]
    fn matmul_equals_dense_over_the_transpose(
        rows in 1usize..4,
        inp in 0usize..9,
        out in 0usize..9,
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        let w: Vec<f32> = (0..inp * out).map(|_| next()).collect();
        let b: Vec<f32> = (0..out).map(|_| next()).collect();
        let x = t(&[rows, inp], &(0..rows * inp).map(|_| next()).collect::<Vec<_>>());
        let mut wt = vec![0.0; inp * out];
        for k in 0..inp {
            for n in 0..out {
                wt[n * inp + k] = w[k * out + n];
            }
        }
        let via_matmul = run_one(&x, |g| {
            let weight = lit(g, "w", &[inp, out], &w);
            let bias = with_bias.then(|| lit(g, "b", &[out], &b));
            Op::MatMul(MatMul { weight, bias })
        });
        let via_dense = run_one(&x, |g| {
            let weight = lit(g, "wt", &[out, inp], &wt);
            let bias = with_bias.then(|| lit(g, "b", &[out], &b));
            Op::Dense(Dense { weight, bias })
        });
        prop_assert_eq!(via_matmul, via_dense);
    }
}

fn conv(weight: WeightId) -> Conv2d {
    Conv2d::new(weight, None)
}

/// x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]] as [1, 3, 3].
fn nine() -> Tensor {
    t(&[1, 3, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
}

#[test]
fn conv2d_cross_correlates() {
    // Kernel [[1, 2], [3, 4]] plus bias 10 (not flipped: cross-correlation).
    let y = run_one(&nine(), |g| {
        let bias = Some(lit(g, "b", &[1], &[10.0]));
        Op::Conv2d(Conv2d {
            bias,
            ..conv(lit(g, "w", &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]))
        })
    });
    let want = [
        1.0 * 1.0 + 2.0 * 2.0 + 3.0 * 4.0 + 4.0 * 5.0 + 10.0,
        1.0 * 2.0 + 2.0 * 3.0 + 3.0 * 5.0 + 4.0 * 6.0 + 10.0,
        1.0 * 4.0 + 2.0 * 5.0 + 3.0 * 7.0 + 4.0 * 8.0 + 10.0,
        1.0 * 5.0 + 2.0 * 6.0 + 3.0 * 8.0 + 4.0 * 9.0 + 10.0,
    ];
    assert_close(&y, &[1, 2, 2], &want, 0.0);
}

#[test]
fn conv2d_padding_and_stride() {
    // Padding 1 on every side, stride 2: the windows' top-left input cells are (-1, -1),
    // (-1, 1), (1, -1), (1, 1); padded cells are zero.
    let y = run_one(&nine(), |g| {
        Op::Conv2d(Conv2d {
            padding: [1; 4],
            stride: [2, 2],
            ..conv(lit(g, "w", &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]))
        })
    });
    let want = [
        4.0 * 1.0,
        3.0 * 2.0 + 4.0 * 3.0,
        2.0 * 4.0 + 4.0 * 7.0,
        1.0 * 5.0 + 2.0 * 6.0 + 3.0 * 8.0 + 4.0 * 9.0,
    ];
    assert_close(&y, &[1, 2, 2], &want, 0.0);
    // Asymmetric padding [t, l, b, r] = [0, 2, 0, 0] with a 1x1 kernel of 1: two zero columns on
    // the left.
    let y = run_one(&nine(), |g| {
        Op::Conv2d(Conv2d {
            padding: [0, 2, 0, 0],
            ..conv(lit(g, "w", &[1, 1, 1, 1], &[1.0]))
        })
    });
    let want = [0., 0., 1., 2., 3., 0., 0., 4., 5., 6., 0., 0., 7., 8., 9.];
    assert_close(&y, &[1, 3, 5], &want, 0.0);
}

#[test]
fn conv2d_dilation() {
    // A 2x2 kernel at dilation 2 reads the four corners of the 3x3 input.
    let y = run_one(&nine(), |g| {
        Op::Conv2d(Conv2d {
            dilation: [2, 2],
            ..conv(lit(g, "w", &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]))
        })
    });
    assert_close(
        &y,
        &[1, 1, 1],
        &[1.0 * 1.0 + 2.0 * 3.0 + 3.0 * 7.0 + 4.0 * 9.0],
        0.0,
    );
}

#[test]
fn conv2d_channels_groups_and_batch() {
    let x = t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    // Two input channels summed: ch0 + 10 * ch1.
    let y = run_one(&x, |g| {
        Op::Conv2d(conv(lit(g, "w", &[1, 2, 1, 1], &[1.0, 10.0])))
    });
    assert_close(&y, &[1, 2, 2], &[51., 62., 73., 84.], 0.0);
    // Two groups: each output channel sees only its own input channel.
    let y = run_one(&x, |g| {
        Op::Conv2d(Conv2d {
            groups: 2,
            ..conv(lit(g, "w", &[2, 1, 1, 1], &[2.0, -1.0]))
        })
    });
    assert_close(&y, &[2, 2, 2], &[2., 4., 6., 8., -5., -6., -7., -8.], 0.0);
    // Groups with 2 filters per group and a bias: out0 = ch0, out1 = 2 ch0, out2 = ch1 + 1,
    // out3 = -ch1 + 1.
    let y = run_one(&x, |g| {
        let bias = Some(lit(g, "b", &[4], &[0.0, 0.0, 1.0, 1.0]));
        Op::Conv2d(Conv2d {
            groups: 2,
            bias,
            ..conv(lit(g, "w", &[4, 1, 1, 1], &[1.0, 2.0, 1.0, -1.0]))
        })
    });
    let want = [
        1., 2., 3., 4., 2., 4., 6., 8., 6., 7., 8., 9., -4., -5., -6., -7.,
    ];
    assert_close(&y, &[4, 2, 2], &want, 0.0);
    // A batch axis: each image is convolved on its own.
    let xb = t(&[2, 1, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    let y = run_one(&xb, |g| {
        Op::Conv2d(conv(lit(g, "w", &[1, 1, 1, 2], &[1.0, -1.0])))
    });
    assert_close(&y, &[2, 1, 2, 1], &[-1., -1., -1., -1.], 0.0);
}

/// Naive conv2d over explicit 6-deep loops, for comparison on a bigger random-ish case.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f32],
    [c, h, w]: [usize; 3],
    k: &[f32],
    [o, kh, kw]: [usize; 3],
    stride: [usize; 2],
    pad: [usize; 4],
    dil: [usize; 2],
    groups: usize,
) -> (Vec<usize>, Vec<f64>) {
    let oh = (h + pad[0] + pad[2] - dil[0] * (kh - 1) - 1) / stride[0] + 1;
    let ow = (w + pad[1] + pad[3] - dil[1] * (kw - 1) - 1) / stride[1] + 1;
    let cg = c / groups;
    let mut out = vec![0.0f64; o * oh * ow];
    for oc in 0..o {
        let g = oc / (o / groups);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0.0f64;
                for cl in 0..cg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * stride[0] + ky * dil[0]) as i64 - pad[0] as i64;
                            let ix = (ox * stride[1] + kx * dil[1]) as i64 - pad[1] as i64;
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                continue;
                            }
                            let xv = x[((g * cg + cl) * h + iy as usize) * w + ix as usize];
                            let kv = k[((oc * cg + cl) * kh + ky) * kw + kx];
                            acc += xv as f64 * kv as f64;
                        }
                    }
                }
                out[(oc * oh + oy) * ow + ox] = acc;
            }
        }
    }
    (vec![o, oh, ow], out)
}

#[test]
fn conv2d_matches_naive_loops() {
    let (c, h, w, o, kh, kw) = (4, 7, 6, 6, 3, 2);
    let x: Vec<f32> = (0..c * h * w)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let k: Vec<f32> = (0..o * (c / 2) * kh * kw)
        .map(|i| ((i * 5 % 9) as f32 - 4.0) / 8.0)
        .collect();
    for (stride, pad, dil) in [
        ([1, 1], [0; 4], [1, 1]),
        ([2, 1], [1, 2, 0, 1], [1, 1]),
        ([1, 3], [2, 0, 1, 3], [2, 1]),
        ([3, 2], [1; 4], [2, 3]),
    ] {
        let y = run_one(&t(&[c, h, w], &x), |g| {
            Op::Conv2d(Conv2d {
                stride,
                padding: pad,
                dilation: dil,
                groups: 2,
                ..conv(lit(g, "w", &[o, c / 2, kh, kw], &k))
            })
        });
        let (dims, want) = naive_conv(&x, [c, h, w], &k, [o, kh, kw], stride, pad, dil, 2);
        assert_close(&y, &dims, &want, 1e-6);
    }
}

#[test]
fn unary_activations() {
    let x = t(&[4], &[-2.0, 0.0, 3.0_f32.ln(), 2.0_f32.ln()]);
    assert_eq!(
        run_one(&x, |_| Op::Relu).data,
        [0.0, 0.0, 3.0_f32.ln(), 2.0_f32.ln()]
    );
    // sigmoid(ln 3) = 1 / (1 + 1/3) = 0.75; tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 0.6.
    assert_close(
        &run_one(&x, |_| Op::Sigmoid),
        &[4],
        &[1.0 / (1.0 + 2.0_f64.exp()), 0.5, 0.75, 1.0 / (1.0 + 0.5)],
        1e-6,
    );
    assert_close(
        &run_one(&x, |_| Op::Tanh),
        &[4],
        &[
            -(4.0_f64.exp() - 1.0) / (4.0_f64.exp() + 1.0),
            0.0,
            (3.0 - 1.0 / 3.0) / (3.0 + 1.0 / 3.0),
            0.6,
        ],
        1e-6,
    );
    assert_eq!(run_one(&x, |_| Op::Identity), x);
    assert_eq!(run_one(&x, |_| Op::Dropout(Dropout { ratio: 0.5 })), x);
    let nan = run_one(&t(&[1], &[f32::NAN]), |_| Op::Relu);
    assert!(nan.data[0].is_nan(), "relu propagates NaN");
}

#[test]
fn softmax_and_log_softmax() {
    let ln3 = 3.0_f32.ln();
    // Along axis 0 of [[0, 0], [ln 3, 0]]: columns [1, 3] / 4 and [1, 1] / 2.
    let x = t(&[2, 2], &[0.0, 0.0, ln3, 0.0]);
    let y = run_one(&x, |_| Op::Softmax(Axis { axis: 0 }));
    assert_close(&y, &[2, 2], &[0.25, 0.5, 0.75, 0.5], 1e-6);
    let y = run_one(&x, |_| Op::LogSoftmax(Axis { axis: -2 }));
    assert_close(
        &y,
        &[2, 2],
        &[0.25f64.ln(), 0.5f64.ln(), 0.75f64.ln(), 0.5f64.ln()],
        1e-6,
    );
    // Along the last axis (default), with values that overflow exp unless shifted by the max.
    let big = 1000.0 + ln3;
    let x = t(&[2, 3], &[1000.0, 1000.0, big, -1.0, 0.0, 1.0]);
    let y = run_one(&x, |_| Op::Softmax(Axis { axis: -1 }));
    // `big - 1000` is ln 3 up to f32 rounding at 1000; use the exact difference.
    let d = (big - 1000.0) as f64;
    let r = 2.0 + d.exp();
    let e = std::f64::consts::E;
    let s = 1.0 / e + 1.0 + e;
    let want = [1.0 / r, 1.0 / r, d.exp() / r, 1.0 / e / s, 1.0 / s, e / s];
    assert_close(&y, &[2, 3], &want, 1e-6);
    let y = run_one(&x, |_| Op::LogSoftmax(Axis { axis: 1 }));
    let want = [
        -r.ln(),
        -r.ln(),
        d - r.ln(),
        -1.0 - s.ln(),
        -s.ln(),
        1.0 - s.ln(),
    ];
    assert_close(&y, &[2, 3], &want, 1e-6);
}

fn pool(kernel: usize, stride: usize, padding: [usize; 4], count_include_pad: bool) -> Pool2d {
    Pool2d {
        kernel: [kernel, kernel],
        stride: [stride, stride],
        padding,
        count_include_pad,
    }
}

#[test]
fn max_pooling() {
    let x = t(&[1, 4, 4], &(1..=16).map(|v| v as f32).collect::<Vec<_>>());
    let y = run_one(&x, |_| Op::MaxPool2d(pool(2, 2, [0; 4], false)));
    assert_eq!(y, t(&[1, 2, 2], &[6.0, 8.0, 14.0, 16.0]));
    // Padding acts as -inf: on all-negative values a padded cell never wins.
    let neg = t(
        &[1, 3, 3],
        &(1..=9).map(|v| -(v as f32)).collect::<Vec<_>>(),
    );
    let y = run_one(&neg, |_| Op::MaxPool2d(pool(2, 2, [1; 4], false)));
    // Windows: {-1}, {-2, -3}, {-4, -7}, {-5, -6, -8, -9}.
    assert_eq!(y, t(&[1, 2, 2], &[-1.0, -2.0, -4.0, -5.0]));
    // Overlapping windows (3x3, stride 1) with a batch axis.
    let y = run_one(&t(&[2, 1, 3, 3], &[nine().data, neg.data].concat()), |_| {
        Op::MaxPool2d(pool(3, 1, [0; 4], false))
    });
    assert_eq!(y, t(&[2, 1, 1, 1], &[9.0, -1.0]));
}

#[test]
fn average_pooling() {
    let neg = t(
        &[1, 3, 3],
        &(1..=9).map(|v| -(v as f32)).collect::<Vec<_>>(),
    );
    // Windows as in max_pooling; divisors are the real cells, or 4 with count_include_pad.
    let y = run_one(&neg, |_| Op::AvgPool2d(pool(2, 2, [1; 4], false)));
    assert_close(
        &y,
        &[1, 2, 2],
        &[-1.0, -5.0 / 2.0, -11.0 / 2.0, -28.0 / 4.0],
        0.0,
    );
    let y = run_one(&neg, |_| Op::AvgPool2d(pool(2, 2, [1; 4], true)));
    assert_close(
        &y,
        &[1, 2, 2],
        &[-1.0 / 4.0, -5.0 / 4.0, -11.0 / 4.0, -28.0 / 4.0],
        0.0,
    );
    let y = run_one(&nine(), |_| Op::AvgPool2d(pool(2, 1, [0; 4], false)));
    assert_close(
        &y,
        &[1, 2, 2],
        &[12.0 / 4.0, 16.0 / 4.0, 24.0 / 4.0, 28.0 / 4.0],
        0.0,
    );
}

#[test]
fn flatten_reshape_transpose() {
    let x = t(&[2, 3], &[0., 1., 2., 3., 4., 5.]);
    let y = run_one(&x, |_| Op::Flatten(Flatten { axis: 0 }));
    assert_eq!(y, t(&[6], &x.data));
    let y = run_one(&x, |_| Op::Reshape(Reshape { shape: vec![3, -1] }));
    assert_eq!(y, t(&[3, 2], &x.data));
    let y = run_one(&x, |_| Op::Transpose(Transpose { perm: vec![] }));
    assert_eq!(y, t(&[3, 2], &[0., 3., 1., 4., 2., 5.]));
    // perm [1, 2, 0] on x[a, b, c] = 100a + 10b + c: y[b, c, a] = x[a, b, c].
    let mut data = Vec::new();
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                data.push((100 * a + 10 * b + c) as f32);
            }
        }
    }
    let y = run_one(&t(&[2, 3, 4], &data), |_| {
        Op::Transpose(Transpose {
            perm: vec![1, 2, 0],
        })
    });
    assert_eq!(y.dims(), [3, 4, 2]);
    for b in 0..3 {
        for c in 0..4 {
            for a in 0..2 {
                assert_eq!(y.data[(b * 4 + c) * 2 + a], (100 * a + 10 * b + c) as f32);
            }
        }
    }
}

fn run_binary(op: Op, a: &Tensor, b: &Tensor) -> Tensor {
    let mut g = Graph::new("t");
    let ai = g.add_input("a", f32t(a.dims()));
    let bi = g.add_input("b", f32t(b.dims()));
    let z = g.add_node("z", op, &[ai, bi]);
    g.add_output(z);
    run(&g, &[a.clone(), b.clone()]).remove(0)
}

#[test]
fn binary_ops_broadcast() {
    let m = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let row = t(&[3], &[10., 20., 30.]);
    assert_eq!(
        run_binary(Op::Add, &m, &row),
        t(&[2, 3], &[11., 22., 33., 14., 25., 36.])
    );
    assert_eq!(
        run_binary(Op::Sub, &row, &m),
        t(&[2, 3], &[9., 18., 27., 6., 15., 24.])
    );
    let col = t(&[2, 1], &[2., -1.]);
    assert_eq!(
        run_binary(Op::Mul, &m, &col),
        t(&[2, 3], &[2., 4., 6., -4., -5., -6.])
    );
    assert_eq!(
        run_binary(Op::Div, &m, &t(&[], &[2.0])),
        t(&[2, 3], &[0.5, 1., 1.5, 2., 2.5, 3.])
    );
    // An outer product from [2, 1] x [1, 3].
    let r = t(&[1, 3], &[1., 2., 3.]);
    assert_eq!(
        run_binary(Op::Mul, &col, &r),
        t(&[2, 3], &[2., 4., 6., -1., -2., -3.])
    );
}

#[test]
fn concat_joins_along_the_axis() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[2, 2]));
    let b = g.add_input("b", f32t(&[2, 1]));
    let cols = g.add_node("cols", Op::Concat(Axis { axis: -1 }), &[a, b, a]);
    let rows = g.add_node("rows", Op::Concat(Axis { axis: 0 }), &[a, a]);
    g.add_output(cols);
    g.add_output(rows);
    let out = run(&g, &[t(&[2, 2], &[1., 2., 3., 4.]), t(&[2, 1], &[5., 6.])]);
    assert_eq!(
        out[0],
        t(&[2, 5], &[1., 2., 5., 1., 2., 3., 4., 6., 3., 4.])
    );
    assert_eq!(out[1], t(&[4, 2], &[1., 2., 3., 4., 1., 2., 3., 4.]));
}

#[test]
fn batchnorm_normalises_per_channel() {
    // Channel 0: 3 (x - 1) / sqrt(3 + 1) + 1; channel 1: 1 (x + 1) / sqrt(0 + 1) + 0.
    let x = t(&[2, 2], &[3.0, 5.0, 0.0, 2.0]);
    let y = run_one(&x, |g| {
        Op::BatchNorm(BatchNorm {
            scale: lit(g, "scale", &[2], &[3.0, 1.0]),
            bias: lit(g, "bias", &[2], &[1.0, 0.0]),
            mean: lit(g, "mean", &[2], &[1.0, -1.0]),
            var: lit(g, "var", &[2], &[3.0, 0.0]),
            epsilon: 1.0,
            axis: 0,
        })
    });
    assert_close(
        &y,
        &[2, 2],
        &[3.0 * 2.0 / 2.0 + 1.0, 3.0 * 4.0 / 2.0 + 1.0, 1.0, 3.0],
        1e-6,
    );
    // Along axis 1 of [1, 2, 2] (channels in the middle).
    let x = t(&[1, 2, 2], &[3.0, 5.0, 0.0, 2.0]);
    let y = run_one(&x, |g| {
        Op::BatchNorm(BatchNorm {
            scale: lit(g, "scale", &[2], &[2.0, 2.0]),
            bias: lit(g, "bias", &[2], &[0.0, 0.0]),
            mean: lit(g, "mean", &[2], &[0.0, 0.0]),
            var: lit(g, "var", &[2], &[1.0, 0.25]),
            epsilon: 0.0,
            axis: 1,
        })
    });
    // Channel 0: 2 x / sqrt(1); channel 1: 2 x / sqrt(0.25).
    assert_close(&y, &[1, 2, 2], &[6.0, 10.0, 0.0, 8.0], 0.0);
}

#[test]
fn constant_and_embedding() {
    let mut g = Graph::new("t");
    let ids = g.add_input("ids", TensorType::new(DType::I64, [2, 2]));
    let table = lit(&mut g, "table", &[3, 2], &[0., 1., 10., 11., 20., 21.]);
    let c = lit(&mut g, "c", &[2], &[7., 8.]);
    let e = g.add_node("e", Op::Embedding(Embedding { table }), &[ids]);
    let k = g.add_node("k", Op::Constant(Constant { value: c }), &[]);
    g.add_output(e);
    g.add_output(k);
    let out = run(&g, &[t(&[2, 2], &[2., 0., 2., 1.])]);
    assert_eq!(
        out[0],
        t(&[2, 2, 2], &[20., 21., 0., 1., 20., 21., 10., 11.])
    );
    assert_eq!(out[1], t(&[2], &[7., 8.]));

    let info = verify(&g).expect("verifies");
    for (bad, pos) in [(3.0, 1), (-1.0, 0), (1.5, 3), (f32::NAN, 2)] {
        let mut ids = vec![0.0; 4];
        ids[pos] = bad;
        match interpret(&g, &info, &[t(&[2, 2], &ids)]) {
            Err(InterpError::Index {
                node,
                indices,
                position,
                rows,
                table,
                index,
            }) => {
                assert_eq!(
                    (
                        node.as_str(),
                        indices.as_str(),
                        position,
                        rows,
                        table.as_str()
                    ),
                    ("e", "ids", pos, 3, "table")
                );
                assert!(index.to_bits() == bad.to_bits());
            }
            other => panic!("expected an index error, got {other:?}"),
        }
    }
    let err =
        interpret(&g, &info, &[t(&[2, 2], &[0., 3., 0., 0.])]).expect_err("3 is out of range");
    assert_eq!(
        err.to_string(),
        "embedding `e`: index 3 at position 1 of `ids` is not a row of @table, which has 3 rows"
    );
}

// ---- LSTM ----

/// The LSTM with input size 1 and hidden size 1 used by the hand-computed test.
fn tiny_lstm(g: &mut Graph, with_state: bool) -> Op {
    // Gate blocks i, o, f, c.
    let w = lit(g, "w", &[4, 1], &[0.5, -0.25, 0.75, 1.0]);
    let r = lit(g, "r", &[4, 1], &[0.1, 0.2, -0.3, 0.4]);
    // Wb (i, o, f, c) then Rb (i, o, f, c).
    let b = lit(g, "b", &[8], &[0.1, 0.2, 0.3, 0.4, -0.1, 0.05, 0.0, 0.2]);
    let (h0, c0) = if with_state {
        (
            Some(lit(g, "h0", &[1], &[0.5])),
            Some(lit(g, "c0", &[1], &[-1.0])),
        )
    } else {
        (None, None)
    };
    Op::Lstm(Lstm {
        w,
        r,
        b: Some(b),
        h0,
        c0,
        last: false,
    })
}

#[test]
fn lstm_hidden_one_by_hand() {
    let x = t(&[2, 1], &[1.0, -2.0]);
    let y = run_one(&x, |g| tiny_lstm(g, false));

    // Step 1: x = 1, h0 = 0, c0 = 0.
    // gate = W x + Wb + R h + Rb
    let i1 = sigmoid64(0.5 * 1.0 + 0.1 + 0.1 * 0.0 - 0.1);
    let o1 = sigmoid64(-0.25 * 1.0 + 0.2 + 0.2 * 0.0 + 0.05);
    let f1 = sigmoid64(0.75 * 1.0 + 0.3 + -0.3 * 0.0 + 0.0);
    let g1 = (1.0 * 1.0 + 0.4 + 0.4 * 0.0 + 0.2_f64).tanh();
    let c1 = f1 * 0.0 + i1 * g1;
    let h1 = o1 * c1.tanh();
    // Step 2: x = -2, h1, c1.
    let i2 = sigmoid64(0.5 * -2.0 + 0.1 + 0.1 * h1 - 0.1);
    let o2 = sigmoid64(-0.25 * -2.0 + 0.2 + 0.2 * h1 + 0.05);
    let f2 = sigmoid64(0.75 * -2.0 + 0.3 + -0.3 * h1 + 0.0);
    let g2 = (1.0 * -2.0 + 0.4 + 0.4 * h1 + 0.2_f64).tanh();
    let c2 = f2 * c1 + i2 * g2;
    let h2 = o2 * c2.tanh();
    assert_close(&y, &[2, 1], &[h1, h2], 1e-6);
    // Spot values, so a change to the formulas above cannot go unnoticed.
    assert!((h1 - 0.259_04).abs() < 1e-4, "h1 = {h1}");
    assert!((h2 - -0.076_23).abs() < 1e-4, "h2 = {h2}");

    // With initial state h0 = 0.5, c0 = -1, one step.
    let y = run_one(&t(&[1, 1], &[1.0]), |g| tiny_lstm(g, true));
    let i = sigmoid64(0.5 + 0.1 + 0.1 * 0.5 - 0.1);
    let o = sigmoid64(-0.25 + 0.2 + 0.2 * 0.5 + 0.05);
    let f = sigmoid64(0.75 + 0.3 + -0.3 * 0.5 + 0.0);
    let g = (1.0 + 0.4 + 0.4 * 0.5 + 0.2_f64).tanh();
    let c0 = -1.0;
    let c = f * c0 + i * g;
    assert_close(&y, &[1, 1], &[o * c.tanh()], 1e-6);
}

/// A straightforward LSTM in f64 over explicit matrices: `w[j][k]`, `r[j][k]`, `b[j]`.
fn reference_lstm(
    xs: &[Vec<f64>],
    w: &[Vec<f64>],
    r: &[Vec<f64>],
    b: &[f64],
    h0: &[f64],
    c0: &[f64],
) -> Vec<Vec<f64>> {
    let hidden = h0.len();
    let (mut h, mut c) = (h0.to_vec(), c0.to_vec());
    let mut out = Vec::new();
    for x in xs {
        let mut gate = vec![0.0; 4 * hidden];
        for (j, gj) in gate.iter_mut().enumerate() {
            let wx: f64 = w[j].iter().zip(x).map(|(a, b)| a * b).sum();
            let rh: f64 = r[j].iter().zip(&h).map(|(a, b)| a * b).sum();
            *gj = wx + b[j] + rh + b[4 * hidden + j];
        }
        let (gi, rest) = gate.split_at(hidden);
        let (go, rest) = rest.split_at(hidden);
        let (gf, gc) = rest.split_at(hidden);
        for k in 0..hidden {
            c[k] = sigmoid64(gf[k]) * c[k] + sigmoid64(gi[k]) * gc[k].tanh();
            h[k] = sigmoid64(go[k]) * c[k].tanh();
        }
        out.push(h.clone());
    }
    out
}

#[test]
fn lstm_hidden_two_matches_reference() {
    let (seq, inp, hidden) = (4, 3, 2);
    let val = |i: usize, scale: f64| ((i as f64 * 1.7 + 0.3).sin() * scale) as f32;
    let w: Vec<f32> = (0..4 * hidden * inp).map(|i| val(i, 0.8)).collect();
    let r: Vec<f32> = (0..4 * hidden * hidden)
        .map(|i| val(i + 100, 0.6))
        .collect();
    let b: Vec<f32> = (0..8 * hidden).map(|i| val(i + 200, 0.3)).collect();
    let h0 = [0.2f32, -0.4];
    let c0 = [-0.3f32, 0.7];
    let xs: Vec<f32> = (0..seq * inp).map(|i| val(i + 300, 1.5)).collect();

    let rows = |v: &[f32], n: usize| -> Vec<Vec<f64>> {
        v.chunks(n)
            .map(|c| c.iter().map(|&x| x as f64).collect())
            .collect()
    };
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let want = reference_lstm(
        &rows(&xs, inp),
        &rows(&w, inp),
        &rows(&r, hidden),
        &to64(&b),
        &to64(&h0),
        &to64(&c0),
    );
    let want: Vec<f64> = want.concat();

    let lstm = |batched_state: bool| {
        let (w, r, b) = (w.clone(), r.clone(), b.clone());
        move |g: &mut Graph| {
            let state: &[usize] = if batched_state { &[1, 2] } else { &[2] };
            Op::Lstm(Lstm {
                w: lit(g, "w", &[4 * hidden, inp], &w),
                r: lit(g, "r", &[4 * hidden, hidden], &r),
                b: Some(lit(g, "b", &[8 * hidden], &b)),
                h0: Some(lit(g, "h0", state, &h0)),
                c0: Some(lit(g, "c0", state, &c0)),
                last: false,
            })
        }
    };
    // Batch 1 with a batch axis, with [h] and with [batch, h] initial states.
    let y = run_one(&t(&[seq, 1, inp], &xs), lstm(false));
    assert_close(&y, &[seq, 1, hidden], &want, 1e-5);
    let y = run_one(&t(&[seq, 1, inp], &xs), lstm(true));
    assert_close(&y, &[seq, 1, hidden], &want, 1e-5);
    // Without a batch axis.
    let y = run_one(&t(&[seq, inp], &xs), lstm(false));
    assert_close(&y, &[seq, hidden], &want, 1e-5);
}

#[test]
fn stacked_lstm_matches_reference() {
    let (seq, inp, hidden) = (5, 3, 2);
    let val = |i: usize, scale: f64| ((i as f64 * 1.3 + 0.7).sin() * scale) as f32;
    let w: Vec<f32> = (0..4 * hidden * inp).map(|i| val(i, 0.8)).collect();
    let r: Vec<f32> = (0..4 * hidden * hidden)
        .map(|i| val(i + 100, 0.6))
        .collect();
    let b: Vec<f32> = (0..8 * hidden).map(|i| val(i + 200, 0.3)).collect();
    let xs: Vec<f32> = (0..seq * inp).map(|i| val(i + 300, 1.5)).collect();
    // Row j of the stacked matrix is [W[j, :], R[j, :], Wb[j] + Rb[j]].
    let width = inp + hidden + 1;
    let mut stacked = Vec::with_capacity(4 * hidden * width);
    for j in 0..4 * hidden {
        stacked.extend_from_slice(&w[j * inp..(j + 1) * inp]);
        stacked.extend_from_slice(&r[j * hidden..(j + 1) * hidden]);
        stacked.push(b[j] + b[4 * hidden + j]);
    }
    let rows = |v: &[f32], n: usize| -> Vec<Vec<f64>> {
        v.chunks(n)
            .map(|c| c.iter().map(|&x| x as f64).collect())
            .collect()
    };
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let h0 = [0.25f32, -0.5];
    let c0 = [0.4f32, -0.1];
    let want = reference_lstm(
        &rows(&xs, inp),
        &rows(&w, inp),
        &rows(&r, hidden),
        &to64(&b),
        &to64(&h0),
        &to64(&c0),
    )
    .concat();
    let stacked_op = |last: bool| {
        let stacked = stacked.clone();
        move |g: &mut Graph| {
            Op::LstmStacked(crate::op::LstmStacked {
                weight: lit(g, "wrb", &[4 * hidden, width], &stacked),
                h0: Some(lit(g, "h0", &[hidden], &h0)),
                c0: Some(lit(g, "c0", &[hidden], &c0)),
                last,
            })
        }
    };
    let y = run_one(&t(&[seq, inp], &xs), stacked_op(false));
    assert_close(&y, &[seq, hidden], &want, 1e-5);
    let y = run_one(&t(&[seq, 1, inp], &xs), stacked_op(true));
    assert_close(&y, &[1, hidden], &want[(seq - 1) * hidden..], 1e-5);
}

#[test]
fn lstm_batch_rows_are_independent() {
    // Two batch rows with different inputs give the outputs of two separate runs.
    let xs = [0.5f32, -1.0, 2.0, 0.25, -0.5, 1.0];
    let batched = run_one(&t(&[3, 2, 1], &xs), |g| tiny_lstm(g, false));
    let first = run_one(&t(&[3, 1], &[xs[0], xs[2], xs[4]]), |g| tiny_lstm(g, false));
    let second = run_one(&t(&[3, 1], &[xs[1], xs[3], xs[5]]), |g| tiny_lstm(g, false));
    for s in 0..3 {
        assert_eq!(batched.data[2 * s], first.data[s]);
        assert_eq!(batched.data[2 * s + 1], second.data[s]);
    }
}

// ---- running whole graphs ----

#[test]
fn small_convnet_runs_end_to_end() {
    // conv(1 -> 2, 3x3) -> relu -> maxpool 2x2 -> flatten -> dense(8 -> 3) -> softmax.
    let mut g = Graph::new("net");
    let x = g.add_input("x", f32t(&[1, 6, 6]));
    let cw: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect();
    let cw = lit(&mut g, "conv.weight", &[2, 1, 3, 3], &cw);
    let cb = lit(&mut g, "conv.bias", &[2], &[0.1, -0.1]);
    let dw: Vec<f32> = (0..24).map(|i| ((i * 7 % 5) as f32 - 2.0) / 3.0).collect();
    let dw = lit(&mut g, "fc.weight", &[3, 8], &dw);
    let c = g.add_node(
        "c",
        Op::Conv2d(Conv2d {
            bias: Some(cb),
            ..conv(cw)
        }),
        &[x],
    );
    let r = g.add_node("r", Op::Relu, &[c]);
    let p = g.add_node("p", Op::MaxPool2d(pool(2, 2, [0; 4], false)), &[r]);
    let f = g.add_node("f", Op::Flatten(Flatten { axis: 0 }), &[p]);
    let d = g.add_node(
        "d",
        Op::Dense(Dense {
            weight: dw,
            bias: None,
        }),
        &[f],
    );
    let s = g.add_node("s", Op::Softmax(Axis { axis: -1 }), &[d]);
    g.add_output(s);
    g.add_output(p);
    let input: Vec<f32> = (0..36).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
    let out = run(&g, &[t(&[1, 6, 6], &input)]);
    assert_eq!(out[0].dims(), [3]);
    assert!((out[0].data.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert_eq!(out[1].dims(), [2, 2, 2]);
    assert!(out[1].data.iter().all(|&v| v >= 0.0));
}

#[test]
fn outputs_used_later_are_kept_and_repeated_outputs_returned() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2]));
    let y = g.add_node("y", Op::Relu, &[x]);
    let z = g.add_node("z", Op::Mul, &[y, y]);
    g.add_output(y);
    g.add_output(z);
    g.add_output(y);
    g.add_output(x);
    let out = run(&g, &[t(&[2], &[-1.0, 3.0])]);
    assert_eq!(
        out,
        vec![
            t(&[2], &[0.0, 3.0]),
            t(&[2], &[0.0, 9.0]),
            t(&[2], &[0.0, 3.0]),
            t(&[2], &[-1.0, 3.0])
        ]
    );
}

#[test]
fn inputs_are_checked() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2, 3]));
    let y = g.add_node("y", Op::Relu, &[x]);
    g.add_output(y);
    let info = verify(&g).expect("verifies");
    assert_eq!(
        interpret(&g, &info, &[]),
        Err(InterpError::Input(
            "the network takes 1 input(s) but 0 tensor(s) were given".to_string()
        ))
    );
    assert_eq!(
        interpret(&g, &info, &[t(&[3, 2], &[0.0; 6])]),
        Err(InterpError::Input(
            "input `x` is declared f32[2, 3] but the tensor given has shape [3, 2]".to_string()
        ))
    );
    let malformed = Tensor {
        shape: Shape::new([2, 3]),
        data: vec![0.0; 5],
    };
    assert_eq!(
        interpret(&g, &info, &[malformed]),
        Err(InterpError::Input(
            "the tensor given for input `x` has shape [2, 3] but holds 5 values".to_string()
        ))
    );
}

#[test]
fn a_graph_changed_after_verification_is_refused_not_run() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[4]));
    let w = lit(&mut g, "w", &[2, 4], &[0.0; 8]);
    let d = g.add_node(
        "d",
        Op::Dense(Dense {
            weight: w,
            bias: None,
        }),
        &[x],
    );
    g.add_output(d);
    let info = verify(&g).expect("verifies");
    g.weights.get_mut(w).ty = f32t(&[2, 5]);
    let err = interpret(&g, &info, &[t(&[4], &[1.0; 4])]).expect_err("stale info");
    assert!(matches!(err, InterpError::Unverified(_)), "{err}");

    let mut g2 = g.clone();
    g2.weights.get_mut(w).ty = f32t(&[3, 4]);
    let err = interpret(&g2, &info, &[t(&[4], &[1.0; 4])]).expect_err("stale info");
    assert!(matches!(err, InterpError::Unverified(_)), "{err}");
}

#[test]
fn empty_results_are_computed_without_work() {
    // A zero-row batch through dense, and a zero-channel conv.
    let y = run_one(&t(&[0, 4], &[]), |g| {
        Op::Dense(Dense {
            weight: lit(g, "w", &[3, 4], &[0.0; 12]),
            bias: None,
        })
    });
    assert_eq!(y, t(&[0, 3], &[]));
    // Zero input features: dense gives its bias.
    let y = run_one(&t(&[0], &[]), |g| {
        Op::Dense(Dense {
            weight: lit(g, "w", &[2, 0], &[]),
            bias: Some(lit(g, "b", &[2], &[1.0, 2.0])),
        })
    });
    assert_eq!(y, t(&[2], &[1.0, 2.0]));
    // Zero input channels: conv gives its bias everywhere.
    let y = run_one(&t(&[0, 2, 2], &[]), |g| {
        Op::Conv2d(Conv2d {
            bias: Some(lit(g, "b", &[1], &[5.0])),
            ..conv(lit(g, "w", &[1, 0, 1, 1], &[]))
        })
    });
    assert_eq!(y, t(&[1, 2, 2], &[5.0; 4]));
}

// ---- properties ----

/// A shape and two shapes that broadcast to it: each axis of each operand is kept or set to 1,
/// and leading axes may be dropped.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec((1usize..4, any::<bool>(), any::<bool>()), 0..5)
        .prop_flat_map(|axes| {
            let rank = axes.len();
            (Just(axes), 0..=rank, 0..=rank)
        })
        .prop_map(|(axes, drop_a, drop_b)| {
            let out: Vec<usize> = axes.iter().map(|a| a.0).collect();
            let a: Vec<usize> = axes
                .iter()
                .map(|&(d, one, _)| if one { 1 } else { d })
                .collect();
            let b: Vec<usize> = axes
                .iter()
                .map(|&(d, _, one)| if one { 1 } else { d })
                .collect();
            // The result keeps an axis only if one operand still has it at full size.
            let out: Vec<usize> = out
                .iter()
                .enumerate()
                .map(|(k, &d)| {
                    let in_a = k >= drop_a && a[k] == d;
                    let in_b = k >= drop_b && b[k] == d;
                    if in_a || in_b { d } else { 1 }
                })
                .collect();
            // Axes both operands lack are not in the result either.
            let lead = drop_a.min(drop_b);
            (
                a[drop_a..].to_vec(),
                b[drop_b..].to_vec(),
                out[lead..].to_vec(),
            )
        })
}

proptest! {
    #[test]
    fn add_inferred_shape_equals_interpreted_shape((a, b, out) in broadcast_pair()) {
        let mut g = Graph::new("t");
        let ai = g.add_input("a", f32t(&a));
        let bi = g.add_input("b", f32t(&b));
        let z = g.add_node("z", Op::Add, &[ai, bi]);
        g.add_output(z);
        let info = verify(&g).expect("broadcastable");
        let av: Vec<f32> = (0..a.iter().product::<usize>()).map(|i| i as f32).collect();
        let bv: Vec<f32> = (0..b.iter().product::<usize>()).map(|i| 1000.0 * i as f32).collect();
        let y = interpret(&g, &info, &[t(&a, &av), t(&b, &bv)]).expect("runs").remove(0);
        prop_assert_eq!(&info.ty(z).shape, &y.shape);
        prop_assert_eq!(y.dims(), &out[..]);
        // Each element is a[index clipped to a's shape] + b[likewise], computed from scratch.
        let rank = out.len();
        for (flat, &v) in y.data.iter().enumerate() {
            let mut index = vec![0; rank];
            let mut rest = flat;
            for k in (0..rank).rev() {
                index[k] = rest % out[k];
                rest /= out[k];
            }
            let offset = |dims: &[usize]| {
                let lead = rank - dims.len();
                dims.iter().enumerate().fold(0, |acc, (k, &d)| acc * d + if d == 1 { 0 } else { index[lead + k] })
            };
            prop_assert_eq!(v, av[offset(&a)] + bv[offset(&b)]);
        }
    }
}

/// Small garbage: any op, any attributes and weight shapes from small ranges (zeros included).
/// With `fit`, weight shapes are derived from the input's shape so that they often match.
fn garbage_op(
    g: &mut Graph,
    kind: usize,
    x: &[usize],
    n: &[usize],
    random: &[Vec<usize>],
    fit: bool,
) -> Op {
    let mut weight = |k: usize, fitted: Vec<usize>| {
        let dims = if fit {
            fitted
        } else {
            random[k % random.len()].clone()
        };
        let len = dims.iter().product();
        let values = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
        g.add_weight(Weight::literal(format!("w{k}"), f32t(&dims), values).expect("count matches"))
    };
    let pair = |i: usize| [n[i], n[i + 1]];
    let quad = |i: usize| [n[i], n[i + 1], n[i + 2], n[i + 3]];
    let signed = |i: usize| n[i] as i64 - 2;
    let rank = x.len();
    let last = x.last().copied().unwrap_or(1);
    let channels = if rank >= 3 { x[rank - 3] } else { 1 };
    let maybe = |yes: bool, id: WeightId| yes.then_some(id);
    match kind % 19 {
        0 => {
            let weight_id = weight(0, vec![n[1], last]);
            let bias = weight(1, vec![n[1]]);
            Op::Dense(Dense {
                weight: weight_id,
                bias: maybe(n[0].is_multiple_of(2), bias),
            })
        }
        1 => {
            let groups = if fit { 1 + n[9] % 2 } else { n[9] };
            let per_group = channels / groups.max(1);
            let weight_id = weight(
                0,
                vec![
                    groups.max(1) * (1 + n[0] % 2),
                    per_group,
                    1 + n[1] % 3,
                    1 + n[2] % 3,
                ],
            );
            let bias = weight(1, vec![groups.max(1) * (1 + n[0] % 2)]);
            Op::Conv2d(Conv2d {
                weight: weight_id,
                bias: maybe(n[3].is_multiple_of(2), bias),
                stride: if fit {
                    [1 + n[1] % 2, 1 + n[4] % 2]
                } else {
                    pair(1)
                },
                padding: quad(3),
                dilation: if fit { [1 + n[7] % 2, 1] } else { pair(7) },
                groups,
            })
        }
        2 => Op::Relu,
        3 => Op::Softmax(Axis { axis: signed(0) }),
        4 => Op::LogSoftmax(Axis { axis: signed(1) }),
        5 | 6 => {
            let pool = Pool2d {
                kernel: if fit {
                    [1 + n[0] % 2, 1 + n[1] % 2]
                } else {
                    pair(0)
                },
                stride: if fit {
                    [1 + n[2] % 2, 1 + n[3] % 3]
                } else {
                    pair(2)
                },
                padding: if fit {
                    [n[4] % 2 * (n[0] % 2), 0, 0, n[5] % 2 * (n[1] % 2)]
                } else {
                    quad(4)
                },
                count_include_pad: n[8].is_multiple_of(2),
            };
            if kind % 19 == 5 {
                Op::MaxPool2d(pool)
            } else {
                Op::AvgPool2d(pool)
            }
        }
        7 => Op::Flatten(Flatten { axis: n[0] }),
        8 => Op::Reshape(Reshape {
            shape: n[..n[9] % 4].iter().map(|&d| d as i64 - 1).collect(),
        }),
        9 => Op::Transpose(Transpose {
            perm: n[..n[9] % 4].to_vec(),
        }),
        10 => Op::Concat(Axis { axis: signed(0) }),
        11 => {
            let axis = if fit && rank > 0 { n[0] % rank } else { n[0] };
            let c = x.get(axis).copied().unwrap_or(1);
            Op::BatchNorm(BatchNorm {
                scale: weight(0, vec![c]),
                bias: weight(1, vec![c]),
                mean: weight(2, vec![c]),
                var: weight(3, vec![c]),
                epsilon: 1e-3,
                axis,
            })
        }
        12 => {
            let h = n[1];
            let state = if rank == 3 && n[2].is_multiple_of(2) {
                vec![x[1], h]
            } else {
                vec![h]
            };
            let with_state = n[0].is_multiple_of(4);
            Op::Lstm(Lstm {
                w: weight(0, vec![4 * h, last]),
                r: weight(1, vec![4 * h, h]),
                b: maybe(n[0].is_multiple_of(2), weight(2, vec![8 * h])),
                h0: maybe(with_state, weight(3, state.clone())),
                c0: maybe(with_state, weight(4, state)),
                last: false,
            })
        }
        13 => Op::Embedding(Embedding {
            table: weight(0, vec![1 + n[1], n[2]]),
        }),
        14 => Op::Constant(Constant {
            value: weight(0, vec![n[1], n[2]]),
        }),
        15 => Op::Sigmoid,
        16 => Op::Tanh,
        17 => {
            let weight_id = weight(0, vec![last, n[1]]);
            let bias = weight(1, vec![n[1]]);
            Op::MatMul(MatMul {
                weight: weight_id,
                bias: maybe(n[0].is_multiple_of(2), bias),
            })
        }
        _ => Op::Identity,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Verification never panics, and whatever verifies also runs (an embedding may still refuse
    /// an index) to a result of the inferred shape.
    #[test]
    fn garbage_never_panics(
        dims in prop::collection::vec(prop_oneof![1 => Just(0usize), 6 => 1usize..6], 0..5),
        int_input in any::<bool>(),
        kind in 0usize..19,
        n in prop::collection::vec(0usize..4, 10),
        random in prop::collection::vec(prop::collection::vec(0usize..9, 0..5), 1..4),
        fit in any::<bool>(),
        extra_operand in prop::bool::weighted(0.1),
    ) {
        let mut g = Graph::new("garbage");
        let dtype = if int_input { DType::I64 } else { DType::F32 };
        let x = g.add_input("x", TensorType::new(dtype, dims.clone()));
        let op = garbage_op(&mut g, kind, &dims, &n, &random, fit);
        let operands: &[NodeId] = match (&op, extra_operand) {
            (Op::Constant(_), _) => &[],
            (_, true) => &[x, x],
            (_, false) => &[x],
        };
        let y = g.add_node("y", op, operands);
        g.add_output(y);
        if let Ok(info) = verify(&g) {
            let len = dims.iter().product();
            let data: Vec<f32> = (0..len).map(|i| (i % 3) as f32).collect();
            let result = interpret(&g, &info, &[t(&dims, &data)]);
            prop_assert!(
                matches!(result, Ok(_) | Err(InterpError::Index { .. })),
                "{:?}", result
            );
            if let Ok(out) = result {
                prop_assert_eq!(&out[0].shape, &info.ty(y).shape);
            }
        }
    }
}

#[test]
fn lstm_last_is_the_final_hidden_state() {
    let x = t(&[3, 2, 1], &[1.0, -2.0, 0.5, 0.25, -1.0, 2.0]);
    let all = run_one(&x, |g| tiny_lstm(g, true));
    let last = run_one(&x, |g| match tiny_lstm(g, true) {
        Op::Lstm(l) => Op::Lstm(Lstm { last: true, ..l }),
        _ => unreachable!("tiny_lstm is an lstm"),
    });
    assert_eq!(all.dims(), [3, 2, 1]);
    assert_eq!(last.dims(), [2, 1]);
    assert_eq!(last.data, all.data[4..]);
}

#[test]
fn argmax_takes_the_first_maximum() {
    let x = t(&[2, 3], &[1.0, 5.0, 5.0, f32::NAN, -1.0, -3.0]);
    let along = |axis, keepdims| run_one(&x, |_| Op::ArgMax(crate::op::ArgMax { axis, keepdims }));
    assert_eq!(along(-1, false), t(&[2], &[1.0, 1.0]));
    assert_eq!(along(0, true), t(&[1, 3], &[0.0, 0.0, 0.0]));
    assert_eq!(along(1, true), t(&[2, 1], &[1.0, 1.0]));
}

#[test]
fn slice_takes_a_range_along_an_axis() {
    use crate::op::Slice;
    let x = t(&[2, 3, 2], &(0..12).map(|v| v as f32).collect::<Vec<_>>());
    let y = run_one(&x, |_| {
        Op::Slice(Slice {
            axis: 1,
            start: 1,
            len: 2,
        })
    });
    assert_eq!(
        y,
        t(&[2, 2, 2], &[2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0])
    );
    let last = run_one(&x, |_| {
        Op::Slice(Slice {
            axis: -1,
            start: 1,
            len: 1,
        })
    });
    assert_eq!(last, t(&[2, 3, 1], &[1.0, 3.0, 5.0, 7.0, 9.0, 11.0]));
}

#[test]
fn cast_to_i64_truncates_toward_zero() {
    use crate::op::Cast;
    let x = t(&[5], &[1.7, -1.7, 0.2, -0.0, 3.0]);
    let mut g = Graph::new("t");
    let xi = g.add_input("x", f32t(&[5]));
    let i = g.add_node("i", Op::Cast(Cast { to: DType::I64 }), &[xi]);
    let f = g.add_node("f", Op::Cast(Cast { to: DType::F32 }), &[i]);
    let same = g.add_node("s", Op::Cast(Cast { to: DType::F32 }), &[xi]);
    g.add_output(f);
    g.add_output(same);
    let out = run(&g, std::slice::from_ref(&x));
    assert_eq!(out[0], t(&[5], &[1.0, -1.0, 0.0, 0.0, 3.0]));
    assert_eq!(out[1], x);
}
