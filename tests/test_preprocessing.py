"""Preprocessing / augmentation layers (fastconv/layers/preprocessing.py).

Random layers are checked against independent computations: the generator draws are
repeated here from a Generator of the same seed, and geometric transforms are
recomputed pixel by pixel (inverse mapping, interpolation and fill written out in
Python on small images).  Keras parity runs where keras is importable.
"""
import math

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv.layers import preprocessing as P
from fastconv.models import Sequential, load_model

FORMATS = ("channels_last", "channels_first")
F64 = "float64"
FILL_MODES = ("reflect", "wrap", "nearest", "constant")
INTERPOLATIONS = ("bilinear", "nearest")


def images(n=3, h=5, w=6, c=2, data_format="channels_last", seed=0, dtype=np.float64):
    x = np.random.default_rng(seed).random((n, h, w, c)).astype(dtype)
    return x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 3, 1, 2))


def to_last(x, data_format):
    return x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)


# ------------------------------------------------------------ naive reference
def _fold(i, n, mode):
    """One integer index -> (index in [0, n) or None for outside with constant)."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "nearest":
        return 0 if i < 0 else n - 1
    if mode == "wrap":
        while i < 0:
            i += n
        while i >= n:
            i -= n
        return i
    # reflect: d c b a | a b c d | d c b a
    while not 0 <= i < n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


def _pixel(img, i, j, mode, fill):
    h, w, _ = img.shape
    fi, fj = _fold(i, h, mode), _fold(j, w, mode)
    if fi is None or fj is None:
        return np.full(img.shape[2], fill)
    return img[fi, fj]


def naive_resample(img, source, interpolation, mode, fill=0.0, out_hw=None):
    """img (H, W, C); source(i, j) -> (y, x) the input point output pixel (i, j)
    reads."""
    h, w, c = img.shape
    ho, wo = out_hw or (h, w)
    out = np.zeros((ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            y, x = source(i, j)
            if interpolation == "nearest":
                out[i, j] = _pixel(img, math.floor(y + 0.5), math.floor(x + 0.5), mode,
                                   fill)
                continue
            y0, x0 = math.floor(y), math.floor(x)
            dy, dx = y - y0, x - x0
            out[i, j] = ((1 - dy) * (1 - dx) * _pixel(img, y0, x0, mode, fill)
                         + (1 - dy) * dx * _pixel(img, y0, x0 + 1, mode, fill)
                         + dy * (1 - dx) * _pixel(img, y0 + 1, x0, mode, fill)
                         + dy * dx * _pixel(img, y0 + 1, x0 + 1, mode, fill))
    return out


def naive_batch(x, data_format, sources, interpolation, mode, fill=0.0, out_hw=None):
    xl = to_last(x, data_format)
    out = np.stack([naive_resample(xl[k], sources[k], interpolation, mode, fill, out_hw)
                    for k in range(len(xl))])
    return out if data_format == "channels_last" else out.transpose(0, 3, 1, 2)


# ------------------------------------------------------------ flips
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_flip_matches_np_flip_on_drawn_samples(mode, data_format):
    x = images(n=8, data_format=data_format)
    layer = L.RandomFlip(mode, seed=3, data_format=data_format, dtype=F64)
    out = layer(x, training=True)
    flips = np.random.default_rng(3).random(8) <= 0.5
    assert 0 < flips.sum() < 8
    h, w = (1, 2) if data_format == "channels_last" else (2, 3)
    axes = {"horizontal": (w,), "vertical": (h,), "horizontal_and_vertical": (h, w)}[mode]
    expected = x.copy()
    expected[flips] = np.flip(x[flips], axis=axes)
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------ affine layers
def _draws(seed, *specs):
    g = np.random.default_rng(seed)
    return [g.uniform(lo, hi, size) for lo, hi, size in specs]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_translation_matches_naive(fill_mode, interpolation, data_format):
    n, h, w = 3, 5, 6
    x = images(n, h, w, data_format=data_format)
    layer = L.RandomTranslation((-0.9, 0.7), 0.8, fill_mode=fill_mode,
                                interpolation=interpolation, fill_value=0.25, seed=11,
                                data_format=data_format, dtype=F64)
    out = layer(x, training=True)
    fy, fx = _draws(11, (-0.9, 0.7, n), (-0.8, 0.8, n))
    dy, dx = fy * h, fx * w
    sources = [lambda i, j, k=k: (i - dy[k], j - dx[k]) for k in range(n)]
    expected = naive_batch(x, data_format, sources, interpolation, fill_mode, 0.25)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_rotation_matches_naive(fill_mode, interpolation, data_format):
    n, h, w = 3, 5, 6
    x = images(n, h, w, data_format=data_format)
    layer = L.RandomRotation(0.5, fill_mode=fill_mode, interpolation=interpolation,
                             fill_value=-1.0, seed=5, data_format=data_format,
                             dtype=F64)
    out = layer(x, training=True)
    (angle,) = _draws(5, (-180.0, 180.0, n))
    cy, cx = (h - 1) / 2, (w - 1) / 2

    def source(i, j, k):
        t = math.radians(angle[k])
        return (math.sin(t) * (j - cx) + math.cos(t) * (i - cy) + cy,
                math.cos(t) * (j - cx) - math.sin(t) * (i - cy) + cx)

    sources = [lambda i, j, k=k: source(i, j, k) for k in range(n)]
    expected = naive_batch(x, data_format, sources, interpolation, fill_mode, -1.0)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("width_factor", [None, (-0.5, 0.9)])
def test_zoom_matches_naive(width_factor, fill_mode, interpolation, data_format):
    n, h, w = 3, 5, 6
    x = images(n, h, w, data_format=data_format)
    layer = L.RandomZoom(0.6, width_factor, fill_mode=fill_mode,
                         interpolation=interpolation, fill_value=2.0, seed=9,
                         data_format=data_format, dtype=F64)
    out = layer(x, training=True)
    specs = [(0.4, 1.6, (n, 1))] + ([] if width_factor is None else [(0.5, 1.9, (n, 1))])
    draws = _draws(9, *specs)
    zy = draws[0][:, 0]
    zx = zy if width_factor is None else draws[1][:, 0]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    sources = [lambda i, j, k=k: (cy + (i - cy) * zy[k], cx + (j - cx) * zx[k])
               for k in range(n)]
    expected = naive_batch(x, data_format, sources, interpolation, fill_mode, 2.0)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_wrap_against_scipy_grid_wrap():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = images(2, 7, 9, 1)
    t = np.array([[0.8, -0.3, 4.5, 0.2, 1.1, -9.7, 0, 0],
                  [1.0, 0.0, -13.3, 0.0, 1.0, 6.2, 0, 0]])
    out = P.affine_transform(x, t, "bilinear", "wrap")
    for k in range(2):
        ys, xs = P._affine_coordinates(t[k:k + 1], 7, 9)
        ref = ndimage.map_coordinates(x[k, :, :, 0], [ys[0], xs[0]], order=1,
                                      mode="grid-wrap")
        np.testing.assert_allclose(out[k, :, :, 0], ref, atol=1e-12)


# ------------------------------------------------------------ crop
def _resize_source(ch, cw, h, w, hs, ws):
    def source(i, j):
        y = min(max((i + 0.5) * ch / h - 0.5, 0), ch - 1)
        x = min(max((j + 0.5) * cw / w - 0.5, 0), cw - 1)
        return y + hs, x + ws
    return source


@pytest.mark.parametrize("data_format", FORMATS)
def test_random_crop_training_window(data_format):
    x = images(4, 9, 11, data_format=data_format)
    layer = L.RandomCrop(5, 4, seed=2, data_format=data_format, dtype=F64)
    out = layer(x, training=True)
    g = np.random.default_rng(2)
    hs, ws = int(g.integers(0, 5)), int(g.integers(0, 8))
    xl = to_last(x, data_format)
    expected = xl[:, hs:hs + 5, ws:ws + 4]
    np.testing.assert_array_equal(to_last(out, data_format), expected)
    assert out.shape == layer.compute_output_shape(x.shape)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("shape, target", [((9, 11), (5, 4)), ((6, 6), (4, 4)),
                                           ((4, 7), (6, 5)), ((5, 8), (5, 6))])
def test_random_crop_inference_centre_crop_and_resize(shape, target, data_format):
    h, w = shape
    th, tw = target
    x = images(2, h, w, data_format=data_format)
    layer = L.RandomCrop(th, tw, data_format=data_format, dtype=F64)
    out = layer(x)
    ch = max(min(h, int(w * th / tw)), 1)
    cw = max(min(w, int(h * tw / th)), 1)
    hs, ws = (h - ch) // 2, (w - cw) // 2
    if (ch, cw) == (th, tw):
        expected = to_last(x, data_format)[:, hs:hs + ch, ws:ws + cw]
        expected = expected if data_format == "channels_last" else \
            expected.transpose(0, 3, 1, 2)
    else:
        src = _resize_source(ch, cw, th, tw, hs, ws)
        expected = naive_batch(x, data_format, [src, src], "bilinear", "constant",
                               out_hw=(th, tw))
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # the same in training when the input is not larger on both axes
    if not (h > th and w > tw):
        np.testing.assert_allclose(layer(x, training=True), expected, atol=1e-12)


# ------------------------------------------------------------ inference, seeds
def random_layers(data_format="channels_last", seed=None, dtype=None):
    kw = dict(seed=seed, data_format=data_format, dtype=dtype)
    return [L.RandomFlip(**kw), L.RandomTranslation(0.3, 0.3, **kw),
            L.RandomZoom(0.3, **kw), L.RandomRotation(0.2, **kw)]


@pytest.mark.parametrize("data_format", FORMATS)
def test_random_layers_identity_in_inference(data_format):
    x = images(4, data_format=data_format, dtype=np.float32)
    for layer in random_layers(data_format):
        np.testing.assert_array_equal(layer(x), x)
        np.testing.assert_array_equal(layer(x, training=False), x)
        assert not np.array_equal(layer(x, training=True), x)


def test_model_predict_and_evaluate_skip_augmentation():
    fastconv.set_seed(0)
    x = images(6, 8, 8, 1, dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    aug = Sequential([L.Input((8, 8, 1)), *random_layers(), L.Flatten(),
                      L.Dense(3, activation="softmax", name="head")])
    plain = Sequential([L.Input((8, 8, 1)), L.Flatten(),
                        L.Dense(3, activation="softmax", name="head")])
    plain.set_weights(aug.get_weights())
    np.testing.assert_array_equal(aug.predict(x, verbose=0), plain.predict(x, verbose=0))
    for m in (aug, plain):
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert aug.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    aug.fit(x, y, epochs=2, batch_size=3, verbose=0)  # trains through the layers


@pytest.mark.parametrize("make", [
    lambda s: L.RandomFlip(seed=s), lambda s: L.RandomTranslation(0.3, 0.2, seed=s),
    lambda s: L.RandomZoom(0.3, seed=s), lambda s: L.RandomRotation(0.2, seed=s),
    lambda s: L.RandomCrop(4, 3, seed=s)])
def test_seeds_reproducible(make):
    x = images(5, 6, 7)
    x = x.astype(np.float32)
    a, b, c = make(7), make(7), make(8)
    first = a(x, training=True)
    np.testing.assert_array_equal(first, b(x, training=True))
    assert not np.array_equal(first, c(x, training=True))
    assert not np.array_equal(first, a(x, training=True))  # the generator moves on
    fastconv.set_seed(1)
    d = make(None)
    fastconv.set_seed(1)
    e = make(None)
    np.testing.assert_array_equal(d(x, training=True), e(x, training=True))


# ------------------------------------------------------------ backward
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_backward_is_the_adjoint(interpolation, fill_mode, data_format):
    """Each transform is T x (+ a constant fill); backward must be T^T:
    <T x, g> == <x, T^T g> for random x and g."""
    rng = np.random.default_rng(4)
    kw = dict(seed=1, data_format=data_format, dtype=F64)
    aff = dict(fill_mode=fill_mode, interpolation=interpolation, **kw)
    layers = [L.RandomTranslation(0.4, 0.4, **aff), L.RandomZoom(0.5, 0.4, **aff),
              L.RandomRotation(0.5, **aff), L.RandomFlip(**kw), L.RandomCrop(4, 3, **kw),
              L.RandomCrop(7, 6, **kw)]
    for layer in layers:
        x = images(3, 5, 6, data_format=data_format, seed=2)
        y = layer(x, training=True)
        g = rng.standard_normal(y.shape)
        gx = layer.backward(g)
        assert gx.shape == x.shape
        # the same transform applied to another input (linear part only)
        x2 = rng.standard_normal(x.shape)
        y2 = layer.transform_images(x2, layer._transformation)
        y0 = layer.transform_images(np.zeros_like(x2), layer._transformation)
        np.testing.assert_allclose(np.vdot(y2 - y0, g), np.vdot(x2, gx), rtol=1e-10)


def test_backward_in_inference_passes_gradient_through():
    x = images()
    for layer in random_layers(dtype=F64):
        layer(x)
        g = np.random.default_rng(0).standard_normal(x.shape)
        np.testing.assert_array_equal(layer.backward(g), g)


# ------------------------------------------------------------ Rescaling
@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (2.0, -1.0),
                                           ([0.5, 2.0], [1.0, -1.0])])
def test_rescaling_formula_and_backward(scale, offset):
    x = images(c=2)
    layer = L.Rescaling(scale, offset, dtype=F64)
    np.testing.assert_allclose(layer(x), x * np.asarray(scale) + np.asarray(offset),
                               rtol=1e-15)
    np.testing.assert_allclose(layer(x, training=True),
                               x * np.asarray(scale) + np.asarray(offset), rtol=1e-15)
    g = np.random.default_rng(0).standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), g * np.asarray(scale), rtol=1e-15)
    assert layer.weights == [] and not hasattr(layer, "generator")


def test_rescaling_config_and_errors():
    layer = L.Rescaling([1.0, 2.0], offset=0.5, name="r")
    cfg = layer.get_config()
    assert cfg["scale"] == [1.0, 2.0] and cfg["offset"] == 0.5
    again = L.Rescaling.from_config(cfg)
    assert again.get_config() == cfg
    assert "Rescaling" in repr(layer) and "scale=[1.0, 2.0]" in repr(layer)
    with pytest.raises(ValueError, match="scale"):
        L.Rescaling(float("nan"))
    with pytest.raises(TypeError, match="scale"):
        L.Rescaling("big")
    with pytest.raises(ValueError, match="does not broadcast"):
        L.Rescaling([1.0, 2.0, 3.0])(images(c=2))


# ------------------------------------------------------------ Normalization
def test_normalization_adapt_matches_numpy():
    data = np.random.default_rng(1).normal(3.0, 2.0, (50, 4, 5, 3))
    layer = L.Normalization(dtype="float64")
    layer.adapt(data)
    np.testing.assert_allclose(layer.mean, data.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(layer.variance, data.var(axis=(0, 1, 2)), rtol=1e-12)
    out = layer(data)
    np.testing.assert_allclose(
        out, (data - data.mean(axis=(0, 1, 2))) / np.sqrt(data.var(axis=(0, 1, 2))),
        rtol=1e-12)
    assert [w.shape for w in layer.weights] == [(3,), (3,)]
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2


def test_normalization_adapt_batches_and_axes():
    data = np.random.default_rng(2).normal(-1.0, 0.5, (30, 4, 6))
    batches = [data[:7], (data[7:20], None), data[20:]]
    for axis in [-1, (1, 2), None, 1]:
        whole = L.Normalization(axis=axis, dtype="float64")
        whole.adapt(data)
        parts = L.Normalization(axis=axis, dtype="float64")
        parts.adapt(iter(batches))
        keep = () if axis is None else tuple(
            a % 3 for a in ((axis,) if isinstance(axis, int) else axis))
        reduce = tuple(d for d in range(3) if d not in keep)
        for layer in (whole, parts):
            np.testing.assert_allclose(layer.mean, data.mean(axis=reduce), rtol=1e-12)
            np.testing.assert_allclose(layer.variance, data.var(axis=reduce),
                                       rtol=1e-10)


def test_normalization_given_stats_invert_epsilon_and_backward():
    x = images(c=3)
    mean, var = [0.1, 0.2, 0.3], [4.0, 0.0, 1.0]
    layer = L.Normalization(mean=mean, variance=var, dtype="float64")
    denom = np.maximum(np.sqrt(var), 1e-7)
    np.testing.assert_allclose(layer(x), (x - mean) / denom)
    g = np.random.default_rng(0).standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), g / denom)
    inv = L.Normalization(mean=mean, variance=var, invert=True, dtype="float64")
    np.testing.assert_allclose(inv(x), mean + x * denom)
    np.testing.assert_allclose(inv.backward(g), g * denom)
    assert layer.weights == []
    scalar = L.Normalization(axis=None, mean=2.0, variance=9.0, dtype="float64")
    np.testing.assert_allclose(scalar(x), (x - 2.0) / 3.0)


def test_normalization_errors():
    with pytest.raises(ValueError, match="together"):
        L.Normalization(mean=1.0)
    with pytest.raises(ValueError, match="same shape"):
        L.Normalization(mean=[1.0, 2.0], variance=[1.0])
    with pytest.raises(ValueError, match="rank"):
        L.Normalization(axis=-1, mean=[[1.0]], variance=[[1.0]])
    with pytest.raises(TypeError, match="axis"):
        L.Normalization(axis="last")
    with pytest.raises(ValueError, match=r"\[-3, 3\)"):
        L.Normalization(axis=5).build((None, 4, 3))
    with pytest.raises(ValueError, match="adapt"):
        L.Normalization(mean=0.0, variance=1.0).adapt(np.ones((3, 2)))
    layer = L.Normalization()
    layer.adapt(np.ones((4, 3)))
    with pytest.raises(ValueError, match="size 3"):
        layer.adapt(np.ones((4, 5)))
    with pytest.raises(ValueError, match="non-empty"):
        L.Normalization().adapt([])


def test_normalization_in_model_is_not_trained_and_saves(tmp_path):
    fastconv.set_seed(0)
    x = images(8, 4, 4, 2, dtype=np.float32) * 5 + 1
    y = np.eye(2, dtype=np.float32)[[0, 1] * 4]
    norm = L.Normalization()
    norm.adapt(x)
    model = Sequential([L.Input((4, 4, 2)), norm, L.Flatten(), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    mean0 = norm.mean.copy()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    np.testing.assert_array_equal(norm.mean, mean0)
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.layers[0].mean, mean0)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ------------------------------------------------------------ config, saving
ALL = [lambda: L.Rescaling(0.5, 1.0), lambda: L.Normalization(axis=(1, 3)),
       lambda: L.Normalization(mean=[1.0, 2.0], variance=[3.0, 4.0], invert=True),
       lambda: L.RandomFlip("vertical", seed=1),
       lambda: L.RandomTranslation((-0.1, 0.2), 0.3, fill_mode="wrap",
                                   interpolation="nearest", fill_value=1.0),
       lambda: L.RandomZoom(0.2, (-0.3, 0.1), data_format="channels_first"),
       lambda: L.RandomRotation((0.1, -0.2), fill_mode="constant", seed=4),
       lambda: L.RandomCrop(3, 2, seed=5)]


@pytest.mark.parametrize("make", ALL)
def test_config_roundtrip_registered_and_repr(make):
    import json
    layer = make()
    cfg = json.loads(json.dumps(layer.get_config()))
    cls = L.LAYER_CLASSES[type(layer).__name__]
    assert cls is type(layer) and getattr(L, type(layer).__name__) is cls
    assert cls.from_config(cfg).get_config() == cfg
    assert repr(layer).startswith(f"<{type(layer).__name__} ")
    shape = (None, 6, 5, 2)
    out = layer.compute_output_shape(shape)
    assert out == ((None, 3, 2, 2) if isinstance(layer, L.RandomCrop) else shape)


@pytest.mark.parametrize("data_format", FORMATS)
def test_model_with_all_layers_saves_and_restores_generators(tmp_path, data_format):
    fastconv.set_seed(3)
    shape = (7, 8, 2) if data_format == "channels_last" else (2, 7, 8)
    kw = dict(data_format=data_format)
    model = Sequential([L.Input(shape), L.Rescaling(0.5), L.RandomFlip(**kw),
                        L.RandomTranslation(0.2, 0.2, **kw), L.RandomZoom(0.2, **kw),
                        L.RandomRotation(0.1, **kw), L.RandomCrop(5, 6, **kw),
                        L.Normalization(axis=1 if data_format == "channels_first"
                                        else -1),
                        L.Flatten(**kw), L.Dense(3)])
    x = np.random.default_rng(0).random((4,) + shape).astype(np.float32)
    model.layers[6].adapt(model.layers[5](x))
    model(x, training=True)  # move the generators away from their seeds
    path = str(tmp_path / "aug.npz")
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded(x, training=True), model(x, training=True))


# ------------------------------------------------------------ argument errors
@pytest.mark.parametrize("make, exc, match", [
    (lambda: L.RandomFlip("diagonal"), ValueError, "mode"),
    (lambda: L.RandomFlip(seed=-1), ValueError, "seed"),
    (lambda: L.RandomFlip(seed=1.5), ValueError, "seed"),
    (lambda: L.RandomFlip(data_format="nhwc"), ValueError, "data_format"),
    (lambda: L.RandomTranslation(1.5, 0.1), ValueError, "height_factor"),
    (lambda: L.RandomTranslation(0.1, (0.1, 0.2, 0.3)), ValueError, "width_factor"),
    (lambda: L.RandomTranslation(0.1, "x"), ValueError, "width_factor"),
    (lambda: L.RandomTranslation(0.1, 0.1, fill_mode="mirror"), ValueError, "fill_mode"),
    (lambda: L.RandomTranslation(0.1, 0.1, interpolation="cubic"), ValueError,
     "interpolation"),
    (lambda: L.RandomTranslation(0.1, 0.1, fill_value="k"), ValueError, "fill_value"),
    (lambda: L.RandomZoom(-1.0), ValueError, r"height_factor.*\(-1.0, 1.0\]"),
    (lambda: L.RandomZoom(0.2, (0.1, -1.0)), ValueError, "width_factor"),
    (lambda: L.RandomRotation(True), ValueError, "factor"),
    (lambda: L.RandomRotation((-1.2, 0.5)), ValueError, "factor"),
    (lambda: L.RandomCrop(0, 3), ValueError, "height"),
    (lambda: L.RandomCrop(3, 2.5), TypeError, "width"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match="rank 4"):
        L.RandomFlip()(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="transform"):
        P.affine_transform(np.ones((2, 3, 4, 1)), np.ones((3, 8)))
    with pytest.raises(ValueError, match="does not fit"):
        L.RandomCrop(3, 3).transform_images(
            np.ones((1, 4, 4, 1)), {"h_start": 2, "w_start": 0, "crop_height": 3,
                                    "crop_width": 3})


# ------------------------------------------------------------ Keras parity
def _keras():
    return pytest.importorskip("keras")


def _keras_layer(layer):
    keras = _keras()
    cfg = layer.get_config()
    for k in ("name", "trainable", "dtype"):
        cfg.pop(k)
    return getattr(keras.layers, type(layer).__name__)(**cfg)


def test_keras_rescaling_and_normalization_adapt():
    _keras()
    x = np.random.default_rng(0).normal(2.0, 3.0, (20, 4, 5, 3)).astype(np.float32)
    ours = L.Rescaling([0.5, 1.0, 2.0], -1.0)
    np.testing.assert_allclose(ours(x), np.asarray(_keras_layer(ours)(x)), rtol=1e-6)
    for axis, invert in [(-1, False), ((1, 3), False), (None, True), (2, False)]:
        ours = L.Normalization(axis=axis, invert=invert)
        theirs = _keras_layer(ours)
        ours.adapt(x)
        theirs.adapt(x)
        np.testing.assert_allclose(ours.mean, np.asarray(theirs.adapt_mean), rtol=1e-5)
        np.testing.assert_allclose(ours.variance, np.asarray(theirs.adapt_variance),
                                   rtol=1e-5)
        np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=1e-5, atol=1e-5)
    ours = L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 0.0, 9.0])
    np.testing.assert_allclose(ours(x), np.asarray(_keras_layer(ours)(x)), rtol=1e-6)


# Keras's TensorFlow backend (ImageProjectiveTransformV3) maps "wrap" differently
# (non-periodically: coordinate W - 0.5 reads pixel 0 alone, coordinates beyond
# 2 (W - 1) land on the wrong pixel); wrap is checked against SciPy's grid-wrap and
# the naive reference above, and against Keras only for integer shifts.
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", ["reflect", "nearest", "constant"])
def test_keras_geometric_transforms_given_parameters(fill_mode, interpolation,
                                                     data_format):
    _keras()
    x = images(3, 7, 9, 2, data_format=data_format, dtype=np.float32)
    aff = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.5,
               data_format=data_format)
    cases = [
        (L.RandomTranslation(0.3, 0.4, **aff),
         {"translations": np.array([[1.3, -2.2], [-3.7, 0.4], [0.25, 3.1]])}),
        (L.RandomZoom(0.4, 0.3, **aff),
         {"height_zoom": np.array([[0.7], [1.3], [1.1]]),
          "width_zoom": np.array([[1.2], [0.8], [1.37]])}),
        (L.RandomRotation(0.3, **aff), {"angle": np.array([17.0, -95.0, 200.0])}),
    ]
    for layer, t in cases:
        theirs = _keras_layer(layer)
        if isinstance(layer, L.RandomRotation):
            kt = theirs.get_random_transformation(x, training=True)
            kt["rotation_matrix"] = layer.transform_matrix(t, x.shape).astype(np.float32)
        else:
            kt = {k: v.astype(np.float32) for k, v in t.items()}
            kt["input_shape"] = x.shape
        expected = np.asarray(theirs.transform_images(x, kt, training=True))
        np.testing.assert_allclose(layer.transform_images(x, t), expected, atol=2e-6)


def test_keras_wrap_integer_shifts_and_rotation_matrix():
    keras = _keras()
    x = images(2, 7, 9, 2, dtype=np.float32)
    t = {"translations": np.array([[3.0, -2.0], [-5.0, 4.0]])}
    for interpolation in INTERPOLATIONS:
        ours = L.RandomTranslation(0.5, 0.5, fill_mode="wrap", interpolation=interpolation)
        kt = {"translations": t["translations"].astype(np.float32),
              "input_shape": x.shape}
        expected = np.asarray(_keras_layer(ours).transform_images(x, kt, training=True))
        np.testing.assert_allclose(ours.transform_images(x, t), expected, atol=1e-6)
    # our rotation matrix is Keras's
    rot = keras.layers.RandomRotation(0.3)
    kt = rot.get_random_transformation(x, training=True)
    ours = L.RandomRotation(0.3).transform_matrix({"angle": np.asarray(kt["angle"])},
                                                  x.shape)
    np.testing.assert_allclose(ours, np.asarray(kt["rotation_matrix"]), atol=1e-5)


@pytest.mark.parametrize("data_format", FORMATS)
def test_keras_flip_and_crop(data_format):
    _keras()
    x = images(4, 9, 11, 2, data_format=data_format, dtype=np.float32)
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        ours = L.RandomFlip(mode, data_format=data_format)
        flips = np.array([True, False, True, False])
        kt = {"flips": flips.reshape(-1, 1, 1, 1), "input_shape": x.shape}
        np.testing.assert_array_equal(
            ours.transform_images(x, {"flips": flips}),
            np.asarray(_keras_layer(ours).transform_images(x, kt, training=True)))
    # Random windows (input larger than the target on both axes): Keras's
    # transform_images with the same window.
    for target in [(5, 4), (8, 10)]:
        ours = L.RandomCrop(*target, seed=0, data_format=data_format)
        theirs = _keras_layer(ours)
        for _ in range(3):
            t = ours.get_random_transformation(x.shape, training=True)
            np.testing.assert_array_equal(
                ours.transform_images(x, t),
                np.asarray(theirs.transform_images(x, (t["h_start"], t["w_start"]),
                                                   training=True)))
    # The centre crop with the target's aspect ratio, resized: our crop then
    # keras.ops.image.resize (bilinear).  (Keras 3.15 itself returns the input
    # unchanged in inference, whatever compute_output_shape says.)
    keras = _keras()
    for target in [(5, 4), (12, 4), (4, 4), (9, 11)]:
        ours = L.RandomCrop(*target, data_format=data_format)
        t = ours.get_random_transformation(x.shape, training=False)
        hs, ws, ch, cw = t["h_start"], t["w_start"], t["crop_height"], t["crop_width"]
        crop = x[:, hs:hs + ch, ws:ws + cw] if data_format == "channels_last" \
            else x[:, :, hs:hs + ch, ws:ws + cw]
        expected = np.asarray(keras.ops.image.resize(crop, target,
                                                     data_format=data_format))
        np.testing.assert_allclose(ours(x), expected, atol=2e-6)
