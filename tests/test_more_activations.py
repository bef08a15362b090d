"""Keras 3's other activations (fastconv/_more_activations.py): values against
math-module oracles, gradients against float64 finite differences, erf/erfc accuracy,
the remembered inputs of gelu/silu/hard_silu, the names in any layer's activation=,
and every error."""
import gc
import math

import numpy as np
import pytest

from fastconv import _more_activations as more
from fastconv import activations as act
from fastconv import layers as L
from fastconv.reference import numeric_gradient

NEW = ["relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "hard_sigmoid",
       "hard_silu", "hard_swish", "softplus"]


def _phi(v):
    return 0.5 * math.erfc(-v / math.sqrt(2))


# Scalar oracles written from the definitions with the math module.
ORACLES = {
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "leaky_relu": lambda v: v if v > 0 else 0.2 * v,
    "elu": lambda v: v if v > 0 else math.expm1(v),
    "selu": lambda v: more.SELU_SCALE * (v if v > 0 else more.SELU_ALPHA * math.expm1(v)),
    "gelu": lambda v: v * _phi(v),
    "silu": lambda v: v / (1 + math.exp(-v)) if v > -700 else 0.0,
    "hard_sigmoid": lambda v: min(max(v + 3, 0.0), 6.0) / 6,
    "hard_silu": lambda v: v * min(max(v + 3, 0.0), 6.0) / 6,
    "softplus": lambda v: math.log1p(math.exp(v)) if v < 30 else v + math.exp(-v),
}
ORACLES["swish"] = ORACLES["silu"]
ORACLES["hard_swish"] = ORACLES["hard_silu"]


def _away_from_kinks(x):
    """Move entries within 1e-3 of a kink (0, +-3, 6) away from it."""
    for k in (0.0, 3.0, -3.0, 6.0):
        near = np.abs(x - k) < 1e-3
        x[near] = k + 0.1
    return x


