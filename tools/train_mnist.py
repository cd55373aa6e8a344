#!/usr/bin/env python3
"""Train LeNet-300-100 and LeNet-5 on MNIST with numpy only and export them.

Usage:
    python3 tools/train_mnist.py [--mnist DIR] [--model lenet_300_100|lenet5|all] [--out examples]

Data
    DIR (default ``~/.cache/sprig/mnist``) must hold the four uncompressed IDX files
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``. They are fetched and checksum-verified by
    ``bash ../shared/data/fetch-mnist.sh ~/.cache/sprig/mnist`` (relative to the repository root);
    this script does not download anything itself.

Input preprocessing (the exported models expect exactly this)
    pixel = uint8 value / 255, as float32 in [0, 1]. No mean subtraction, no normalisation.
    LeNet-300-100 takes f32[784] (the 28x28 image flattened row-major);
    LeNet-5 takes f32[1, 28, 28] (C, H, W).

Models (float32 weights, PyTorch/ONNX layouts)
    lenet_300_100: ip1 784->300 relu, ip2 300->100 relu, ip3 100->10, softmax.
        ip1.weight [300,784] (out, in), ip1.bias [300], ip2.weight [100,300], ip2.bias [100],
        ip3.weight [10,100], ip3.bias [10].
    lenet5 (Caffe's LeNet, as in the Deep Compression paper):
        conv1 20x5x5 (stride 1, no padding) -> [20,24,24]; maxpool 2x2/2 -> [20,12,12];
        conv2 50x5x5 -> [50,8,8]; maxpool 2x2/2 -> [50,4,4]; flatten (C,H,W) -> 800;
        ip1 800->500 relu; ip2 500->10; softmax. No relu after the convolutions.
        Convolution is cross-correlation (no kernel flip), as in PyTorch/ONNX.
        conv1.weight [20,1,5,5] (out, in, kh, kw), conv1.bias [20], conv2.weight [50,20,5,5],
        conv2.bias [50], ip1.weight [500,800], ip1.bias [500], ip2.weight [10,500], ip2.bias [10].

Training
    Hand-written numpy forward/backward passes (im2col for convolutions), softmax cross-entropy,
    mini-batch SGD with momentum 0.9, L2 weight decay 5e-4 on weights (not biases), and a cosine
    learning-rate schedule decayed per iteration to 0 (batch 64; LeNet-300-100: lr 0.05, 6 epochs;
    LeNet-5: lr 0.02, 12 epochs; see CONFIGS). Everything is seeded with a fixed numpy
    Generator and BLAS runs single-threaded, so reruns give the same weights on the same machine.

Outputs
    <out>/lenet_300_100.safetensors, <out>/lenet5.safetensors  (F32 tensors, metadata
        {"test_accuracy": ..., "trained_by": "tools/train_mnist.py"})
    tests/data/mnist_test_1000.npz        x = uint8 [1000,28,28] first 1000 test images, y = uint8 [1000]
    tests/data/<model>_probs_1000.npy     float32 [1000,10] softmax probabilities of the numpy
                                          float32 forward pass on those 1000 images
    tests/data/lenet_expected.json        per model: test_accuracy_10000, test_accuracy_first_1000,
                                          correct_first_1000 (accuracies as fractions)
"""

import argparse
import json
import os
import sys
import time

# Single-threaded BLAS: deterministic, and much faster than a multi-threaded BLAS on a busy machine.
# Must be set before numpy is imported; an explicit environment setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA_DIR = os.path.join(REPO_ROOT, "tests", "data")
F32 = np.float32

# Per-model hyperparameters.
CONFIGS = {
    "lenet_300_100": dict(seed=300100, epochs=6, batch=64, lr=0.05, weight_decay=5e-4),
    "lenet5": dict(seed=5, epochs=12, batch=64, lr=0.02, weight_decay=5e-4),
}


# ----------------------------------------------------------------------------- data

def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # unsigned byte element type
        raise ValueError(f"{path}: unsupported IDX magic {magic:#x}")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_mnist(directory):
    def p(name):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            sys.exit(f"missing {path}; fetch it with: bash ../shared/data/fetch-mnist.sh {directory}")
        return path

    xtr = read_idx(p("train-images-idx3-ubyte"))
    ytr = read_idx(p("train-labels-idx1-ubyte"))
    xte = read_idx(p("t10k-images-idx3-ubyte"))
    yte = read_idx(p("t10k-labels-idx1-ubyte"))
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,)
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    return xtr, ytr, xte, yte


def to_float(x_u8):
    """uint8 pixels -> float32 in [0, 1] (no mean subtraction)."""
    return x_u8.astype(F32) / F32(255.0)


# ----------------------------------------------------------------------------- layers

