#!/usr/bin/env python3
"""Builds the ONNX test fixtures under tests/fixtures/onnx/, the way real exporters write them.

Each model NAME gets NAME.onnx, its fixed input (NAME.input.npy, or NAME.input.npz for several
inputs) and onnxruntime's outputs for that input (NAME.expected.npz, one array per graph output,
by output name). The Rust tests read only these files; Python is needed only to regenerate them:

    pip install -r tools/requirements-onnx.txt
    python3 tools/make_onnx_fixtures.py

Models (small, seeded, deterministic):
- mlp_gemm: PyTorch-style MLP: symbolic batch, torch.flatten's Shape/Gather/Unsqueeze/Concat/
  Reshape, Gemm with transB=1, Relu, Dropout, Identity, Softmax; opset 13.
- gemm_variants: Gemm with transB=0, alpha and beta, MatMul+Add, Sub/Mul/Div by constants,
  Sigmoid, Tanh, LogSoftmax, Constant nodes, Cast, float16/float64 initializers, typed fields.
- cnn: Conv (pads, groups, dilation), BatchNormalization, Relu, MaxPool, AveragePool,
  GlobalAveragePool, Flatten, Gemm, Softmax; opset 17.
- lstm: two stacked forward LSTMs (with bias and initial state; without), Squeeze, outputs Y
  and Y_h; opset 14.
- embed: Gather on a constant table (an embedding) with int64 ids, Flatten, Gemm, ArgMax.
- sklearn_mlp: scikit-learn MLPClassifier through skl2onnx with ZipMap off (its label output
  comes from ai.onnx.ml ops).
- mlp_external: mlp_gemm saved with its weights in an external-data file next to it.
- cnn_bn_dropout: PyTorch-style CNN as exported for inference: Conv without bias then
  BatchNormalization, Relu, Dropout, MaxPool, Flatten, Gemm then BatchNormalization over
  features, Relu, Dropout, Gemm, Softmax; opset 13. Seeds its own generator.
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx")
rng = np.random.default_rng(20240613)


def init(name, array, raw=True):
    t = numpy_helper.from_array(np.asarray(array), name)
    if not raw:
        # The typed field (float_data, int64_data, double_data) instead of raw_data.
        t = helper.make_tensor(name, t.data_type, list(array.shape), np.asarray(array).flatten().tolist())
    return t


def weight(*shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def finish(name, graph, opset, inputs, domains=()):
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="sprig-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    save_io(name, path, inputs)
    return model


def save_io(name, path, inputs):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, inputs)
    if len(inputs) == 1:
        np.save(os.path.join(OUT, name + ".input.npy"), next(iter(inputs.values())))
    else:
        np.savez(os.path.join(OUT, name + ".input.npz"), **inputs)
    names = [o.name for o in sess.get_outputs()]
    np.savez(os.path.join(OUT, name + ".expected.npz"), **dict(zip(names, outs)))


def flatten_like_torch(x, out, prefix):
    """torch.flatten(x, 1) as the exporter writes it: Shape, Gather, Unsqueeze, Concat, Reshape."""
    return [
        helper.make_node("Shape", [x], [prefix + "_shape"], name=prefix + "/Shape"),
        helper.make_node("Constant", [], [prefix + "_zero"], name=prefix + "/Constant",
                         value=helper.make_tensor("v", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", [prefix + "_shape", prefix + "_zero"], [prefix + "_batch"],
                         name=prefix + "/Gather", axis=0),
        helper.make_node("Constant", [], [prefix + "_axes"], name=prefix + "/Constant_1",
                         value=helper.make_tensor("v", TensorProto.INT64, [1], [0])),
        helper.make_node("Unsqueeze", [prefix + "_batch", prefix + "_axes"], [prefix + "_b1"],
                         name=prefix + "/Unsqueeze"),
        helper.make_node("Constant", [], [prefix + "_minus1"], name=prefix + "/Constant_2",
                         value=helper.make_tensor("v", TensorProto.INT64, [1], [-1])),
        helper.make_node("Concat", [prefix + "_b1", prefix + "_minus1"], [prefix + "_target"],
                         name=prefix + "/Concat", axis=0),
        helper.make_node("Reshape", [x, prefix + "_target"], [out], name=prefix + "/Reshape"),
    ]


def mlp_gemm_graph():
    nodes = flatten_like_torch("input", "/Flatten_output_0", "/Flatten")
    nodes += [
        helper.make_node("Gemm", ["/Flatten_output_0", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"],
                         name="/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Dropout", ["/relu/Relu_output_0"], ["/drop/Dropout_output_0"], name="/drop/Dropout"),
        helper.make_node("Gemm", ["/drop/Dropout_output_0", "fc2.weight", "fc2.bias"], ["/fc2/Gemm_output_0"],
                         name="/fc2/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Identity", ["/fc2/Gemm_output_0"], ["logits"], name="/Identity"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="/Softmax", axis=1),
    ]
    inits = [
        init("fc1.weight", weight(32, 64)),
        init("fc1.bias", weight(32)),
        init("fc2.weight", weight(10, 32)),
        init("fc2.bias", weight(10)),
    ]
    return helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 10]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch_size", 10])],
        inits)


def mlp_gemm():
    x = rng.random((4, 1, 8, 8), dtype=np.float32)
    finish("mlp_gemm", mlp_gemm_graph(), 13, {"input": x})


def mlp_external():
    graph = mlp_gemm_graph()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sprig-fixtures")
    model.ir_version = 8
    path = os.path.join(OUT, "mlp_external.onnx")
    if os.path.exists(os.path.join(OUT, "mlp_external.data")):
        os.remove(os.path.join(OUT, "mlp_external.data"))
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="mlp_external.data", size_threshold=0)
    onnx.checker.check_model(path)
    x = rng.random((2, 1, 8, 8), dtype=np.float32)
    save_io("mlp_external", path, {"input": x})


def gemm_variants():
    w1 = weight(12, 16)  # [in, out]: Gemm with transB=0
    w2 = weight(16, 8)   # MatMul weight [in, out]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["g1"], name="gemm_t0", alpha=0.5, beta=2.0),
        helper.make_node("Tanh", ["g1"], ["t1"], name="tanh"),
        helper.make_node("Cast", ["w2_half"], ["w2_f"], name="cast_w2", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["t1", "w2_f"], ["m2"], name="matmul"),
        helper.make_node("Cast", ["b2_double"], ["b2_f"], name="cast_b2", to=TensorProto.FLOAT),
        helper.make_node("Add", ["m2", "b2_f"], ["a2"], name="add_bias"),
        helper.make_node("Constant", [], ["shift"], name="const_shift",
                         value=helper.make_tensor("v", TensorProto.FLOAT, [8], rng.standard_normal(8).tolist())),
        helper.make_node("Sub", ["a2", "shift"], ["s2"], name="sub"),
        helper.make_node("Constant", [], ["two"], name="const_two", value_float=2.0),
        helper.make_node("Mul", ["s2", "two"], ["m3"], name="mul"),
        helper.make_node("Div", ["m3", "scale"], ["d3"], name="div"),
        helper.make_node("Sigmoid", ["d3"], ["sig"], name="sigmoid"),
        helper.make_node("Gemm", ["sig", "w3", "b3"], ["g3"], name="gemm_t1", transB=1, beta=0.25),
        helper.make_node("Cast", ["g3"], ["g3f"], name="cast_noop", to=TensorProto.FLOAT),
        helper.make_node("LogSoftmax", ["g3f"], ["logp"], name="logsoftmax", axis=-1),
    ]
    inits = [
        init("w1", w1),
        init("b1", weight(16), raw=False),
        init("w2_half", w2.astype(np.float16)),
        init("b2_double", weight(8).astype(np.float64), raw=False),
        init("scale", np.abs(weight(8)) + 0.5),
        init("w3", weight(5, 8), raw=False),
        init("b3", weight(1, 5)),
    ]
    graph = helper.make_graph(
        nodes, "gemm_variants",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
        [helper.make_tensor_value_info("logp", TensorProto.FLOAT, ["N", 5])],
        inits)
    x = rng.standard_normal((3, 12)).astype(np.float32)
    finish("gemm_variants", graph, 13, {"x": x})


def cnn():
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="/conv1/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1),
        helper.make_node("BatchNormalization", ["c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn1"],
                         name="/bn/BatchNormalization", epsilon=1e-3),
        helper.make_node("Relu", ["bn1"], ["r1"], name="/relu1/Relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="/pool1/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight"], ["c2"], name="/conv2/Conv",
                         kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2], group=2),
        helper.make_node("Relu", ["c2"], ["r2"], name="/relu2/Relu"),
        helper.make_node("AveragePool", ["r2"], ["p2"], name="/pool2/AveragePool", kernel_shape=[3, 3],
                         strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Conv", ["p2", "conv3.weight", "conv3.bias"], ["c3"], name="/conv3/Conv",
                         kernel_shape=[1, 1], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("GlobalAveragePool", ["c3"], ["gap"], name="/gap/GlobalAveragePool"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="/Softmax", axis=-1),
    ]
    inits = [
        init("conv1.weight", weight(4, 1, 3, 3)),
        init("conv1.bias", weight(4)),
        init("bn.scale", np.abs(weight(4)) + 0.5),
        init("bn.bias", weight(4)),
        init("bn.mean", weight(4)),
        init("bn.var", np.abs(weight(4)) + 0.5),
        init("conv2.weight", weight(8, 2, 3, 3)),
        init("conv3.weight", weight(6, 8, 1, 1)),
        init("conv3.bias", weight(6)),
        init("fc.weight", weight(3, 6)),
        init("fc.bias", weight(3)),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 12, 12])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        inits)
    x = rng.random((3, 1, 12, 12), dtype=np.float32)
    finish("cnn", graph, 17, {"image": x})


def lstm():
    seq, inp, h1, h2 = 5, 6, 4, 3
    nodes = [
        helper.make_node("LSTM", ["x", "W1", "R1", "B1", "", "h0", "c0"], ["Y1", "Y1_h", "Y1_c"],
                         name="/lstm1/LSTM", hidden_size=h1),
        helper.make_node("Constant", [], ["axes1"], name="/Constant",
                         value=helper.make_tensor("v", TensorProto.INT64, [1], [1])),
        helper.make_node("Squeeze", ["Y1", "axes1"], ["y1"], name="/Squeeze"),
        helper.make_node("LSTM", ["y1", "W2", "R2"], ["Y", "Y_h"], name="/lstm2/LSTM", hidden_size=h2),
    ]
    inits = [
        init("W1", weight(1, 4 * h1, inp)),
        init("R1", weight(1, 4 * h1, h1)),
        init("B1", weight(1, 8 * h1)),
        init("h0", weight(1, 1, h1)),
        init("c0", weight(1, 1, h1)),
        init("W2", weight(1, 4 * h2, h1)),
        init("R2", weight(1, 4 * h2, h2)),
    ]
    graph = helper.make_graph(
        nodes, "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, "batch", inp])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [seq, 1, "batch", h2]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "batch", h2])],
        inits)
    x = rng.standard_normal((seq, 1, inp)).astype(np.float32)
    finish("lstm", graph, 14, {"x": x})


def embed():
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="/embed/Gather", axis=0),
        helper.make_node("Flatten", ["e"], ["f"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["scores"], name="/fc/Gemm", transB=1),
        helper.make_node("ArgMax", ["scores"], ["best"], name="/ArgMax", axis=1, keepdims=0),
    ]
    inits = [
        init("table", weight(20, 3)),
        init("fc.weight", weight(5, 12)),
        init("fc.bias", weight(5)),
    ]
    graph = helper.make_graph(
        nodes, "embed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("best", TensorProto.INT64, ["N"])],
        inits)
    ids = rng.integers(0, 20, size=(3, 4)).astype(np.int64)
    finish("embed", graph, 13, {"ids": ids})


def sklearn_mlp():
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    x = rng.standard_normal((120, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0).fit(x, y)
    model = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=15)
    path = os.path.join(OUT, "sklearn_mlp.onnx")
    onnx.save(model, path)
    save_io("sklearn_mlp", path, {"X": x[:6]})


def cnn_bn_dropout():
    r = np.random.default_rng(7)

    def w(*shape, scale=0.3):
        return (r.standard_normal(shape) * scale).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight"], ["c1"], name="/conv1/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                                "bn1.running_var"], ["b1"], name="/bn1/BatchNormalization",
                         epsilon=1e-5),
        helper.make_node("Relu", ["b1"], ["r1"], name="/relu1/Relu"),
        helper.make_node("Dropout", ["r1"], ["d1"], name="/drop1/Dropout"),
        helper.make_node("MaxPool", ["d1"], ["p1"], name="/pool1/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["flat"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["f1"], name="/fc1/Gemm", transB=1),
        helper.make_node("BatchNormalization", ["f1", "bn2.weight", "bn2.bias", "bn2.running_mean",
                                                "bn2.running_var"], ["b2"], name="/bn2/BatchNormalization",
                         epsilon=1e-5),
        helper.make_node("Relu", ["b2"], ["r2"], name="/relu2/Relu"),
        helper.make_node("Dropout", ["r2"], ["d2"], name="/drop2/Dropout"),
        helper.make_node("Gemm", ["d2", "fc2.weight", "fc2.bias"], ["logits"], name="/fc2/Gemm", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="/Softmax", axis=-1),
    ]
    inits = [
        init("conv1.weight", w(4, 1, 3, 3)),
        init("bn1.weight", np.abs(w(4)) + 0.5),
        init("bn1.bias", w(4)),
        init("bn1.running_mean", w(4)),
        init("bn1.running_var", np.abs(w(4)) + 0.5),
        init("fc1.weight", w(10, 64, scale=0.2)),
        init("fc1.bias", w(10)),
        init("bn2.weight", np.abs(w(10)) + 0.5),
        init("bn2.bias", w(10)),
        init("bn2.running_mean", w(10)),
        init("bn2.running_var", np.abs(w(10)) + 0.5),
        init("fc2.weight", w(3, 10)),
        init("fc2.bias", w(3)),
    ]
    graph = helper.make_graph(
        nodes, "cnn_bn_dropout",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        inits)
    x = r.random((2, 1, 8, 8), dtype=np.float32)
    finish("cnn_bn_dropout", graph, 13, {"image": x})


def main():
    os.makedirs(OUT, exist_ok=True)
    for build in (mlp_gemm, mlp_external, gemm_variants, cnn, lstm, embed, sklearn_mlp, cnn_bn_dropout):
        build()
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):>8}  {f}", file=sys.stderr)


if __name__ == "__main__":
    main()