@pytest.mark.parametrize("name", NEW)
def test_values_match_the_definitions(name):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200) * 4, [-40.0, -8.0, 0.0, 8.0, 40.0]])
    fwd, _ = act.get(name)
    expected = np.array([ORACLES[name](v) for v in x])
    # gelu: erfc's condition number 2 z**2 amplifies the rounding of its argument
    # -x / sqrt(2) (in the oracle as here)
    rtol = 1e-13 if name == "gelu" else 2e-15
    np.testing.assert_allclose(fwd(x), expected, rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_backward_matches_finite_differences(name, scale):
    rng = np.random.default_rng(1)
    x = _away_from_kinks(rng.standard_normal((4, 6)) * scale)
    fwd, bwd = act.get(name)
    gy = rng.standard_normal(x.shape)
    num = numeric_gradient(lambda a=x: np.sum(gy * fwd(a)), x)
    np.testing.assert_allclose(bwd(gy, fwd(x)), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kwargs", [dict(negative_slope=0.5), dict(negative_slope=0.0)])
def test_leaky_relu_slopes(kwargs):
    rng = np.random.default_rng(2)
    x = _away_from_kinks(rng.standard_normal(30))
    s = kwargs["negative_slope"]
    np.testing.assert_array_equal(act.leaky_relu(x, **kwargs), np.where(x > 0, x, s * x))
    gy = rng.standard_normal(x.shape)
    num = numeric_gradient(lambda a=x: np.sum(gy * act.leaky_relu(a, **kwargs)), x)
    np.testing.assert_allclose(act.leaky_relu_backward(gy, act.leaky_relu(x, **kwargs),
                                                       **kwargs), num, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_elu_alpha(alpha):
    rng = np.random.default_rng(3)
    x = _away_from_kinks(rng.standard_normal(30) * 2)
    np.testing.assert_allclose(act.elu(x, alpha),
                               [v if v > 0 else alpha * math.expm1(v) for v in x],
                               rtol=1e-15)
    gy = rng.standard_normal(x.shape)
    num = numeric_gradient(lambda a=x: np.sum(gy * act.elu(a, alpha)), x)
    np.testing.assert_allclose(act.elu_backward(gy, act.elu(x, alpha), alpha), num,
                               rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_both_forms(approximate):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(50) * 3
    c = math.sqrt(2 / math.pi)
    oracle = ([0.5 * v * (1 + math.tanh(c * (v + 0.044715 * v ** 3))) for v in x]
              if approximate else [v * _phi(v) for v in x])
    y = act.gelu(x, approximate=approximate)
    # the tanh form cancels in 1 + tanh(...) for x < 0 (in the oracle as here)
    np.testing.assert_allclose(y, oracle, rtol=1e-13, atol=1e-15 if approximate else 0)
    gy = rng.standard_normal(x.shape)
    num = numeric_gradient(lambda a=x: np.sum(gy * act.gelu(a, approximate)), x)
    np.testing.assert_allclose(act.gelu_backward(gy, y), num, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(act.gelu_input_backward(gy, x, approximate), num,
                               rtol=1e-6, atol=1e-9)


def test_gelu_keeps_relative_precision_in_the_negative_tail():
    x = np.array([-5.0, -10.0, -20.0, -30.0])
    y = act.gelu(x)
    expected = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x]
    assert all(e < 0 for e in expected)
    # relative error ~ 2 z**2 * 1e-16 from the rounding of erfc's argument z = 21 at
    # x = -30; 1 + erf(x / sqrt 2) would give 0 or garbage for all but -5
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_erf_and_erfc_are_accurate_to_float64():
    x = np.concatenate([np.linspace(-27, 27, 40001), [0.0, -0.0, 1e-300, 0.4999,
                                                       0.5, 0.5001, 4.0, 4.0001]])
    e, c = act.erf(x), act.erfc(x)
    ref_e = np.array([math.erf(v) for v in x])
    ref_c = np.array([math.erfc(v) for v in x])
    tiny = np.abs(ref_e) < 1e-300
    rel_e = np.abs(e - ref_e)[~tiny] / np.abs(ref_e)[~tiny]
    assert rel_e.max() < 2e-15
    normal = ref_c > 1e-300
    rel_c = np.abs(c - ref_c)[normal] / ref_c[normal]
    assert rel_c.max() < 4e-15          # relative, even where erfc(x) ~ 1e-300
    assert np.all(c[~normal] < 1e-300)
    special = act.erfc(np.array([np.inf, -np.inf, np.nan]))
    assert special[0] == 0 and special[1] == 2 and np.isnan(special[2])
    assert act.erf(np.float32(0.5)).dtype == np.float32
    # shapes kept whether the entries fall in one interval, both, or none
    for arr in (np.full((2, 3), 0.1), np.full((2, 3), 3.0), np.zeros((2, 0)),
                np.array([[0.1, 3.0], [-7.0, -0.2]])):
        assert act.erf(arr).shape == arr.shape == act.erfc(arr).shape
        np.testing.assert_allclose(act.erf(arr) + act.erfc(arr), 1.0, rtol=1e-15)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_kept_and_float32_rounds_the_float64_result(name, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7)).astype(dtype) * 4
    fwd, bwd = act.get(name)
    y = fwd(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert bwd(np.ones_like(y), y).dtype == dtype
    y64 = fwd(x.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=3e-7, atol=1e-6)


@pytest.mark.parametrize("name", ["gelu", "silu", "hard_silu"])
def test_input_remembered_per_output_and_forgotten_with_it(name):
    fwd, bwd = act.get(name)
    x1, x2 = np.linspace(-4, 4, 9), np.linspace(-3, 5, 9)
    y1, y2 = fwd(x1), fwd(x2)
    gy = np.ones(9)
    inp = getattr(act, f"{name}_input_backward")
    np.testing.assert_array_equal(bwd(gy, y1), inp(gy, x1))
    np.testing.assert_array_equal(bwd(gy, y2), inp(gy, x2))
    with pytest.raises(ValueError, match=rf"{name}_backward\(grad_y, y\) needs y to be "
                                         rf"an array returned by {name}\(x\).*"
                                         rf"{name}_input_backward"):
        bwd(gy, y1.copy())
    other = "silu" if name != "silu" else "gelu"
    with pytest.raises(ValueError, match=f"returned by {name}"):
        bwd(gy, act.get(other)[0](x1))
    before = len(more._inputs)
    del y1, y2
    gc.collect()
    assert len(more._inputs) <= before - 2


@pytest.mark.parametrize("name", NEW)
def test_every_name_works_as_a_layer_activation(name):
    rng = np.random.default_rng(6)
    layer = L.Dense(3, activation=name, dtype="float64")
    x = rng.standard_normal((4, 5))
    layer.build(x.shape)
    layer.set_weights([rng.standard_normal((5, 3)), rng.standard_normal(3)])
    fwd, _ = act.get(name)
    z = x @ layer.kernel + layer.bias
    np.testing.assert_allclose(layer(x), fwd(z), rtol=1e-15, atol=1e-15)
    assert layer.activation == name and layer.get_config()["activation"] == name
    gy = rng.standard_normal((4, 3))
    layer(x)
    gx = layer.backward(gy)
    num = numeric_gradient(lambda a=x: np.sum(gy * layer.forward(a)), x)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)
    conv = L.Conv2D(2, 3, activation=name, dtype="float64")
    xi = rng.standard_normal((2, 5, 5, 1))
    yc = conv(xi)
    assert yc.shape == (2, 3, 3, 2)
    assert conv.backward(np.ones_like(yc)).shape == xi.shape


def test_argument_errors():
    with pytest.raises(ValueError, match=r"negative_slope must be finite and >= 0.0, "
                                         r"got -0.1"):
        act.leaky_relu(np.ones(2), negative_slope=-0.1)
    with pytest.raises(TypeError, match=r"negative_slope must be a number, got '0.2'"):
        act.leaky_relu(np.ones(2), negative_slope="0.2")
    with pytest.raises(ValueError, match=r"alpha must be finite and >= 0.0, got nan"):
        act.elu(np.ones(2), alpha=float("nan"))
    with pytest.raises(TypeError, match=r"approximate must be True or False, got 'yes'"):
        act.gelu(np.ones(2), approximate="yes")
    with pytest.raises(ValueError, match=r"grad_y must have the shape of y \(2,\), got "
                                         r"\(3,\)"):
        act.relu6_backward(np.ones(3), np.ones(2))
    with pytest.raises(TypeError, match="x must be float32 or float64.*float16"):
        act.softplus(np.ones(3, np.float16))
    with pytest.raises(ValueError, match=r"max_value must be finite and >= 0.0, got -1"):
        more.general_relu(np.ones(2), max_value=-1)


@pytest.mark.parametrize("name", NEW)
def test_scalars_and_integer_gradients(name):
    fwd, bwd = act.get(name)
    y = fwd(0.5)                       # a 0-d input gives a 1-element array, as relu
    assert y.shape == (1,) and y.dtype == np.float64
    np.testing.assert_allclose(y, ORACLES[name](0.5), rtol=1e-15)
    y32 = fwd(np.array([0.5, -1.5, 2.0], np.float32))
    assert bwd(np.ones(3, dtype=np.int64), y32).dtype == np.float32  # ints follow y


@pytest.mark.parametrize("name", ["relu6", "hard_sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_forms_give_the_same_values_over_their_input(name, dtype):
    z = (np.random.default_rng(8).standard_normal((5, 7)) * 5).astype(dtype)
    expected = act.get(name)[0](z)
    out = act._INPLACE[name](z)
    assert out is z
    np.testing.assert_array_equal(out, expected)
    ro = expected.copy()
    ro.flags.writeable = False
    assert act._INPLACE[name](ro) is not ro          # read-only: a new array
    layer = L.Dense(4, activation=name, dtype=dtype)  # a fresh linear output: in place
    x = z[:, :3].copy()
    y = layer(x)
    np.testing.assert_allclose(y, act.get(name)[0](x @ layer.kernel + layer.bias),
                               rtol=1e-6, atol=1e-7)
    assert layer._act_inplace is act._INPLACE[name]