def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(F32)


def dense_init(rng, n_out, n_in, gain):
    # Gaussian with std = gain / sqrt(fan_in)  (gain sqrt(2) before a relu, 1 otherwise).
    w = rng.standard_normal((n_out, n_in), dtype=F32) * F32(gain / np.sqrt(n_in))
    return w, np.zeros(n_out, F32)


def im2col(x, k):
    """x: [N,H,W,C] (internal NHWC) -> cols [N*OH*OW, k*k*C] ordered (kh, kw, c)."""
    n, h, w, c = x.shape
    oh, ow = h - k + 1, w - k + 1
    win = sliding_window_view(x, (k, k), axis=(1, 2))  # [N,OH,OW,C,k,k] view, no copy
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3), dtype=F32)
    return cols.reshape(n * oh * ow, k * k * c), (n, oh, ow)


def col2im(dcols, x_shape, k):
    """Adjoint of im2col: dcols [N*OH*OW, k*k*C] -> dx [N,H,W,C]."""
    n, h, w, c = x_shape
    oh, ow = h - k + 1, w - k + 1
    d = dcols.reshape(n, oh, ow, k, k, c)
    dx = np.zeros(x_shape, F32)
    for i in range(k):
        for j in range(k):
            dx[:, i:i + oh, j:j + ow, :] += d[:, :, :, i, j, :]
    return dx


def conv_matrix(w):
    """[O,C,k,k] (PyTorch layout) -> [O, k*k*C] matching the im2col column order."""
    o, c, k, _ = w.shape
    return w.transpose(0, 2, 3, 1).reshape(o, k * k * c)


def conv_forward(x, w, b):
    """Cross-correlation. x [N,H,W,C] NHWC, w [O,C,k,k] -> y [N,OH,OW,O], cache."""
    o, c, k, _ = w.shape
    cols, (n, oh, ow) = im2col(x, k)
    y = cols @ conv_matrix(w).T
    y += b
    return y.reshape(n, oh, ow, o), (cols, x.shape)


def conv_backward(dy, w, cache, need_dx):
    cols, x_shape = cache
    o, c, k, _ = w.shape
    dy2 = dy.reshape(-1, o)
    dw = (dy2.T @ cols).reshape(o, k, k, c).transpose(0, 3, 1, 2)
    db = dy.reshape(dy.shape[0], -1).sum(axis=0).reshape(-1, o).sum(axis=0)  # fast axis order
    dx = col2im(dy2 @ conv_matrix(w), x_shape, k) if need_dx else None
    return dx, np.ascontiguousarray(dw), db


def _pool_views(x):
    # The four members of every 2x2 window, in row-major window order.
    return (x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2])


def maxpool_forward(x):
    """2x2 stride-2 max pool on NHWC."""
    a, b, c, d = _pool_views(x)
    y = np.maximum(np.maximum(a, b), np.maximum(c, d))
    return y, (x, y)


def maxpool_backward(dy, cache):
    """The gradient goes to one maximal element per window (the first in row-major order on ties)."""
    x, y = cache
    dx = np.zeros(x.shape, F32)
    taken = np.zeros(y.shape, bool)
    for xs, dxs in zip(_pool_views(x), _pool_views(dx)):
        m = xs == y
        m &= ~taken
        taken |= m
        np.multiply(dy, m, out=dxs)
    return dx


# ----------------------------------------------------------------------------- models

class LeNet300100:
    name = "lenet_300_100"

    def __init__(self, rng):
        g = np.sqrt(2.0)
        self.p = {}
        self.p["ip1.weight"], self.p["ip1.bias"] = dense_init(rng, 300, 784, g)
        self.p["ip2.weight"], self.p["ip2.bias"] = dense_init(rng, 100, 300, g)
        self.p["ip3.weight"], self.p["ip3.bias"] = dense_init(rng, 10, 100, 1.0)

    @staticmethod
    def prepare(x_u8):
        return to_float(x_u8).reshape(len(x_u8), 784)

    def forward(self, x, train=False):
        p = self.p
        z1 = x @ p["ip1.weight"].T + p["ip1.bias"]
        a1 = np.maximum(z1, 0)
        z2 = a1 @ p["ip2.weight"].T + p["ip2.bias"]
        a2 = np.maximum(z2, 0)
        z3 = a2 @ p["ip3.weight"].T + p["ip3.bias"]
        return z3, ((x, a1, a2) if train else None)

    def backward(self, dz3, cache):
        p = self.p
        x, a1, a2 = cache
        g = {}
        g["ip3.weight"] = dz3.T @ a2
        g["ip3.bias"] = dz3.sum(0)
        da2 = dz3 @ p["ip3.weight"]
        da2 *= a2 > 0
        g["ip2.weight"] = da2.T @ a1
        g["ip2.bias"] = da2.sum(0)
        da1 = da2 @ p["ip2.weight"]
        da1 *= a1 > 0
        g["ip1.weight"] = da1.T @ x
        g["ip1.bias"] = da1.sum(0)
        return g


