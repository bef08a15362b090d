"""The batch_norm_relu fusion (fastconv/fusion.py) and its kernels (src/_batchnorm.pyx
affine_act, channel_sums_act, backward_input_act): fused = unfused bit for bit in
models, the fused passes against a NumPy float64 reference, 1 and 2 threads alike."""
import numpy as np
import pytest

import fastconv
from fastconv import _ext
from fastconv import fusion
from fastconv import layers as L
from fastconv.models import Sequential



def spy(monkeypatch):
    """Record the results of batch_norm_relu's fused forward / backward:
    {"forward": [(training, fused?)], "backward": [fused?]}."""
    pattern = next(p for p in fusion.PATTERNS if p.name == "batch_norm_relu")
    seen = {"forward": [], "backward": []}
    forward, backward = pattern.forward, pattern.backward

    def spy_forward(a, b, x, training, tile):
        out = forward(a, b, x, training, tile)
        seen["forward"].append((training, out is not None))
        return out

    def spy_backward(a, b, grad, input_grad):
        out = backward(a, b, grad, input_grad)
        seen["backward"].append(out is not fusion.UNFUSED)
        return out
    monkeypatch.setattr(pattern, "forward", spy_forward)
    monkeypatch.setattr(pattern, "backward", spy_backward)
    return seen


def fused_names(model, mode):
    return [step.pattern.name for step in model._steps(mode) if step.pattern is not None]


def train_pair(make, x, y, steps=3):
    """make() twice, fused and with fusion off: `steps` training steps and predict."""
    fused, plain = make(), make()
    plain._fusion = False
    for _ in range(steps):
        fused.train_on_batch(x, y)
        plain.train_on_batch(x, y)
    return fused, plain, fused.predict(x, verbose=0), plain.predict(x, verbose=0)


def assert_same_model(fused, plain, got, want):
    """Weights (moving statistics too) bit for bit; predictions to rounding (the
    conv_batch_norm fold runs in the fused model's inference only)."""
    tol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def make_model(dtype, data_format, max_value, frozen=False, first_act="linear"):
    def make():
        fastconv.set_seed(31)
        kw = {"dtype": dtype}
        shape = (9, 8, 5) if data_format == "channels_last" else (5, 9, 8)
        axis = -1 if data_format == "channels_last" else 1
        model = Sequential([
            L.Conv2D(6, 3, padding="same", activation=first_act, input_shape=shape,
                     data_format=data_format, **kw),
            L.BatchNormalization(axis=axis, beta_initializer="random_normal",
                                 gamma_initializer="random_normal",
                                 trainable=not frozen, **kw),
            L.ReLU(max_value, **kw),
            L.Conv2D(4, 3, data_format=data_format, **kw),
            L.BatchNormalization(axis=axis, momentum=0.9, **kw),
            L.ReLU(max_value, **kw),
            L.GlobalAveragePooling2D(data_format=data_format, **kw),
            L.Dense(3, activation="softmax", **kw)])
        model.compile("adam", "categorical_crossentropy")
        return model
    return make


@pytest.mark.parametrize("max_value", [None, 6.0])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bn_relu_fused_equals_unfused_in_training(dtype, data_format, max_value,
                                                   monkeypatch):
    """Three Adam steps and predict, fused and unfused, bit for bit (weights and moving
    statistics); the fused forward and backward ran in every training step."""
    seen = spy(monkeypatch)
    rng = np.random.default_rng(32)
    x = rng.standard_normal((6,) + make_model(dtype, data_format, max_value)()
                            .input_shape[1:]).astype(dtype) * 3
    y = np.eye(3)[rng.integers(0, 3, 6)]
    fused, plain, got, want = train_pair(make_model(dtype, data_format, max_value), x, y)
    assert_same_model(fused, plain, got, want)
    assert fused_names(fused, "training") == ["batch_norm_relu"] * 2
    assert not fused_names(plain, "training")
    # inference: the conv_batch_norm fold takes the convolutions first, with the ReLU
    assert fused_names(fused, "inference") == ["conv_batch_norm_relu"] * 2
    assert seen["forward"] == [(True, True)] * 6
    assert seen["backward"] == [True] * 6


