"""SoftPool (soft_pool2d, SoftPooling2D) against naive loops over the windows and
float64 finite differences, and GlobalMaxPooling2D (global_max_pool2d), including how
its gradient splits among tied maxima."""
import math

import numpy as np
import pytest

from fastconv import layers as L
from fastconv import pooling as P
from fastconv.models import Sequential
from fastconv.reference import numeric_gradient
from fastconv.saving import load_model
from fastconv.shapes import normalize_padding, resolve_padding

FORMATS = ["channels_last", "channels_first"]


def naive_soft_pool(x, pool, stride, padding, data_format):
    """SoftPool one window at a time with the math module: padded cells are absent."""
    xl = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    n, h, w, c = xl.shape
    (kh, kw), (sy, sx) = pool, stride
    (pt, pb), (pl, pr) = resolve_padding(normalize_padding(padding), (h, w), pool,
                                         stride)
    oh, ow = (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1
    out = np.zeros((n, oh, ow, c))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    cells = [float(xl[b, r, q, ch])
                             for r in range(i * sy - pt, i * sy - pt + kh)
                             for q in range(j * sx - pl, j * sx - pl + kw)
                             if 0 <= r < h and 0 <= q < w]
                    m = max(cells)
                    e = [math.exp(v - m) for v in cells]
                    out[b, i, j, ch] = math.fsum(a * v for a, v in zip(e, cells)) / \
                        math.fsum(e)
    return out if data_format == "channels_last" else out.transpose(0, 3, 1, 2)


CASES = [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (2, 1), "valid"),
         ((2, 3), (1, 2), "same"), ((3, 3), (1, 1), 1)]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("pool, stride, padding", CASES)
def test_soft_pool_matches_naive_loops_and_finite_differences(pool, stride, padding,
                                                              data_format):
    rng = np.random.default_rng(0)
    shape = (2, 5, 7, 3) if data_format == "channels_last" else (2, 3, 5, 7)
    x = rng.standard_normal(shape) * 2
    y = P.soft_pool2d(x, pool, stride, padding, data_format)
    expected = naive_soft_pool(x, pool, stride or pool, padding, data_format)
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-14)
    gy = rng.standard_normal(y.shape)
    gx = P.soft_pool2d_backward(gy, x, pool, stride, padding, data_format)
    num = numeric_gradient(
        lambda a=x: np.sum(gy * P.soft_pool2d(a, pool, stride, padding, data_format)), x)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)


def test_soft_pool_is_stable_and_between_mean_and_max():
    x = np.array([[[[1000.0, 1001.0], [-1000.0, 999.0]]]])     # no overflow
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = P.soft_pool2d(x, 2, data_format="channels_first")
    e = np.exp(np.array([1000.0, 1001.0, -1000.0, 999.0]) - 1001.0)
    assert math.isclose(y.item(), float(e @ [1000.0, 1001.0, -1000.0, 999.0] / e.sum()),
                        rel_tol=1e-15)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 6))
    y = P.soft_pool2d(x, 2, data_format="channels_first")
    assert np.all(y <= P.max_pool2d(x, 2) + 1e-12)
    assert np.all(y >= P.avg_pool2d(x, 2) - 1e-12)     # softmax weights favour the large
    x32 = x.astype(np.float32)
    y32 = P.soft_pool2d(x32, 2, data_format="channels_first")
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("data_format", FORMATS)
def test_soft_pooling_layer(data_format, tmp_path):
    rng = np.random.default_rng(2)
    layer = L.SoftPooling2D((3, 3), strides=2, padding="same", data_format=data_format,
                            dtype="float64")
    shape = (2, 7, 6, 2) if data_format == "channels_last" else (2, 2, 7, 6)
    x = rng.standard_normal(shape)
    y = layer(x)
    np.testing.assert_allclose(y, naive_soft_pool(x, (3, 3), (2, 2), "same", data_format),
                               rtol=1e-13)
    assert y.shape == layer.compute_output_shape(shape)
    gy = rng.standard_normal(y.shape)
    gx = layer.backward(gy)
    num = numeric_gradient(lambda a=x: np.sum(gy * layer.forward(a)), x)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)
    config = layer.get_config()
    assert L.SoftPooling2D.from_config(config).get_config() == config
    assert "SoftPooling2D" in repr(layer)
    model = Sequential([L.Input(shape[1:]), L.SoftPooling2D(data_format=data_format),
                        L.Flatten(), L.Dense(2)])
    xf = x.astype(np.float32)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict(xf, verbose=0),
                                  model.predict(xf, verbose=0))