class LeNet5:
    name = "lenet5"

    def __init__(self, rng):
        g = np.sqrt(2.0)
        self.p = {}
        w, b = dense_init(rng, 20, 1 * 25, 1.0)
        self.p["conv1.weight"], self.p["conv1.bias"] = w.reshape(20, 1, 5, 5), b
        w, b = dense_init(rng, 50, 20 * 25, 1.0)
        self.p["conv2.weight"], self.p["conv2.bias"] = w.reshape(50, 20, 5, 5), b
        self.p["ip1.weight"], self.p["ip1.bias"] = dense_init(rng, 500, 800, g)
        self.p["ip2.weight"], self.p["ip2.bias"] = dense_init(rng, 10, 500, 1.0)

    @staticmethod
    def prepare(x_u8):
        return to_float(x_u8).reshape(len(x_u8), 28, 28, 1)  # internal NHWC; C == 1

    def forward(self, x, train=False):
        p = self.p
        c1, cc1 = conv_forward(x, p["conv1.weight"], p["conv1.bias"])     # [N,24,24,20]
        p1, pc1 = maxpool_forward(c1)                                      # [N,12,12,20]
        c2, cc2 = conv_forward(p1, p["conv2.weight"], p["conv2.bias"])    # [N,8,8,50]
        p2, pc2 = maxpool_forward(c2)                                      # [N,4,4,50]
        n = x.shape[0]
        flat = np.ascontiguousarray(p2.transpose(0, 3, 1, 2)).reshape(n, 800)  # (C,H,W) order
        z3 = flat @ p["ip1.weight"].T + p["ip1.bias"]
        a3 = np.maximum(z3, 0)
        z4 = a3 @ p["ip2.weight"].T + p["ip2.bias"]
        return z4, ((cc1, pc1, cc2, pc2, flat, a3) if train else None)

    def backward(self, dz4, cache):
        p = self.p
        cc1, pc1, cc2, pc2, flat, a3 = cache
        g = {}
        g["ip2.weight"] = dz4.T @ a3
        g["ip2.bias"] = dz4.sum(0)
        da3 = dz4 @ p["ip2.weight"]
        da3 *= a3 > 0
        g["ip1.weight"] = da3.T @ flat
        g["ip1.bias"] = da3.sum(0)
        dflat = da3 @ p["ip1.weight"]
        n = dflat.shape[0]
        dp2 = dflat.reshape(n, 50, 4, 4).transpose(0, 2, 3, 1)
        dc2 = maxpool_backward(dp2, pc2)
        dp1, g["conv2.weight"], g["conv2.bias"] = conv_backward(dc2, p["conv2.weight"], cc2, True)
        dc1 = maxpool_backward(dp1, pc1)
        _, g["conv1.weight"], g["conv1.bias"] = conv_backward(dc1, p["conv1.weight"], cc1, False)
        return g


MODELS = {"lenet_300_100": LeNet300100, "lenet5": LeNet5}


# ----------------------------------------------------------------------------- training

def predict_probs(model, x, batch=1000):
    out = []
    for i in range(0, len(x), batch):
        z, _ = model.forward(x[i:i + batch])
        out.append(softmax(z))
    return np.concatenate(out).astype(F32)


def train(model_name, xtr_u8, ytr, xte_u8, yte):
    cfg = CONFIGS[model_name]
    rng = np.random.default_rng(cfg["seed"])
    model = MODELS[model_name](rng)
    xtr = model.prepare(xtr_u8)
    xte = model.prepare(xte_u8)
    n = len(xtr)
    bs = cfg["batch"]
    steps_per_epoch = n // bs  # drop the last partial batch
    total = cfg["epochs"] * steps_per_epoch
    vel = {k: np.zeros_like(v) for k, v in model.p.items()}
    wd = F32(cfg["weight_decay"])
    mom = F32(0.9)
    step = 0
    eye = np.eye(10, dtype=F32)
    print(f"== {model_name}: {cfg}", flush=True)
    t0 = time.time()
    for epoch in range(cfg["epochs"]):
        perm = rng.permutation(n)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            xb, yb = xtr[idx], ytr[idx]
            z, cache = model.forward(xb, train=True)
            pr = softmax(z)
            loss_sum += float(-np.log(pr[np.arange(bs), yb] + 1e-12).mean())
            dz = (pr - eye[yb]) / F32(bs)
            grads = model.backward(dz, cache)
            lr = F32(0.5 * cfg["lr"] * (1.0 + np.cos(np.pi * step / total)))
            for k, w in model.p.items():
                gk = grads[k]
                if k.endswith(".weight"):
                    gk = gk + wd * w
                v = vel[k]
                v *= mom
                v -= lr * gk
                w += v
            step += 1
        acc = float((predict_probs(model, xte).argmax(1) == yte).mean())
        print(f"{model_name} epoch {epoch + 1:2d}/{cfg['epochs']}  loss {loss_sum / steps_per_epoch:.4f}  "
              f"test acc {acc * 100:.2f}%  lr {lr:.5f}  ({time.time() - t0:.0f}s)", flush=True)
    for k, v in model.p.items():
        assert v.dtype == F32, k
    return model, time.time() - t0


