//! Tests of type inference and of every verifier check: each problem is reported, at the right
//! place, with a precise message; garbage graphs give errors, never panics.

use super::*;
use crate::op::{
    Axis, BatchNorm, Constant, Conv2d, Dense, Dropout, Embedding, Flatten, Input, Lstm, MatMul,
    Pool2d, Reshape, Transpose,
};
use crate::types::DType;
use crate::weights::{Distribution, RandomInit, Weight};

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::f32(dims.to_vec())
}

/// A literal weight of zeros with the given shape.
fn zeros(g: &mut Graph, name: &str, dims: &[usize]) -> WeightId {
    let n = dims.iter().product();
    g.add_weight(Weight::literal(name, f32t(dims), vec![0.0; n]).expect("count matches"))
}

/// A lazily generated weight (never materialized by the verifier).
fn lazy(g: &mut Graph, name: &str, dims: &[usize]) -> WeightId {
    let init = RandomInit {
        dist: Distribution::Normal {
            mean: 0.0,
            std: 0.01,
        },
        density: 1.0,
        seed: 1,
    };
    g.add_weight(Weight::random(name, f32t(dims), init))
}

/// The type `op` gives for one input of `dims`, in a graph that outputs it.
fn infer_one(
    dims: &[usize],
    op: impl FnOnce(&mut Graph) -> Op,
) -> Result<TensorType, Vec<VerifyError>> {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(dims));
    let op = op(&mut g);
    let y = g.add_node("y", op, &[x]);
    g.add_output(y);
    verify(&g).map(|info| info.ty(y).clone())
}

fn ok_dims(dims: &[usize], op: impl FnOnce(&mut Graph) -> Op) -> Vec<usize> {
    match infer_one(dims, op) {
        Ok(ty) => ty.shape.0,
        Err(e) => panic!("expected a type, got {e:?}"),
    }
}

/// The only error `op` gives for one input of `dims`; it must be at the node `y`.
fn err_msg(dims: &[usize], op: impl FnOnce(&mut Graph) -> Op) -> String {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(dims));
    let op = op(&mut g);
    let y = g.add_node("y", op, &[x]);
    g.add_output(y);
    let errors = verify(&g).expect_err("the graph is malformed");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].at, Location::Node(y));
    errors[0].message.clone()
}

fn conv(weight: WeightId) -> Conv2d {
    Conv2d::new(weight, None)
}

fn pool(kernel: usize, stride: usize, padding: [usize; 4]) -> Pool2d {
    Pool2d {
        kernel: [kernel, kernel],
        stride: [stride, stride],
        padding,
        count_include_pad: false,
    }
}

// ---- shape inference, op by op ----

#[test]
fn input_and_constant_types() {
    let mut g = Graph::new("t");
    let ids = g.add_input("ids", TensorType::new(DType::I64, [4]));
    let w = zeros(&mut g, "c", &[2, 3]);
    let c = g.add_node("c", Op::Constant(Constant { value: w }), &[]);
    g.add_output(ids);
    g.add_output(c);
    let info = verify(&g).expect("verifies");
    assert_eq!(info.ty(ids), &TensorType::new(DType::I64, [4]));
    assert_eq!(info.ty(c), &f32t(&[2, 3]));
    assert_eq!(info.order, vec![ids, c]);
}

#[test]
fn dense_shapes() {
    let dense = |g: &mut Graph| {
        let weight = zeros(g, "w", &[3, 4]);
        let bias = Some(zeros(g, "b", &[3]));
        Op::Dense(Dense { weight, bias })
    };
    assert_eq!(ok_dims(&[4], dense), [3]);
    assert_eq!(ok_dims(&[2, 5, 4], dense), [2, 5, 3]);
    let no_bias = |g: &mut Graph| {
        let weight = zeros(g, "w", &[0, 4]);
        Op::Dense(Dense { weight, bias: None })
    };
    assert_eq!(ok_dims(&[4], no_bias), [0]);
}

#[test]
fn matmul_shapes() {
    // The weight is [in, out]: 4 features in, 3 out.
    let matmul = |g: &mut Graph| {
        let weight = zeros(g, "w", &[4, 3]);
        let bias = Some(zeros(g, "b", &[3]));
        Op::MatMul(MatMul { weight, bias })
    };
    assert_eq!(ok_dims(&[4], matmul), [3]);
    assert_eq!(ok_dims(&[2, 5, 4], matmul), [2, 5, 3]);
    let no_bias = |g: &mut Graph| {
        let weight = zeros(g, "w", &[4, 0]);
        Op::MatMul(MatMul { weight, bias: None })
    };
    assert_eq!(ok_dims(&[4], no_bias), [0]);
}

#[test]
fn matmul_errors() {
    let features = |g: &mut Graph| {
        Op::MatMul(MatMul {
            weight: zeros(g, "w", &[3, 4]),
            bias: None,
        })
    };
    assert_eq!(
        err_msg(&[4], features),
        "matmul: input has 4 features (last axis of f32[4]) but @w is [3, 4], which expects 3"
    );
    let bias = |g: &mut Graph| {
        let weight = zeros(g, "w", &[4, 3]);
        let bias = Some(zeros(g, "b", &[4]));
        Op::MatMul(MatMul { weight, bias })
    };
    assert_eq!(
        err_msg(&[4], bias),
        "matmul: @b is [4] but @w has 3 outputs, so it must be [3]"
    );
    let matrix = |g: &mut Graph| {
        Op::MatMul(MatMul {
            weight: zeros(g, "w", &[12]),
            bias: None,
        })
    };
    assert_eq!(
        err_msg(&[4], matrix),
        "matmul: @w must be a matrix [in, out] but is [12]"
    );
    let scalar = |g: &mut Graph| {
        Op::MatMul(MatMul {
            weight: zeros(g, "w", &[3, 4]),
            bias: None,
        })
    };
    assert_eq!(
        err_msg(&[], scalar),
        "matmul: input `x` is a scalar (f32[]); matmul needs at least one axis"
    );
    let mut g = Graph::new("t");
    let round_trip = Op::MatMul(MatMul {
        weight: zeros(&mut g, "w", &[4, 3]),
        bias: Some(zeros(&mut g, "b", &[3])),
    });
    assert_eq!(
        Op::build(
            round_trip.kind(),
            &round_trip.weights(),
            &round_trip.attrs()
        ),
        Ok(round_trip)
    );
}

