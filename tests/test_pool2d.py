"""Pooling (max, average, global average) and gradients against the naive reference,
hand-computed cases, finite differences, NaN/tie rules, threads and every error."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import reference as ref
from fastconv.reference import numeric_gradient
from fastconv.shapes import normalize_padding, resolve_padding

LAYOUTS = ["channels_first", "channels_last"]
DTYPES = [np.float32, np.float64]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding, hw, pool, stride):
    return resolve_padding(normalize_padding(padding), hw, pool, stride)


def _to_layout(a, data_format):
    return ref.to_channels_last(a) if data_format == "channels_last" else a


def _from_layout(a, data_format):
    return ref.to_channels_first(a) if data_format == "channels_last" else a


def _distinct(rng, shape):
    """Tie-free values: a random permutation, scaled (exact in float32 too)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5 - 100.0


CASES = [
    # n, c, h, w, pool, stride, padding
    pytest.param(2, 3, 8, 10, 2, None, 0, id="2x2-fast-even"),
    pytest.param(2, 3, 7, 9, 2, 2, 0, id="2x2-fast-odd-tails"),
    pytest.param(2, 2, 5, 5, 2, None, 0, id="2x2-fast-short-rows"),
    pytest.param(1, 2, 6, 22, 2, None, 0, id="2x2-fast-row-of-11"),
    pytest.param(2, 2, 9, 8, (2, 3), None, 0, id="rect-pool"),
    pytest.param(2, 2, 9, 8, (3, 2), (2, 1), 0, id="rect-pool-stride21"),
    pytest.param(2, 3, 9, 11, 3, 2, 0, id="overlap-3x3-s2"),
    pytest.param(2, 3, 9, 11, 3, 2, 1, id="overlap-3x3-s2-pad1"),
    # channels_last max pool: blocks of 32 channels and a tail, a batch of one split
    pytest.param(1, 70, 9, 11, 3, 2, 1, id="overlap-3x3-s2-pad1-channel-blocks"),
    pytest.param(2, 2, 10, 11, 2, 3, 0, id="gapped-2x2-s3"),
    pytest.param(2, 2, 9, 7, 2, 2, "same", id="same-2x2-odd"),
    pytest.param(2, 2, 7, 8, 3, 1, "same", id="same-3x3-s1"),
    pytest.param(2, 2, 10, 9, 3, 2, "same", id="same-3x3-s2"),
    pytest.param(2, 2, 11, 10, (4, 3), 3, "same", id="same-rect-s3"),
    pytest.param(2, 2, 7, 8, 3, 2, "valid", id="valid"),
    pytest.param(2, 2, 6, 7, (4, 2), 2, (2, 1), id="pair-pad"),
    pytest.param(2, 2, 6, 7, 3, 2, ((1, 0), (0, 1)), id="asym-pad"),
    pytest.param(1, 1, 5, 6, (5, 6), None, 0, id="batch1-pool-is-input"),
    pytest.param(1, 2, 17, 18, 17, 1, 0, id="17x17-int64-indices"),
]


def _max_case(rng, n, c, h, w, pool, stride, padding, data_format, dtype):
    pool = _pair(pool)
    stride_r = pool if stride is None else _pair(stride)
    x = _distinct(rng, (n, c, h, w))
    pads = _pads(padding, (h, w), pool, stride_r)
    y_ref, pos_ref = ref.max_pool2d_forward(x, pool, stride_r, pads)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref = ref.max_pool2d_grad_input(gy, pos_ref, x.shape, pool, stride_r, pads)
    xi = _to_layout(x, data_format).astype(dtype)
    gyi = _to_layout(gy, data_format).astype(dtype)
    kw = dict(stride=stride, padding=padding, data_format=data_format)
    y, idx = fastconv.max_pool2d(xi, pool, return_indices=True, **kw)
    y_plain = fastconv.max_pool2d(xi, pool, **kw)
    gx = fastconv.max_pool2d_backward(gyi, xi, pool, indices=idx, **kw)
    gx_noidx = fastconv.max_pool2d_backward(gyi, xi, pool, **kw)
    assert y.dtype == dtype and gx.dtype == dtype
    assert idx.dtype == (np.uint8 if pool[0] * pool[1] <= 256 else np.int64)
    np.testing.assert_array_equal(y, y_plain)
    np.testing.assert_array_equal(gx, gx_noidx)
    np.testing.assert_array_equal(_from_layout(y, data_format), y_ref.astype(dtype))
    np.testing.assert_array_equal(_from_layout(idx, data_format), pos_ref)
    np.testing.assert_allclose(_from_layout(gx, data_format), gx_ref.astype(dtype),
                               rtol=1e-6, atol=1e-6)


