"""The network suite: fastconv against PyTorch and ONNX Runtime on the convolution and
pooling layers of real networks (bench/_suite_layers.py), per layer and per network.

    python bench/suite.py [--quick] [--nets resnet50 mobilenet_v1] [--batches 1 8]
                          [--passes fwd fwd+bwd] [--json out.json] [--markdown out.md]

For every layer and batch (float32, 2 threads unless --threads), each system is called
round-robin (bench/_frontier_common.interleaved: settle calls before each timed one,
medians), so every ratio comes from one run:
  fastconv nchw / nhwc  fastconv.conv2d (+ conv2d_backward: all gradients), both layouts;
  torch nchw / torch cl PyTorch (autograd) in its contiguous and channels_last formats;
  onnxruntime           forward only, one session per layer (NCHW, all optimisations,
                        worker threads that do not spin).
"fc" is the faster fastconv layout, "peer" the fastest peer of the row; a network's
total is sum(repeat x time) over its layers.  The header prints the BLAS kernel
(threadpoolctl) and the float32 matrix-product GFLOP/s NumPy's BLAS reaches in this run.
Out of the default test run: nothing imports this module.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
try:
    import fastconv
except ImportError:
    sys.path.insert(0, ROOT)
    import fastconv

from _frontier_common import interleaved  # noqa: E402
from _suite_layers import BATCHES, NETWORKS, QUICK_BATCHES  # noqa: E402

PASSES = ("fwd", "fwd+bwd")
FC = ("fastconv nchw", "fastconv nhwc")
PEERS = ("torch nchw", "torch cl", "onnxruntime")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ cases
def case(layer, batch, seed=0):
    """(x, weight, grad_y) channels_first float32 of one layer (weight None: pooling).
    For "up" x is the transposed convolution's input and weight is in the orientation
    of the convolution it transposes: (c_in, c_out, k, k)."""
    rng = np.random.default_rng(seed)
    L = layer
    x = rng.standard_normal((batch, L.c_in, L.h, L.w), dtype=np.float32)
    oh, ow = L.out_hw
    gy = rng.standard_normal((batch, L.c_out, oh, ow), dtype=np.float32)
    w = None
    if L.kind == "conv":
        fan = (L.c_in // L.groups) * L.k * L.k
        w = (rng.standard_normal((L.c_out, L.c_in // L.groups, L.k, L.k)) /
             math.sqrt(fan)).astype(np.float32)
    elif L.kind == "up":
        w = (rng.standard_normal((L.c_in, L.c_out, L.k, L.k)) /
             math.sqrt(L.c_in * L.k * L.k)).astype(np.float32)
    return x, w, gy


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def fastconv_fns(layer, batch, data_format):
    """(fwd, fwd_bwd) closures of fastconv on one layer in one layout."""
    L = layer
    x, w, gy = case(L, batch)
    last = data_format == "channels_last"
    if last:
        x, gy = _nhwc(x), _nhwc(gy)
        if w is not None:
            w = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    kw = dict(stride=L.stride, padding=L.pad, data_format=data_format)
    if L.kind == "conv":
        def fwd():
            fastconv.conv2d(x, w, None, groups=L.groups, **kw)

        def fwd_bwd():
            fastconv.conv2d(x, w, None, groups=L.groups, **kw)
            fastconv.conv2d_backward(gy, x, w, groups=L.groups, has_bias=False, **kw)
    elif L.kind == "up":
        oh, ow = L.out_hw
        y_shape = (batch, oh, ow, L.c_out) if last else (batch, L.c_out, oh, ow)

        def fwd():   # the transposed convolution: x plays the convolution's grad_y
            fastconv.conv2d_grad_input(x, w, y_shape, **kw)

        def fwd_bwd():
            fastconv.conv2d_grad_input(x, w, y_shape, **kw)
            fastconv.conv2d(gy, w, None, **kw)                 # its input gradient
            fastconv.conv2d_grad_weight(x, gy, w.shape, **kw)  # its weight gradient
    elif L.kind == "maxpool":
        def fwd():
            fastconv.max_pool2d(x, L.k, L.stride, L.pad, data_format=data_format)

        def fwd_bwd():
            _, idx = fastconv.max_pool2d(x, L.k, L.stride, L.pad, data_format=data_format,
                                         return_indices=True)
            fastconv.max_pool2d_backward(gy, x, L.k, L.stride, L.pad,
                                         data_format=data_format, indices=idx)
    else:
        def fwd():
            fastconv.global_avg_pool2d(x, data_format=data_format)

        g2 = gy.reshape(batch, L.c_out)

        def fwd_bwd():
            fastconv.global_avg_pool2d(x, data_format=data_format)
            fastconv.global_avg_pool2d_backward(g2, x.shape, data_format=data_format)
    return fwd, fwd_bwd


def torch_fns(torch, layer, batch, channels_last):
    """(fwd, fwd_bwd) closures of PyTorch (autograd) in one memory format."""
    L = layer
    x, w, gy = case(L, batch)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tx = torch.from_numpy(x).contiguous(memory_format=fmt).requires_grad_(True)
    tgy = torch.from_numpy(gy).contiguous(memory_format=fmt)
    tw = (None if w is None else
          torch.from_numpy(w).contiguous(memory_format=fmt).requires_grad_(True))
    F = torch.nn.functional
    if L.kind == "conv":
        def op(a):
            return F.conv2d(a, tw, None, L.stride, L.pad, 1, L.groups)
    elif L.kind == "up":
        def op(a):
            return F.conv_transpose2d(a, tw, None, L.stride, L.pad)
    elif L.kind == "maxpool":
        def op(a):
            return F.max_pool2d(a, L.k, L.stride, L.pad)
    else:
        tgy = tgy.reshape(batch, L.c_out, 1, 1)

        def op(a):
            return F.adaptive_avg_pool2d(a, 1)

    def fwd():
        with torch.no_grad():
            op(tx)

    def fwd_bwd():
        tx.grad = None
        if tw is not None:
            tw.grad = None
        op(tx).backward(tgy)
    return fwd, fwd_bwd


def ort_fwd(ort, layer, batch, threads):
    """The forward of one layer in an ONNX Runtime session (NCHW), as a closure."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    L = layer
    x, w, gy = case(L, batch)
    inits = [] if w is None else [numpy_helper.from_array(w, "W")]
    if L.kind == "conv":
        node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[L.k, L.k],
                                pads=[L.pad] * 4, strides=[L.stride] * 2, group=L.groups)
    elif L.kind == "up":
        node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"],
                                kernel_shape=[L.k, L.k], strides=[L.stride] * 2)
    elif L.kind == "maxpool":
        node = helper.make_node("MaxPool", ["X"], ["Y"], kernel_shape=[L.k, L.k],
                                pads=[L.pad] * 4, strides=[L.stride] * 2)
    else:
        node = helper.make_node("GlobalAveragePool", ["X"], ["Y"])
    y_shape = list(gy.shape) if L.kind != "gap" else [batch, L.c_out, 1, 1]
    graph = helper.make_graph(
        [node], L.name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    feed = {"X": x}
    return lambda: sess.run(None, feed)


# ----------------------------------------------------------------------- environment
def blas_peak(seconds=1.0, n=1024):
    """GFLOP/s of NumPy's float32 n x n matrix product (the best of repeated calls)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def blas_line():
    c = fastconv.config()
    return "; ".join(f"{b.get('internal_api')} {b.get('version')}, kernel "
                     f"{b.get('architecture')}, {b.get('num_threads')} threads"
                     for b in c["blas"]) or "none found"


# ------------------------------------------------------------------------- measuring
def measure(args, torch, ort):
    rows = []
    for net in args.nets:
        batches = args.batches or (QUICK_BATCHES if args.quick else BATCHES)[net]
        for batch in batches:
            for L in NETWORKS[net]:
                fns = {name: fastconv_fns(L, batch, fmt) for name, fmt in
                       zip(FC, ("channels_first", "channels_last"))}
                if torch is not None:
                    fns["torch nchw"] = torch_fns(torch, L, batch, False)
                    fns["torch cl"] = torch_fns(torch, L, batch, True)
                ortf = ort_fwd(ort, L, batch, args.threads) if ort is not None else None
                for i, pass_ in enumerate(PASSES):
                    if pass_ not in args.passes:
                        continue
                    group = {k: v[i] for k, v in fns.items()}
                    if i == 0 and ortf is not None:
                        group["onnxruntime"] = ortf
                    t = interleaved(group, args.repeat, args.min_time)
                    rows.append({"net": net, "layer": L.name, "shape": L.describe(),
                                 "kind": L.kind, "repeat": L.repeat, "batch": batch,
                                 "pass": pass_, "macs": L.macs * batch, "times": t})
                    log(f"{net} b{batch} {L.name} {pass_}: " +
                        ", ".join(f"{k} {v:.3f}" for k, v in t.items()))
    return rows


def best(times, names):
    vals = [times[k] for k in names if k in times]
    return min(vals) if vals else None


def gflops(row, ms):
    work = row["macs"] * 2.0 * (3.0 if row["pass"] == "fwd+bwd" else 1.0)
    return work / (ms * 1e-3) / 1e9 if work and ms else None


def summarise(rows):
    """Per-network totals (repeat-weighted) and the geometric mean of fc / peer."""
    totals = {}
    logs = []
    for r in rows:
        fc, peer = best(r["times"], FC), best(r["times"], PEERS)
        r["fc"], r["peer"] = fc, peer
        r["ratio"] = fc / peer if peer else None
        key = (r["net"], r["batch"], r["pass"])
        tot = totals.setdefault(key, {"fc": 0.0, "peer": 0.0,
                                      **{k: 0.0 for k in FC + PEERS}})
        tot["fc"] += r["repeat"] * fc
        tot["peer"] += r["repeat"] * (peer if peer else float("nan"))
        for k in FC + PEERS:
            tot[k] += r["repeat"] * r["times"].get(k, float("nan"))
        if r["ratio"]:
            logs.append(math.log(r["ratio"]))
    geo = math.exp(sum(logs) / len(logs)) if logs else None
    return totals, geo


def _f(v, fmt="{:.3f}"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def markdown(rows, totals, geo, env):
    out = ["# Network suite", "", *[f"- {k}: {v}" for k, v in env.items()], ""]
    out.append(f"Geometric mean of fc / best peer over {len(rows)} rows: **{_f(geo)}**")
    out += ["", "## Network totals (ms, sum of repeat x time)", "",
            "| network | batch | pass | fc nchw | fc nhwc | torch nchw | torch cl | ort | "
            "fc (best layout per layer) | best peer per layer | fc / peer |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (net, batch, pass_), t in totals.items():
        out.append(f"| {net} | {batch} | {pass_} | " + " | ".join(
            _f(t[k], "{:.2f}") for k in FC + PEERS + ("fc", "peer")) +
            f" | {_f(t['fc'] / t['peer'] if t['peer'] else None, '{:.2f}')} |")
    out += ["", "## Layers (ms; GFLOP/s of the faster fastconv layout)", "",
            "| network | batch | layer | shape | x | pass | fc nchw | fc nhwc | torch nchw "
            "| torch cl | ort | fc GFLOP/s | fc / peer | nchw / nhwc |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["times"]
        out.append(f"| {r['net']} | {r['batch']} | {r['layer']} | {r['shape']} | "
                   f"{r['repeat']} | {r['pass']} | " +
                   " | ".join(_f(t.get(k)) for k in FC + PEERS) +
                   f" | {_f(gflops(r, r['fc']), '{:.1f}')} | {_f(r['ratio'], '{:.2f}')} | "
                   f"{_f(t['fastconv nchw'] / t['fastconv nhwc'], '{:.2f}')} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--batches", nargs="+", type=int, default=None)
    p.add_argument("--passes", nargs="+", default=list(PASSES), choices=list(PASSES))
    p.add_argument("--quick", action="store_true",
                   help="batch 1 (32 for ResNet-20), 3 rounds")
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--min-time", type=float, default=None)
    p.add_argument("--threads", type=int, default=fastconv.get_num_threads())
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-ort", action="store_true")
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    args.repeat = args.repeat or (3 if args.quick else 7)
    args.min_time = args.min_time if args.min_time is not None else (
        0.0 if args.quick else 0.3)
    fastconv.set_num_threads(args.threads)
    torch = ort = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            log("torch not importable: skipped")
    if not args.no_ort:
        try:
            import onnxruntime as ort
        except ImportError:
            log("onnxruntime not importable: skipped")
    load0 = os.getloadavg()
    peak0 = blas_peak()
    rows = measure(args, torch, ort)
    peak1 = blas_peak()
    load1 = os.getloadavg()
    c = fastconv.config()
    env = {"fastconv": f"{c['fastconv']}, conv ISA {c.get('conv_isa')}, "
                       f"{args.threads} threads, OpenMP {'on' if c['openmp'] else 'off'}",
           "BLAS": blas_line(),
           "float32 matmul peak (NumPy BLAS, 1024^3, before / after)":
               f"{peak0:.1f} / {peak1:.1f} GFLOP/s",
           "peers": (f"torch {torch.__version__ if torch else 'skipped'}, onnxruntime "
                     f"{ort.__version__ if ort else 'skipped'}"),
           "load average (1, 5, 15 min) before / after":
               f"{' '.join(f'{v:.2f}' for v in load0)} / "
               f"{' '.join(f'{v:.2f}' for v in load1)}",
           "rounds": f"{args.repeat} (min {args.min_time} s), interleaved, medians"}
    totals, geo = summarise(rows)
    md = markdown(rows, totals, geo, env)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "geomean_fc_over_peer": geo, "rows": rows,
                       "totals": [{"net": k[0], "batch": k[1], "pass": k[2], **v}
                                  for k, v in totals.items()]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