#[test]
fn conv2d_shapes() {
    // 5x5 input, 3x3 kernel: plain 3x3; padding 1 keeps 5x5; stride 2 with padding 1 gives 3x3;
    // dilation 2 makes the kernel span 5, giving 1x1.
    let plain = |g: &mut Graph| Op::Conv2d(conv(zeros(g, "w", &[8, 2, 3, 3])));
    assert_eq!(ok_dims(&[2, 5, 5], plain), [8, 3, 3]);
    assert_eq!(ok_dims(&[7, 2, 5, 5], plain), [7, 8, 3, 3]);
    let padded = |g: &mut Graph| {
        Op::Conv2d(Conv2d {
            padding: [1; 4],
            ..conv(zeros(g, "w", &[8, 2, 3, 3]))
        })
    };
    assert_eq!(ok_dims(&[2, 5, 5], padded), [8, 5, 5]);
    let strided = |g: &mut Graph| {
        Op::Conv2d(Conv2d {
            padding: [1; 4],
            stride: [2, 2],
            ..conv(zeros(g, "w", &[8, 2, 3, 3]))
        })
    };
    assert_eq!(ok_dims(&[2, 5, 5], strided), [8, 3, 3]);
    let dilated = |g: &mut Graph| {
        Op::Conv2d(Conv2d {
            dilation: [2, 2],
            ..conv(zeros(g, "w", &[8, 2, 3, 3]))
        })
    };
    assert_eq!(ok_dims(&[2, 5, 5], dilated), [8, 1, 1]);
    // Asymmetric padding [t, l, b, r] = [0, 1, 2, 3] on 4x4 with a 2x2 kernel: H' = (4+0+2-2)/1+1
    // = 5, W' = (4+1+3-2)/1+1 = 7.
    let asym = |g: &mut Graph| {
        Op::Conv2d(Conv2d {
            padding: [0, 1, 2, 3],
            ..conv(zeros(g, "w", &[1, 1, 2, 2]))
        })
    };
    assert_eq!(ok_dims(&[1, 4, 4], asym), [1, 5, 7]);
    // Groups: 4 channels in 2 groups, 6 filters of 2 channels each.
    let grouped = |g: &mut Graph| {
        let bias = Some(zeros(g, "b", &[6]));
        Op::Conv2d(Conv2d {
            groups: 2,
            bias,
            ..conv(zeros(g, "w", &[6, 2, 1, 1]))
        })
    };
    assert_eq!(ok_dims(&[4, 3, 3], grouped), [6, 3, 3]);
}

#[test]
fn elementwise_unary_shapes() {
    for op in [
        Op::Relu,
        Op::Sigmoid,
        Op::Tanh,
        Op::Identity,
        Op::Dropout(Dropout { ratio: 0.5 }),
        Op::Softmax(Axis { axis: -1 }),
        Op::LogSoftmax(Axis { axis: 0 }),
    ] {
        assert_eq!(ok_dims(&[2, 3], |_| op), [2, 3]);
    }
    assert_eq!(ok_dims(&[], |_| Op::Relu), Vec::<usize>::new());
}

#[test]
fn softmax_axis_range() {
    assert_eq!(ok_dims(&[2, 3], |_| Op::Softmax(Axis { axis: -2 })), [2, 3]);
    assert_eq!(ok_dims(&[2, 3], |_| Op::Softmax(Axis { axis: 1 })), [2, 3]);
    assert_eq!(
        err_msg(&[2, 3], |_| Op::Softmax(Axis { axis: 2 })),
        "softmax: axis 2 is out of range for `x` : f32[2, 3] (it must be in -2..2)"
    );
    assert!(
        err_msg(&[2, 3], |_| Op::LogSoftmax(Axis { axis: -3 })).starts_with("log_softmax: axis -3")
    );
    assert!(err_msg(&[], |_| Op::Softmax(Axis { axis: -1 })).contains("is a scalar"));
    assert!(err_msg(&[2], |_| Op::Softmax(Axis { axis: i64::MIN })).contains("out of range"));
}

#[test]
fn pool_shapes() {
    // 2x2/2 on 4x5: floor((4-2)/2)+1 = 2, floor((5-2)/2)+1 = 2.
    assert_eq!(
        ok_dims(&[3, 4, 5], |_| Op::MaxPool2d(pool(2, 2, [0; 4]))),
        [3, 2, 2]
    );
    // 3x3/1 padding 1 keeps the size; with a batch axis.
    assert_eq!(
        ok_dims(&[2, 3, 4, 5], |_| Op::AvgPool2d(pool(3, 1, [1; 4]))),
        [2, 3, 4, 5]
    );
    // 3x3/2 padding [0, 0, 1, 1] on 6x6: (6+1-3)/2+1 = 3.
    assert_eq!(
        ok_dims(&[1, 6, 6], |_| Op::MaxPool2d(pool(3, 2, [0, 0, 1, 1]))),
        [1, 3, 3]
    );
}

#[test]
fn pool_errors() {
    assert_eq!(
        err_msg(&[4, 4], |_| Op::MaxPool2d(pool(2, 2, [0; 4]))),
        "maxpool2d: input `x` is f32[4, 4]; pooling needs [C, H, W] or [N, C, H, W]"
    );
    assert_eq!(
        err_msg(&[1, 4, 4], |_| Op::MaxPool2d(pool(2, 2, [0, 0, 2, 0]))),
        "maxpool2d: padding 2 on the bottom is not smaller than the kernel height 2"
    );
    assert_eq!(
        err_msg(&[1, 2, 9], |_| Op::AvgPool2d(pool(3, 1, [0; 4]))),
        "avgpool2d: the window spans 3 along the height but the padded input height is only 2 (2 + 0 top + 0 bottom), so the output would be empty"
    );
    assert!(err_msg(&[1, 0, 4], |_| Op::AvgPool2d(pool(1, 1, [0; 4]))).contains("its height is 0"));
    let zero_kernel = Pool2d {
        kernel: [0, 2],
        ..pool(2, 1, [0; 4])
    };
    assert_eq!(
        err_msg(&[1, 4, 4], |_| Op::MaxPool2d(zero_kernel)),
        "maxpool2d: kernel must be at least 1, found [0, 2]"
    );
}