def _avg_case(rng, n, c, h, w, pool, stride, padding, data_format, dtype, include):
    pool = _pair(pool)
    stride_r = pool if stride is None else _pair(stride)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    pads = _pads(padding, (h, w), pool, stride_r)
    rule = (padding != "same") if include is None else include
    y_ref = ref.avg_pool2d_forward(x, pool, stride_r, pads, rule)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx_ref = ref.avg_pool2d_grad_input(gy, x.shape, pool, stride_r, pads, rule)
    kw = dict(stride=stride, padding=padding, count_include_pad=include,
              data_format=data_format)
    y = fastconv.avg_pool2d(_to_layout(x, data_format), pool, **kw)
    gx = fastconv.avg_pool2d_backward(_to_layout(gy, data_format),
                                      _to_layout(x, data_format), pool, **kw)
    assert y.dtype == dtype and gx.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(_from_layout(y, data_format), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(_from_layout(gx, data_format), gx_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("n, c, h, w, pool, stride, padding", CASES)
def test_max_pool_matches_reference(n, c, h, w, pool, stride, padding, data_format,
                                    dtype):
    _max_case(np.random.default_rng(1), n, c, h, w, pool, stride, padding, data_format,
              dtype)


@pytest.mark.parametrize("include", [None, True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("n, c, h, w, pool, stride, padding", CASES)
def test_avg_pool_matches_reference(n, c, h, w, pool, stride, padding, data_format,
                                    dtype, include):
    _avg_case(np.random.default_rng(2), n, c, h, w, pool, stride, padding, data_format,
              dtype, include)


@pytest.mark.parametrize("c", [1, 3, 4, 6, 16, 17])
def test_avg_2x2_channels_last_float32_sums_in_window_order(c):
    """The 2x2/2 channels_last average (vectorised over channels in float32) rounds as
    the window's cells summed in row-major order and divided by 4: bit for bit, on
    values whose sums round differently in another order; odd sizes drop the last row
    and column."""
    rng = np.random.default_rng(c)
    x = (rng.standard_normal((3, 7, 9, c)) * 10.0 ** rng.integers(-3, 4, (3, 7, 9, c)))
    x = x.astype(np.float32)
    a, b = x[:, 0:6:2, 0:8:2], x[:, 0:6:2, 1:8:2]
    d, e = x[:, 1:6:2, 0:8:2], x[:, 1:6:2, 1:8:2]
    want = (((a + b) + d) + e) / np.float32(4)
    assert want.dtype == np.float32
    got = fastconv.avg_pool2d(x, 2, data_format="channels_last")
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(want, (((a + d) + b) + e) / np.float32(4))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9),
       w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sy=st.integers(1, 3), sx=st.integers(1, 3),
       pad=st.sampled_from(["same", "valid", 0, 1]),
       last=st.booleans(), seed=st.integers(0, 2**16))
def test_property_random_geometries(n, c, h, w, kh, kw, sy, sx, pad, last, seed):
    data_format = LAYOUTS[last]
    pool, stride = (kh, kw), (sy, sx)
    if pad == 1 and (kh < 2 or kw < 2):
        pad = 0
    pads = _pads(pad, (h, w), pool, stride)
    if kh > h + sum(pads[0]) or kw > w + sum(pads[1]):
        with pytest.raises(ValueError, match="pool_size"):
            fastconv.max_pool2d(np.zeros((n, c, h, w)), pool, stride, pad)
        return
    rng = np.random.default_rng(seed)
    _max_case(rng, n, c, h, w, pool, stride, pad, data_format, np.float64)
    _avg_case(rng, n, c, h, w, pool, stride, pad, data_format, np.float64, None)


# ---- hand-computed cases: the padding rules ----------------------------------------

def test_same_padding_puts_the_extra_row_bottom_right():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    # 3x3 stride 2 "same" on 4: out 2, total pad 1 -> 0 top, 1 bottom (TensorFlow).
    y = fastconv.max_pool2d(x, 3, 2, "same")
    np.testing.assert_array_equal(y[0, 0], [[10, 11], [14, 15]])


def test_avg_same_excludes_pads_numeric_includes_them():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    expected = np.array([[0 + 1 + 3 + 4, 1 + 2 + 4 + 5, (2 + 5) * 2],
                         [3 + 4 + 6 + 7, 4 + 5 + 7 + 8, (5 + 8) * 2],
                         [(6 + 7) * 2, (7 + 8) * 2, 8 * 4]]) / 4
    np.testing.assert_array_equal(fastconv.avg_pool2d(x, 2, 1, "same")[0, 0], expected)
    forced = np.array([[0 + 1 + 3 + 4, 1 + 2 + 4 + 5, 2 + 5],
                       [3 + 4 + 6 + 7, 4 + 5 + 7 + 8, 5 + 8],
                       [6 + 7, 7 + 8, 8]]) / 4
    np.testing.assert_array_equal(
        fastconv.avg_pool2d(x, 2, 1, "same", count_include_pad=True)[0, 0], forced)
    ones = np.ones((1, 1, 2, 2))
    torch_default = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    np.testing.assert_array_equal(fastconv.avg_pool2d(ones, 2, 1, 1)[0, 0], torch_default)
    np.testing.assert_array_equal(
        fastconv.avg_pool2d(ones, 2, 1, 1, count_include_pad=False)[0, 0], np.ones((3, 3)))


def test_padded_cells_never_win_the_max():
    for data_format in LAYOUTS:
        x = np.full((1, 1, 3, 3), -np.inf)
        x[0, 0, 1, 1] = -1e300
        xi = _to_layout(x, data_format)
        y, idx = fastconv.max_pool2d(xi, 3, 1, 1, data_format, return_indices=True)
        y, idx = _from_layout(y, data_format), _from_layout(idx, data_format)
        assert np.all(y == -1e300)  # a 0 or -inf pad would have shown up
        # The window at (0, 0) covers rows/cols -1..1: the winner sits at window (2, 2).
        assert idx[0, 0, 0, 0] == 2 * 3 + 2
        xa = np.full((1, 1, 2, 2), -np.inf)
        ya, ia = fastconv.max_pool2d(_to_layout(xa, data_format), 2, 1, 1, data_format,
                                     return_indices=True)
        assert np.all(ya == -np.inf)
        # Window (0, 0) sees padding at positions 0, 1, 2; its first real cell is 3.
        assert _from_layout(ia, data_format)[0, 0, 0, 0] == 3


# ---- NaN and ties ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("pool, stride, padding", [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
def test_nan_propagates_and_takes_the_gradient(pool, stride, padding, data_format, dtype):
    rng = np.random.default_rng(3)
    x = _distinct(rng, (1, 2, 6, 10))
    x[0, 0, 1, 1] = np.nan                    # one NaN, not first in its window
    x[0, 1, 0, 0] = 1e6                       # a larger value before a NaN
    x[0, 1, 1, 1] = np.nan
    x[0, 1, 2, 3] = np.nan                    # two NaNs in one 2x2 window: the first wins
    x[0, 1, 3, 2] = np.nan
    pad = _pads(padding, (6, 10), (pool, pool), (stride, stride))
    y_ref, pos_ref = ref.max_pool2d_forward(x, (pool, pool), (stride, stride), pad)
    xi = _to_layout(x, data_format).astype(dtype)
    y, idx = fastconv.max_pool2d(xi, pool, stride, padding, data_format, True)
    y, idx = _from_layout(y, data_format), _from_layout(idx, data_format)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    assert np.isnan(y).sum() >= 3
    np.testing.assert_array_equal(idx, pos_ref)
    gy = np.ones(y.shape)
    gx = fastconv.max_pool2d_backward(_to_layout(gy, data_format).astype(dtype), xi, pool,
                                      stride, padding, data_format, indices=None)
    gx = _from_layout(gx, data_format)
    gx_ref = ref.max_pool2d_grad_input(gy, pos_ref, x.shape, (pool, pool),
                                       (stride, stride), pad)
    np.testing.assert_array_equal(gx, gx_ref)
    if pool == 2 and stride == 2:
        assert gx[0, 0, 1, 1] == 1 and gx[0, 1, 1, 1] == 1
        assert gx[0, 1, 2, 3] == 1 and gx[0, 1, 3, 2] == 0 and gx[0, 1, 0, 0] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_ties_send_the_whole_gradient_to_the_first_max(data_format, dtype):
    x = np.zeros((1, 1, 4, 6))
    x[0, 0, 0, 3] = x[0, 0, 1, 2] = 5.0        # window (0, 1): tie at positions 1 and 2
    x[0, 0, 3, 4] = x[0, 0, 3, 5] = 7.0        # window (1, 2): tie at positions 2 and 3
    xi = _to_layout(x, data_format).astype(dtype)
    gy = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    y, idx = fastconv.max_pool2d(xi, 2, data_format=data_format, return_indices=True)
    gx = _from_layout(fastconv.max_pool2d_backward(
        _to_layout(gy, data_format).astype(dtype), xi, 2, data_format=data_format,
        indices=idx), data_format)
    np.testing.assert_array_equal(_from_layout(idx, data_format)[0, 0],
                                  [[0, 1, 0], [0, 0, 2]])
    expected = np.zeros((4, 6))
    expected[0, 0], expected[0, 3], expected[0, 4] = 1, 2, 3       # all-zero windows: 0
    expected[2, 0], expected[2, 2], expected[3, 4] = 4, 5, 6
    np.testing.assert_array_equal(gx[0, 0], expected)
    assert np.count_nonzero(gx) == 6


# ---- gradients by finite differences -----------------------------------------------

@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("pool, stride, padding", [(2, None, 0), (3, 2, 1), (2, 3, 0),
                                                   ((2, 3), 1, "same")])
def test_gradients_finite_differences(pool, stride, padding, data_format):
    rng = np.random.default_rng(4)
    x = _to_layout(_distinct(rng, (2, 2, 5, 6)) * 0.01, data_format)
    kw = dict(stride=stride, padding=padding, data_format=data_format)
    gy = rng.standard_normal(fastconv.max_pool2d(x, pool, **kw).shape)
    num = numeric_gradient(lambda a=x: np.sum(gy * fastconv.max_pool2d(a, pool, **kw)), x)
    np.testing.assert_allclose(fastconv.max_pool2d_backward(gy, x, pool, **kw), num,
                               atol=1e-7)
    for include in (None, False, True):
        def loss(a):
            return np.sum(gy * fastconv.avg_pool2d(a, pool, count_include_pad=include,
                                                   **kw))
        num = numeric_gradient(lambda: loss(x), x)
        got = fastconv.avg_pool2d_backward(gy, x, pool, count_include_pad=include, **kw)
        np.testing.assert_allclose(got, num, atol=1e-7)


# ---- global average ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_global_avg_pool(data_format, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    xi = _to_layout(x, data_format)
    y = fastconv.global_avg_pool2d(xi, data_format)
    assert y.shape == (3, 4) and y.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3)), rtol=tol,
                               atol=tol)
    gy = rng.standard_normal((3, 4)).astype(dtype)
    gx = fastconv.global_avg_pool2d_backward(gy, xi.shape, data_format)
    assert gx.shape == xi.shape and gx.dtype == dtype
    expected = np.broadcast_to((gy / dtype(35))[:, :, None, None], x.shape)
    np.testing.assert_array_equal(_from_layout(gx, data_format), expected)
    x64 = xi.astype(np.float64)
    gy64 = gy.astype(np.float64)
    num = numeric_gradient(
        lambda a=x64: np.sum(gy64 * fastconv.global_avg_pool2d(a, data_format)), x64)
    np.testing.assert_allclose(fastconv.global_avg_pool2d_backward(gy64, x64.shape,
                                                                   data_format),
                               num, atol=1e-8)


