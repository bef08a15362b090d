"""Pieces shared by bench/frontier.py and its peer subprocess (bench/_peers.py).

Only NumPy and fastconv are imported here, so the module loads in any interpreter that
can import fastconv (the main venv, or the TensorFlow / ONNX Runtime venv with
PYTHONPATH pointing at the repository).
"""
import time

import numpy as np

import fastconv
from fastconv import _contention
from fastconv import reference as ref
from fastconv.benchmark import CONV_LAYERS, POOL_LAYERS

__all__ = ["interleaved", "pool_case", "pool_flops", "fastconv_pool", "torch_pool",
           "naive_pool", "python_conv_seconds", "python_conv_forward",
           "python_conv_grad_input", "python_conv_grad_weight", "CONV_LAYERS",
           "POOL_LAYERS", "SECOND"]

# Suffix of fastconv's second timings in a peer process: interleaved with ONNX Runtime's
# spinning session (bench/_peers.py, _ort_fastest).
SECOND = " (next to spinning ORT)"


# The benchmarks time kernels on a quiet machine: fastconv's drop to one thread while
# the cores are taken (fastconv/_contention.py) stays off, or a peer's spinning threads
# in this process would send fastconv to one thread (bench_under_load.py turns it on).
_contention.ENABLED = False

SETTLE_SECONDS = 0.01


def interleaved(fns, repeat, min_time=0.0, setup=None, warmup=1, settle=True,
                settle_seconds=None):
    """Median milliseconds of each callable, timed round-robin in the same process.

    Every round calls each function once, so a burst of load from elsewhere hits all of
    them alike.  At least ``repeat`` rounds; more (up to 20x) until ``min_time`` seconds
    have passed.  ``setup`` maps a name to a callable run just before that function,
    outside the timed region (thread-count switches).

    ``settle``: each timed call follows untimed calls of the same function, at least
    one and for at least SETTLE_SECONDS.  Thread pools keep spinning for a while after
    a call returns (ONNX Runtime's and TensorFlow's by default, libgomp's in PyTorch);
    without this, whichever system is timed next shares the cores with them.  Measured:
    fastconv's cifar.c3 forward took 6.6 ms alone and 12.7 ms timed right after each
    ONNX Runtime call (which took 8.4 ms alone); fastconv's cifar.p2 max-pool forward
    0.42-0.49 ms alone, 0.81-0.88 ms after one untimed call of its own following ONNX
    Runtime's, 0.50 ms after 10 ms of them (ORT's pool spins longer than that call).
    With it, every system is timed as in a loop of its own calls.  ``settle_seconds``
    replaces SETTLE_SECONDS (ONNX Runtime's spinning session: bench/_peers.py).
    """
    settle_seconds = SETTLE_SECONDS if settle_seconds is None else settle_seconds
    setup = setup or {}
    for k, f in fns.items():
        for _ in range(warmup):
            if k in setup:
                setup[k]()
            f()
    times = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeat or (time.perf_counter() - start < min_time
                              and rounds < 20 * repeat):
        for k, f in fns.items():
            if k in setup:
                setup[k]()
            if settle:
                t0 = time.perf_counter()
                f()
                while time.perf_counter() - t0 < settle_seconds:
                    f()
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