def write_safetensors(path, tensors, metadata):
    """Write F32 tensors as safetensors with a byte-for-byte deterministic header (keys sorted).

    safetensors' own writer orders the metadata entries arbitrarily, so reruns would produce files
    that differ only in the header; the result is checked by loading it back with safetensors.
    """
    header = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        assert t.dtype == F32 and t.flags.c_contiguous, name
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(hdr).to_bytes(8, "little"))
        f.write(hdr)
        for name in sorted(tensors):
            f.write(tensors[name].astype("<f4", copy=False).tobytes())


def export(model, out_dir, x1000_u8, xte_u8, yte):
    name = model.name
    probs_all = predict_probs(model, model.prepare(xte_u8))
    acc10k = float((probs_all.argmax(1) == yte).mean())
    probs1k = predict_probs(model, model.prepare(x1000_u8))
    correct1k = int((probs1k.argmax(1) == yte[:1000]).sum())
    acc1k = correct1k / 1000.0
    print(f"{name}: final test accuracy {acc10k * 100:.2f}% (10000 images), "
          f"{acc1k * 100:.1f}% (first 1000: {correct1k} correct)", flush=True)

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.safetensors")
    tensors = {k: np.ascontiguousarray(v, dtype=F32) for k, v in model.p.items()}
    write_safetensors(path, tensors, {"test_accuracy": f"{acc10k:.4f}", "trained_by": "tools/train_mnist.py"})
    probs_path = os.path.join(TEST_DATA_DIR, f"{name}_probs_1000.npy")
    np.save(probs_path, probs1k)

    # Round-trip check: the saved file gives the same probabilities.
    reloaded = MODELS[name].__new__(MODELS[name])
    reloaded.p = load_file(path)
    assert sorted(reloaded.p) == sorted(model.p), f"{name}: tensor names differ"
    for k, v in model.p.items():
        assert reloaded.p[k].dtype == F32 and np.array_equal(reloaded.p[k], v), k
    again = predict_probs(reloaded, reloaded.prepare(x1000_u8))
    assert np.array_equal(again, probs1k), f"{name}: reloaded weights disagree"
    print(f"wrote {path} and {probs_path} (reload check ok)", flush=True)
    return {"test_accuracy_10000": round(acc10k, 6), "test_accuracy_first_1000": acc1k,
            "correct_first_1000": correct1k}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mnist", default=os.path.expanduser("~/.cache/sprig/mnist"),
                    help="directory with the MNIST IDX files (default ~/.cache/sprig/mnist)")
    ap.add_argument("--model", default="all", choices=["lenet_300_100", "lenet5", "all"])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "examples"),
                    help="directory for the .safetensors files (default <repo>/examples)")
    args = ap.parse_args()

    xtr, ytr, xte, yte = load_mnist(args.mnist)
    os.makedirs(TEST_DATA_DIR, exist_ok=True)
    x1000 = np.ascontiguousarray(xte[:1000])
    np.savez_compressed(os.path.join(TEST_DATA_DIR, "mnist_test_1000.npz"),
                        x=x1000.astype(np.uint8), y=yte[:1000].astype(np.uint8))

    names = ["lenet_300_100", "lenet5"] if args.model == "all" else [args.model]
    expected_path = os.path.join(TEST_DATA_DIR, "lenet_expected.json")
    for name in names:
        model, secs = train(name, xtr, ytr, xte, yte)
        print(f"{name}: training took {secs:.0f}s", flush=True)
        result = export(model, args.out, x1000, xte, yte)
        expected = {}
        if os.path.exists(expected_path):  # keep the entry of the model not trained in this run
            with open(expected_path) as f:
                expected = json.load(f)
        expected[name] = result
        with open(expected_path, "w") as f:
            json.dump(expected, f, indent=2, sort_keys=True)
            f.write("\n")
    print(f"wrote {expected_path}", flush=True)


if __name__ == "__main__":
    main()