# ---- inputs: layouts in memory, dtypes, empty batch, threads -----------------------

def test_noncontiguous_and_readonly_inputs():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((2, 3, 14, 20))
    x = base[:, :, ::2, 1::2]                     # strided view (2, 3, 7, 10)
    xf = np.asfortranarray(x)
    xr = np.ascontiguousarray(x)
    xr.setflags(write=False)
    expected = fastconv.max_pool2d(np.ascontiguousarray(x), 3, 2, 1)
    y, idx = fastconv.max_pool2d(xr, 3, 2, 1, return_indices=True)
    idx.setflags(write=False)
    for arr in (x, xf, xr):
        np.testing.assert_array_equal(fastconv.max_pool2d(arr, 3, 2, 1), expected)
        np.testing.assert_array_equal(fastconv.avg_pool2d(arr, 3, 2, 1),
                                      fastconv.avg_pool2d(xr, 3, 2, 1))
    gy = rng.standard_normal((2, 5, 4, 3)).transpose(0, 3, 2, 1)  # non-contiguous (2,3,4,5)
    gyr = np.ascontiguousarray(gy)
    gyr.setflags(write=False)
    g1 = fastconv.max_pool2d_backward(gy, x, 3, 2, 1, indices=idx)
    np.testing.assert_array_equal(g1, fastconv.max_pool2d_backward(gyr, xr, 3, 2, 1))
    np.testing.assert_array_equal(fastconv.avg_pool2d_backward(gy, xf, 3, 2, 1),
                                  fastconv.avg_pool2d_backward(gyr, xr, 3, 2, 1))
    last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(fastconv.max_pool2d(last, 3, 2, 1), expected)
    assert fastconv.global_avg_pool2d(xr).shape == (2, 3)