#[test]
fn flatten_shapes() {
    let fl = |axis| move |_: &mut Graph| Op::Flatten(Flatten { axis });
    assert_eq!(ok_dims(&[2, 3, 4], fl(0)), [24]);
    assert_eq!(ok_dims(&[2, 3, 4], fl(1)), [2, 12]);
    assert_eq!(ok_dims(&[2, 3, 4], fl(3)), [2, 3, 4, 1]);
    assert_eq!(ok_dims(&[], fl(0)), [1]);
    assert_eq!(
        err_msg(&[2, 3], fl(3)),
        "flatten: axis 3 is out of range for `x` : f32[2, 3] (it must be at most 2)"
    );
}

#[test]
fn reshape_shapes() {
    let rs = |shape: &[i64]| {
        let shape = shape.to_vec();
        move |_: &mut Graph| Op::Reshape(Reshape { shape })
    };
    assert_eq!(ok_dims(&[2, 3, 4], rs(&[4, -1])), [4, 6]);
    assert_eq!(ok_dims(&[2, 3, 4], rs(&[24])), [24]);
    assert_eq!(ok_dims(&[1, 1], rs(&[])), Vec::<usize>::new());
    // 0 is a size of zero, not "copy the input's size".
    assert_eq!(ok_dims(&[0, 5], rs(&[0, 7])), [0, 7]);
    assert_eq!(
        err_msg(&[2, 3], rs(&[4, 2])),
        "reshape: cannot reshape f32[2, 3] (6 elements) into [4, 2] (8 elements)"
    );
    assert_eq!(
        err_msg(&[2, 3], rs(&[4, -1])),
        "reshape: cannot reshape f32[2, 3] (6 elements) into [4, -1]: 6 is not a multiple of 4"
    );
    assert_eq!(
        err_msg(&[0, 3], rs(&[0, -1])),
        "reshape: cannot infer the -1 in shape [0, -1]: the other sizes multiply to 0"
    );
    assert!(err_msg(&[6], rs(&[-1, -1])).contains("more than one -1"));
    assert!(err_msg(&[6], rs(&[-2, 3])).contains("holds -2"));
    assert!(err_msg(&[6], rs(&[1 << 40, 1 << 40])).contains("overflows"));
}

#[test]
fn transpose_shapes() {
    let tr = |perm: &[usize]| {
        let perm = perm.to_vec();
        move |_: &mut Graph| Op::Transpose(Transpose { perm })
    };
    assert_eq!(ok_dims(&[2, 3, 4], tr(&[])), [4, 3, 2]);
    assert_eq!(ok_dims(&[2, 3, 4], tr(&[1, 2, 0])), [3, 4, 2]);
    assert_eq!(
        err_msg(&[2, 3, 4], tr(&[0, 0, 1])),
        "transpose: perm [0, 0, 1] is not a permutation of the 3 axes of `x` : f32[2, 3, 4]"
    );
    assert!(err_msg(&[2, 3], tr(&[0, 1, 2])).contains("not a permutation"));
    assert!(err_msg(&[2, 3], tr(&[0, 7])).contains("not a permutation"));
}

/// The type of `op(a, b)` for two inputs of the given shapes, or the error message.
fn binary(op: Op, a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let mut g = Graph::new("t");
    let x = g.add_input("a", f32t(a));
    let y = g.add_input("b", f32t(b));
    let z = g.add_node("z", op, &[x, y]);
    g.add_output(z);
    match verify(&g) {
        Ok(info) => Ok(info.ty(z).shape.0.clone()),
        Err(e) => {
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].at, Location::Node(z));
            Err(e[0].message.clone())
        }
    }
}

#[test]
fn broadcasting_shapes() {
    assert_eq!(binary(Op::Add, &[3, 4], &[4]), Ok(vec![3, 4]));
    assert_eq!(binary(Op::Sub, &[3, 1], &[1, 4]), Ok(vec![3, 4]));
    assert_eq!(binary(Op::Mul, &[2, 1, 5], &[7, 1]), Ok(vec![2, 7, 5]));
    assert_eq!(binary(Op::Div, &[], &[2, 2]), Ok(vec![2, 2]));
    assert_eq!(binary(Op::Add, &[0, 3], &[1, 3]), Ok(vec![0, 3]));
    assert_eq!(binary(Op::Add, &[1], &[0]), Ok(vec![0]));
    let e = binary(Op::Add, &[3, 4], &[5]).expect_err("4 vs 5");
    assert!(
        e.starts_with("add: shapes [3, 4] and [5] do not broadcast"),
        "{e}"
    );
    assert_eq!(
        binary(Op::Mul, &[2, 3, 4], &[2, 4]),
        Err("mul: shapes [2, 3, 4] and [2, 4] do not broadcast (3 and 2 at axis -2)".to_string())
    );
}

#[test]
fn concat_shapes() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[2, 3]));
    let b = g.add_input("b", f32t(&[2, 5]));
    let c = g.add_input("c", f32t(&[4, 3]));
    let s = g.add_input("s", f32t(&[3]));
    let cols = g.add_node("cols", Op::Concat(Axis { axis: -1 }), &[a, b, a]);
    let rows = g.add_node("rows", Op::Concat(Axis { axis: 0 }), &[a, c]);
    let one = g.add_node("one", Op::Concat(Axis { axis: 0 }), &[s]);
    let bad_dim = g.add_node("bad_dim", Op::Concat(Axis { axis: 0 }), &[a, b]);
    let bad_rank = g.add_node("bad_rank", Op::Concat(Axis { axis: 0 }), &[a, s]);
    let bad_axis = g.add_node("bad_axis", Op::Concat(Axis { axis: 2 }), &[a, a]);
    let none = g.add_node("none", Op::Concat(Axis { axis: 0 }), &[]);
    for n in [cols, rows, one, bad_dim, bad_rank, bad_axis, none] {
        g.add_output(n);
    }
    let errors = verify(&g).expect_err("three bad concats");
    let at: Vec<Location> = errors.iter().map(|e| e.at).collect();
    assert_eq!(
        at,
        [bad_dim, bad_rank, bad_axis, none]
            .map(Location::Node)
            .to_vec()
    );
    assert_eq!(
        errors[0].message,
        "concat: `a` : f32[2, 3] and `b` : f32[2, 5] differ at axis 1 (3 vs 5); they may differ only at axis 0"
    );
    assert_eq!(
        errors[1].message,
        "concat: `s` : f32[3] has rank 1 but `a` : f32[2, 3] has rank 2"
    );
    assert!(
        errors[2]
            .message
            .starts_with("concat: axis 2 is out of range")
    );
    assert_eq!(
        errors[3].message,
        "concat: takes at least 1 value operands but has 0"
    );

    // The same graph without the bad nodes infers the good ones.
    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[2, 3]));
    let b = g.add_input("b", f32t(&[2, 5]));
    let c = g.add_input("c", f32t(&[4, 3]));
    let cols = g.add_node("cols", Op::Concat(Axis { axis: -1 }), &[a, b, a]);
    let rows = g.add_node("rows", Op::Concat(Axis { axis: 0 }), &[a, c]);
    g.add_output(cols);
    g.add_output(rows);
    let info = verify(&g).expect("verifies");
    assert_eq!(info.ty(cols), &f32t(&[2, 11]));
    assert_eq!(info.ty(rows), &f32t(&[6, 3]));
}

