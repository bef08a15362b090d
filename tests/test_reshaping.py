"""ZeroPadding2D, Cropping2D and UpSampling2D: values against naive loops (bilinear:
TensorFlow's half-pixel formula one output pixel at a time), float64 finite
differences, both data formats, shapes, configs and errors."""
import math

import numpy as np
import pytest

from fastconv import layers as L
from fastconv.layers.reshaping import upsampling2d, upsampling2d_backward
from fastconv.models import Sequential
from fastconv.reference import numeric_gradient
from fastconv.saving import load_model

FORMATS = ["channels_last", "channels_first"]


def to_format(x_last, data_format):
    return x_last if data_format == "channels_last" else np.ascontiguousarray(
        x_last.transpose(0, 3, 1, 2))


def from_format(x, data_format):
    return x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)


def check_gradient(layer, x):
    rng = np.random.default_rng(7)
    y = layer(x)
    gy = rng.standard_normal(y.shape)
    gx = layer.backward(gy)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    num = numeric_gradient(lambda a=x: np.sum(gy * layer.forward(a)), x)
    np.testing.assert_allclose(gx, num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding, pads", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                           (((0, 2), (3, 1)), ((0, 2), (3, 1))),
                                           ((1, (0, 2)), ((1, 1), (0, 2)))])
def test_zero_padding(data_format, padding, pads):
    rng = np.random.default_rng(0)
    x_last = rng.standard_normal((2, 3, 4, 2))
    layer = L.ZeroPadding2D(padding, data_format=data_format, dtype="float64")
    y = from_format(layer(to_format(x_last, data_format)), data_format)
    (t, b), (le, r) = pads
    expected = np.zeros((2, 3 + t + b, 4 + le + r, 2))
    for i in range(3):
        for j in range(4):
            expected[:, t + i, le + j] = x_last[:, i, j]
    np.testing.assert_array_equal(y, expected)
    assert layer.padding == pads
    assert layer.compute_output_shape(to_format(np.empty((1, 3, 4, 2)), data_format).shape) \
        == to_format(np.empty((1,) + expected.shape[1:]), data_format).shape
    check_gradient(layer, to_format(x_last, data_format))


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("cropping, crops", [(1, ((1, 1), (1, 1))),
                                             ((0, 2), ((0, 0), (2, 2))),
                                             (((1, 0), (0, 3)), ((1, 0), (0, 3)))])
def test_cropping(data_format, cropping, crops):
    rng = np.random.default_rng(1)
    x_last = rng.standard_normal((2, 4, 6, 3))
    layer = L.Cropping2D(cropping, data_format=data_format, dtype="float64")
    y = from_format(layer(to_format(x_last, data_format)), data_format)
    (t, b), (le, r) = crops
    expected = np.array([[[x_last[n, i, j] for j in range(le, 6 - r)]
                          for i in range(t, 4 - b)] for n in range(2)])
    np.testing.assert_array_equal(y, expected)
    check_gradient(layer, to_format(x_last, data_format))


def naive_bilinear(x, fh, fw):
    """TensorFlow's resize_bilinear (half-pixel centres) on (N, H, W, C), one output
    pixel at a time: top/bottom lerps of left/right lerps."""
    n, h, w, c = x.shape
    out = np.zeros((n, h * fh, w * fw, c))

    def coords(i, size, f):
        src = (i + 0.5) / f - 0.5
        lo = math.floor(src)
        return max(lo, 0), min(math.ceil(src), size - 1), src - lo

    for i in range(h * fh):
        y0, y1, ly = coords(i, h, fh)
        for j in range(w * fw):
            x0, x1, lx = coords(j, w, fw)
            top = x[:, y0, x0] + (x[:, y0, x1] - x[:, y0, x0]) * lx
            bottom = x[:, y1, x0] + (x[:, y1, x1] - x[:, y1, x0]) * lx
            out[:, i, j] = top + (bottom - top) * ly
    return out


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [(2, 2), (3, 1), (1, 4), 2])
def test_upsampling(data_format, interpolation, size):
    rng = np.random.default_rng(2)
    x_last = rng.standard_normal((2, 3, 4, 2))
    layer = L.UpSampling2D(size, data_format=data_format, interpolation=interpolation,
                           dtype="float64")
    fh, fw = (size, size) if isinstance(size, int) else size
    y = from_format(layer(to_format(x_last, data_format)), data_format)
    if interpolation == "nearest":
        expected = np.array([[[x_last[n, i // fh, j // fw] for j in range(4 * fw)]
                              for i in range(3 * fh)] for n in range(2)])
    else:
        expected = naive_bilinear(x_last, fh, fw)
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-15)
    check_gradient(layer, to_format(x_last, data_format))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling_functions_are_adjoint_and_keep_float32(interpolation):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3, 4))
    y = upsampling2d(x, (2, 3), interpolation, "channels_first")
    g = rng.standard_normal(y.shape)
    gx = upsampling2d_backward(g, (2, 3), interpolation, "channels_first")
    assert math.isclose(np.sum(g * y), np.sum(gx * x), rel_tol=1e-12)
    x32 = x.astype(np.float32)
    y32 = upsampling2d(x32, (2, 3), interpolation, "channels_first")
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=1e-6, atol=1e-6)
    # constant images stay constant (the weights of every output pixel sum to 1)
    ones = upsampling2d(np.ones((1, 4, 5, 2)), (3, 2), interpolation)
    np.testing.assert_allclose(ones, 1.0, rtol=1e-15)


