"""Activations, their gradients and the fused softmax cross-entropy: finite differences,
float64 oracles, stability at large logits, dtypes and every error."""
import math

import numpy as np
import pytest

from fastconv import activations as act
from fastconv.reference import numeric_gradient

NAMES = ["relu", "tanh", "sigmoid", "softmax", "linear"]


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 2
    x[np.abs(x) < 1e-3] = 0.5                     # keep away from relu's kink
    fwd, bwd = act.get(name)
    gy = rng.standard_normal(x.shape)
    num = numeric_gradient(lambda a=x: np.sum(gy * fwd(a)), x)
    np.testing.assert_allclose(bwd(gy, fwd(x)), num, rtol=1e-6, atol=1e-8)


def test_softmax_along_other_axes_and_its_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3))
    for axis in (0, 1, -1):
        y = act.softmax(x, axis=axis)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        np.testing.assert_allclose(y, e / e.sum(axis=axis, keepdims=True), rtol=1e-14)
        gy = rng.standard_normal(x.shape)
        num = numeric_gradient(lambda a=x: np.sum(gy * act.softmax(a, axis=axis)), x)
        np.testing.assert_allclose(act.softmax_backward(gy, y, axis=axis), num,
                                   rtol=1e-6, atol=1e-8)


def test_forward_values_against_the_formulas():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(act.relu(x), [0, 0, 0, 0.5, 3])
    np.testing.assert_allclose(act.tanh(x), np.tanh(x), rtol=0)
    np.testing.assert_allclose(act.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert act.linear(x) is x
    np.testing.assert_array_equal(act.relu_backward(np.ones(5), act.relu(x)),
                                  [0, 0, 0, 1, 1])        # zero gradient at x == 0
    assert np.isnan(act.relu(np.array([np.nan]))[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_tails_are_exact_and_finite(dtype):
    x = np.array([-1000, -80, -30, 0, 30, 80, 1000], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = act.sigmoid(x)
    assert y.dtype == dtype
    exact = [1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in x.astype(float)]
    np.testing.assert_allclose(y, np.array(exact, dtype=dtype), rtol=2e-7, atol=0)
    assert y[1] > 0 and y[-1] == 1                   # sigmoid(-80) ~ 1.8e-35, not 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_huge_logits(dtype):
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4 - 1, 1e4 - 2], [-1e4, -1e4, -1e4]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = act.softmax(x)
    assert y.dtype == dtype and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    e = np.exp([0.0, -1.0, -2.0])
    np.testing.assert_allclose(y[1], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(y[2], 1 / 3, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_kept_and_ints_become_float64(dtype):
    x = np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)
    for name in NAMES:
        fwd, bwd = act.get(name)
        y = fwd(x)
        assert y.dtype == dtype and bwd(np.ones_like(y), y).dtype == dtype
    assert act.relu(np.arange(-2, 3)).dtype == np.float64
    assert act.sigmoid([True, False]).dtype == np.float64


def test_get_names_and_errors():
    assert act.get(None) == (act.linear, act.linear_backward)
    assert act.get("relu") == (act.relu, act.relu_backward)
    with pytest.raises(ValueError, match=r"unknown activation 'mish'; known activations: "
                                         r"'relu', 'tanh', 'sigmoid', 'softmax', 'linear', "
                                         r"'relu6', .*'softplus'"):
        act.get("mish")
    with pytest.raises(ValueError, match=r"unknown activation 3"):
        act.get(3)
    with pytest.raises(ValueError, match=r"grad_y must have the shape of y \(2, 3\), "
                                         r"got \(3, 2\)"):
        act.relu_backward(np.ones((3, 2)), np.ones((2, 3)))
    with pytest.raises(TypeError, match="all floating arguments must share one dtype"):
        act.tanh_backward(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(TypeError, match="x must be float32 or float64.*float16"):
        act.relu(np.ones(3, np.float16))
    with pytest.raises(ValueError, match=r"axis 2 is out of range for an array with 2 "
                                         r"dimensions"):
        act.softmax(np.ones((2, 3)), axis=2)
    with pytest.raises(TypeError, match=r"axis must be an int, got 1.0"):
        act.softmax_backward(np.ones((2, 3)), np.ones((2, 3)), axis=1.0)


# ---- fused softmax + cross-entropy --------------------------------------------------

def _oracle_loss(z, y):
    """Float64 log-sum-exp, one row at a time, in Python's math module."""
    total = 0.0
    for row, t in zip(z.astype(float), y.astype(float)):
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        total += math.fsum(ti * (lse - v) for ti, v in zip(t, row))
    return total / len(z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_cross_entropy_matches_float64_oracle(dtype, scale):
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((6, 5)) * scale).astype(dtype)
    labels = rng.integers(0, 5, 6)
    onehot = np.eye(5)[labels]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss_labels, probs = act.softmax_cross_entropy(z, labels)
        loss_onehot, probs2 = act.softmax_cross_entropy(z, onehot.astype(dtype))
    assert isinstance(loss_labels, float) and math.isfinite(loss_labels)
    assert probs.dtype == dtype
    oracle = _oracle_loss(z, onehot)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert loss_labels == pytest.approx(oracle, rel=rtol, abs=1e-6 if scale == 1 else 0)
    assert loss_onehot == pytest.approx(loss_labels, rel=1e-12)
    np.testing.assert_array_equal(probs, probs2)
    np.testing.assert_allclose(probs, act.softmax(z), rtol=1e-6)


def test_cross_entropy_is_finite_for_wrong_confident_logits():
    z = np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32)
    loss, probs = act.softmax_cross_entropy(z, np.array([1, 1]))
    assert loss == pytest.approx((2e4 + 0) / 2, rel=1e-6)   # -log softmax = 2e4, then 0
    assert probs[0, 1] == 0 and np.all(np.isfinite(probs))


@pytest.mark.parametrize("targets", ["labels", "onehot"])
def test_cross_entropy_gradient_is_p_minus_y_over_n_and_matches_fd(targets):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 3)) * 3
    labels = np.array([0, 2, 1, 2])
    y = labels if targets == "labels" else np.eye(3)[labels]
    loss, probs = act.softmax_cross_entropy(z, y)
    grad = act.softmax_cross_entropy_backward(probs, y)
    np.testing.assert_allclose(grad, (probs - np.eye(3)[labels]) / 4, rtol=1e-15)
    num = numeric_gradient(lambda a=z: act.softmax_cross_entropy(a, y)[0], z)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_cross_entropy_empty_batch_and_integer_onehot():
    loss, probs = act.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, int))
    assert loss == 0.0 and probs.shape == (0, 3)
    assert act.softmax_cross_entropy_backward(probs, np.zeros(0, int)).shape == (0, 3)
    z = np.array([[2.0, 1.0]])
    assert act.softmax_cross_entropy(z, np.array([[1, 0]]))[0] == pytest.approx(
        math.log(1 + math.exp(-1.0)), rel=1e-14)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: act.softmax_cross_entropy(np.ones(3), np.ones(3, int)), ValueError,
     r"logits must be a 2-D array \(N, K\), got an array of shape \(3,\)"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 3])), ValueError,
     r"y_true labels must lie in \[0, 3\) for 3 classes, got values from 0 to 3"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.array([0, -1])), ValueError,
     r"y_true labels must lie in \[0, 3\)"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.array([0.0, 1.0])), TypeError,
     r"y_true with shape \(N,\) must hold integer class labels, got dtype float64"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 1, 2])), ValueError,
     r"y_true must have one label per row of logits \(2\), got shape \(3,\)"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.ones((2, 4))), ValueError,
     r"y_true must be one-hot with the shape of logits \(2, 3\).*got shape \(2, 4\)"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.ones((2, 3), np.float32)),
     TypeError, r"y_true must have the dtype of logits \(float64\), got float32"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3)), np.ones((2, 3, 1))), ValueError,
     r"y_true must be one-hot \(N, K\) or integer labels \(N,\), got an array of shape"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 0)), np.zeros(2, int)), ValueError,
     r"logits must have at least one class, got shape \(2, 0\)"),
    (lambda: act.softmax_cross_entropy(np.ones((2, 3), np.float16), np.zeros(2, int)),
     TypeError, r"logits must be float32 or float64"),
    (lambda: act.softmax_cross_entropy_backward(np.ones(3), np.zeros(3, int)), ValueError,
     r"probs must be a 2-D array \(N, K\), got an array of shape \(3,\)"),
    (lambda: act.softmax_cross_entropy_backward(np.ones((2, 3)), np.array([5, 0])),
     ValueError, r"y_true labels must lie in \[0, 3\)"),
])
def test_cross_entropy_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_matches_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 4)) * 5
    labels = rng.integers(0, 4, 5)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels))
    tl.backward()
    loss, probs = act.softmax_cross_entropy(z, labels)
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(act.softmax_cross_entropy_backward(probs, labels),
                               tz.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_kernel_against_where(dtype):
    import fastconv
    rng = np.random.default_rng(5)
    y = act.relu(rng.standard_normal((3, 7, 61, 67)).astype(dtype))  # > 65536: threads
    gy = rng.standard_normal(y.shape).astype(dtype)
    gy[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    y[0, 0, 0, :4] = 0                                     # masked: must give +0
    y[0, 0, 1, 0], gy[0, 0, 1, 0] = 1.0, np.nan            # passed through: NaN
    expected = np.where(y > 0, gy, dtype(0))
    before = fastconv.get_num_threads()
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            got = act.relu_backward(gy, y)
            assert got.dtype == dtype and got.shape == y.shape
            np.testing.assert_array_equal(got, expected)
            assert not np.signbit(got[0, 0, 0, 3])
    finally:
        fastconv.set_num_threads(before)
    # Non-contiguous and read-only arguments, and an empty one.
    yv, gv = y[:, :, ::2, 1::3], gy[:, :, ::2, 1::3]
    gv.setflags(write=False)
    np.testing.assert_array_equal(act.relu_backward(gv, yv), expected[:, :, ::2, 1::3])
    assert act.relu_backward(np.ones((0, 3), dtype), np.ones((0, 3), dtype)).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernel_against_maximum(dtype):
    import fastconv
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 7, 61, 67)).astype(dtype)        # > 65536: threads
    x[0, 0, 0, :5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    expected = np.maximum(x, dtype(0))
    before = fastconv.get_num_threads()
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            got = act.relu(x)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, expected)          # NaN where NaN
            assert not np.signbit(got[0, 0, 0, 3])                # -0.0 -> +0.0
    finally:
        fastconv.set_num_threads(before)
    xv = x[:, ::2, :, ::3]
    xv.setflags(write=False)
    np.testing.assert_array_equal(act.relu(xv), expected[:, ::2, :, ::3])
    assert act.relu(np.ones((2, 0), dtype)).shape == (2, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1000, 300_001])  # one thread; all threads
