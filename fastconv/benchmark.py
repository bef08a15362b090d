"""The comparison table: fastconv's kernels against the naive reference and PyTorch.

``fastconv bench`` (or ``python -m fastconv.benchmark``) runs it.  Every system is timed
interleaved in the same process (round-robin over repeats, median kept), so the ratios
hold even on a busy machine; the BLAS kernel and thread counts head the output.  The
naive reference (a NumPy loop over output pixels) runs on a small batch and is scaled
linearly to the benchmark batch, and is labelled so.

The pytest-benchmark suites in bench/ time the same layers with the same inputs (they
import LAYERS from here) for regression tracking.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from . import reference as ref
from ._config import config, get_num_threads
from .conv import conv2d, conv2d_backward

__all__ = ["CONV_LAYERS", "POOL_LAYERS", "conv_case", "conv_flops", "run",
           "RATE_LEGEND", "TORCH_INSTALL"]

# name: (C_in, H, W, C_out, k, padding) -- the layers of LeNet-5 and the CIFAR-10 network.
CONV_LAYERS = {
    "lenet.c1": (1, 32, 32, 6, 5, "valid"),
    "lenet.c3": (6, 14, 14, 16, 5, "valid"),
    "lenet.c5": (16, 5, 5, 120, 5, "valid"),
    "cifar.c1": (3, 32, 32, 32, 3, "same"),
    "cifar.c2": (32, 32, 32, 32, 3, "valid"),
    "cifar.c3": (32, 15, 15, 64, 3, "same"),
    "cifar.c4": (64, 15, 15, 64, 3, "valid"),
}
# name: (kind, C, H, W, pool)
POOL_LAYERS = {
    "lenet.s2": ("avg", 6, 28, 28, 2),
    "lenet.s4": ("avg", 16, 10, 10, 2),
    "cifar.p1": ("max", 32, 30, 30, 2),
    "cifar.p2": ("max", 64, 13, 13, 2),
}


def conv_case(name, batch, data_format="channels_first", dtype=np.float32, seed=0):
    """Inputs (x, weight, bias, grad_y, padding) of one benchmark layer."""
    c, h, w, c_out, k, padding = CONV_LAYERS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((c_out, c, k, k)) / np.sqrt(c * k * k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    y_shape = conv2d(x[:1], wt, padding=padding).shape
    gy = rng.standard_normal((batch,) + y_shape[1:]).astype(dtype)
    if data_format == "channels_last":
        x, gy = ref.to_channels_last(x), ref.to_channels_last(gy)
        wt = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    return x, wt, b, gy, padding


def conv_flops(name, batch):
    """Multiply-adds x 2 of the forward pass (the backward costs twice that)."""
    c, h, w, c_out, k, padding = CONV_LAYERS[name]
    oh, ow = (h, w) if padding == "same" else (h - k + 1, w - k + 1)
    return 2.0 * batch * oh * ow * c_out * c * k * k


def _fastconv_conv(name, batch, data_format):
    x, w, b, gy, padding = conv_case(name, batch, data_format)

    def fwd():
        conv2d(x, w, b, padding=padding, data_format=data_format)

    def fwd_bwd():
        conv2d(x, w, b, padding=padding, data_format=data_format)
        conv2d_backward(gy, x, w, padding=padding, data_format=data_format)
    return fwd, fwd_bwd


def _naive_conv(name, batch):
    x, w, b, gy, padding = conv_case(name, batch)
    c, h, wd, c_out, k, _ = CONV_LAYERS[name]
    pads = ((k // 2, k // 2),) * 2 if padding == "same" else ((0, 0), (0, 0))

    def fwd():
        ref.conv2d_forward(x, w, b, (1, 1), pads)

    def fwd_bwd():
        ref.conv2d_forward(x, w, b, (1, 1), pads)
        ref.conv2d_grad_input(gy, w, x.shape, (1, 1), pads)
        ref.conv2d_grad_weight(gy, x, w.shape, (1, 1), pads)
        ref.conv2d_grad_bias(gy)
    return fwd, fwd_bwd


def _torch_conv(torch, name, batch):
    x, w, b, gy, padding = conv_case(name, batch)
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    tgy = torch.from_numpy(gy)
    F = torch.nn.functional

    def fwd():
        with torch.no_grad():
            F.conv2d(tx, tw, tb, padding=padding)

    def fwd_bwd():
        tx.grad = tw.grad = tb.grad = None
        F.conv2d(tx, tw, tb, padding=padding).backward(tgy)
    return fwd, fwd_bwd


def _median_times(fns, repeat, min_time=0.0):
    """Interleaved timing: each round calls every function once; medians in seconds."""
    for f in fns.values():  # warm-up
        f()
    times = {k: [] for k in fns}
    start = time.perf_counter()
    r = 0
    while r < repeat or (time.perf_counter() - start < min_time and r < 20 * repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
        r += 1
    return {k: float(np.median(v)) for k, v in times.items()}


#: What to install for the PyTorch column (the version the comparison was made with).
TORCH_INSTALL = 'pip install torch==2.13.0 (or pip install "fastconv[compare]")'

#: How the GF/s beside each conv time are computed: fastconv may run a layer with a fast
#: algorithm (Winograd) that does fewer multiplications than the direct convolution, so
#: the rate can exceed the machine's peak; it is a direct-equivalent rate.
RATE_LEGEND = ("GF/s = effective (direct-equivalent) rate: the direct convolution's "
               "2 x multiply-adds (the backward counts twice the forward) divided by the "
               "time. Layers fastconv runs with Winograd do fewer multiplications, so "
               "their effective rate can exceed the machine's peak.")


def _import_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


class _Parser(argparse.ArgumentParser):
    """One-line errors, as the rest of the ``fastconv`` command."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def bench_conv(names, batch, repeat, torch=None, naive_batch=1, layouts=("channels_first",
                                                                          "channels_last")):
    """Rows of {layer, pass, system: ms} for the conv layers."""
    rows = []
    for name in names:
        systems = {}
        for fmt in layouts:
            f, fb = _fastconv_conv(name, batch, fmt)
            systems[f"fastconv-{'nchw' if fmt == 'channels_first' else 'nhwc'}"] = (f, fb)
        if torch is not None:
            systems["torch"] = _torch_conv(torch, name, batch)
        if naive_batch:
            # Timed in the same rounds as the others (so under the same machine load),
            # on a small batch, then scaled linearly to the benchmark batch.
            systems["naive-numpy (scaled)"] = _naive_conv(name, naive_batch)
        for i, pass_name in enumerate(("fwd", "fwd+bwd")):
            t = _median_times({k: v[i] for k, v in systems.items()}, repeat, min_time=0.3)
            row = {"layer": name, "pass": pass_name, "batch": batch,
                   "gflop": conv_flops(name, batch) * (1 if i == 0 else 3) / 1e9}
            row.update({k: v * 1e3 for k, v in t.items()})
            if naive_batch:
                row["naive-numpy (scaled)"] *= batch / naive_batch
            rows.append(row)
    return rows