fn batchnorm(g: &mut Graph, c: usize, axis: usize) -> Op {
    Op::BatchNorm(BatchNorm {
        scale: zeros(g, "scale", &[c]),
        bias: zeros(g, "bias", &[c]),
        mean: zeros(g, "mean", &[c]),
        var: zeros(g, "var", &[c]),
        epsilon: 1e-5,
        axis,
    })
}

#[test]
fn batchnorm_shapes() {
    assert_eq!(ok_dims(&[3, 4, 4], |g| batchnorm(g, 3, 0)), [3, 4, 4]);
    assert_eq!(ok_dims(&[2, 3, 4, 4], |g| batchnorm(g, 3, 1)), [2, 3, 4, 4]);
    assert_eq!(
        err_msg(&[2, 3, 4, 4], |g| batchnorm(g, 3, 0)),
        "batchnorm: @scale is [3] but the input has 2 channels at axis 0 (scale), so it must be [2]"
    );
    assert_eq!(
        err_msg(&[3, 4], |g| batchnorm(g, 3, 2)),
        "batchnorm: axis 2 is out of range for `x` : f32[3, 4] (rank 2)"
    );
    let bad_eps = |g: &mut Graph| match batchnorm(g, 3, 0) {
        Op::BatchNorm(b) => Op::BatchNorm(BatchNorm {
            epsilon: f32::NAN,
            ..b
        }),
        other => other,
    };
    assert!(err_msg(&[3], bad_eps).contains("epsilon must be a finite number"));
}

fn lstm(g: &mut Graph, hidden: usize, inp: usize, state: Option<&[usize]>) -> Op {
    let w = zeros(g, "w", &[4 * hidden, inp]);
    let r = zeros(g, "r", &[4 * hidden, hidden]);
    let b = Some(zeros(g, "b", &[8 * hidden]));
    let (h0, c0) = match state {
        Some(dims) => (Some(zeros(g, "h0", dims)), Some(zeros(g, "c0", dims))),
        None => (None, None),
    };
    Op::Lstm(Lstm {
        w,
        r,
        b,
        h0,
        c0,
        last: false,
    })
}

#[test]
fn lstm_shapes() {
    assert_eq!(ok_dims(&[5, 3], |g| lstm(g, 2, 3, None)), [5, 2]);
    assert_eq!(ok_dims(&[5, 4, 3], |g| lstm(g, 2, 3, None)), [5, 4, 2]);
    assert_eq!(ok_dims(&[5, 3], |g| lstm(g, 2, 3, Some(&[2]))), [5, 2]);
    assert_eq!(
        ok_dims(&[5, 4, 3], |g| lstm(g, 2, 3, Some(&[2]))),
        [5, 4, 2]
    );
    assert_eq!(
        ok_dims(&[5, 4, 3], |g| lstm(g, 2, 3, Some(&[4, 2]))),
        [5, 4, 2]
    );
    assert_eq!(
        err_msg(&[5, 3], |g| lstm(g, 2, 3, Some(&[1, 2]))),
        "lstm: @h0 (h0) is [1, 2] but must be [2] (the input has no batch axis)"
    );
    assert_eq!(
        err_msg(&[5, 4, 3], |g| lstm(g, 2, 3, Some(&[3, 2]))),
        "lstm: @h0 (h0) is [3, 2] but must be [2] or [4, 2]"
    );
    assert_eq!(
        err_msg(&[5, 4], |g| lstm(g, 2, 3, None)),
        "lstm: input has 4 features (last axis of f32[5, 4]) but @w is [8, 3], which expects 3"
    );
    assert!(err_msg(&[5], |g| lstm(g, 2, 3, None)).contains("[seq, in] or [seq, batch, in]"));
    let bad_w = |g: &mut Graph| {
        let w = zeros(g, "w", &[7, 3]);
        let r = zeros(g, "r", &[7, 1]);
        Op::Lstm(Lstm {
            w,
            r,
            b: None,
            h0: None,
            c0: None,
            last: false,
        })
    };
    assert_eq!(
        err_msg(&[5, 3], bad_w),
        "lstm: @w has 7 rows, which is not 4 * hidden (gates i, o, f, c)"
    );
    let bad_r = |g: &mut Graph| {
        let w = zeros(g, "w", &[8, 3]);
        let r = zeros(g, "r", &[8, 3]);
        Op::Lstm(Lstm {
            w,
            r,
            b: None,
            h0: None,
            c0: None,
            last: false,
        })
    };
    assert_eq!(
        err_msg(&[5, 3], bad_r),
        "lstm: @r is [8, 3] but @w gives hidden size 2, so it must be [8, 2]"
    );
    let bad_b = |g: &mut Graph| {
        let w = zeros(g, "w", &[8, 3]);
        let r = zeros(g, "r", &[8, 2]);
        let b = Some(zeros(g, "b", &[8]));
        Op::Lstm(Lstm {
            w,
            r,
            b,
            h0: None,
            c0: None,
            last: false,
        })
    };
    assert!(err_msg(&[5, 3], bad_b).contains("so the bias must be [16]"));
    let gap = |g: &mut Graph| {
        let w = zeros(g, "w", &[8, 3]);
        let r = zeros(g, "r", &[8, 2]);
        let c0 = Some(zeros(g, "c0", &[2]));
        Op::Lstm(Lstm {
            w,
            r,
            b: None,
            h0: None,
            c0,
            last: false,
        })
    };
    assert!(err_msg(&[5, 3], gap).contains("may only be left out from the end"));
}