@pytest.mark.parametrize("max_value", [None, 6.0])
def test_bn_relu_fused_in_inference_and_frozen(max_value, monkeypatch):
    """After a ReLU Conv2D (no fold) the pair fuses in inference too; a frozen
    normalization (moving statistics in training) runs the fused forward and the
    layers' own backward (UNFUSED), with the same bits either way."""
    seen = spy(monkeypatch)
    make = make_model("float32", "channels_last", max_value, frozen=True,
                      first_act="relu")
    rng = np.random.default_rng(33)
    x = rng.standard_normal((5, 9, 8, 5)).astype(np.float32) * 3
    y = np.eye(3)[rng.integers(0, 3, 5)]
    fused, plain, got, want = train_pair(make, x, y)
    assert_same_model(fused, plain, got, want)
    assert fused_names(fused, "inference") == ["batch_norm_relu",
                                               "conv_batch_norm_relu"]
    assert (False, True) in seen["forward"]
    assert False in seen["backward"] and True in seen["backward"]


def test_the_pattern_takes_plain_relu_and_relu6_only():
    bn = L.BatchNormalization()
    for relu, fuses in ((L.ReLU(), True), (L.ReLU(6.0), True), (L.ReLU(5.0), False),
                        (L.ReLU(negative_slope=0.1), False), (L.LeakyReLU(), False)):
        got = any(p.matches(bn, relu, mode) for p in fusion.PATTERNS
                  for mode in (fusion.TRAINING, fusion.INFERENCE))
        assert got == fuses, relu


# ------------------------------------------------------------------------ the kernels
def act_ref(z, act):
    return z if act == 0 else np.maximum(z, 0) if act == 1 else np.clip(z, 0, 6)


def act_grad_ref(g, y, act):
    if act == 0:
        return g
    keep = y > 0 if act == 1 else (y > 0) & (y < 6)
    return g * keep


