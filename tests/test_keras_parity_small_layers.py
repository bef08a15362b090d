"""Parity with Keras 3 for the padding, cropping, upsampling, global max pooling and
activation layers and for the activations: the same float32 input gives Keras's output
within float32 rounding, and the same upstream gradient gives the input gradient of
tf.GradientTape, in both data formats.

Skipped when keras (with the TensorFlow backend) is not importable; run it in the
TensorFlow environment:

    KERAS_BACKEND=tensorflow PYTHONPATH=. /tmp/venv-tf/bin/python -m pytest -o addopts="" \\
        tests/test_keras_parity_small_layers.py
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
if keras.backend.backend() != "tensorflow":
    pytest.skip("needs Keras's TensorFlow backend", allow_module_level=True)

from fastconv import activations as act  # noqa: E402
from fastconv import layers as fl  # noqa: E402

KL = keras.layers
FORMATS = ["channels_last", "channels_first"]


def keras_value_and_grad(fn, x, gy):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
    return np.asarray(y), np.asarray(tape.gradient(y, xt, output_gradients=tf.constant(gy)))


def check(keras_fn, ours, x, rtol=2e-6, atol=2e-6, grad_atol=None):
    rng = np.random.default_rng(1)
    y = ours(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ky, kg = keras_value_and_grad(keras_fn, x, gy)
    assert y.dtype == np.float32 and y.shape == ky.shape
    np.testing.assert_allclose(y, ky, rtol=rtol, atol=atol)
    g = ours.backward(gy)
    np.testing.assert_allclose(g, kg, rtol=rtol, atol=grad_atol or atol)


def images(data_format, shape=(2, 5, 6, 3), seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 3, 1, 2))


LAYERS = [
    ("ZeroPadding2D", dict(padding=((1, 2), (3, 0)))),
    ("ZeroPadding2D", dict(padding=2)),
    ("Cropping2D", dict(cropping=((1, 0), (2, 1)))),
    ("Cropping2D", dict(cropping=1)),
    ("UpSampling2D", dict(size=(2, 3))),
    ("UpSampling2D", dict(size=(2, 2), interpolation="bilinear")),
    ("UpSampling2D", dict(size=(3, 2), interpolation="bilinear")),
    ("GlobalMaxPooling2D", dict()),
    ("GlobalMaxPooling2D", dict(keepdims=True)),
]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("name, kwargs", LAYERS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(LAYERS)])
def test_layer_matches_keras(name, kwargs, data_format):
    x = images(data_format)
    theirs = getattr(KL, name)(data_format=data_format, **kwargs)
    ours = getattr(fl, name)(data_format=data_format, **kwargs)
    check(theirs, ours, x)


ACTIVATION_LAYERS = [
    ("ReLU", dict()), ("ReLU", dict(max_value=6.0)), ("ReLU", dict(negative_slope=0.2)),
    ("ReLU", dict(max_value=2.0, negative_slope=0.1, threshold=0.5)),
    ("ReLU", dict(threshold=1.0)), ("ReLU", dict(threshold=1.5, max_value=1.0)),
    ("LeakyReLU", dict()), ("LeakyReLU", dict(negative_slope=0.05)),
    ("ELU", dict()), ("ELU", dict(alpha=0.5)),
]


def away_from_kinks(x, kwargs):
    kinks = [0.0, kwargs.get("threshold", 0.0)] + (
        [kwargs["max_value"]] if kwargs.get("max_value") is not None else [])
    for k in kinks:
        x[np.abs(x - k) < 1e-2] = k + 0.05
    return x


@pytest.mark.parametrize("name, kwargs", ACTIVATION_LAYERS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(ACTIVATION_LAYERS)])
def test_activation_layer_matches_keras(name, kwargs):
    x = away_from_kinks(images("channels_last", seed=2) * 3, kwargs)
    check(getattr(KL, name)(**kwargs), getattr(fl, name)(**kwargs), x)
    assert getattr(fl, name)().get_config().items() >= {
        k: v for k, v in getattr(KL, name)().get_config().items()
        if k in ("max_value", "negative_slope", "threshold", "alpha")}.items()


ACTIVATIONS = ["relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish",
               "hard_sigmoid", "hard_silu", "hard_swish", "softplus"]


class _AsLayer:
    """An activation function with the layer interface check() uses."""

    def __init__(self, name, **kwargs):
        self.forward, self._backward = act.get(name)
        self.kwargs = kwargs

    def __call__(self, x):
        self.y = self.forward(x, **self.kwargs)
        return self.y

    def backward(self, gy):
        if self.kwargs and "approximate" not in self.kwargs:
            return self._backward(gy, self.y, **self.kwargs)
        return self._backward(gy, self.y)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_keras(name):
    x = np.random.default_rng(3).standard_normal((4, 50)).astype(np.float32) * 4
    x = away_from_kinks(away_from_kinks(x, dict(threshold=3.0, max_value=-3.0)),
                        dict(max_value=6.0))
    check(keras.activations.get(name), _AsLayer(name), x, rtol=3e-6, atol=3e-6)
    layer = fl.Activation(name)
    check(KL.Activation(name), layer, x, rtol=3e-6, atol=3e-6)


@pytest.mark.parametrize("name, kwargs", [("gelu", dict(approximate=True)),
                                          ("leaky_relu", dict(negative_slope=0.5)),
                                          ("elu", dict(alpha=0.3))])
def test_activation_arguments_match_keras(name, kwargs):
    x = np.random.default_rng(4).standard_normal((3, 40)).astype(np.float32) * 3
    x = away_from_kinks(x, {})
    fn = getattr(keras.activations, name)
    check(lambda t: fn(t, **kwargs), _AsLayer(name, **kwargs), x, rtol=3e-6, atol=3e-6)


def test_gelu_tail_matches_tensorflow_erfc_form():
    x = np.linspace(-12, -4, 33, dtype=np.float32)
    np.testing.assert_allclose(act.gelu(x), np.asarray(keras.activations.gelu(x)),
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("data_format", FORMATS)
def test_global_max_pooling_ties_share_the_gradient_as_tensorflow(data_format):
    x = np.random.default_rng(5).integers(0, 3, (3, 4, 4, 2)).astype(np.float32)
    x = x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 3, 1, 2))
    check(KL.GlobalMaxPooling2D(data_format=data_format),
          fl.GlobalMaxPooling2D(data_format=data_format), x, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kwargs", [dict(), dict(max_value=5.0), dict(max_value=6.0),
                                    dict(max_value=6.0, negative_slope=0.1),
                                    dict(max_value=5.0, negative_slope=0.1),
                                    dict(threshold=1.0), dict(negative_slope=0.1),
                                    dict(threshold=1.0, negative_slope=0.1),
                                    dict(threshold=1.0, max_value=5.0),
                                    dict(threshold=2.0, max_value=1.0)])
def test_relu_gradient_at_the_kinks_is_tensorflows(kwargs):
    x = np.array([-1, 0, 0.5, 1, 2, 5, 6, 7], np.float32)
    ours = fl.ReLU(**kwargs)
    y = ours(x)
    ky, kg = keras_value_and_grad(KL.ReLU(**kwargs), x, np.ones_like(x))
    np.testing.assert_array_equal(y, ky)
    np.testing.assert_array_equal(ours.backward(np.ones_like(y)), kg)


@pytest.mark.parametrize("name", ["relu6", "hard_sigmoid", "hard_silu", "leaky_relu",
                                  "elu", "selu"])
def test_activation_gradients_at_the_kinks_are_tensorflows(name):
    x = np.array([-3, 0, 3, 6], np.float32)
    fwd, bwd = act.get(name)
    _, kg = keras_value_and_grad(keras.activations.get(name), x, np.ones_like(x))
    # elu/selu's y + alpha cancels in float32 (TensorFlow's activations + 1 too)
    np.testing.assert_allclose(bwd(np.ones_like(x), fwd(x)), kg, rtol=3e-6)