def test_integer_and_bool_inputs_become_float64_and_dtypes_are_kept():
    x = np.arange(32).reshape(1, 2, 4, 4)
    y = fastconv.max_pool2d(x, 2)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, fastconv.max_pool2d(x.astype(float), 2))
    assert fastconv.avg_pool2d(x > 5, 2).dtype == np.float64
    assert fastconv.avg_pool2d(x.astype(np.float32), 2).dtype == np.float32
    assert fastconv.max_pool2d_backward(np.ones((1, 2, 2, 2), np.float32),
                                        x.astype(np.float32), 2).dtype == np.float32
    assert fastconv.global_avg_pool2d([[[[1, 2], [3, 4]]]])[0, 0] == 2.5


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_empty_batch_and_batch_of_one(data_format):
    shape = (0, 4, 4, 3) if data_format == "channels_last" else (0, 3, 4, 4)
    x = np.zeros(shape, np.float32)
    y, idx = fastconv.max_pool2d(x, 2, data_format=data_format, return_indices=True)
    assert y.shape == idx.shape == ((0, 2, 2, 3) if data_format == "channels_last"
                                    else (0, 3, 2, 2))
    assert fastconv.max_pool2d_backward(y, x, 2, data_format=data_format,
                                        indices=idx).shape == shape
    assert fastconv.avg_pool2d(x, 3, 1, 1, data_format=data_format).shape[0] == 0
    assert fastconv.avg_pool2d_backward(y, x, 2, data_format=data_format).shape == shape
    assert fastconv.global_avg_pool2d(x, data_format).shape == (0, 3)
    assert fastconv.global_avg_pool2d_backward(np.zeros((0, 3), np.float32), shape,
                                               data_format).shape == shape
    one = _to_layout(np.arange(16.0).reshape(1, 1, 4, 4), data_format)
    np.testing.assert_array_equal(
        _from_layout(fastconv.max_pool2d(one, 2, data_format=data_format), data_format),
        [[[[5, 7], [13, 15]]]])


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_one_and_two_threads_identical(data_format):
    rng = np.random.default_rng(7)
    # Large enough (> 32768 elements) that the kernels do split the work over threads.
    x = _to_layout(rng.standard_normal((6, 16, 19, 21)).astype(np.float32), data_format)
    before = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            if fastconv.config()["openmp"]:
                assert fastconv.get_num_threads() == threads
            out = []
            for pool, stride, pad in [(2, 2, 0), (3, 2, 1), (2, 1, "same")]:
                kw = dict(stride=stride, padding=pad, data_format=data_format)
                y, idx = fastconv.max_pool2d(x, pool, return_indices=True, **kw)
                gy = np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape)
                gx = fastconv.max_pool2d_backward(gy, x, pool, indices=idx, **kw)
                out += [y, idx, gx,
                        fastconv.avg_pool2d(x, pool, **kw),
                        fastconv.avg_pool2d_backward(gy, x, pool, **kw)]
            out.append(fastconv.global_avg_pool2d(x, data_format))
            results.append(out)
    finally:
        fastconv.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("x_shape, pool, data_format", [
    ((1, 1, 16, 16), 16, "channels_first"),     # 256 cells: the last uint8 window
    ((1, 1, 17, 17), 17, "channels_first"),
    ((1, 1, 46341, 46341), 46341, "channels_first"),     # 2**31 + 9_282 cells
    ((1, 1, 2**16, 2**15 + 1), (2**16, 2**15 + 1), "channels_first"),
    ((1, 2**16, 2**15 + 1, 1), (2**16, 2**15 + 1), "channels_last"),
])
def test_index_dtype_holds_every_window_position(x_shape, pool, data_format):
    """The stored argmax (0 .. kh*kw - 1) fits its dtype for any window (no arrays made)."""
    g = fastconv.pooling._geometry(x_shape, pool, None, 0, data_format)
    assert np.iinfo(g.index_dtype).max >= g.kh * g.kw - 1
    assert g.index_dtype in (np.uint8, np.int64)