@pytest.mark.parametrize("layer", [L.ZeroPadding2D(((1, 2), (0, 3))),
                                   L.Cropping2D((1, 2), data_format="channels_first"),
                                   L.UpSampling2D((2, 3), interpolation="bilinear")],
                         ids=["pad", "crop", "up"])
def test_configs_and_save_round_trip(layer, tmp_path):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    assert type(layer).__name__ in repr(layer)
    shape = (6, 7, 2) if layer.data_format == "channels_last" else (2, 6, 7)
    clone = type(layer).from_config({k: v for k, v in config.items() if k != "name"})
    model = Sequential([L.Input(shape), clone, L.Flatten(), L.Dense(3)])
    x = np.random.default_rng(4).standard_normal((2,) + shape).astype(np.float32)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    assert layer.compute_output_shape((None, None, None, 2) if shape[-1] == 2
                                      else (None, 2, None, None)) is not None


def test_unknown_sizes_in_output_shapes():
    assert L.ZeroPadding2D(1).compute_output_shape((None, None, 5, 3)) == (None, None, 7, 3)
    assert L.UpSampling2D(2).compute_output_shape((None, 4, None, 3)) == (None, 8, None, 3)
    assert L.Cropping2D(1, data_format="channels_first").compute_output_shape(
        (None, 3, 5, None)) == (None, 3, 3, None)


def test_errors():
    with pytest.raises(ValueError, match=r"padding must be non-negative, got -1"):
        L.ZeroPadding2D(-1)
    with pytest.raises(TypeError, match=r"padding must hold ints, got \(1.5, 2\)"):
        L.ZeroPadding2D((1.5, 2))
    with pytest.raises(ValueError, match=r"padding must be an int, a pair .* got "
                                         r"\(1, 2, 3\)"):
        L.ZeroPadding2D((1, 2, 3))
    with pytest.raises(ValueError, match=r"cropping entries must be ints or pairs of "
                                         r"ints, got \(\(1, 2, 3\), 1\)"):
        L.Cropping2D(((1, 2, 3), 1))
    with pytest.raises(TypeError, match=r"cropping must be an int, a pair .* got 'all'"):
        L.Cropping2D("all")
    with pytest.raises(ValueError, match=r"cropping \(\(2, 2\), \(0, 0\)\) of layer "
                                         r"'crop' must leave at least one row"):
        L.Cropping2D((2, 0), name="crop")(np.ones((1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"interpolation must be one of nearest, "
                                         r"bilinear, got 'bicubic'"):
        L.UpSampling2D(interpolation="bicubic")
    with pytest.raises(ValueError, match=r"size must be positive, got 0"):
        L.UpSampling2D(0)
    with pytest.raises(ValueError, match=r"data_format must be"):
        L.ZeroPadding2D(data_format="NHWC")
    with pytest.raises(ValueError, match=r"must have rank 4"):
        L.UpSampling2D()(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"grad_y must be a 4-D batch whose height and "
                                         r"width are multiples of size \(2, 2\)"):
        upsampling2d_backward(np.ones((1, 3, 4, 1)), 2)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("make", [
    lambda df: L.ZeroPadding2D(1, data_format=df), lambda df: L.Cropping2D(1, data_format=df),
    lambda df: L.UpSampling2D(2, data_format=df),
    lambda df: L.UpSampling2D(2, data_format=df, interpolation="bilinear"),
    lambda df: L.GlobalMaxPooling2D(data_format=df),
    lambda df: L.GlobalMaxPooling2D(data_format=df, keepdims=True),
    lambda df: L.GlobalAveragePooling2D(data_format=df, keepdims=True),
    lambda df: L.SoftPooling2D(data_format=df), lambda df: L.ReLU(6.0),
    lambda df: L.LeakyReLU(), lambda df: L.ELU()])
def test_empty_batches(make, data_format):
    layer = make(data_format)
    x = np.zeros((0, 4, 4, 3) if data_format == "channels_last" else (0, 3, 4, 4),
                 np.float32)
    y = layer(x)
    assert y.shape == (0,) + layer.compute_output_shape((None,) + x.shape[1:])[1:]
    assert layer.backward(np.zeros_like(y)).shape == x.shape