fn lstm_stacked(g: &mut Graph, dims: &[usize], state: Option<&[usize]>, last: bool) -> Op {
    let weight = zeros(g, "wrb", dims);
    let (h0, c0) = match state {
        Some(d) => (Some(zeros(g, "h0", d)), Some(zeros(g, "c0", d))),
        None => (None, None),
    };
    Op::LstmStacked(crate::op::LstmStacked {
        weight,
        h0,
        c0,
        last,
    })
}

#[test]
fn stacked_lstm_shapes() {
    // hidden 2, input 3: [8, 3 + 2 + 1].
    assert_eq!(
        ok_dims(&[5, 3], |g| lstm_stacked(g, &[8, 6], None, false)),
        [5, 2]
    );
    assert_eq!(
        ok_dims(&[5, 4, 3], |g| lstm_stacked(
            g,
            &[8, 6],
            Some(&[4, 2]),
            false
        )),
        [5, 4, 2]
    );
    assert_eq!(
        ok_dims(&[5, 4, 3], |g| lstm_stacked(g, &[8, 6], Some(&[2]), true)),
        [4, 2]
    );
    assert_eq!(
        err_msg(&[5, 3], |g| lstm_stacked(g, &[8, 5], None, false)),
        "lstm_stacked: input has 3 features (last axis of f32[5, 3]) and @wrb gives hidden size 2, so it must be [8, 6] (input, hidden, bias columns) but is [8, 5]"
    );
    assert_eq!(
        err_msg(&[5, 3], |g| lstm_stacked(g, &[6, 5], None, false)),
        "lstm_stacked: @wrb has 6 rows, which is not 4 * hidden (gates i, o, f, c)"
    );
    assert_eq!(
        err_msg(&[5, 3], |g| lstm_stacked(g, &[8, 6], Some(&[3]), false)),
        "lstm_stacked: @h0 (h0) is [3] but must be [2] (the input has no batch axis)"
    );
    assert!(
        err_msg(&[0, 3], |g| lstm_stacked(g, &[8, 6], None, true)).contains("no last hidden state")
    );
}

#[test]
fn embedding_shapes_and_dtypes() {
    let mut g = Graph::new("t");
    let ids = g.add_input("ids", TensorType::new(DType::I64, [2, 3]));
    let table = zeros(&mut g, "table", &[10, 4]);
    let e = g.add_node("e", Op::Embedding(Embedding { table }), &[ids]);
    g.add_output(e);
    assert_eq!(verify(&g).expect("verifies").ty(e), &f32t(&[2, 3, 4]));

    // f32 indices are refused, and i64 values anywhere but embedding indices.
    let mut g = Graph::new("t");
    let ids = g.add_input("ids", TensorType::new(DType::I64, [3]));
    let x = g.add_input("x", f32t(&[3]));
    let table = zeros(&mut g, "table", &[10, 4]);
    let vec_table = zeros(&mut g, "vec", &[10]);
    let e = g.add_node("e", Op::Embedding(Embedding { table }), &[x]);
    let r = g.add_node("r", Op::Relu, &[ids]);
    let v = g.add_node("v", Op::Embedding(Embedding { table: vec_table }), &[ids]);
    for n in [e, r, v] {
        g.add_output(n);
    }
    let errors = verify(&g).expect_err("three problems");
    assert_eq!(
        errors,
        vec![
            VerifyError {
                at: Location::Node(e),
                message: "embedding: indices `x` are f32[3]; they must be i64".to_string(),
            },
            VerifyError {
                at: Location::Node(r),
                message: "relu: operand `ids` is i64[3]; relu computes on f32 values (only embedding and cast take i64 values)".to_string(),
            },
            VerifyError {
                at: Location::Node(v),
                message: "embedding: @vec must be a table [vocab, dim] but is [10]".to_string(),
            },
        ]
    );
}

// ---- the messages of the contract's examples ----

#[test]
fn dense_feature_mismatch_message() {
    let mut g = Graph::new("lenet");
    let x = g.add_input("x", f32t(&[700]));
    let w = lazy(&mut g, "ip1.weight", &[300, 784]);
    let b = lazy(&mut g, "ip1.bias", &[300]);
    let h = g.add_node(
        "h1",
        Op::Dense(Dense {
            weight: w,
            bias: Some(b),
        }),
        &[x],
    );
    g.add_output(h);
    assert_eq!(
        verify(&g),
        Err(vec![VerifyError {
            at: Location::Node(h),
            message: "dense: input has 700 features (last axis of f32[700]) but @ip1.weight is [300, 784], which expects 784".to_string(),
        }])
    );
}

#[test]
fn dense_other_errors() {
    let bias = |g: &mut Graph| {
        let weight = zeros(g, "w", &[3, 4]);
        let bias = Some(zeros(g, "b", &[4]));
        Op::Dense(Dense { weight, bias })
    };
    assert_eq!(
        err_msg(&[4], bias),
        "dense: @b is [4] but @w has 3 outputs, so it must be [3]"
    );
    let matrix = |g: &mut Graph| {
        Op::Dense(Dense {
            weight: zeros(g, "w", &[12]),
            bias: None,
        })
    };
    assert_eq!(
        err_msg(&[4], matrix),
        "dense: @w must be a matrix [out, in] but is [12]"
    );
    let scalar = |g: &mut Graph| {
        Op::Dense(Dense {
            weight: zeros(g, "w", &[3, 4]),
            bias: None,
        })
    };
    assert_eq!(
        err_msg(&[], scalar),
        "dense: input `x` is a scalar (f32[]); dense needs at least one axis"
    );
}