@pytest.mark.slow
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_max_pool_window_over_2_31_cells(data_format):
    """One window of 2**31 + 32_768 cells (x: 8.6 GB float32 of unread zero pages).

    The winner is the last cell, index kh*kw - 1 > 2**31: the index is stored whole and
    the backward routes the gradient there (an int32 index wrapped negative and the
    gradient was dropped).
    """
    kh, kw = 2**16, 2**15 + 1
    shape = (1, 1, kh, kw) if data_format == "channels_first" else (1, kh, kw, 1)
    x = np.zeros(shape, np.float32)
    plane = x.reshape(kh, kw)
    plane[-1, -1] = 1.0
    y, idx = fastconv.max_pool2d(x, (kh, kw), data_format=data_format, return_indices=True)
    assert y.reshape(()) == 1.0 and int(idx.reshape(())) == kh * kw - 1 > 2**31
    gx = fastconv.max_pool2d_backward(np.full(y.shape, 2.5, np.float32), x, (kh, kw),
                                      data_format=data_format, indices=idx)
    del x, plane
    g = gx.reshape(kh, kw)
    assert g[-1, -1] == 2.5
    g[-1, -1] = 0
    assert not g.any()


def test_out_of_range_indices_never_write_outside_grad_x():
    x = np.zeros((1, 1, 5, 5))
    for pool, pad in [(2, 0), (3, 1)]:
        y, idx = fastconv.max_pool2d(x, pool, 2, pad, return_indices=True)
        idx[...] = 255
        gx = fastconv.max_pool2d_backward(np.ones(y.shape), x, pool, 2, pad, indices=idx)
        assert gx.shape == x.shape and np.all(np.isfinite(gx))