def test_compiled_tanh_and_sigmoid_gradients_round_as_numpy(dtype, size):
    """The one-pass kernels give NumPy's three-pass results bit for bit (same
    operations, same order), NaN and inf included."""
    rng = np.random.default_rng(7)
    y = rng.uniform(-1.5, 1.5, size).astype(dtype)
    gy = rng.standard_normal(size).astype(dtype)
    y[:3] = [np.nan, np.inf, -np.inf]
    gy[3:5] = [np.nan, np.inf]
    one = dtype(1)
    with np.errstate(invalid="ignore", over="ignore"):
        want_tanh = (one - y * y) * gy
        want_sigmoid = ((one - y) * y) * gy
    np.testing.assert_array_equal(act.tanh_backward(gy, y), want_tanh)
    np.testing.assert_array_equal(act.sigmoid_backward(gy, y), want_sigmoid)
    assert act.tanh_backward(gy, y).dtype == dtype


def _ulps(got, x):
    """|got - tanh(x)| in units of the float32 spacing at the exact (float64) value."""
    want = np.tanh(x.astype(np.float64))
    return np.abs(got.astype(np.float64) - want) / np.spacing(
        np.abs(want).astype(np.float32)).astype(np.float64)


def test_float32_tanh_is_within_6_ulp_over_the_whole_range():
    """The compiled float32 tanh against float64 np.tanh on every 511th float32 bit pattern
    from 0 to inf (both signs: subnormals, the polynomial's range, the clamp at 9.1 and
    past it), with the special values exact."""
    x = np.arange(0, 0x7F800000, 511, dtype=np.uint32).view(np.float32)
    x = np.concatenate([x, -x])
    got = act.tanh(x)
    assert got.dtype == np.float32
    assert _ulps(got, x).max() <= 6
    # odd: tanh(-x) == -tanh(x) bit for bit, and the sign of zero kept
    half = x.size // 2
    np.testing.assert_array_equal(got[half:], -got[:half])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 9.2, -30.0, 1e-40],
                       np.float32)
    out = act.tanh(special)
    np.testing.assert_array_equal(out[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(out[1]) and not np.signbit(out[0])
    assert np.isnan(out[4])
    np.testing.assert_array_equal(out[5:], [1.0, -1.0, np.float32(1e-40)])


@pytest.mark.parametrize("size", [1000, 300_001])  # one thread; all threads
def test_float32_tanh_in_place_and_on_views(size):
    """The in-place form the layers use gives the same bits as act.tanh; a strided view
    is neither written through nor mistaken for contiguous data."""
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(size) * 3).astype(np.float32)
    want = act.tanh(x)
    assert _ulps(want, x).max() <= 6
    z = x.copy()
    assert act._tanh_inplace(z) is z
    np.testing.assert_array_equal(z, want)
    base = x.copy()
    view = base[::2]
    np.testing.assert_array_equal(act._tanh_inplace(view), want[::2])
    np.testing.assert_array_equal(base, x)  # the view's array untouched
    np.testing.assert_array_equal(act.tanh(x.reshape(-1, 1)[::3]),
                                  want.reshape(-1, 1)[::3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clamp_kernel_is_the_conv_relu_and_numpy_minimum(dtype):
    """_activations.clamp in place: with lo = 0 the conv kernels' ReLU (v < 0 ? 0 : v,
    -0.0 and NaN kept), with lo = -inf NumPy's minimum, bit for bit; large enough to
    run on all threads."""
    from fastconv import _ext
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(300_001) * 8).astype(dtype)
    x[:6] = [np.nan, -0.0, 0.0, 6.0, -np.inf, np.inf]
    relu = x.copy()
    _ext.activations.clamp(relu, 0.0, np.inf, relu)
    want = np.where(x < 0, dtype(0), x)
    np.testing.assert_array_equal(relu.view(f"u{x.itemsize}"), want.view(f"u{x.itemsize}"))
    assert np.signbit(relu[1]) and np.isnan(relu[0])
    top = relu.copy()
    _ext.activations.clamp(top, -np.inf, 6.0, top)
    want6 = np.minimum(relu, dtype(6))
    np.testing.assert_array_equal(top.view(f"u{x.itemsize}"), want6.view(f"u{x.itemsize}"))
    both = x.copy()
    _ext.activations.clamp(both, 0.0, 6.0, both)
    np.testing.assert_array_equal(both.view(f"u{x.itemsize}"), want6.view(f"u{x.itemsize}"))
    into = np.full_like(x, 99)   # out apart from x: x unchanged
    before = x.copy()
    _ext.activations.clamp(x, 0.0, 6.0, into)
    np.testing.assert_array_equal(into.view(f"u{x.itemsize}"), want6.view(f"u{x.itemsize}"))
    np.testing.assert_array_equal(x.view(f"u{x.itemsize}"), before.view(f"u{x.itemsize}"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu6_and_its_gradient_against_numpy(dtype):
    """relu6 (compiled clamp) against np.clip by value, -0.0 and NaN kept; its gradient
    a select against np.where: grad_y inside (0, 6), +0 elsewhere even where grad_y is
    NaN or inf; large enough for all threads; the in-place variant the same."""
    from fastconv import _more_activations as more
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((3, 100_003)) * 5).astype(dtype)
    x[0, :6] = [np.nan, -0.0, 0.0, 6.0, -np.inf, np.inf]
    y = more.relu6(x)
    want = np.clip(x, 0, 6)
    np.testing.assert_array_equal(y, want)
    assert y.dtype == dtype and np.signbit(y[0, 1]) and np.isnan(y[0, 0])
    z = x.copy()
    assert more._relu6_inplace(z) is z
    np.testing.assert_array_equal(z, want)
    g = rng.standard_normal(x.shape).astype(dtype)
    g[0, :6] = [1, 2, 3, 4, 5, 6]
    g[1, :4] = [np.nan, np.inf, np.nan, -np.inf]
    y[1, :4] = [-1.0, 7.0, 3.0, 0.0]
    out = more.relu6_backward(g, y)
    want_g = np.where((y > 0) & (y < 6), g, dtype(0))
    np.testing.assert_array_equal(out, want_g)
    assert np.isnan(out[1, 2]) and out[1, 0] == 0 and out[1, 1] == 0 and out[1, 3] == 0
    assert not np.signbit(out[1, 3])