def format_table(rows, header=""):
    systems = []
    for r in rows:
        for k in r:
            if k not in ("layer", "pass", "batch", "gflop") and k not in systems:
                systems.append(k)
    lines = [header] if header else []
    cols = ["layer", "pass"] + [f"{s} ms" for s in systems]
    if "torch" in systems:
        cols.append("fastconv/torch")
    if "naive-numpy (scaled)" in systems:
        cols.append("naive/fastconv")
    lines.append(" | ".join(cols))
    lines.append(" | ".join("---" for _ in cols))
    for r in rows:
        best = min(v for k, v in r.items() if k.startswith("fastconv"))
        cells = [r["layer"], r["pass"]]
        for s in systems:
            v = r.get(s)
            if v is None:
                cells.append("-")
            elif r.get("gflop"):
                cells.append(f"{v:.2f} ({r['gflop'] / v * 1e3:.0f} eff. GF/s)")
            else:
                cells.append(f"{v:.2f}")
        if "torch" in systems:
            cells.append(f"{best / r['torch']:.2f}" if r.get("torch") else "-")
        if "naive-numpy (scaled)" in systems:
            cells.append(f"{r['naive-numpy (scaled)'] / best:.0f}x")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def environment_header():
    c = config()
    lines = [f"fastconv {c['fastconv']}, numpy {c['numpy']}, OpenMP "
             f"{'on' if c['openmp'] else 'off'}, {c['threads']} threads"]
    for b in c["blas"]:
        lines.append(f"BLAS: {b.get('internal_api')} {b.get('version')}, kernel "
                     f"{b.get('architecture')}, {b.get('num_threads')} threads")
    return "\n".join(lines)


def run(argv=None):
    """Command-line entry: print the conv comparison table."""
    p = _Parser(prog="fastconv bench", description=__doc__.split("\n")[0])
    p.add_argument("--layers", nargs="*", default=list(CONV_LAYERS),
                   help=f"conv layers to time (default: all, {' '.join(CONV_LAYERS)})")
    p.add_argument("--batch", type=int, default=128, help="images per call (default: 128)")
    p.add_argument("--repeat", type=int, default=5,
                   help="interleaved rounds, at least; short layers get more (default: 5)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--no-naive", action="store_true", help="skip the naive reference")
    p.add_argument("--naive-batch", type=int, default=1,
                   help="batch the naive loops run on before scaling (default: 1, one "
                        "image at a time, as a per-image NumPy loop over output pixels)")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args(argv)
    unknown = [n for n in args.layers if n not in CONV_LAYERS]
    if unknown:
        p.error(f"unknown layer(s) {unknown}; choose from {list(CONV_LAYERS)}")
    if args.batch < 1 or args.repeat < 1 or args.naive_batch < 1:
        p.error(f"--batch, --repeat and --naive-batch must be positive, got "
                f"{args.batch}, {args.repeat} and {args.naive_batch}")
    if args.json:  # before the measurements, not after them
        folder = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json):
            p.error(f"--json: {args.json} is a folder; give a file name")
        if not os.path.isdir(folder):
            p.error(f"--json: folder {folder} does not exist")
    torch = None if args.no_torch else _import_torch(get_num_threads())
    header = environment_header()
    if torch is not None:
        header += f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads"
    elif args.no_torch:
        header += "\nPyTorch: left out (--no-torch)"
    else:
        header += (f"\nPyTorch: not installed, so the torch column is skipped; for the "
                   f"comparison: {TORCH_INSTALL}")
    rows = bench_conv(args.layers, args.batch, args.repeat, torch,
                      naive_batch=0 if args.no_naive else args.naive_batch)
    print(format_table(rows, header + f"\nconv2d, batch {args.batch}, float32, median ms "
                                      "(interleaved), effective GF/s beside each time"))
    print(f"\nNote: {RATE_LEGEND}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": config(), "rows": rows}, f, indent=1)
    print("\nThe whole comparison (pooling, TensorFlow, ONNX Runtime, networks, memory, "
          "threads, and the performance targets of docs/benchmarks/method.md, each "
          "judged MET or NOT MET) from a source checkout:\n"
          "    python bench/frontier.py [--quick] [--tf-python PATH] [--ort-python PATH] "
          "[--json out.json]\n(see docs/benchmarks/)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
