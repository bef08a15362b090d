"""The expansion + depthwise pass (fastconv/ops/conv/expand_dw.py, fusion.py's
expand_depthwise patterns): MobileNet's 1x1 layer and the depthwise layer after it,
each with its batch normalization and ReLU(6), in one inference pass.

Oracles: the reference loops (float64, the normalizations applied by hand), and the
same model's steps with the fused pass turned off (float32: the same kernels, so the
same bits where the 1x1 layer runs on the pixel-row kernels)."""
import numpy as np
import pytest

import fastconv
from fastconv import fusion, layers as L, reference as ref
from fastconv.models import Sequential
from fastconv.ops.conv import expand_dw as E, plan as _plan
from fastconv.ops.conv.geometry import geometry


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _bn(rng, c, dtype):
    bn = L.BatchNormalization(dtype=dtype)
    return bn, [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.3, c),
                rng.uniform(0.5, 2.0, c)]


def _model(rng, shape, c_exp, k=3, stride=1, padding="same", dilation=1, pad=None,
           act1=6.0, act2=6.0, use_bias=False, dtype="float32"):
    """Input -> Conv2D 1x1 -> BN -> ReLU(act1) [-> ZeroPadding2D(pad)] -> DepthwiseConv2D
    -> BN -> ReLU(act2), random weights and moving statistics; and the layers."""
    fastconv.set_seed(0)
    conv = L.Conv2D(c_exp, 1, use_bias=use_bias, dtype=dtype)
    bn1, w1 = _bn(rng, c_exp, dtype)
    dw = L.DepthwiseConv2D(k, strides=stride, padding="valid" if pad else padding,
                           dilation_rate=dilation, use_bias=use_bias, dtype=dtype)
    bn2, w2 = _bn(rng, c_exp, dtype)
    layers = [fastconv.Input(shape), conv, bn1, L.ReLU(act1)]
    layers += [L.ZeroPadding2D(pad)] if pad else []
    layers += [dw, bn2, L.ReLU(act2)]
    model = Sequential(layers)
    model.compile(optimizer="sgd", loss="mse")
    for layer in (conv, dw):
        layer.set_weights([rng.normal(0, 0.3, w.shape).astype(dtype)
                           for w in layer.get_weights()])
    bn1.set_weights([w.astype(dtype) for w in w1])
    bn2.set_weights([w.astype(dtype) for w in w2])
    return model, conv, bn1, dw, bn2


def _reference(x, conv, bn1, dw, bn2, act1, act2, pads, stride, dilation):
    """The layers by the reference loops in float64, channels_last in and out."""
    def norm(y, bn):
        g, b, m, v = (np.asarray(a, np.float64) for a in bn.get_weights())
        return (y - m) / np.sqrt(v + bn.epsilon) * g + b

    def relu(y, cap):
        return np.minimum(np.maximum(y, 0), cap) if cap is not None else np.maximum(y, 0)

    xc = ref.to_channels_first(x.astype(np.float64))
    k1 = conv.get_weights()[0].astype(np.float64).transpose(3, 2, 0, 1)
    b1 = conv.get_weights()[1] if conv.use_bias else None
    y = ref.to_channels_last(ref.conv2d_forward(xc, k1, b1))
    y = relu(norm(y, bn1), act1)
    kd = dw.get_weights()[0].astype(np.float64)          # (kh, kw, C, 1)
    k2 = kd.transpose(2, 3, 0, 1)                           # (C, 1, kh, kw)
    b2 = dw.get_weights()[1] if dw.use_bias else None
    y = ref.to_channels_last(ref.conv2d_forward(
        ref.to_channels_first(y), k2, b2, stride=(stride, stride), pads=pads,
        dilation=(dilation, dilation), groups=k2.shape[0]))
    return relu(norm(y, bn2), act2)


def _runs(monkeypatch):
    """Counts the fused passes that ran (E.forward not returning None)."""
    count = [0]
    real = E.forward

    def counted(*args, **kwargs):
        y = real(*args, **kwargs)
        count[0] += y is not None
        return y
    monkeypatch.setattr(E, "forward", counted)
    return count


def _steps(model):
    return [s.pattern.name for s in model._plan(fusion.INFERENCE, False).steps
            if s.pattern is not None]


