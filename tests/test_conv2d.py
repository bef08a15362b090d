"""conv2d and its gradients against the naive reference, finite differences and errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import reference as ref
from fastconv.reference import numeric_gradient
from fastconv.shapes import normalize_padding, resolve_padding

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _explicit_pads(padding, hw, kernel_hw, stride, dilation):
    k_eff = tuple((k - 1) * d + 1 for k, d in zip(kernel_hw, dilation))
    return resolve_padding(normalize_padding(padding), hw, k_eff, stride)


def _to_last_weight(w):
    """(C_out, Cg, kh, kw) -> (kh, kw, Cg, C_out)."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _to_first_weight(w):
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def _check_case(rng, n, c, h, w, c_out, kh, kw, stride=1, padding=0, dilation=1,
                groups=1, data_format="channels_first", dtype=np.float64, bias=True):
    """Forward and all gradients of fastconv against the reference (both layouts)."""
    stride, dilation = _pair(stride), _pair(dilation)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((c_out, c // groups, kh, kw))
    b = rng.standard_normal(c_out) if bias else None
    pads = _explicit_pads(padding, (h, w), (kh, kw), stride, dilation)
    y_ref = ref.conv2d_forward(x, wt, b, stride, pads, dilation, groups)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref = ref.conv2d_grad_input(gy, wt, x.shape, stride, pads, dilation, groups)
    gw_ref = ref.conv2d_grad_weight(gy, x, wt.shape, stride, pads, dilation, groups)

    last = data_format == "channels_last"
    cast = (lambda a: None if a is None else a.astype(dtype))
    xi = cast(ref.to_channels_last(x) if last else x)
    wi = cast(_to_last_weight(wt) if last else wt)
    gyi = cast(ref.to_channels_last(gy) if last else gy)
    y = fastconv.conv2d(xi, wi, cast(b), stride, padding, dilation, groups, data_format)
    gx, gw, gb = fastconv.conv2d_backward(gyi, xi, wi, stride, padding, dilation, groups,
                                          data_format, has_bias=bias)
    for arr in (y, gx, gw):
        assert arr.dtype == dtype
    if last:
        y, gx, gw = ref.to_channels_first(y), ref.to_channels_first(gx), _to_first_weight(gw)
    tol = TOL[dtype]
    scale = np.sqrt(c // groups * kh * kw)
    np.testing.assert_allclose(y, y_ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(gx, gx_ref, rtol=tol["rtol"],
                               atol=tol["atol"] * np.sqrt(c_out * kh * kw))
    np.testing.assert_allclose(gw, gw_ref, rtol=tol["rtol"],
                               atol=tol["atol"] * np.sqrt(n * y_ref.shape[2] * y_ref.shape[3]))
    if bias:
        np.testing.assert_allclose(gb, ref.conv2d_grad_bias(gy), rtol=tol["rtol"],
                                   atol=tol["atol"] * np.sqrt(gy.size))
    else:
        assert gb is None


CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups
    pytest.param(2, 3, 7, 9, 4, 3, 2, (2, 1), 0, 1, 1, id="rect-kernel-stride21"),
    pytest.param(1, 1, 5, 5, 1, 5, 5, 1, 0, 1, 1, id="batch1-kernel-equals-input"),
    pytest.param(3, 2, 9, 6, 5, 3, 3, 1, "same", 1, 1, id="same-s1"),
    pytest.param(2, 3, 9, 8, 4, 3, 3, 2, "same", 1, 1, id="same-s2-odd"),
    pytest.param(2, 3, 10, 11, 4, 4, 2, 3, "same", 1, 1, id="same-s3-even-kernel"),
    pytest.param(2, 2, 7, 7, 3, 3, 3, 1, "valid", 1, 1, id="valid"),
    pytest.param(2, 2, 6, 7, 3, 3, 2, 1, 2, 1, 1, id="int-pad"),
    pytest.param(2, 2, 6, 7, 3, 3, 2, 1, (1, 2), 1, 1, id="pair-pad"),
    pytest.param(2, 2, 6, 7, 3, 2, 3, (1, 2), ((0, 2), (3, 1)), 1, 1, id="asym-pad"),
    pytest.param(2, 3, 11, 10, 4, 3, 3, 1, 0, (2, 3), 1, id="dilation"),
    pytest.param(2, 3, 11, 10, 4, 3, 2, 2, "same", 2, 1, id="dilation-same-s2"),
    pytest.param(2, 4, 7, 8, 6, 3, 3, 1, 1, 1, 2, id="groups2"),
    pytest.param(2, 6, 7, 8, 6, 3, 3, 1, 1, 1, 6, id="depthwise"),
    pytest.param(2, 3, 7, 8, 6, 3, 3, 2, "same", 1, 3, id="depthwise-multiplier2-s2"),
    pytest.param(3, 5, 4, 4, 7, 1, 1, 1, 0, 1, 1, id="pointwise"),
    pytest.param(2, 3, 3, 3, 2, 5, 5, 1, 1, 1, 1, id="kernel-larger-than-input-padded"),
]


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation,groups", CASES)
def test_matches_reference_float64(n, c, h, w, c_out, kh, kw, stride, padding, dilation,
                                   groups, data_format):
    _check_case(np.random.default_rng(1), n, c, h, w, c_out, kh, kw, stride, padding,
                dilation, groups, data_format, np.float64)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("case", [
    (4, 3, 12, 13, 8, 3, 3, 1, "same", 1, 1),
    (3, 4, 9, 11, 6, 5, 3, (2, 1), "same", 1, 2),
    (2, 6, 10, 10, 12, 3, 3, 2, 1, (2, 1), 3),
])
def test_matches_reference_float32(case, data_format):
    _check_case(np.random.default_rng(2), *case, data_format=data_format, dtype=np.float32)


def test_no_bias_gradient_is_none():
    _check_case(np.random.default_rng(3), 2, 3, 6, 6, 4, 3, 3, bias=False)


def test_large_batch_spans_several_chunks():
    """Chunking of the batch must not change results (small chunk forced)."""
    from fastconv import tuning
    with tuning.override(chunk_bytes=1):  # one image per chunk
        for fmt in ("channels_first", "channels_last"):
            _check_case(np.random.default_rng(4), 5, 3, 6, 7, 4, 3, 2, 1, "same", 1, 1,
                        fmt)


# -- hand-computed case: an independent check of the reference itself -------------------

def test_hand_computed_cross_correlation():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1] = -5 everywhere
    y = fastconv.conv2d(x, w, np.array([0.5]))
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), -4.5))
    # No kernel flip: an asymmetric kernel picks the top-left element.
    w2 = np.zeros((1, 1, 2, 2))
    w2[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(fastconv.conv2d(x, w2)[0, 0], x[0, 0, :3, :3])
    # 'same' with stride 2 on an even input: TF puts the odd pad at the bottom/right.
    y_same = fastconv.conv2d(x, np.ones((1, 1, 2, 2)), stride=2, padding="same")
    np.testing.assert_array_equal(y_same[0, 0], [[10.0, 18.0], [42.0, 50.0]])
    y_same3 = fastconv.conv2d(x, np.ones((1, 1, 3, 3)), stride=1, padding="same")
    assert y_same3.shape == (1, 1, 4, 4) and y_same3[0, 0, 0, 0] == 0 + 1 + 4 + 5


# -- gradients by finite differences ------------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, "same", 1, 1), ((2, 1), ((1, 0), (0, 2)), (1, 2), 2), (2, "same", 1, 4)])
def test_gradients_finite_differences(stride, padding, dilation, groups, data_format):
    rng = np.random.default_rng(5)
    if data_format == "channels_first":
        x = rng.standard_normal((2, 4, 6, 5))
        w = rng.standard_normal((4, 4 // groups, 3, 2))
    else:
        x = rng.standard_normal((2, 6, 5, 4))
        w = rng.standard_normal((3, 2, 4 // groups, 4))
    b = rng.standard_normal(4)
    args = (stride, padding, dilation, groups, data_format)
    gy = rng.standard_normal(fastconv.conv2d(x, w, b, *args).shape)

    def loss():
        return float(np.sum(fastconv.conv2d(x, w, b, *args) * gy))

    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *args)
    np.testing.assert_allclose(gx, numeric_gradient(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, numeric_gradient(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gb, numeric_gradient(loss, b), rtol=1e-6, atol=1e-7)


def test_separate_gradient_functions_match_backward():
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    kw = dict(stride=2, padding="same")
    gy = rng.standard_normal(fastconv.conv2d(x, w, **kw).shape)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **kw)
    np.testing.assert_array_equal(fastconv.conv2d_grad_input(gy, w, x.shape, **kw), gx)
    np.testing.assert_array_equal(fastconv.conv2d_grad_weight(gy, x, w.shape, **kw), gw)
    np.testing.assert_array_equal(fastconv.conv2d_grad_bias(gy), gb)
    gy_last = ref.to_channels_last(gy)
    np.testing.assert_allclose(fastconv.conv2d_grad_bias(gy_last, "channels_last"), gb)


# -- memory layouts, dtypes and threads ---------------------------------------------------

def test_fortran_strided_and_readonly_inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 10))
    w = rng.standard_normal((4, 3, 3, 3))
    expected = fastconv.conv2d(x, w, padding=1)
    xf = np.asfortranarray(x)
    wf = np.asfortranarray(w)
    big = np.zeros((4, 6, 18, 20))
    big[::2, ::2, ::2, ::2] = x
    strided = big[::2, ::2, ::2, ::2]
    ro = x.copy()
    ro.flags.writeable = False
    wro = w.copy()
    wro.flags.writeable = False
    for xi, wi in ((xf, wf), (strided, w), (ro, wro), (x[:, ::-1][:, ::-1], w)):
        np.testing.assert_allclose(fastconv.conv2d(xi, wi, padding=1), expected,
                                   rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(expected.shape)
    gy_ro = gy.copy()
    gy_ro.flags.writeable = False
    a = fastconv.conv2d_backward(gy, x, w, padding=1)
    b = fastconv.conv2d_backward(gy_ro, ro, wf, padding=1)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    assert ro.flags.writeable is False and np.array_equal(ro, x)  # input untouched


def test_integer_and_bool_inputs_follow_float_operand():
    x = np.arange(2 * 1 * 4 * 4).reshape(2, 1, 4, 4)          # int64
    w32 = np.ones((1, 1, 2, 2), np.float32)
    y = fastconv.conv2d(x, w32)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, fastconv.conv2d(x.astype(np.float32), w32))
    y64 = fastconv.conv2d(x, np.ones((1, 1, 2, 2), dtype=np.int32))
    assert y64.dtype == np.float64
    yb = fastconv.conv2d(x > 3, np.ones((1, 1, 2, 2)))
    assert yb.dtype == np.float64 and yb.max() == 4.0


@pytest.mark.parametrize("bad,match", [
    (np.float16, "float16"), (np.complex64, "complex64"), (object, "object")])
def test_unsupported_dtypes_are_refused(bad, match):
    x = np.ones((1, 1, 3, 3), dtype=bad)
    with pytest.raises(TypeError, match=f"x must be float32 or float64.*{match}"):
        fastconv.conv2d(x, np.ones((1, 1, 2, 2)))


def test_mixed_float_dtypes_are_refused():
    with pytest.raises(TypeError, match="x is float32, weight is float64"):
        fastconv.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2)))
    with pytest.raises(TypeError, match="grad_y is float64, x is float32"):
        fastconv.conv2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3), np.float32),
                                 np.ones((1, 1, 2, 2), np.float32))


