"""Keras 3's smaller layers and activations against PyTorch at real shapes: relu6,
hard_swish, gelu and silu (forward and input gradient), SoftPool (no PyTorch op: max
pooling of the same window is the yardstick), bilinear upsampling.

Run with::

    python -m pytest bench/bench_small_layers.py --benchmark-only -p no:cacheprovider

"mnv2.expand" is the output of the first expansion of MobileNetV2 at 32x32 input,
batch 128 (16x16x96), float32; "cifar.c2" the CIFAR-10 network's second convolution
(30x30x32).
"""
import numpy as np
import pytest

from fastconv import activations, pooling
from fastconv.layers.reshaping import upsampling2d, upsampling2d_backward

SHAPES = {"mnv2.expand": (128, 96, 16, 16), "cifar.c2": (128, 32, 30, 30)}
TORCH_FN = {"relu6": "relu6", "hard_swish": "hardswish", "gelu": "gelu", "silu": "silu"}


def _data(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPES[name], dtype=np.float32) * 3
    gy = rng.standard_normal(SHAPES[name], dtype=np.float32)
    return x, gy


@pytest.mark.parametrize("impl", ["fastconv", "torch"])
@pytest.mark.parametrize("act", list(TORCH_FN))
def test_activation_forward_backward(benchmark, request, act, impl):
    name = "mnv2.expand"
    benchmark.group = f"{name} {act} forward+backward b128"
    x, gy = _data(name)
    if impl == "fastconv":
        fwd, bwd = activations.get(act)
        benchmark(lambda: bwd(gy, fwd(x)))
        return
    torch = request.getfixturevalue("torch")
    torch.set_num_threads(2)
    fn = getattr(torch.nn.functional, TORCH_FN[act])
    tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)

    def run():
        xx = tx.detach().requires_grad_()
        fn(xx).backward(tgy)
        return xx.grad
    benchmark(run)


@pytest.mark.parametrize("impl", ["soft", "max"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_soft_pool_forward_backward(benchmark, name, impl):
    benchmark.group = f"{name} 2x2 pooling forward+backward b128 (channels_last)"
    x, _ = _data(name)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    gy = np.ones(pooling.pool2d_output_shape(x.shape, 2, data_format="channels_last"),
                 np.float32)
    if impl == "soft":
        benchmark(lambda: pooling.soft_pool2d_backward(gy, x, 2,
                                                       data_format="channels_last"))
    else:
        benchmark(lambda: pooling.max_pool2d_backward(gy, x, 2,
                                                      data_format="channels_last"))


@pytest.mark.parametrize("impl", ["fastconv", "torch"])
def test_bilinear_upsampling(benchmark, request, impl):
    name = "mnv2.expand"
    benchmark.group = f"{name} bilinear x2 forward+backward b128 (channels_first)"
    x, _ = _data(name)
    gy = np.ones(x.shape[:2] + (32, 32), np.float32)
    if impl == "fastconv":
        benchmark(lambda: (upsampling2d(x, 2, "bilinear", "channels_first"),
                           upsampling2d_backward(gy, 2, "bilinear", "channels_first")))
        return
    torch = request.getfixturevalue("torch")
    torch.set_num_threads(2)
    tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)

    def run():
        xx = tx.detach().requires_grad_()
        torch.nn.functional.interpolate(xx, scale_factor=2, mode="bilinear",
                                        align_corners=False).backward(tgy)
        return xx.grad
    benchmark(run)