def test_pool2d_output_shape():
    assert fastconv.pool2d_output_shape((8, 3, 30, 30), 2) == (8, 3, 15, 15)
    assert fastconv.pool2d_output_shape((8, 13, 13, 64), 2, 2, "same",
                                        "channels_last") == (8, 7, 7, 64)
    assert fastconv.pool2d_output_shape((1, 1, 9, 11), 3, 2, 1) == (1, 1, 5, 6)
    with pytest.raises(ValueError, match=r"x_shape must have 4 entries, got \(1, 2, 3\)"):
        fastconv.pool2d_output_shape((1, 2, 3), 2)


# ---- errors ------------------------------------------------------------------------

X = np.zeros((1, 2, 6, 6))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: fastconv.max_pool2d(np.zeros((2, 6, 6)), 2), ValueError,
     r"x must be a 4-D array \(N, C, H, W\) for channels_first, got an array of shape"),
    (lambda: fastconv.avg_pool2d(np.zeros((2, 6, 6)), 2, data_format="channels_last"),
     ValueError, r"x must be a 4-D array \(N, H, W, C\) for channels_last"),
    (lambda: fastconv.max_pool2d(X, 0), ValueError, r"pool_size must be positive, got 0"),
    # an empty map with padding: every window would lie in the padding (PyTorch refuses)
    (lambda: fastconv.soft_pool2d(np.zeros((1, 0, 0, 2)), 2, 1, 1,
                                  data_format="channels_last"),
     ValueError, r"has an empty height: every window of its padding 1\+1"),
    (lambda: fastconv.max_pool2d(np.zeros((1, 2, 3, 0)), 2, 1, 1), ValueError,
     r"has an empty width"),
    (lambda: fastconv.max_pool2d(X, (2, 2, 2)), ValueError,
     r"pool_size must be an int or a pair of ints, got \(2, 2, 2\)"),
    (lambda: fastconv.max_pool2d(X, 2.5), TypeError, r"pool_size must be an int"),
    (lambda: fastconv.avg_pool2d(X, 2, stride=(1, 0)), ValueError,
     r"stride must be positive, got \(1, 0\)"),
    (lambda: fastconv.max_pool2d(X, 2, padding="full"), ValueError,
     r"padding must be 'same', 'valid', an int or pairs of ints, got 'full'"),
    (lambda: fastconv.max_pool2d(X, 2, padding=-1), ValueError,
     r"padding must be non-negative.*got -1"),
    (lambda: fastconv.max_pool2d(X, 3, padding=2), ValueError,
     r"padding must be at most half the pool size.*at most 1 rows and 1 columns for "
     r"pool_size \(3, 3\)\), got padding \(\(2, 2\), \(2, 2\)\)"),
    (lambda: fastconv.avg_pool2d(X, (4, 2), padding=((0, 0), (0, 2))), ValueError,
     r"padding must be at most half the pool size"),
    (lambda: fastconv.max_pool2d(X, (7, 2)), ValueError,
     r"pool_size height 7 is larger than the padded input height 6 \(size 6, padding "
     r"0\+0\) of x with shape \(1, 2, 6, 6\)"),
    (lambda: fastconv.avg_pool2d(X, (2, 9), padding=1), ValueError,
     r"pool_size width 9 is larger than the padded input width 8"),
    (lambda: fastconv.max_pool2d(X, 2, data_format="NCHW"), ValueError,
     r"data_format must be 'channels_first' or 'channels_last', got 'NCHW'"),
    (lambda: fastconv.avg_pool2d(X, 2, count_include_pad="yes"), TypeError,
     r"count_include_pad must be None, True or False, got 'yes'"),
    (lambda: fastconv.max_pool2d(X, 2, return_indices=1), TypeError,
     r"return_indices must be True or False, got 1"),
    (lambda: fastconv.max_pool2d(X.astype(np.float16), 2), TypeError,
     r"x must be float32 or float64.*got dtype float16"),
    (lambda: fastconv.max_pool2d(X.astype(complex), 2), TypeError,
     r"x must be float32 or float64.*got dtype complex128"),
    (lambda: fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 2)), X, 2), ValueError,
     r"grad_y must have the output shape \(1, 2, 3, 3\) of this pooling, got "
     r"\(1, 2, 3, 2\)"),
    (lambda: fastconv.avg_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), X, 2),
     TypeError, r"all floating arguments must share one dtype, got grad_y is float32, "
     r"x is float64"),
    (lambda: fastconv.max_pool2d_backward(np.zeros((2, 3, 3)), X, 2), ValueError,
     r"grad_y must be a 4-D array"),
    (lambda: fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 3)), X, 2,
                                          indices=np.zeros((1, 2, 3, 3), np.int64)),
     ValueError, r"indices must be a uint8 array of the output shape \(1, 2, 3, 3\).*got "
     r"int64 array of shape \(1, 2, 3, 3\)"),
    (lambda: fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 3)), X, 2,
                                          indices=np.zeros((1, 2, 3, 2), np.uint8)),
     ValueError, r"indices must be a uint8 array.*got uint8 array of shape \(1, 2, 3, 2\)"),
    (lambda: fastconv.max_pool2d_backward(np.zeros((1, 2, 3, 3)), X, 2,
                                          indices=[[0]]), TypeError,
     r"indices must be the ndarray returned by max_pool2d.*got list"),
    (lambda: fastconv.global_avg_pool2d(np.zeros((2, 3))), ValueError,
     r"x must be a 4-D array \(N, C, H, W\)"),
    (lambda: fastconv.global_avg_pool2d(np.zeros((2, 3, 0, 4))), ValueError,
     r"x must have at least one pixel to average, got shape \(2, 3, 0, 4\)"),
    (lambda: fastconv.global_avg_pool2d(X, "NHWC"), ValueError, r"data_format must be"),
    (lambda: fastconv.global_avg_pool2d_backward(np.zeros((1, 3)), X.shape), ValueError,
     r"grad_y must have shape \(N, C\) = \(1, 2\) for x_shape \(1, 2, 6, 6\)"),
    (lambda: fastconv.global_avg_pool2d_backward(np.zeros((1, 2, 1)), X.shape), ValueError,
     r"grad_y must be a 2-D array \(N, C\)"),
    (lambda: fastconv.global_avg_pool2d_backward(np.zeros((1, 2)), (1, 2, 6)), ValueError,
     r"x_shape must be 4 non-negative ints, got \(1, 2, 6\)"),
    (lambda: fastconv.global_avg_pool2d_backward(np.zeros((1, 2)), 7), TypeError,
     r"x_shape must be a tuple of 4 ints, got 7"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- optional: PyTorch itself ------------------------------------------------------

@pytest.mark.parametrize("kind, pool, stride, pad, include", [
    ("max", 2, 2, 0, None), ("max", 3, 2, 1, None), ("avg", 2, 2, 0, None),
    ("avg", 3, 2, 1, None), ("avg", 3, 2, 1, False), ("avg", 2, 3, 1, None)])
def test_matches_torch(kind, pool, stride, pad, include):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(8)
    x = _distinct(rng, (2, 3, 9, 11)).astype(np.float32) / 8
    gy_shape = fastconv.pool2d_output_shape(x.shape, pool, stride, pad)
    gy = rng.standard_normal(gy_shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    if kind == "max":
        ty = F.max_pool2d(tx, pool, stride, pad)
        y = fastconv.max_pool2d(x, pool, stride, pad)
        gx = fastconv.max_pool2d_backward(gy, x, pool, stride, pad)
    else:
        ty = F.avg_pool2d(tx, pool, stride, pad,
                          count_include_pad=True if include is None else include)
        y = fastconv.avg_pool2d(x, pool, stride, pad, include)
        gx = fastconv.avg_pool2d_backward(gy, x, pool, stride, pad, include)
    ty.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_memoised_geometry_still_checks_every_argument():
    """The geometry cache keys on the arguments' exact types: after a valid call with
    ints, the same values as bools or floats still get their errors."""
    x = np.zeros((1, 3, 8, 8))
    for _ in range(2):
        assert fastconv.max_pool2d(x, 2, stride=2).shape == (1, 3, 4, 4)
    with pytest.raises(TypeError, match="pool_size must be an int"):
        fastconv.max_pool2d(x, True, stride=2)
    with pytest.raises(TypeError, match="stride must be an int"):
        fastconv.max_pool2d(x, 2, stride=2.0)
    for _ in range(2):
        with pytest.raises(ValueError, match="pool_size"):
            fastconv.max_pool2d(x, 9, stride=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (3, 7, 5, 6), (64, 28, 28, 6)])
def test_fused_average_pool_and_tanh_gradient_is_the_two_passes(dtype, shape):
    """pooling._avg_backward_tanh (2x2/2, channels_last; odd sizes leave a row and a
    column in no window; the largest shape runs on all threads) gives exactly
    tanh_backward(avg_pool2d_backward(...)), NaN in the uncovered cells included."""
    from fastconv import activations as act
    from fastconv import pooling
    rng = np.random.default_rng(9)
    a = np.tanh(rng.standard_normal(shape)).astype(dtype)
    a[0, -1, -1, 0] = np.nan
    gy = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(dtype)
    g = pooling._geometry(a.shape, 2, None, "valid", "channels_last")
    got = pooling._avg_backward_tanh(g, gy, a)
    want = act.tanh_backward(fastconv.avg_pool2d_backward(gy, a, 2,
                                                          data_format="channels_last"), a)
    np.testing.assert_array_equal(got, want)
    # where it does not apply: None (the caller takes the two passes)
    assert pooling._avg_backward_tanh(
        pooling._geometry(a.shape, 3, 2, "valid", "channels_last"),
        np.zeros((shape[0], (shape[1] - 1) // 2, (shape[2] - 1) // 2, shape[3]), dtype),
        a) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,pool,stride,padding", [
    ((2, 17, 11, 10), 3, 2, 1),          # ResNet's stem pool, odd channel count
    ((3, 1, 9, 9), 3, 1, "same"),        # one channel
    ((2, 3, 8, 7), (2, 3), (1, 2), 0),   # rectangular windows and strides
    ((2, 5, 6, 6), 2, 1, 0),             # 2x2 at stride 1: not the fast rows
    ((1, 4, 7, 7), 2, 2, "same"),        # 2x2/2 with a padded last window
    ((2, 6, 9, 9), 2, 2, 0),             # the fast rows (2x2/2 inside): no copies
    ((1, 2, 20, 20), 17, 1, 0),          # 289 cells: int64 indices
])
def test_channels_first_max_pool_is_the_channels_last_pool_transposed(
        x_shape, pool, stride, padding, dtype):
    """channels_first max pooling runs its windows (all but 2x2/2 inside the input) on
    the channels_last kernel through transposed copies: the same maxima, NaN and tied
    winners and indices as the channels_last call, bit for bit, and its gradient."""
    rng = np.random.default_rng(31)
    x = rng.integers(-3, 4, x_shape).astype(dtype)   # (many ties)
    x[0, 0, 1, 1] = np.nan
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y, idx = fastconv.max_pool2d(x, pool, stride, padding, return_indices=True)
    yl, idxl = fastconv.max_pool2d(xl, pool, stride, padding, "channels_last",
                                   return_indices=True)
    np.testing.assert_array_equal(y, yl.transpose(0, 3, 1, 2))
    assert idx.dtype == idxl.dtype and idx.flags.c_contiguous
    np.testing.assert_array_equal(idx, idxl.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(fastconv.max_pool2d(x, pool, stride, padding), y)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gyl = np.ascontiguousarray(gy.transpose(0, 2, 3, 1))
    gx = fastconv.max_pool2d_backward(gy, x, pool, stride, padding)
    gxl = fastconv.max_pool2d_backward(gyl, xl, pool, stride, padding, "channels_last")
    np.testing.assert_array_equal(gx, gxl.transpose(0, 3, 1, 2))


def test_batched_transpose_of_one_byte_elements():
    """The max pool's uint8 indices take the compiled transpose too."""
    a = np.arange(3 * 5 * 37, dtype=np.uint8).reshape(3, 5, 37) * 7
    out = np.empty((3, 37, 5), np.uint8)
    fastconv._ext.conv2d.batched_transpose(a, out, 3, 5, 37)
    np.testing.assert_array_equal(out, a.transpose(0, 2, 1))
    with pytest.raises(TypeError, match="one dtype of 1, 4 or 8 bytes"):
        fastconv._ext.conv2d.batched_transpose(a.astype(np.int16),
                                               out.astype(np.int16), 3, 5, 37)