CASES = [
    # (N, H, W, C_in, C_exp, k, stride, padding, dilation, ZeroPadding2D)
    (2, 9, 9, 8, 40, 3, 1, "same", 1, None),            # odd map, partial channel block
    (3, 10, 10, 6, 48, 3, 2, None, 1, ((0, 1), (0, 1))),  # MobileNetV2's stride 2
    (2, 11, 13, 8, 32, 3, 2, "same", 1, None),
    (1, 12, 12, 8, 36, 3, 1, "same", 2, None),           # dilation; bands of one image
    (5, 9, 8, 4, 20, 5, 1, "valid", 1, None),            # 5x5 (no three-column rows)
    (2, 7, 7, 16, 96, 3, 1, "same", 1, ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("acts", [(6.0, 6.0), (None, 6.0), (6.0, None)])
def test_float64_matches_the_reference_loops(case, acts, monkeypatch, rng):
    n, h, w, c, ce, k, s, padding, d, pad = case
    monkeypatch.setattr(E, "MIN_BYTES", 0)
    monkeypatch.setattr(E, "MIN_TILES", 0)
    count = _runs(monkeypatch)
    model, conv, bn1, dw, bn2 = _model(rng, (h, w, c), ce, k, s, padding or "valid", d,
                                       pad, *acts, use_bias=True, dtype="float64")
    assert _steps(model) == ["expand_pad_depthwise" if pad else "expand_depthwise"]
    x = rng.standard_normal((n, h, w, c))
    y = model.predict_on_batch(x)
    assert count[0] == 1
    want = _reference(x, conv, bn1, dw, bn2, acts[0], acts[1], _pads(dw, (h, w), pad),
                      s, d)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


def _pads(dw, hw, pad):
    """The depthwise layer's ((top, bottom), (left, right)) on an h x w map."""
    if pad is not None:
        return pad
    c = dw.kernel.shape[2]
    g = geometry((1, *hw, c), dw._op_kernel(dw.kernel).shape, dw.strides, dw.padding,
                 dw.dilation_rate, c, "channels_last")
    return ((g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right))


@pytest.mark.parametrize("case", CASES)
def test_float32_gives_the_bits_of_the_two_layers(case, monkeypatch, rng):
    """Against the same steps with the fused pass off: the same bits where the 1x1
    layer runs there on the pixel-row kernels (alone or as the pointwise algorithm's
    long rows), as it does on these shapes."""
    n, h, w, c, ce, k, s, padding, d, pad = case
    monkeypatch.setattr(E, "MIN_BYTES", 0)
    monkeypatch.setattr(E, "MIN_TILES", 0)
    model = _model(rng, (h, w, c), ce, k, s, padding or "valid", d, pad)[0]
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    count = _runs(monkeypatch)
    y = model.predict_on_batch(x)
    assert count[0] == 1
    monkeypatch.setattr(E, "forward", lambda *a, **k: None)
    want = model.predict_on_batch(x)
    # (what the model's inference forward of the 1x1 layer runs: its weight packed once)
    g = geometry((n, h, w, c), (1, 1, c, ce), 1, 0, 1, 1, "channels_last")
    plan = _plan.select(g, np.float32, _plan.FORWARD, packed=True)
    assert plan.name == "pixel" or (plan.name == "pointwise" and
                                    plan.inner.name == "pixel"), plan.describe()
    np.testing.assert_array_equal(y, want)


def test_many_bands_per_image_and_images_per_call(monkeypatch, rng):
    """Images of several bands (rows of 64 x 64 channels: 16 KiB each), at batch 4
    (whole-budget bands) and 1 (at least four bands): the same values as unfused."""
    monkeypatch.setattr(E, "MIN_BYTES", 0)
    model = _model(rng, (40, 64, 8), 64, 3, 1, "same")[0]
    for n in (4, 1):
        x = rng.standard_normal((n, 40, 64, 8)).astype(np.float32)
        count = _runs(monkeypatch)
        y = model.predict_on_batch(x)
        assert count[0] == 1
        model._fusion = False
        want = model.predict_on_batch(x)
        model._fusion = True
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)


def test_small_maps_and_small_tensors_run_as_two_folded_steps(monkeypatch, rng):
    """Under MIN_BYTES or MIN_TILES the pass does not run: the step runs the two
    folded convolutions (conv_batch_norm_relu's path), not the six layers."""
    model = _model(rng, (4, 4, 8), 48, 3, 1, "same")[0]
    x = rng.standard_normal((3, 4, 4, 8)).astype(np.float32)
    count = _runs(monkeypatch)
    folds, checks = [], []
    real, real_folded = fusion._conv_bn_forward, fusion._folded
    monkeypatch.setattr(fusion, "_conv_bn_forward",
                        lambda *a, **k: folds.append(1) or real(*a, **k))
    monkeypatch.setattr(fusion, "_folded",
                        lambda *a, **k: checks.append(1) or real_folded(*a, **k))
    y = model.predict_on_batch(x)
    # (each weight checked and folded once: the rule is decided on shapes alone)
    assert count[0] == 0 and len(folds) == 2 and len(checks) == 2
    model._fusion = False
    np.testing.assert_allclose(y, model.predict_on_batch(x), rtol=2e-5, atol=2e-5)


def test_a_weight_that_is_not_finite_is_left_to_the_layers(monkeypatch, rng):
    monkeypatch.setattr(E, "MIN_BYTES", 0)
    monkeypatch.setattr(E, "MIN_TILES", 0)
    model, _, _, dw, _ = _model(rng, (8, 8, 8), 32, 3, 1, "same")
    kd = dw.get_weights()[0]
    kd[0, 0, 3, 0] = np.inf
    dw.set_weights([kd])
    x = rng.standard_normal((2, 8, 8, 8)).astype(np.float32)
    count = _runs(monkeypatch)
    y = model.predict_on_batch(x)
    assert count[0] == 0
    model._fusion = False
    want = model.predict_on_batch(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))


