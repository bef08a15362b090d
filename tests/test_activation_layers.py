"""ReLU, LeakyReLU and ELU layers: values against elementwise oracles written from
Keras's definitions, float64 finite differences, configs, reprs and errors."""
import numpy as np
import pytest

from fastconv import layers as L
from fastconv.models import Sequential
from fastconv.reference import numeric_gradient
from fastconv.saving import load_model


def keras_relu(v, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's relu for one number, from its documented formula."""
    if v > threshold:
        return v if max_value is None else min(v, max_value)
    return negative_slope * (v - threshold)


RELU_CASES = [dict(), dict(max_value=6.0), dict(negative_slope=0.1),
              dict(max_value=2.5, negative_slope=0.3),
              dict(threshold=0.5), dict(threshold=0.5, negative_slope=0.2, max_value=4.0),
              dict(threshold=3.0, max_value=2.0)]


def _away_from(x, kinks):
    for k in kinks:
        x[np.abs(x - k) < 1e-3] = k + 0.05
    return x


def check_layer_gradient(layer, x, rtol=1e-6):
    rng = np.random.default_rng(99)
    y = layer(x)
    gy = rng.standard_normal(y.shape)
    gx = layer.backward(gy)
    num = numeric_gradient(lambda a=x: np.sum(gy * layer.forward(a)), x)
    np.testing.assert_allclose(gx, num, rtol=rtol, atol=1e-8)


@pytest.mark.parametrize("kwargs", RELU_CASES)
def test_relu_values_and_gradient(kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)) * 4
    kinks = [0.0, kwargs.get("threshold", 0.0)] + (
        [kwargs["max_value"]] if "max_value" in kwargs else [])
    x = _away_from(x, kinks)
    layer = L.ReLU(**kwargs, dtype="float64")
    expected = np.vectorize(lambda v: keras_relu(v, **kwargs))(x)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-15)
    check_layer_gradient(layer, x)


def test_relu_keras_doc_examples():
    x = np.array([-10, -5, 0.0, 5, 10])
    np.testing.assert_array_equal(
        L.ReLU(max_value=10, negative_slope=0.5, threshold=0)(x), [-5, -2.5, 0, 5, 10])
    np.testing.assert_array_equal(L.ReLU(max_value=5.0)(x), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(L.ReLU(threshold=5.0)(x), [0, 0, 0, 0, 10])
    np.testing.assert_array_equal(L.ReLU(6.0)(np.array([-1.0, 3, 7])), [0, 3, 6])


@pytest.mark.parametrize("slope", [0.3, 0.0, 2.0])
def test_leaky_relu_layer(slope):
    rng = np.random.default_rng(1)
    x = _away_from(rng.standard_normal((2, 3, 4)), [0.0])
    layer = L.LeakyReLU(slope, dtype="float64")
    np.testing.assert_array_equal(layer(x), np.where(x > 0, x, slope * x))
    check_layer_gradient(layer, x)
    assert L.LeakyReLU().negative_slope == 0.3          # Keras 3's layer default
    assert L.LeakyReLU(alpha=0.1).negative_slope == 0.1  # Keras's deprecated name


@pytest.mark.parametrize("alpha", [1.0, 0.4, 2.5])
def test_elu_layer(alpha):
    rng = np.random.default_rng(2)
    x = _away_from(rng.standard_normal((2, 7)) * 2, [0.0])
    layer = L.ELU(alpha, dtype="float64")
    np.testing.assert_allclose(layer(x), np.where(x > 0, x, alpha * np.expm1(x)),
                               rtol=1e-15)
    check_layer_gradient(layer, x)


@pytest.mark.parametrize("layer", [L.ReLU(4.0, 0.1, 0.5), L.LeakyReLU(0.05), L.ELU(0.7)],
                         ids=["relu", "leaky", "elu"])
def test_config_round_trip_repr_and_save(layer, tmp_path):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert type(layer).__name__ in repr(layer)
    assert layer.compute_output_shape((None, 5, 3)) == (None, 5, 3)
    model = Sequential([L.Input((4,)), L.Dense(3), type(layer).from_config(
        {k: v for k, v in config.items() if k != "name"})])
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_argument_errors():
    with pytest.raises(ValueError, match=r"max_value must be finite and >= 0.0, got -1"):
        L.ReLU(max_value=-1)
    with pytest.raises(ValueError, match=r"negative_slope must be finite and >= 0.0, "
                                         r"got -0.5"):
        L.ReLU(negative_slope=-0.5)
    with pytest.raises(TypeError, match=r"threshold must be a number, got None"):
        L.ReLU(threshold=None)
    with pytest.raises(ValueError, match=r"negative_slope must be finite and >= 0.0, "
                                         r"got -1"):
        L.LeakyReLU(-1)
    with pytest.raises(TypeError, match=r"alpha must be a number, got 'one'"):
        L.ELU("one")
    with pytest.raises(ValueError, match=r"alpha must be finite and >= 0.0, got -1.0"):
        L.ELU(-1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        L.ReLU(slope=1)
