"""Pooling benchmarks at the real layer shapes of LeNet-5 and the CIFAR-10 network.

Run with::

    python -m pytest bench/bench_pool2d.py --benchmark-only -p no:cacheprovider

Groups are named "<layer> <pass> b<batch>" (for example "cifar.p1 fwd+bwd b128"); each
holds fastconv in both layouts and PyTorch (NCHW, 2 threads, autograd for the backward)
measured in the same run, so the ratio fastconv/torch is meaningful on any machine.
The naive reference (a NumPy loop over output pixels, fastconv/reference.py) is far too
slow for batch 128: it runs on a small batch, next to fastconv on that same batch, in the
groups "<layer> fwd+bwd b8 (naive baseline)".
"""
import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

BATCH = 128
NAIVE_BATCH = 8

# name: (kind, channels, height/width, pool)
LAYERS = {
    "lenet.s2": ("avg", 6, 28, 2),
    "lenet.s4": ("avg", 16, 10, 2),
    "cifar.p1": ("max", 32, 30, 2),
    "cifar.p2": ("max", 64, 13, 2),
}
IMPLS = ["fastconv-channels_first", "fastconv-channels_last", "torch-nchw"]


def _data(name, batch):
    kind, c, hw, pool = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, hw, hw), dtype=np.float32)
    oh = hw // pool
    gy = rng.standard_normal((batch, c, oh, oh), dtype=np.float32)
    return kind, pool, x, gy


def _fastconv_fns(kind, pool, x, gy, data_format):
    if data_format == "channels_last":
        x, gy = ref.to_channels_last(x), ref.to_channels_last(gy)
    if kind == "max":
        def fwd():
            return fastconv.max_pool2d(x, pool, data_format=data_format)

        def fwd_bwd():
            _, idx = fastconv.max_pool2d(x, pool, data_format=data_format,
                                         return_indices=True)
            return fastconv.max_pool2d_backward(gy, x, pool, data_format=data_format,
                                                indices=idx)
    else:
        def fwd():
            return fastconv.avg_pool2d(x, pool, data_format=data_format)

        def fwd_bwd():
            fastconv.avg_pool2d(x, pool, data_format=data_format)
            return fastconv.avg_pool2d_backward(gy, x, pool, data_format=data_format)
    return fwd, fwd_bwd


def _torch_fns(torch, kind, pool, x, gy):
    torch.set_num_threads(2)
    op = (torch.nn.functional.max_pool2d if kind == "max"
          else torch.nn.functional.avg_pool2d)
    tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)

    def fwd():
        with torch.no_grad():
            return op(tx, pool)

    def fwd_bwd():
        xr = tx.detach().requires_grad_()
        op(xr, pool).backward(tgy)
        return xr.grad
    return fwd, fwd_bwd


def _fns(request, name, impl, batch):
    kind, pool, x, gy = _data(name, batch)
    if impl.startswith("torch"):
        torch = request.getfixturevalue("torch")
        return _torch_fns(torch, kind, pool, x, gy)
    return _fastconv_fns(kind, pool, x, gy, impl.split("-", 1)[1])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_forward(benchmark, request, name, impl):
    benchmark.group = f"{name} fwd b{BATCH}"
    fwd, _ = _fns(request, name, impl, BATCH)
    benchmark(fwd)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_backward(benchmark, request, name, impl):
    benchmark.group = f"{name} fwd+bwd b{BATCH}"
    _, fwd_bwd = _fns(request, name, impl, BATCH)
    benchmark(fwd_bwd)


@pytest.mark.parametrize("impl", ["naive-reference", "fastconv-channels_first"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_naive_baseline(benchmark, request, name, impl):
    """The naive reference on a small batch (it is a loop over output pixels, vectorised
    over batch and channels, so its time grows about linearly with the batch)."""
    benchmark.group = f"{name} fwd+bwd b{NAIVE_BATCH} (naive baseline)"
    kind, pool, x, gy = _data(name, NAIVE_BATCH)
    if impl == "naive-reference":
        p, s = (pool, pool), (pool, pool)
        if kind == "max":
            def fwd_bwd():
                _, pos = ref.max_pool2d_forward(x, p, s)
                return ref.max_pool2d_grad_input(gy, pos, x.shape, p, s)
        else:
            def fwd_bwd():
                ref.avg_pool2d_forward(x, p, s)
                return ref.avg_pool2d_grad_input(gy, x.shape, p, s)
        benchmark.pedantic(fwd_bwd, rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(_fastconv_fns(kind, pool, x, gy, "channels_first")[1])