@pytest.mark.parametrize("make", [
    lambda: (L.Conv2D(16, 1, strides=2), L.DepthwiseConv2D(3, padding="same")),
    lambda: (L.Conv2D(16, 3, padding="same"), L.DepthwiseConv2D(3, padding="same")),
    lambda: (L.Conv2D(16, 1), L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)),
    lambda: (L.Conv2D(16, 1, groups=2), L.DepthwiseConv2D(3, padding="same")),
    lambda: (L.DepthwiseConv2D(1), L.DepthwiseConv2D(3, padding="same")),
])
def test_other_pairs_do_not_take_the_pattern(make, rng):
    conv, dw = make()
    model = Sequential([fastconv.Input((8, 8, 8)), conv, L.BatchNormalization(),
                        L.ReLU(), dw, L.BatchNormalization(), L.ReLU()])
    model.compile(optimizer="sgd", loss="mse")
    assert not any(name.startswith("expand") for name in _steps(model))


def test_channels_first_and_training_do_not_fuse(rng):
    first = "channels_first"
    model = Sequential([fastconv.Input((8, 6, 6)), L.Conv2D(16, 1, data_format=first),
                        L.BatchNormalization(axis=1), L.ReLU(),
                        L.DepthwiseConv2D(3, padding="same", data_format=first),
                        L.BatchNormalization(axis=1), L.ReLU()])
    model.compile(optimizer="sgd", loss="mse")
    assert not any(name.startswith("expand") for name in _steps(model))
    model = _model(rng, (8, 8, 8), 32)[0]
    steps = model._plan(fusion.TRAINING, model._fused_outputs()).steps
    assert not any(s.pattern is not None and s.pattern.name.startswith("expand")
                   for s in steps)


def test_one_and_two_threads_give_the_same_bits(monkeypatch, rng):
    monkeypatch.setattr(E, "MIN_BYTES", 0)
    model = _model(rng, (12, 12, 8), 64, 3, 2, None, 1, ((0, 1), (0, 1)))[0]
    x = rng.standard_normal((6, 12, 12, 8)).astype(np.float32)
    before = fastconv.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            fastconv.set_num_threads(n)
            count = _runs(monkeypatch)
            out.append(model.predict_on_batch(x))
            assert count[0] == 1
    finally:
        fastconv.set_num_threads(before)
    np.testing.assert_array_equal(out[0], out[1])