def test_soft_pool_errors():
    with pytest.raises(ValueError, match=r"padding must be 'valid' or 'same', got 1"):
        L.SoftPooling2D(padding=1)
    with pytest.raises(ValueError, match=r"pool_size must be positive, got 0"):
        L.SoftPooling2D(0)
    with pytest.raises(ValueError, match=r"padding must be at most half the pool size"):
        P.soft_pool2d(np.ones((1, 1, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match=r"grad_y must have the output shape"):
        P.soft_pool2d_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 4, 4)), 2)


# ---- global max pooling ------------------------------------------------------------------

@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_max_pooling_layer(data_format, keepdims, tmp_path):
    rng = np.random.default_rng(3)
    shape = (3, 4, 5, 2) if data_format == "channels_last" else (3, 2, 4, 5)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)  # no ties
    layer = L.GlobalMaxPooling2D(data_format=data_format, keepdims=keepdims,
                                 dtype="float64")
    y = layer(x)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    expected = np.array([[max(x[n].take(c, axis=2 if data_format == "channels_last"
                                        else 0).ravel()) for c in range(2)]
                         for n in range(3)])
    np.testing.assert_array_equal(y.reshape(3, 2), expected)
    assert y.shape == layer.compute_output_shape(shape)
    assert y.shape == ((3, 2) if not keepdims else np.max(x, axis=axes,
                                                          keepdims=True).shape)
    gy = rng.standard_normal(y.shape)
    gx = layer.backward(gy)
    num = numeric_gradient(lambda a=x: np.sum(gy * layer.forward(a)), x, eps=1e-3)
    np.testing.assert_allclose(gx, num, rtol=1e-9, atol=1e-12)
    config = layer.get_config()
    assert L.GlobalMaxPooling2D.from_config(config).get_config() == config
    assert L.GlobalMaxPool2D is L.GlobalMaxPooling2D
    model = Sequential([L.Input(shape[1:]), L.GlobalMaxPooling2D(data_format=data_format),
                        L.Dense(2)])
    xf = x.astype(np.float32)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict(xf, verbose=0),
                                  model.predict(xf, verbose=0))


def test_global_max_gradient_splits_equally_among_ties():
    x = np.array([[[[1.0], [3.0]], [[3.0], [2.0]]],
                  [[[5.0], [5.0]], [[5.0], [5.0]]]])          # (2, 2, 2, 1) NHWC
    g = P.global_max_pool2d_backward(np.array([[1.0], [2.0]]), x, "channels_last")
    np.testing.assert_array_equal(g[0].ravel(), [0, 0.5, 0.5, 0])
    np.testing.assert_array_equal(g[1].ravel(), [0.5, 0.5, 0.5, 0.5])
    xn = np.array([[[[1.0, np.nan], [2.0, np.nan]]]])        # (1, 1, 2, 2) NCHW
    assert np.isnan(P.global_max_pool2d(xn)[0, 0])
    np.testing.assert_array_equal(
        P.global_max_pool2d_backward(np.array([[1.0]]), xn), [[[[0, 0.5], [0, 0.5]]]])


def test_global_max_errors():
    with pytest.raises(ValueError, match=r"grad_y must have shape \(N, C\) = \(1, 2\)"):
        P.global_max_pool2d_backward(np.ones((1, 3)), np.ones((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"x must be a 4-D array"):
        P.global_max_pool2d(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match=r"data_format must be"):
        L.GlobalMaxPooling2D(data_format="nhwc")