#[test]
fn conv2d_errors() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[4, 8, 8]));
    let w = zeros(&mut g, "c.weight", &[6, 3, 3, 3]);
    let y = g.add_node("c", Op::Conv2d(conv(w)), &[x]);
    g.add_output(y);
    assert_eq!(
        verify(&g).expect_err("3 vs 4 channels")[0].message,
        "conv2d: @c.weight has 3 input channels per group but the input has 4 channels and groups = 1"
    );

    let grouped = |groups, o| {
        move |g: &mut Graph| {
            Op::Conv2d(Conv2d {
                groups,
                ..conv(zeros(g, "w", &[o, 2, 1, 1]))
            })
        }
    };
    assert_eq!(
        err_msg(&[6, 4, 4], grouped(4, 4)),
        "conv2d: the input `x` : f32[6, 4, 4] has 6 channels, which groups = 4 does not divide"
    );
    assert_eq!(
        err_msg(&[6, 4, 4], grouped(3, 4)),
        "conv2d: @w has 4 output channels, which groups = 3 does not divide"
    );
    assert!(err_msg(&[6, 4, 4], grouped(0, 4)).contains("groups must be at least 1"));
    assert_eq!(
        err_msg(&[2, 2, 9], |g| Op::Conv2d(conv(zeros(
            g,
            "w",
            &[1, 2, 3, 3]
        )))),
        "conv2d: the window spans 3 along the height but the padded input height is only 2 (2 + 0 top + 0 bottom), so the output would be empty"
    );
    assert!(
        err_msg(&[2, 9, 4], |g| Op::Conv2d(Conv2d {
            dilation: [1, 2],
            ..conv(zeros(g, "w", &[1, 2, 3, 3]))
        }))
        .contains("spans 5 along the width (3 taps at dilation 2)")
    );
    assert!(
        err_msg(&[2, 4], |g| Op::Conv2d(conv(zeros(g, "w", &[1, 2, 3, 3]))))
            .contains("[C, H, W] or [N, C, H, W]")
    );
    assert!(
        err_msg(&[2, 4, 4], |g| Op::Conv2d(conv(zeros(g, "w", &[1, 2, 3]))))
            .contains("must be [out, in/groups, kh, kw]")
    );
    assert!(
        err_msg(&[2, 4, 4], |g| Op::Conv2d(conv(zeros(
            g,
            "w",
            &[1, 2, 0, 3]
        ))))
        .contains("empty 0x3 kernel")
    );
    assert!(
        err_msg(&[2, 4, 4], |g| Op::Conv2d(Conv2d {
            stride: [0, 1],
            ..conv(zeros(g, "w", &[1, 2, 1, 1]))
        }))
        .contains("stride must be at least 1")
    );
    assert!(
        err_msg(&[2, 4, 4], |g| {
            let bias = Some(zeros(g, "b", &[2]));
            Op::Conv2d(Conv2d {
                bias,
                ..conv(zeros(g, "w", &[1, 2, 1, 1]))
            })
        })
        .contains("@b is [2] but @w has 1 output channels, so it must be [1]")
    );
    // Huge padding overflows the padded extent: an error, not a panic.
    assert!(
        err_msg(&[2, 4, 4], |g| Op::Conv2d(Conv2d {
            padding: [usize::MAX, 0, 1, 0],
            ..conv(zeros(g, "w", &[1, 2, 1, 1]))
        }))
        .contains("overflows")
    );
}

// ---- graph-level checks ----

#[test]
fn duplicate_names_are_reported_at_the_later_node() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2]));
    let a = g.add_node("h", Op::Relu, &[x]);
    let b = g.add_node("h", Op::Tanh, &[a]);
    g.add_output(b);
    assert_eq!(
        verify(&g),
        Err(vec![VerifyError {
            at: Location::Node(b),
            message: "duplicate name: `h` is already defined (by a relu node)".to_string(),
        }])
    );
}

#[test]
fn operand_counts_and_positions() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2]));
    let k = g.add_input("k", f32t(&[2]));
    let two = g.add_node("two", Op::Relu, &[x, x]);
    let gap = g.add_node("gap", Op::Add, &[k, x]);
    let short = g.add_node("short", Op::Mul, &[x, k]);
    let none = g.add_node("none", Op::Tanh, &[]);
    let fed = g.add_node("fed", Op::Input(Input { ty: f32t(&[2]) }), &[x]);
    g.add_output(two);
    g.add_output(gap);
    g.add_output(short);
    g.add_output(none);
    g.add_output(fed);
    // Removing `k` leaves `gap` with operand position 1 only and `short` with position 0 only.
    g.remove_node(k);
    let errors = verify(&g).expect_err("malformed");
    let found: Vec<(Location, &str)> = errors.iter().map(|e| (e.at, e.message.as_str())).collect();
    assert!(
        found.contains(&(
            Location::Node(fed),
            "input `fed` is not listed among the network inputs, so it never gets a value"
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(Location::Node(two), "relu: takes 1 value operand but has 2")),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            Location::Node(gap),
            "add: operand positions are [1] but must be exactly 0..1"
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            Location::Node(short),
            "mul: takes 2 value operands but has 1"
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            Location::Node(none),
            "tanh: takes 1 value operand but has 0"
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            Location::Node(fed),
            "input: takes 0 value operands but has 1"
        )),
        "{found:?}"
    );
    assert_eq!(errors.len(), 6, "{found:?}");
}

