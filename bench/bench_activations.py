"""relu's gradient: the compiled kernel vs NumPy's np.where vs PyTorch, at real shapes.

Run with::

    python -m pytest bench/bench_activations.py --benchmark-only -p no:cacheprovider

The outputs of LeNet-5's first convolution (6x28x28) and of the CIFAR-10 network's
second (32x30x30), batch 128, float32, with the signs of real ReLU outputs (about half
positive, in random order), which is what makes a branching select slow.
"""
import numpy as np
import pytest

from fastconv import activations

SHAPES = {"lenet.c1": (128, 6, 28, 28), "cifar.c2": (128, 32, 30, 30)}


def _data(name):
    rng = np.random.default_rng(0)
    y = activations.relu(rng.standard_normal(SHAPES[name], dtype=np.float32))
    gy = rng.standard_normal(SHAPES[name], dtype=np.float32)
    return y, gy


@pytest.mark.parametrize("impl", ["fastconv", "numpy-where", "torch"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_relu_backward(benchmark, request, name, impl):
    benchmark.group = f"{name} relu backward b128"
    y, gy = _data(name)
    if impl == "fastconv":
        benchmark(activations.relu_backward, gy, y)
    elif impl == "numpy-where":
        zero = np.float32(0)
        benchmark(lambda: np.where(y > 0, gy, zero))
    else:
        torch = request.getfixturevalue("torch")
        torch.set_num_threads(2)
        ty, tgy = torch.from_numpy(y), torch.from_numpy(gy)
        benchmark(torch.ops.aten.threshold_backward, tgy, ty, 0)


@pytest.mark.parametrize("impl", ["fastconv", "torch"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_relu_forward(benchmark, request, name, impl):
    benchmark.group = f"{name} relu forward b128"
    x, _ = _data(name)
    x = x - 0.5
    if impl == "fastconv":
        benchmark(activations.relu, x)
    else:
        torch = request.getfixturevalue("torch")
        torch.set_num_threads(2)
        benchmark(torch.relu, torch.from_numpy(x))