# ---------------------------------------------------------------------------- pooling
def pool_case(name, batch, seed=0):
    """(kind, pool, x, grad_y) of a pooling layer, channels_first float32."""
    kind, c, h, w, pool = POOL_LAYERS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c, h, w), dtype=np.float32)
    gy = rng.standard_normal((batch, c, h // pool, w // pool), dtype=np.float32)
    return kind, pool, x, gy


def pool_flops(name, batch):
    """Input elements read by the forward pass (a rough "work" measure, not FLOPs)."""
    kind, c, h, w, pool = POOL_LAYERS[name]
    return float(batch * c * h * w)


def fastconv_pool(name, batch, data_format):
    """(fwd, fwd_bwd) closures of fastconv on one pooling layer."""
    kind, pool, x, gy = pool_case(name, batch)
    if data_format == "channels_last":
        x, gy = ref.to_channels_last(x), ref.to_channels_last(gy)
    if kind == "max":
        def fwd():
            fastconv.max_pool2d(x, pool, data_format=data_format)

        def fwd_bwd():
            _, idx = fastconv.max_pool2d(x, pool, data_format=data_format,
                                         return_indices=True)
            fastconv.max_pool2d_backward(gy, x, pool, data_format=data_format,
                                         indices=idx)
    else:
        def fwd():
            fastconv.avg_pool2d(x, pool, data_format=data_format)

        def fwd_bwd():
            fastconv.avg_pool2d(x, pool, data_format=data_format)
            fastconv.avg_pool2d_backward(gy, x, pool, data_format=data_format)
    return fwd, fwd_bwd


def torch_pool(torch, name, batch):
    """(fwd, fwd_bwd) closures of PyTorch (NCHW, autograd) on one pooling layer."""
    kind, pool, x, gy = pool_case(name, batch)
    op = (torch.nn.functional.max_pool2d if kind == "max"
          else torch.nn.functional.avg_pool2d)
    tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)

    def fwd():
        with torch.no_grad():
            op(tx, pool)

    def fwd_bwd():
        xr = tx.detach().requires_grad_()
        op(xr, pool).backward(tgy)
    return fwd, fwd_bwd


def naive_pool(name, batch):
    """(fwd, fwd_bwd) closures of the naive NumPy reference (fastconv.reference)."""
    kind, pool, x, gy = pool_case(name, batch)
    p = (pool, pool)
    if kind == "max":
        def fwd():
            ref.max_pool2d_forward(x, p, p)

        def fwd_bwd():
            _, pos = ref.max_pool2d_forward(x, p, p)
            ref.max_pool2d_grad_input(gy, pos, x.shape, p, p)
    else:
        def fwd():
            ref.avg_pool2d_forward(x, p, p)

        def fwd_bwd():
            ref.avg_pool2d_forward(x, p, p)
            ref.avg_pool2d_grad_input(gy, x.shape, p, p)
    return fwd, fwd_bwd


# ------------------------------------------------------------- plain Python loops
# One image, one output channel, stride 1, nested lists: the "plain Python loops"
# baseline of the performance targets (docs/benchmarks/method.md).  xp is the zero-padded
# input [c][row][col], w is [c][i][j].
def python_conv_forward(xp, w, oh, ow, bias):
    c_in, k = len(w), len(w[0])
    out = [[bias] * ow for _ in range(oh)]
    for oy in range(oh):
        row = out[oy]
        for ox in range(ow):
            s = row[ox]
            for c in range(c_in):
                xc, wc = xp[c], w[c]
                for i in range(k):
                    xr, wr = xc[oy + i], wc[i]
                    for j in range(k):
                        s += xr[ox + j] * wr[j]
            row[ox] = s
    return out


def python_conv_grad_input(gy, w, hp, wp):
    """Gradient with respect to the padded input (the caller crops the padding)."""
    c_in, k = len(w), len(w[0])
    gx = [[[0.0] * wp for _ in range(hp)] for _ in range(c_in)]
    for oy in range(len(gy)):
        for ox in range(len(gy[0])):
            g = gy[oy][ox]
            for c in range(c_in):
                gc, wc = gx[c], w[c]
                for i in range(k):
                    gr, wr = gc[oy + i], wc[i]
                    for j in range(k):
                        gr[ox + j] += g * wr[j]
    return gx


def python_conv_grad_weight(gy, xp, k):
    c_in = len(xp)
    gw = [[[0.0] * k for _ in range(k)] for _ in range(c_in)]
    for oy in range(len(gy)):
        for ox in range(len(gy[0])):
            g = gy[oy][ox]
            for c in range(c_in):
                xc, gc = xp[c], gw[c]
                for i in range(k):
                    xr, gr = xc[oy + i], gc[i]
                    for j in range(k):
                        gr[j] += g * xr[ox + j]
    return gw


def _python_case(name, seed=0):
    c, h, w, c_out, k, padding = CONV_LAYERS[name]
    p = k // 2 if padding == "same" else 0
    rng = np.random.default_rng(seed)
    xp = np.pad(rng.standard_normal((c, h, w)), ((0, 0), (p, p), (p, p)))
    wt = rng.standard_normal((c, k, k))
    oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
    gy = rng.standard_normal((oh, ow))
    return xp.tolist(), wt.tolist(), gy.tolist(), k, oh, ow


def python_conv_seconds(name, repeat=3):
    """Median seconds of (forward, forward + both gradients) in plain Python loops for
    ONE image and ONE output channel; multiply by batch * C_out for a whole layer (the
    work is exactly proportional: every (image, output channel) pair costs the same)."""
    xp, wt, gy, k, oh, ow = _python_case(name)
    hp, wp = len(xp[0]), len(xp[0][0])
    t_f, t_b = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        python_conv_forward(xp, wt, oh, ow, 0.5)
        t1 = time.perf_counter()
        python_conv_grad_input(gy, wt, hp, wp)
        python_conv_grad_weight(gy, xp, k)
        sum(sum(r) for r in gy)                    # bias gradient
        t2 = time.perf_counter()
        t_f.append(t1 - t0)
        t_b.append(t2 - t1)
    f, b = float(np.median(t_f)), float(np.median(t_b))
    return f, f + b
