"""Weight constraints (fastconv/constraints.py): Keras 3's formulas, axes, errors,
their application after optimizer updates, both Conv2D data formats, and Keras parity
where keras is importable."""
import json
import os

import numpy as np
import pytest

from fastconv import constraints as C
from fastconv import optimizers
from fastconv.layers import Conv2D, Dense, Input
from fastconv.models import Sequential

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
EPS = 1e-7


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_defaults_are_keras():
    assert C.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert C.UnitNorm().get_config() == {"axis": 0}
    assert C.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0,
                                           "rate": 1.0, "axis": 0}
    assert C.NonNeg().get_config() == {}


def test_max_norm_formula():
    w = 3 * _rng().standard_normal((5, 4))
    n = np.sqrt((w ** 2).sum(0, keepdims=True))
    np.testing.assert_allclose(C.MaxNorm(2.0)(w), w * np.clip(n, 0, 2.0) / (EPS + n),
                               rtol=1e-14)
    out = C.MaxNorm(1.0, axis=1)(w)
    assert np.linalg.norm(out, axis=1).max() <= 1.0 + 1e-12
    small = 0.01 * w
    np.testing.assert_allclose(C.MaxNorm(2.0)(small), small, rtol=1e-5)


def test_conv_filter_axes():
    w = _rng(1).standard_normal((3, 2, 4, 5))
    out = C.MaxNorm(1.0, axis=[0, 1, 2])(w)
    np.testing.assert_allclose(np.linalg.norm(out.reshape(-1, 5), axis=0),
                               np.minimum(np.linalg.norm(w.reshape(-1, 5), axis=0), 1.0),
                               rtol=1e-6)
    unit = C.UnitNorm(axis=(0, 1, 2))(w)
    np.testing.assert_allclose(np.linalg.norm(unit.reshape(-1, 5), axis=0), 1.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(C.UnitNorm([-4, -3, -2])(w), unit)


def test_min_max_norm_formula():
    w = _rng(2).standard_normal((6, 3)) * np.array([0.1, 1.0, 5.0])
    n = np.sqrt((w ** 2).sum(0, keepdims=True))
    c = C.MinMaxNorm(0.5, 2.0, rate=0.3)
    desired = 0.3 * np.clip(n, 0.5, 2.0) + 0.7 * n
    np.testing.assert_allclose(c(w), w * desired / (EPS + n), rtol=1e-14)
    strict = C.MinMaxNorm(0.5, 2.0)(w)
    np.testing.assert_allclose(np.linalg.norm(strict, axis=0),
                               np.clip(np.linalg.norm(w, axis=0), 0.5, 2.0), rtol=1e-6)


def test_non_neg_and_dtype():
    w = np.array([[-1.0, 0.0, 2.0]], np.float32)
    out = C.NonNeg()(w)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 0.0, 2.0]])
    assert C.MaxNorm(1.0)(w).dtype == np.float32


@pytest.mark.parametrize("make, exc, match", [
    (lambda: C.MaxNorm(-1.0), ValueError, "max_value must be a finite number >= 0"),
    (lambda: C.MaxNorm(float("inf")), ValueError, "max_value must be"),
    (lambda: C.MaxNorm(axis="0"), TypeError, "axis must be an int or"),
    (lambda: C.UnitNorm(axis=[0, 0]), ValueError, "must not repeat"),
    (lambda: C.UnitNorm(axis=[]), TypeError, "non-empty list"),
    (lambda: C.MinMaxNorm(2.0, 1.0), ValueError, "max_value must be >= min_value"),
    (lambda: C.MinMaxNorm(rate=None), ValueError, "rate must be"),
    (lambda: C.get("max"), ValueError, "unknown constraint 'max'"),
    (lambda: C.get(3), TypeError, "constraint must be None, a name"),
    (lambda: C.get({"class_name": "exec", "config": {}}), ValueError,
     "unknown constraint class"),
    (lambda: Dense(2, kernel_constraint="l2"), ValueError,
     "unknown kernel_constraint 'l2'"),
    (lambda: Conv2D(2, 3, bias_constraint=abs), TypeError, "bias_constraint must be"),
])
def test_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_axis_out_of_range_at_call():
    with pytest.raises(ValueError, match="axis 2 is out of range for a weight of rank 2"):
        C.MaxNorm(axis=2)(np.ones((3, 3)))
    with pytest.raises(ValueError, match="names an axis twice"):
        C.MaxNorm(axis=[0, -2])(np.ones((3, 3)))