#[test]
fn weights_are_checked() {
    let mut other = Graph::new("other");
    for i in 0..4 {
        zeros(&mut other, &format!("w{i}"), &[1]);
    }
    let far = zeros(&mut other, "far", &[1]);

    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[3]));
    let int_w = g.add_weight(
        Weight::literal("ints", TensorType::new(DType::I64, [3, 3]), vec![0.0; 9]).expect("9"),
    );
    let huge = lazy(&mut g, "huge", &[1 << 40, 1 << 40]);
    let mut shrunk = Weight::literal("shrunk", f32t(&[2]), vec![1.0, 2.0]).expect("2");
    shrunk.ty = f32t(&[3]);
    let shrunk = g.add_weight(shrunk);
    let unused = lazy(&mut g, "unused", &[7, 7]);
    let a = g.add_node(
        "a",
        Op::Dense(Dense {
            weight: int_w,
            bias: None,
        }),
        &[x],
    );
    let b = g.add_node(
        "b",
        Op::Dense(Dense {
            weight: huge,
            bias: None,
        }),
        &[x],
    );
    let c = g.add_node(
        "c",
        Op::Dense(Dense {
            weight: far,
            bias: None,
        }),
        &[x],
    );
    let d = g.add_node("d", Op::Constant(Constant { value: shrunk }), &[]);
    for n in [a, b, c, d] {
        g.add_output(n);
    }
    let errors = verify(&g).expect_err("bad weights");
    assert_eq!(
        errors,
        vec![
            VerifyError {
                at: Location::Weight(int_w),
                message: "@ints is i64[3, 3]; weights must be f32".to_string(),
            },
            VerifyError {
                at: Location::Weight(huge),
                message: "@huge : f32[1099511627776, 1099511627776] has more elements than fit in memory (the count overflows)".to_string(),
            },
            VerifyError {
                at: Location::Weight(shrunk),
                message: "@shrunk : f32[3] holds 2 values but its type needs 3".to_string(),
            },
            VerifyError {
                at: Location::Node(c),
                message: "dense: weight handle #4 is out of range (the graph has 4 weights)".to_string(),
            },
        ]
    );
    assert!(!g.weights[huge].is_materialized());
    assert!(!g.weights[unused].is_materialized());
}

#[test]
fn outputs_and_inputs_lists() {
    let g = Graph::new("empty");
    assert_eq!(
        verify(&g),
        Err(vec![VerifyError {
            at: Location::Graph,
            message: "the network has no outputs".to_string(),
        }])
    );

    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2]));
    let y = g.add_node("y", Op::Relu, &[x]);
    let z = g.add_node("z", Op::Relu, &[y]);
    g.remove_node(z);
    g.set_outputs(vec![y, z]);
    assert_eq!(
        verify(&g),
        Err(vec![VerifyError {
            at: Location::Graph,
            message: "output #1 refers to a node that no longer exists".to_string(),
        }])
    );
}

#[test]
fn cycles_are_reported_with_their_path() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2]));
    let h1 = g.add_node("h1", Op::Relu, &[x]);
    let seed = g.add_node("seed", Op::Identity, &[x]);
    let h2 = g.add_node("h2", Op::Relu, &[seed]);
    let h3 = g.add_node("h3", Op::Tanh, &[h2]);
    let after = g.add_node("after", Op::Sigmoid, &[h3]);
    let s = g.add_node("s", Op::Relu, &[h1]);
    // h2 now reads h3: h2 -> h3 -> h2; and s reads itself.
    g.replace_uses(seed, h3);
    g.replace_uses(h1, s);
    g.add_output(after);
    g.add_output(h1);
    let errors = verify(&g).expect_err("cycles");
    // `seed` is no longer used: fine. `after` sits downstream of the cycle and gets no error of
    // its own.
    assert_eq!(
        errors,
        vec![
            VerifyError {
                at: Location::Node(h2),
                message: "cycle: this value depends on itself through h2 -> h3 -> h2".to_string(),
            },
            VerifyError {
                at: Location::Node(s),
                message: "cycle: this value depends on itself through s -> s".to_string(),
            },
        ]
    );
}

#[test]
fn longer_cycle_path_is_in_data_flow_order() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[2]));
    let seed = g.add_node("seed", Op::Identity, &[x]);
    let a = g.add_node("a", Op::Relu, &[seed]);
    let b = g.add_node("b", Op::Relu, &[a]);
    let c = g.add_node("c", Op::Relu, &[b]);
    let d = g.add_node("d", Op::Relu, &[c]);
    g.replace_uses(seed, d);
    g.add_output(d);
    let errors = verify(&g).expect_err("cycle");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].at, Location::Node(a));
    assert_eq!(
        errors[0].message,
        "cycle: this value depends on itself through a -> b -> c -> d -> a"
    );
}

#[test]
fn several_independent_problems_are_all_reported() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[4]));
    let w = zeros(&mut g, "w", &[3, 5]);
    let bad_dense = g.add_node(
        "d",
        Op::Dense(Dense {
            weight: w,
            bias: None,
        }),
        &[x],
    );
    let after = g.add_node("after", Op::Relu, &[bad_dense]); // no cascade from `d`
    let bad_add = g.add_node("sum", Op::Add, &[x, after]);
    let y = g.add_input("y", f32t(&[2, 3]));
    let bad_sm = g.add_node("sm", Op::Softmax(Axis { axis: 5 }), &[y]);
    let dup = g.add_node("sm", Op::Relu, &[y]);
    let big = g.add_input("big", f32t(&[1 << 40, 1 << 40]));
    let r = g.add_node("r", Op::Relu, &[big]);
    for n in [bad_add, bad_sm, dup, r] {
        g.add_output(n);
    }
    let errors = verify(&g).expect_err("many problems");
    let at: Vec<Location> = errors.iter().map(|e| e.at).collect();
    assert_eq!(
        at,
        [dup, bad_dense, bad_sm, big].map(Location::Node).to_vec(),
        "{errors:?}"
    );
    assert!(
        errors[3]
            .message
            .starts_with("input: the result f32[1099511627776, 1099511627776] has more elements")
    );
}

#[test]
fn result_overflow_is_an_error() {
    // Each input fits, the broadcast result does not.
    let e = binary(Op::Add, &[1 << 40, 1], &[1, 1 << 40]).expect_err("overflow");
    assert!(
        e.starts_with("add: the result f32[1099511627776, 1099511627776] has more elements"),
        "{e}"
    );
}

#[test]
fn zero_sized_dimensions_verify() {
    assert_eq!(
        ok_dims(&[0, 4], |g| Op::Dense(Dense {
            weight: zeros(g, "w", &[3, 4]),
            bias: None
        })),
        [0, 3]
    );
    assert_eq!(
        ok_dims(&[0], |g| Op::Dense(Dense {
            weight: zeros(g, "w", &[3, 0]),
            bias: None
        })),
        [3]
    );
    assert_eq!(
        ok_dims(&[0, 2, 3, 3], |_| Op::MaxPool2d(pool(2, 1, [0; 4]))),
        [0, 2, 2, 2]
    );
    assert_eq!(
        ok_dims(&[0, 3, 3], |g| Op::Conv2d(conv(zeros(
            g,
            "w",
            &[2, 0, 1, 1]
        )))),
        [2, 3, 3]
    );
    assert_eq!(
        ok_dims(&[0, 5], |_| Op::Flatten(Flatten { axis: 1 })),
        [0, 5]
    );
    assert_eq!(ok_dims(&[0, 3], |g| lstm(g, 2, 3, None)), [0, 2]);
    assert_eq!(
        ok_dims(&[3, 0, 3], |g| lstm(g, 2, 3, Some(&[0, 2]))),
        [3, 0, 2]
    );
    assert_eq!(ok_dims(&[0], |_| Op::Softmax(Axis { axis: 0 })), [0]);
}