def test_empty_batch():
    for fmt, xs, ws, ys in (("channels_first", (0, 3, 8, 8), (4, 3, 3, 3), (0, 4, 8, 8)),
                            ("channels_last", (0, 8, 8, 3), (3, 3, 3, 4), (0, 8, 8, 4))):
        x, w = np.zeros(xs, np.float32), np.ones(ws, np.float32)
        y = fastconv.conv2d(x, w, np.ones(4, np.float32), padding="same", data_format=fmt)
        assert y.shape == ys and y.dtype == np.float32
        gx, gw, gb = fastconv.conv2d_backward(y, x, w, padding="same", data_format=fmt)
        assert gx.shape == xs and gw.shape == ws and gb.shape == (4,)
        assert not gw.any() and not gb.any()


def _run_with_threads(omp_threads, blas_threads, x, w, gy, data_format):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = fastconv.get_num_threads()
    with threadpoolctl.threadpool_limits(blas_threads, user_api="blas"):
        fastconv.set_num_threads(omp_threads)
        try:
            return (fastconv.conv2d(x, w, padding=1, data_format=data_format),
                    *fastconv.conv2d_backward(gy, x, w, padding=1,
                                              data_format=data_format))
        finally:
            fastconv.set_num_threads(before)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_one_and_two_threads_identical(data_format):
    """Our OpenMP kernels give bit-identical results for any thread count."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 8, 15, 15)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((16, 16, 15, 15)).astype(np.float32)
    if data_format == "channels_last":
        x, gy, w = ref.to_channels_last(x), ref.to_channels_last(gy), _to_last_weight(w)
    one = _run_with_threads(1, 1, x, w, gy, data_format)
    # The kernels call no BLAS: the BLAS thread count must not matter either.
    for omp, blas in ((2, 1), (2, 2), (1, 2)):
        other = _run_with_threads(omp, blas, x, w, gy, data_format)
        for a, b in zip(one, other):
            np.testing.assert_array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), cg=st.integers(1, 3), groups=st.integers(1, 3),
       cog=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sy=st.integers(1, 3),
       sx=st.integers(1, 3), dy=st.integers(1, 2), dx=st.integers(1, 2),
       padding=st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                         st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                   st.tuples(st.integers(0, 2), st.integers(0, 2)))),
       data_format=st.sampled_from(["channels_first", "channels_last"]))
def test_property_random_geometries(n, cg, groups, cog, h, w, kh, kw, sy, sx, dy, dx,
                                    padding, data_format):
    """Any geometry that fits: matches the reference; any that does not: ValueError."""
    c, c_out = cg * groups, cog * groups
    try:
        _explicit = _explicit_pads(padding, (h, w), (kh, kw), (sy, sx), (dy, dx))
        fits = all((k - 1) * d + 1 <= size + pb + pa for k, d, size, (pb, pa) in
                   zip((kh, kw), (dy, dx), (h, w), _explicit))
    except ValueError:
        fits = False
    if not fits:
        with pytest.raises(ValueError, match="larger than the padded input"):
            fastconv.conv2d(np.zeros((n, c, h, w)), np.zeros((c_out, cg, kh, kw)),
                            stride=(sy, sx), padding=padding, dilation=(dy, dx),
                            groups=groups)
        return
    _check_case(np.random.default_rng(9), n, c, h, w, c_out, kh, kw, (sy, sx), padding,
                (dy, dx), groups, data_format)


# -- errors --------------------------------------------------------------------------------

X = np.zeros((2, 4, 8, 8))
W = np.zeros((6, 4, 3, 3))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(x=np.zeros((4, 8, 8))), ValueError, r"x must be a 4-D array \(N, C, H, W\).*"
                                              r"shape \(4, 8, 8\)"),
    (dict(weight=np.zeros((6, 4, 3))), ValueError, r"weight must be a 4-D array.*\(6, 4, 3\)"),
    (dict(weight=np.zeros((6, 3, 3, 3))), ValueError, r"weight must have C_in/groups = 4/1"
                                                      r" = 4 input channels.*\(6, 3, 3, 3\)"),
    (dict(groups=3, weight=np.zeros((6, 1, 3, 3))), ValueError,
     "x has 4 input channels, which groups=3 does not divide"),
    (dict(groups=2, weight=np.zeros((5, 2, 3, 3))), ValueError,
     "C_out = 5 output channels, which groups=2 does not divide"),
    (dict(groups=0), ValueError, "groups must be >= 1, got 0"),
    (dict(groups=1.5), TypeError, "groups must be an int, got 1.5"),
    (dict(weight=np.zeros((6, 4, 9, 3))), ValueError,
     r"weight kernel height 9 \(dilated to 9\) is larger than the padded input height 8"),
    (dict(weight=np.zeros((6, 4, 3, 3)), dilation=(1, 5)), ValueError,
     r"width 3 \(dilated to 11\) is larger than the padded input width 8"),
    (dict(stride=0), ValueError, "stride must be positive, got 0"),
    (dict(stride=(1, -2)), ValueError, r"stride must be positive, got \(1, -2\)"),
    (dict(stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair of ints, got "
                                         r"\(1, 2, 3\)"),
    (dict(dilation=0), ValueError, "dilation must be positive, got 0"),
    (dict(padding=-1), ValueError, "padding must be non-negative.*got -1"),
    (dict(padding=((0, -1), (0, 0))), ValueError, r"padding must be non-negative.*-1"),
    (dict(padding="full"), ValueError, "padding must be 'same', 'valid'.*got 'full'"),
    (dict(padding=1.5), TypeError, "padding must be an int or a pair of ints, got 1.5"),
    (dict(data_format="NCHW"), ValueError, "data_format must be 'channels_first' or "
                                           "'channels_last', got 'NCHW'"),
    (dict(bias=np.zeros(5)), ValueError, r"bias must have shape \(6,\) to match C_out, "
                                         r"got \(5,\)"),
    (dict(bias=np.zeros((6, 1))), ValueError, r"bias must be a 1-D array \(C_out,\), got "
                                              r"an array of shape \(6, 1\)"),
    (dict(x=[[1, 2], [3]]), TypeError, "x must be an array of numbers"),
])
def test_forward_errors(kwargs, exc, match):
    args = dict(x=X, weight=W, bias=None, stride=1, padding=0, dilation=1, groups=1,
                data_format="channels_first")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fastconv.conv2d(**args)


def test_channels_last_errors_describe_keras_layout():
    with pytest.raises(ValueError, match=r"x must be a 4-D array \(N, H, W, C\)"):
        fastconv.conv2d(np.zeros((8, 8, 4)), np.zeros((3, 3, 4, 6)),
                        data_format="channels_last")
    with pytest.raises(ValueError, match=r"\(kh, kw, C_in/groups, C_out\) for channels_last"):
        fastconv.conv2d(np.zeros((2, 8, 8, 4)), np.zeros((6, 4, 3, 3)),
                        data_format="channels_last")


def test_backward_errors():
    with pytest.raises(ValueError, match=r"grad_y must have the output shape "
                                         r"\(2, 6, 6, 6\) of this convolution, got "
                                         r"\(2, 6, 8, 8\)"):
        fastconv.conv2d_backward(np.zeros((2, 6, 8, 8)), X, W)
    with pytest.raises(ValueError, match=r"grad_y must be a 4-D array"):
        fastconv.conv2d_backward(np.zeros((2, 6, 36)), X, W)
    with pytest.raises(ValueError, match="data_format must be"):
        fastconv.conv2d_backward(np.zeros((2, 6, 6, 6)), X, W, data_format="nhwc")


def test_memoised_geometry_still_checks_every_argument():
    """The geometry cache keys on the arguments' exact types: after a valid call with
    ints, the same values as bools or floats still get their errors, and a bad call
    leaves nothing cached."""
    x, w = np.zeros((1, 4, 8, 8)), np.zeros((6, 4, 3, 3))
    for _ in range(2):
        assert fastconv.conv2d(x, w, stride=1, padding=(1, 1)).shape == (1, 6, 8, 8)
    with pytest.raises(TypeError, match="stride must be an int"):
        fastconv.conv2d(x, w, stride=True, padding=(1, 1))
    with pytest.raises(TypeError, match="padding must be"):
        fastconv.conv2d(x, w, stride=1, padding=(True, 1))
    with pytest.raises(TypeError, match="padding must be"):
        fastconv.conv2d(x, w, stride=1, padding=(1.0, 1))
    for _ in range(2):
        with pytest.raises(ValueError, match="stride must be positive"):
            fastconv.conv2d(x, w, stride=0)