def test_get_and_config_round_trip():
    assert C.get(None) is None
    assert C.get("max_norm") == C.MaxNorm() and C.get("NonNeg") == C.NonNeg()
    assert C.get("unit_norm") == C.UnitNorm() and C.get("min_max_norm") == C.MinMaxNorm()
    for c in (C.MaxNorm(3, [0, 1, 2]), C.MinMaxNorm(0.1, 0.9, 0.5, 1), C.NonNeg(),
              C.UnitNorm((0, 1))):
        again = C.get(json.loads(json.dumps(C.serialize_constraint(c))))
        assert again == c and again.get_config() == c.get_config()


def _sgd(lr):
    return optimizers.SGD(learning_rate=lr)


def test_constraint_applied_after_each_update():
    model = Sequential([Input((3,)), Dense(4, dtype="float64",
                                           kernel_constraint=C.MaxNorm(0.5),
                                           bias_constraint=C.NonNeg())])
    w0 = 2 * _rng(3).standard_normal((3, 4))
    b0 = _rng(4).standard_normal(4)
    model.set_weights([w0, b0])
    model.compile(optimizer=_sgd(0.1), loss="mse")
    x, t = _rng(5).standard_normal((5, 3)), _rng(6).standard_normal((5, 4))
    y = x @ w0 + b0
    g = 2 * (y - t) / y.size
    model.train_on_batch(x, t)
    w1, b1 = model.get_weights()
    np.testing.assert_allclose(w1, C.MaxNorm(0.5)(w0 - 0.1 * x.T @ g), rtol=1e-12)
    np.testing.assert_allclose(b1, np.maximum(b0 - 0.1 * g.sum(0), 0), rtol=1e-12)
    assert model.layers[0].kernel is model.weights[0]  # updated in place


def test_frozen_layer_is_not_constrained():
    model = Sequential([Input((3,)), Dense(2, kernel_constraint=C.NonNeg()),
                        Dense(1)])
    w = -np.ones((3, 2), np.float32)
    model.layers[0].set_weights([w, np.zeros(2, np.float32)])
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(np.ones((2, 3)), np.ones((2, 1)))
    np.testing.assert_array_equal(model.layers[0].kernel, w)


def test_channels_first_and_last_constrain_the_same_elements():
    """The kernel has Keras's layout (kh, kw, in, filters) in both data formats, so a
    constraint over axes [0, 1, 2] covers each filter in both: a training step of
    the two layers on the same data (transposed) gives the same kernels."""
    rng = _rng(7)
    kernel = rng.standard_normal((3, 2, 2, 4))
    bias = rng.standard_normal(4)
    x_last = rng.standard_normal((3, 6, 5, 2))
    out = {}
    for fmt in ("channels_last", "channels_first"):
        shape = (6, 5, 2) if fmt == "channels_last" else (2, 6, 5)
        model = Sequential([Input(shape), Conv2D(4, (3, 2), data_format=fmt,
                                                 dtype="float64",
                                                 kernel_constraint=C.MaxNorm(
                                                     0.7, axis=[0, 1, 2]),
                                                 bias_constraint=C.UnitNorm(0))])
        model.set_weights([kernel, bias])
        model.compile(optimizer=_sgd(0.2), loss="mse")
        x = x_last if fmt == "channels_last" else x_last.transpose(0, 3, 1, 2)
        t = np.zeros_like(model.predict(x, verbose=0)) + 0.5
        model.train_on_batch(x, t)
        out[fmt] = model.get_weights()
        norms = np.linalg.norm(out[fmt][0].reshape(-1, 4), axis=0)
        assert norms.max() <= 0.7 + 1e-9
        assert np.linalg.norm(out[fmt][1]) == pytest.approx(1.0, rel=1e-6)
    for a, b in zip(out["channels_last"], out["channels_first"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_keras_parity_formulas():
    keras = pytest.importorskip("keras")
    kc = keras.constraints
    w = (2 * _rng(8).standard_normal((3, 2, 4, 5))).astype(np.float32)
    for ours, theirs in ((C.MaxNorm(1.5, [0, 1, 2]), kc.MaxNorm(1.5, [0, 1, 2])),
                         (C.MaxNorm(), kc.MaxNorm()),
                         (C.UnitNorm(3), kc.UnitNorm(3)),
                         (C.MinMaxNorm(0.5, 2.0, 0.4, [0, 1]),
                          kc.MinMaxNorm(0.5, 2.0, 0.4, [0, 1])),
                         (C.NonNeg(), kc.NonNeg())):
        np.testing.assert_allclose(ours(w), np.asarray(theirs(w)), rtol=1e-5, atol=1e-7)