#[test]
fn verifying_a_large_network_leaves_weights_lazy() {
    // VGG-16 sized fully connected layers: about 120M parameters, never generated.
    let mut g = Graph::new("fc");
    let x = g.add_input("x", f32t(&[25088]));
    let mut h = x;
    for (i, (out, inp)) in [(4096, 25088), (4096, 4096), (1000, 4096)]
        .into_iter()
        .enumerate()
    {
        let weight = lazy(&mut g, &format!("fc{i}.weight"), &[out, inp]);
        let bias = Some(lazy(&mut g, &format!("fc{i}.bias"), &[out]));
        h = g.add_node(format!("fc{i}"), Op::Dense(Dense { weight, bias }), &[h]);
    }
    g.add_output(h);
    let info = verify(&g).expect("verifies");
    assert_eq!(info.ty(h), &f32t(&[1000]));
    assert!(g.weights.iter().all(|(_, w)| !w.is_materialized()));
}

#[test]
fn info_order_is_topological_with_smallest_id_first() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[2]));
    let b = g.add_input("b", f32t(&[2]));
    let s = g.add_node("s", Op::Add, &[a, b]);
    let r = g.add_node("r", Op::Relu, &[a]);
    g.add_output(s);
    g.add_output(r);
    let info = verify(&g).expect("verifies");
    assert_eq!(info.order, vec![a, b, s, r]);
    assert_eq!(info.get(s), Some(&f32t(&[2])));
}

#[test]
fn long_chains_and_long_cycles_do_not_exhaust_the_stack() {
    let n = 200_000;
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[1]));
    let seed = g.add_node("seed", Op::Identity, &[x]);
    let first = g.add_node("n0", Op::Relu, &[seed]);
    let mut last = first;
    for i in 1..n {
        last = g.add_node(format!("n{i}"), Op::Relu, &[last]);
    }
    g.add_output(last);
    assert_eq!(verify(&g).expect("a chain verifies").order.len(), n + 2);

    // Close the chain into one loop: n0 now reads the last node.
    g.replace_uses(seed, last);
    let errors = verify(&g).expect_err("a cycle");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].at, Location::Node(first));
    assert_eq!(
        errors[0].message,
        "cycle: this value depends on itself through n0 -> n1 -> n2 -> n3 -> n4 -> n5 -> ... -> n199995 -> n199996 -> n199997 -> n199998 -> n199999 -> n0 (200000 values on the cycle)"
    );
}

#[test]
fn argmax_gives_i64_and_rejects_empty_axes() {
    use crate::op::ArgMax;
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![2, 0]));
    let ok = g.add_node(
        "ok",
        Op::ArgMax(ArgMax {
            axis: 0,
            keepdims: false,
        }),
        &[x],
    );
    g.add_output(ok);
    let info = verify(&g).expect("argmax over a non-empty axis verifies");
    assert_eq!(info.ty(ok), &TensorType::new(DType::I64, vec![0]));
    let bad = g.add_node(
        "bad",
        Op::ArgMax(ArgMax {
            axis: -1,
            keepdims: true,
        }),
        &[x],
    );
    g.add_output(bad);
    let errors = verify(&g).expect_err("an empty axis has no maximum");
    assert!(errors[0].message.contains("is empty"), "{errors:?}");
}

#[test]
fn slice_shapes_and_range() {
    use crate::op::Slice;
    let slice = |axis: i64, start: usize, len: usize| Op::Slice(Slice { axis, start, len });
    assert_eq!(ok_dims(&[2, 10], |_| slice(-1, 3, 4)), vec![2, 4]);
    assert_eq!(ok_dims(&[6, 5], |_| slice(0, 0, 6)), vec![6, 5]);
    assert_eq!(ok_dims(&[6, 5], |_| slice(1, 5, 0)), vec![6, 0]);
    assert_eq!(
        err_msg(&[2, 10], |_| slice(-1, 8, 3)),
        "slice: elements 8..11 (start 8 + len 3) are out of range for axis 1 of `x` : f32[2, 10], which has 10"
    );
    assert!(err_msg(&[2, 10], |_| slice(2, 0, 1)).contains("axis 2 is out of range"));
}

#[test]
fn cast_types() {
    use crate::op::Cast;
    let mut g = Graph::new("t");
    let ids = g.add_input("ids", TensorType::new(DType::I64, vec![3]));
    let to_f32 = g.add_node("f", Op::Cast(Cast { to: DType::F32 }), &[ids]);
    let back = g.add_node("i", Op::Cast(Cast { to: DType::I64 }), &[to_f32]);
    g.add_output(back);
    let info = verify(&g).expect("verifies");
    assert_eq!(info.ty(to_f32), &TensorType::f32(vec![3]));
    assert_eq!(info.ty(back), &TensorType::new(DType::I64, vec![3]));
}

#[test]
fn slice_and_cast_attributes_round_trip() {
    use crate::op::{AttrValue, Cast, OpKind, Slice};
    for op in [
        Op::Slice(Slice {
            axis: -1,
            start: 0,
            len: 4,
        }),
        Op::Slice(Slice {
            axis: 1,
            start: 3,
            len: 0,
        }),
        Op::Cast(Cast { to: DType::I64 }),
        Op::Cast(Cast { to: DType::F32 }),
    ] {
        assert_eq!(Op::build(op.kind(), &op.weights(), &op.attrs()), Ok(op));
    }
    let missing = Op::build(OpKind::Slice, &[], &[]).expect_err("len is required");
    assert!(missing.to_string().contains("`len`"), "{missing}");
    let bad = Op::build(OpKind::Cast, &[], &[("to".to_string(), AttrValue::Int(1))])
        .expect_err("not a type");
    assert!(bad.to_string().contains("element type"), "{bad}");
}
