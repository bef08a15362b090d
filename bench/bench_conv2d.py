"""conv2d benchmarks at the real layer shapes of LeNet-5 and the CIFAR-10 network.

Run with::

    python -m pytest bench/bench_conv2d.py --benchmark-only -p no:cacheprovider

Groups are named "<layer> <pass> b<batch>" (for example "cifar.c2 fwd+bwd b128"): the
seven layers of fastconv.benchmark.CONV_LAYERS, batch 128 and 32, float32, forward
("fwd") and forward + all three gradients ("fwd+bwd").  Each group holds fastconv in both
layouts and PyTorch (NCHW, autograd for the backward, same thread count) measured in the
same run, so the ratio fastconv/torch is meaningful on any machine; the GFLOP of the pass
is in extra_info.  The naive reference (a NumPy loop over output pixels,
fastconv/reference.py) is far too slow for these batches: it runs on batch 2, next to
fastconv on that same batch, in the groups "<layer> <pass> b2 (naive baseline)".

``python -m fastconv.benchmark`` prints the same comparison as one interleaved table.
"""
import pytest

import fastconv
from fastconv.benchmark import (CONV_LAYERS, _fastconv_conv, _naive_conv, _torch_conv,
                                conv_flops)

BATCHES = (128, 32)
NAIVE_BATCH = 2
PASSES = ("fwd", "fwd+bwd")
LAYOUTS = {"nchw": "channels_first", "nhwc": "channels_last"}


def _setup(benchmark, layer, pass_name, batch, label=""):
    benchmark.group = f"{layer} {pass_name} b{batch}{label}"
    benchmark.extra_info["gflop"] = conv_flops(layer, batch) * (
        1 if pass_name == "fwd" else 3) / 1e9


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("layer", list(CONV_LAYERS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fastconv(benchmark, layout, layer, pass_name, batch):
    _setup(benchmark, layer, pass_name, batch)
    benchmark.extra_info["threads"] = fastconv.get_num_threads()
    fns = _fastconv_conv(layer, batch, LAYOUTS[layout])
    benchmark(fns[PASSES.index(pass_name)])


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("layer", list(CONV_LAYERS))
def test_torch(benchmark, torch, layer, pass_name, batch):
    torch.set_num_threads(fastconv.get_num_threads())
    _setup(benchmark, layer, pass_name, batch)
    benchmark.extra_info["threads"] = torch.get_num_threads()
    fns = _torch_conv(torch, layer, batch)
    benchmark(fns[PASSES.index(pass_name)])


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("layer", list(CONV_LAYERS))
def test_naive_small_batch(benchmark, layer, pass_name):
    """The naive reference on batch 2 (scale by 64 for batch 128)."""
    _setup(benchmark, layer, pass_name, NAIVE_BATCH, " (naive baseline)")
    fns = _naive_conv(layer, NAIVE_BATCH)
    benchmark.pedantic(fns[PASSES.index(pass_name)], rounds=3, iterations=1)


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("layer", list(CONV_LAYERS))
def test_fastconv_small_batch(benchmark, layer, pass_name):
    """fastconv on the naive baseline's batch, for the ratio naive/fastconv."""
    _setup(benchmark, layer, pass_name, NAIVE_BATCH, " (naive baseline)")
    fns = _fastconv_conv(layer, NAIVE_BATCH, "channels_first")
    benchmark(fns[PASSES.index(pass_name)])
