"""BatchNormalization (training forward + backward, inference) at ResNet-20's shapes and
conv_transpose2d (+ its gradients) at a decoder's, against PyTorch in the same run.

Run with::

    python -m pytest bench/bench_norm_transpose.py --benchmark-only -p no:cacheprovider

Groups are named "<layer> <pass> b<batch>" (for example "resnet20.bn1 train b128"); each
holds fastconv in both layouts and PyTorch (NCHW, 2 threads, autograd for the backward),
so the ratio fastconv/torch is meaningful on any machine.
"""
import numpy as np
import pytest

import fastconv
from fastconv import layers as L

BATCH = 128

# name: (channels, height/width): the three stages of ResNet-20 (CIFAR-10)
BN_LAYERS = {"resnet20.bn1": (16, 32), "resnet20.bn2": (32, 16), "resnet20.bn3": (64, 8)}
# name: (C_in, C_out, height/width of the input, kernel, stride): a decoder's upsampling
TRANSPOSE_LAYERS = {"decoder.up1": (64, 32, 8, 2, 2), "decoder.up2": (32, 16, 16, 3, 2)}
IMPLS = ["fastconv-channels_first", "fastconv-channels_last", "torch-nchw"]


def _bn_fns(request, name, impl, training):
    c, hw = BN_LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, c, hw, hw), dtype=np.float32)
    gy = rng.standard_normal(x.shape, dtype=np.float32)
    if impl.startswith("torch"):
        torch = request.getfixturevalue("torch")
        torch.set_num_threads(2)
        bn = torch.nn.BatchNorm2d(c).train(training)
        tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)

        def run():
            if not training:
                with torch.no_grad():
                    return bn(tx)
            xr = tx.detach().requires_grad_()
            bn(xr).backward(tgy)
            return xr.grad
        return run
    fmt = impl.split("-", 1)[1]
    if fmt == "channels_last":
        x, gy = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), \
            np.ascontiguousarray(gy.transpose(0, 2, 3, 1))
    layer = L.BatchNormalization(axis=-1 if fmt == "channels_last" else 1)
    layer.build(x.shape)

    def run():
        y = layer.forward(x, training)
        return layer._backward(gy, True) if training else y
    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(BN_LAYERS))
def test_batch_norm_training(benchmark, request, name, impl):
    benchmark.group = f"{name} train b{BATCH}"
    benchmark(_bn_fns(request, name, impl, True))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(BN_LAYERS))
def test_batch_norm_inference(benchmark, request, name, impl):
    benchmark.group = f"{name} inference b{BATCH}"
    benchmark(_bn_fns(request, name, impl, False))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(TRANSPOSE_LAYERS))
def test_conv_transpose2d_forward_backward(benchmark, request, name, impl):
    benchmark.group = f"{name} fwd+bwd b{BATCH}"
    c_in, c_out, hw, k, s = TRANSPOSE_LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, c_in, hw, hw), dtype=np.float32)
    w = rng.standard_normal((c_in, c_out, k, k), dtype=np.float32)
    b = np.zeros(c_out, np.float32)
    out = fastconv.conv_transpose2d_output_shape(x.shape, w.shape, s)
    gy = rng.standard_normal(out, dtype=np.float32)
    if impl.startswith("torch"):
        torch = request.getfixturevalue("torch")
        torch.set_num_threads(2)
        tx, tw, tb, tgy = map(torch.from_numpy, (x, w, b, gy))

        def run():
            xr, wr, br = (t.detach().requires_grad_() for t in (tx, tw, tb))
            torch.nn.functional.conv_transpose2d(xr, wr, br, s).backward(tgy)
            return xr.grad
    else:
        fmt = impl.split("-", 1)[1]
        if fmt == "channels_last":
            x, gy = x.transpose(0, 2, 3, 1).copy(), gy.transpose(0, 2, 3, 1).copy()
            w = w.transpose(2, 3, 1, 0).copy()

        def run():
            fastconv.conv_transpose2d(x, w, b, s, data_format=fmt)
            return fastconv.conv_transpose2d_backward(gy, x, w, s, data_format=fmt)
    benchmark(run)