def bn_act_reference(x, gamma, beta, g, act, eps, axis):
    """Training forward and backward of batch norm + act in float64, NumPy formulas."""
    axis = axis % x.ndim
    axes = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    mean = x.mean(axes, keepdims=True)
    var = x.var(axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    y = act_ref(xhat * gamma.reshape(shape) + beta.reshape(shape), act)
    v = act_grad_ref(g, y, act)
    m = x.size // x.shape[axis]
    dbeta = v.sum(axes)
    dgamma = (v * xhat).sum(axes)
    dxhat = v * gamma.reshape(shape)
    dx = (dxhat - dxhat.sum(axes, keepdims=True) / m -
          xhat * (dxhat * xhat).sum(axes, keepdims=True) / m) / np.sqrt(var + eps)
    return y, dx, dgamma, dbeta


def bn_act_fused(x, gamma, beta, g, act, eps, axis):
    bn = L.BatchNormalization(axis=axis, epsilon=eps, dtype=x.dtype)
    bn.build(x.shape)
    bn.gamma[...] = gamma
    bn.beta[...] = beta
    y = bn._normalize(x, True, act)
    dx = bn._normalize_backward(g, True, y, act)
    return y, dx, bn._grads["gamma"], bn._grads["beta"]


@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize("axis", [-1, 1])
def test_fused_passes_match_numpy_in_float64(act, axis):
    rng = np.random.default_rng(34 + act)
    x = rng.standard_normal((7, 5, 6, 4)) * 4 + 1
    c = x.shape[axis]
    gamma, beta = rng.standard_normal(c) * 2, rng.standard_normal(c) * 3
    g = rng.standard_normal(x.shape)
    got = bn_act_fused(x, gamma, beta, g, act, 1e-3, axis)
    want = bn_act_reference(x, gamma, beta, g, act, 1e-3, axis)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", [1, 2])
def test_fused_passes_match_numpy_in_float32(act):
    """float32 within 1e-4 relative of the float64 reference (the sums are float64)."""
    rng = np.random.default_rng(40)
    x = rng.standard_normal((16, 6, 6, 8)) * 4
    gamma, beta = rng.standard_normal(8) * 2, rng.standard_normal(8) * 3
    g = rng.standard_normal(x.shape)
    got = bn_act_fused(x.astype(np.float32), gamma.astype(np.float32),
                       beta.astype(np.float32), g.astype(np.float32), act, 1e-3, -1)
    want = bn_act_reference(x, gamma, beta, g, act, 1e-3, -1)
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("axis", [-1, 1])
def test_one_and_two_threads_give_the_same_bits(axis):
    """Large enough (> 65536 values) for the kernels to use every thread."""
    rng = np.random.default_rng(41)
    x = rng.standard_normal((32, 16, 12, 12)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    c = x.shape[axis]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    before = fastconv.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            fastconv.set_num_threads(n)
            out.append(bn_act_fused(x, gamma, beta, g, 2, 1e-3, axis))
    finally:
        fastconv.set_num_threads(before)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_nan_and_signed_zero_round_as_the_unfused_passes():
    """The forward's activation rounds as relu / np.clip do: NaN propagates."""
    z = np.array([np.nan, -0.0, 0.0, -1.0, 3.0, 6.0, 7.0, np.inf, -np.inf], np.float32)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    for act, ref in ((1, fastconv.activations.relu(z)), (2, np.clip(z, 0, 6))):
        out = np.empty_like(z)
        _ext.batchnorm.affine_act(z, one, zero, out, z.size, 1, 1, act)
        np.testing.assert_array_equal(out, ref)
        assert not np.signbit(out[1])


def test_bad_activation_code_raises():
    x = np.ones(4)
    with pytest.raises(ValueError, match="act must be 0, 1 or 2, got 3"):
        _ext.batchnorm.affine_act(x, np.ones(1), np.zeros(1), np.empty(4), 4, 1, 1, 3)


@pytest.mark.parametrize("act", [1, 2])
@pytest.mark.parametrize("shape", [(40, 1100, 1), (6, 3, 1030), (9, 17, 1)])
def test_fused_sums_equal_the_sums_of_the_unfused_gradient(shape, act):
    """channel_sums_act = channel_sums of the activation's gradient, bit for bit, also
    where a row (channels_last, > 1024 channels) or a channel's run (channels_first)
    is longer than the staging buffer."""
    rng = np.random.default_rng(42)
    a, c, b = shape
    x = rng.standard_normal(a * c * b).astype(np.float32)
    g = rng.standard_normal(x.size).astype(np.float32)
    y = rng.uniform(-3, 9, x.size).astype(np.float32)
    shift = rng.standard_normal(c)
    items = _ext.batchnorm.n_items(a, c, b)
    dz = (fastconv.activations.relu_backward(g, y) if act == 1 else
          fastconv._more_activations.relu6_backward(g, y))
    want = _ext.batchnorm.channel_sums(x, dz, shift, np.empty((items, 2 * c)), a, c, b, 1)
    got = _ext.batchnorm.channel_sums_act(x, g, y, shift, np.empty((items, 2 * c)), a, c,
                                          b, 1, act)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("act", [1, 2])
@pytest.mark.parametrize("shape", [(40, 32, 1), (9, 17, 1), (6, 3, 1030), (5, 4, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_mask_from_x_equals_the_mask_from_y(shape, act, dtype):
    """channel_sums_act and backward_input_act with the forward's scale and shift (y
    not read) give the bits they give with y = affine_act(x): the values at the
    activation's edges (0, 6, NaN, -0.0 before it) included."""
    rng = np.random.default_rng(43)
    a, c, b = shape
    x = rng.standard_normal(a * c * b).astype(dtype) * 3
    x[:6] = [0.0, -0.0, 6.0, np.nan, 2.0, -1.0]   # (with scale 1, shift 0 on channel 0)
    scale = rng.uniform(0.5, 2, c).astype(dtype)
    shift = rng.standard_normal(c).astype(dtype) * 2
    if b == 1:
        scale[0], shift[0] = 1, 0
    g = rng.standard_normal(x.size).astype(dtype)
    y = np.empty_like(x)
    _ext.batchnorm.affine_act(x, scale, shift, y, a, c, b, act)
    mean = rng.standard_normal(c)
    items = _ext.batchnorm.n_items(a, c, b)
    want = _ext.batchnorm.channel_sums_act(x, g, y, mean, np.empty((items, 2 * c)), a, c,
                                           b, 1, act)
    got = _ext.batchnorm.channel_sums_act(x, g, x, mean, np.empty((items, 2 * c)), a, c,
                                          b, 1, act, scale, shift)
    np.testing.assert_array_equal(got, want)
    args = [mean.astype(dtype)] + [rng.standard_normal(c).astype(dtype) for _ in range(3)]
    dx_y, dx_x = np.empty_like(x), np.empty_like(x)
    _ext.batchnorm.backward_input_act(g, y, x, *args, dx_y, a, c, b, act)
    _ext.batchnorm.backward_input_act(g, x, x, *args, dx_x, a, c, b, act, scale, shift)
    np.testing.assert_array_equal(dx_x, dx_y)


@pytest.mark.parametrize("axis", [-1, 1])
def test_the_fused_backward_does_not_read_the_activation_output(axis):
    """batch_norm_relu's backward takes the activation's mask from the normalization's
    input and the forward's scale and shift: a y of other values changes nothing."""
    rng = np.random.default_rng(44)
    x = rng.standard_normal((6, 5, 4, 8)).astype(np.float32) * 3
    g = rng.standard_normal(x.shape).astype(np.float32)
    bn = L.BatchNormalization(axis=axis)
    bn.build(x.shape)
    bn.beta[...] = rng.standard_normal(bn.beta.shape)
    y = bn._normalize(x, True, 2)
    want = bn._normalize_backward(g, True, y, 2).copy()
    got = bn._normalize_backward(g, True, np.full_like(y, 3.0), 2)
    np.testing.assert_array_equal(got, want)
    assert bn._grads["gamma"] is not None


def test_act_scale_and_shift_go_together():
    x = np.ones(4)
    with pytest.raises(ValueError, match="act_scale and act_shift go together"):
        _ext.batchnorm.channel_sums_act(x, x, x, np.zeros(1), np.empty((1, 2)), 4, 1, 1, 1,
                                        1, np.ones(1), None)


def _sums_oracle(x, g, y, shift, a, c, items, grad, act):
    """channel_sums_act's channels_last sums in the order batchnorm_kernels.h states:
    per work item, each channel's even rows and odd rows summed apart in row order, then
    added; the items' sums added in item order (NumPy's cumsum adds in order)."""
    x, g, y = (v.reshape(a, c) for v in (x, g, y))
    d = x.astype(np.float64) - shift
    if grad:
        keep = np.ones(x.shape, bool) if act == 0 else (y > 0) & ((y < 6) | (act == 1))
        v = np.where(keep, g, 0).astype(np.float64)
        terms = (v, v * d)
    else:
        terms = (d, d * d)
    out = []
    for t in terms:
        total = np.zeros(c)
        for i in range(items):
            rows = t[i * a // items:(i + 1) * a // items]
            part = np.zeros(c)
            for parity in (rows[0::2], rows[1::2]):
                if len(parity):
                    part = part + np.cumsum(parity, axis=0)[-1]
            total = total + part
        out.append(total)
    return np.concatenate(out)


@pytest.mark.parametrize("c", [1, 3, 8, 9, 16, 20, 33, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_last_sums_take_the_stated_order(c, dtype):
    """The channels_last sums, bit for bit, in the order the kernels state: the same for
    channels in a vector block and past it (whatever this CPU's block width), for the
    moments and for the backward sums through each activation, y read or recomputed."""
    rng = np.random.default_rng(c)
    a = 37
    x = (rng.standard_normal(a * c) * 3).astype(dtype)
    g = rng.standard_normal(x.size).astype(dtype)
    scale = rng.uniform(0.5, 2, c).astype(dtype)
    at = rng.standard_normal(c).astype(dtype)
    shift = rng.standard_normal(c)
    items = 2   # (two work items of 18 and 19 rows: both parities end on each)
    for grad, act in ((0, 0), (1, 0), (1, 1), (1, 2)):
        y = np.empty_like(x)
        _ext.batchnorm.affine_act(x, scale, at, y, a, c, 1, act)
        want = _sums_oracle(x, g, y, shift, a, c, items, grad, act)
        got = _ext.batchnorm.channel_sums_act(x, g, y, shift, np.empty((items, 2 * c)),
                                              a, c, 1, grad, act)
        np.testing.assert_array_equal(got, want, err_msg=f"grad {grad} act {act}")
        if grad and act:
            got = _ext.batchnorm.channel_sums_act(x, g, x, shift,
                                                  np.empty((items, 2 * c)), a, c, 1,
                                                  grad, act, scale, at)
            np.testing.assert_array_equal(got, want, err_msg=f"affine, act {act}")


def _tree16(p):
    r = p[:8] + p[8:]
    r = r[:4] + r[4:]
    return (r[0] + r[2]) + (r[1] + r[3])


def _run_oracle(terms):
    """One run's sum in the order batchnorm_kernels.h states for channels_first: value
    k into partial k mod 16 (in order), the partials added as a tree."""
    p = np.zeros(16)
    for k, v in enumerate(terms):
        p[k % 16] += v
    return _tree16(p)


@pytest.mark.parametrize("b", [2, 7, 16, 21, 69])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_first_sums_take_the_stated_order(b, dtype):
    """The channels_first sums (a run of B values per image and channel), bit for bit,
    in the stated order, whatever this CPU's vector width: moments and backward sums
    through each activation, y read or recomputed from x."""
    rng = np.random.default_rng(b)
    a, c = 3, 2
    x = (rng.standard_normal(a * c * b) * 3).astype(dtype)
    g = rng.standard_normal(x.size).astype(dtype)
    scale = rng.uniform(0.5, 2, c).astype(dtype)
    at = rng.standard_normal(c).astype(dtype)
    shift = rng.standard_normal(c)
    for grad, act in ((0, 0), (1, 0), (1, 1), (1, 2)):
        y = np.empty_like(x)
        _ext.batchnorm.affine_act(x, scale, at, y, a, c, b, act)
        want = np.zeros(2 * c)
        for ch in range(c):
            for i in range(a):
                run = slice((i * c + ch) * b, (i * c + ch + 1) * b)
                d = x[run].astype(np.float64) - shift[ch]
                if grad:
                    yr = y[run]
                    keep = np.ones(b, bool) if act == 0 else (yr > 0) & (
                        (yr < 6) | (act == 1))
                    v = np.where(keep, g[run], 0).astype(np.float64)
                else:
                    v = d
                want[ch] += _run_oracle(v)
                want[c + ch] += _run_oracle(v * d)
        items = _ext.batchnorm.n_items(a, c, b)
        assert items == 1   # (one work item: its sums are the call's)
        got = _ext.batchnorm.channel_sums_act(x, g, y, shift, np.empty((items, 2 * c)),
                                              a, c, b, grad, act)
        np.testing.assert_array_equal(got, want, err_msg=f"grad {grad} act {act}")
        if grad and act:
            got2 = _ext.batchnorm.channel_sums_act(x, g, x, shift,
                                                   np.empty((items, 2 * c)), a, c, b,
                                                   grad, act, scale, at)
            np.testing.assert_array_equal(got2, got, err_msg=f"affine, act {act}")


def _all_sums(seed):
    """channel_sums_act over both layouts' kernels (channels_last rows of 1-33
    channels, channels_first runs of 2-69 values), every mode and activation."""
    rng = np.random.default_rng(seed)
    out = []
    for dtype in (np.float32, np.float64):
        for a, c, b in ((37, 33, 1), (9, 3, 1), (5, 3, 69), (4, 2, 21), (3, 5, 2)):
            x = (rng.standard_normal(a * c * b) * 3).astype(dtype)
            g = rng.standard_normal(x.size).astype(dtype)
            y = rng.uniform(-3, 9, x.size).astype(dtype)
            shift = rng.standard_normal(c)
            items = _ext.batchnorm.n_items(a, c, b)
            for grad, act in ((0, 0), (1, 0), (1, 1), (1, 2)):
                out.append(_ext.batchnorm.channel_sums_act(
                    x, g, y, shift, np.empty((items, 2 * c)), a, c, b, grad, act))
    return np.concatenate([np.asarray(o) for o in out])


def _elementwise_oracle(x, g, y, params, c, b, act, act_affine):
    """The stated expressions of affine_act and backward_input_act in NumPy (each
    product and sum rounded in x's dtype, as the kernels round them)."""
    def per_channel(v):
        return np.repeat(np.tile(v, x.size // (c * b)), b)
    s, t, m, p, q, r = (per_channel(v) for v in params)
    z = x * s + t
    if act:
        z = np.where(z <= 0, np.zeros_like(z), z)
        if act == 2:
            z = np.where(z >= 6, np.full_like(z, 6), z)
    if act_affine is not None:
        y = x * per_channel(act_affine[0]) + per_channel(act_affine[1])
    keep = np.ones(x.shape, bool) if not act else (y > 0) & ((act == 1) | (y < 6))
    v = np.where(keep, g, np.zeros_like(g))
    return z, (v * p + (x - m) * q) + r


def _all_elementwise(seed):
    """affine_act and backward_input_act on rows of 1-40 channels (channels_last: the
    vectors along the channels and the channels past them) and runs of 1-37 values
    (channels_first), every activation, NaN, infinities and signed zeros among x."""
    rng = np.random.default_rng(seed)
    out = []
    for dtype in (np.float32, np.float64):
        for a, c, b in ((23, 16, 1), (9, 40, 1), (7, 24, 1), (11, 3, 1), (3, 5, 37),
                        (4, 2, 16), (2, 7, 1), (3, 6, 9)):
            x = (rng.standard_normal(a * c * b) * 4).astype(dtype)
            x[:5] = [np.nan, -0.0, np.inf, -np.inf, 0.0]   # (then channel 0's edges)
            g = rng.standard_normal(x.size).astype(dtype)
            y = rng.uniform(-3, 9, x.size).astype(dtype)
            y[:3] = [0.0, 6.0, np.nan]
            params = [(rng.standard_normal(c) * 2).astype(dtype) for _ in range(6)]
            # channel 0 maps x to itself: the activation's edges reach its output
            params[0][0], params[1][0] = 1, -0.0   # (-0.0 + -0.0: -0.0 reaches relu)
            ch0 = (np.arange(a)[:, None] * c * b + np.arange(b)).reshape(-1)[:6]
            x[ch0] = [6.0, -0.0, np.nan, 0.0, 7.0, -1.0][:ch0.size]
            for act in (0, 1, 2):
                for act_affine in ((None, None), tuple(params[:2])):
                    if act_affine[0] is not None and not act:
                        continue
                    z, dx = np.empty_like(x), np.empty_like(x)
                    _ext.batchnorm.affine_act(x, params[0], params[1], z, a, c, b, act)
                    _ext.batchnorm.backward_input_act(g, y, x, *params[2:], dx, a, c, b,
                                                      act, *act_affine)
                    out.append((x, g, y, params, c, b, act,
                                None if act_affine[0] is None else act_affine, z, dx))
    return out


def test_elementwise_passes_take_the_stated_expressions():
    """affine_act and backward_input_act bit for bit as NumPy rounds the stated
    expressions (no fused multiply-add in any build), in both layouts, at every
    vector width's edges; dx may be g itself."""
    for x, g, y, params, c, b, act, act_affine, z, dx in _all_elementwise(45):
        want_z, want_dx = _elementwise_oracle(x, g, y, params, c, b, act, act_affine)
        msg = f"{x.dtype} c {c} b {b} act {act} affine {act_affine is not None}"
        np.testing.assert_array_equal(_bits(z), _bits(want_z), err_msg=msg)
        np.testing.assert_array_equal(_bits(dx), _bits(want_dx), err_msg=msg)
        same = g.copy()
        a = x.size // (c * b)
        extra = () if act_affine is None else act_affine
        _ext.batchnorm.backward_input_act(same, y, x, *params[2:], same, a, c, b, act,
                                          *extra)
        np.testing.assert_array_equal(_bits(same), _bits(want_dx), err_msg="in place: " + msg)


def _bits(a):
    """a's values as unsigned integers of their width (signed zeros and NaNs apart)."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _all_elementwise_outputs(seed):
    return np.concatenate([_bits(np.concatenate([r[-2], r[-1]])).astype(np.uint64)
                           for r in _all_elementwise(seed)])


def _all_outputs():
    return np.concatenate([_all_sums(7).view(np.uint64), _all_elementwise_outputs(8)])


def test_every_build_gives_the_portable_builds_bits(tmp_path):
    """FASTCONV_DISABLE_SIMD=1 runs the scalar sums and elementwise passes (a
    subprocess); each vector build this CPU runs (use_build) gives the same bits."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, FASTCONV_DISABLE_SIMD="1")
    env["PYTHONPATH"] = os.pathsep.join([here, tests, env.get("PYTHONPATH", "")])
    out = str(tmp_path / "sums.npy")
    code = ("import sys, numpy as np, fastconv; from fastconv import _ext; "
            "from test_bn_relu_fusion import _all_outputs; "
            "assert _ext.conv2d.isa() == 'portable'; "
            "assert _ext.batchnorm.build() == 'portable'; "
            "np.save(sys.argv[1], _all_outputs())")
    subprocess.run([sys.executable, "-c", code, out], check=True, env=env)
    portable = np.load(out)
    best = _ext.batchnorm.build()
    tried = []
    try:
        for name in ("portable", "avx2", "avx512"):
            try:
                _ext.batchnorm.use_build(name)
            except ValueError:
                continue
            tried.append(name)
            np.testing.assert_array_equal(_all_outputs(), portable, err_msg=name)
    finally:
        _ext.batchnorm.use_build(best)
    assert "portable" in tried and best in tried


def test_use_build_names_the_bad_build():
    with pytest.raises(ValueError, match="name must be one of .* got 'sse9'"):
        _ext.batchnorm.use_build("sse9")


@pytest.mark.parametrize("hw", [(2, 2), (3, 5), (1, 15)])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_short_channels_first_runs_are_summed_as_channels_last_rows(hw, act):
    """Planes of fewer than 16 values (MobileNetV2's 2x2 and 4x4 maps) are summed over a
    channels_last copy: the channels_first layer's training forward and backward give
    the channels_last layer's bits, transposed (its sums are the same kernel's on the
    same rows), and match the NumPy reference."""
    rng = np.random.default_rng(46)
    x = (rng.standard_normal((5, 7) + hw) * 3 + 1).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = rng.standard_normal(7) * 2, rng.standard_normal(7)
    first = bn_act_fused(x, gamma, beta, g, act, 1e-3, 1)
    last = bn_act_fused(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), gamma, beta,
                        np.ascontiguousarray(g.transpose(0, 2, 3, 1)), act, 1e-3, -1)
    np.testing.assert_array_equal(first[0], last[0].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(first[1], last[1].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(first[2], last[2])
    np.testing.assert_array_equal(first[3], last[3])
    want = bn_act_reference(x.astype(np.float64), gamma, beta, g.astype(np.float64), act,
                            1e-3, 1)
    for got, w in zip(first, want):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
