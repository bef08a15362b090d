"""The depthwise algorithm (groups == C_in): every pass against fastconv.reference's
loops, in both layouts, on every ISA build the CPU runs, over the edges of its blocking
(one output pixel, kernels larger than the stride, odd sizes, same / valid padding,
dilation, depth multiplier 2, channel counts off the vector length), and the same bits
on 1 and 2 threads."""
import numpy as np
import pytest

import fastconv
from fastconv import _ext, reference as ref
from fastconv.shapes import resolve_padding

# (id, N, C, H, W, multiplier, k, stride, padding, dilation)
CASES = [
    pytest.param(2, 3, 7, 9, 1, 3, 1, 1, 1, id="3x3-s1-odd"),
    pytest.param(2, 5, 9, 7, 1, 3, 2, 1, 1, id="3x3-s2-odd"),
    pytest.param(1, 19, 12, 13, 1, 3, 1, "same", 1, id="3x3-s1-same-19ch"),
    pytest.param(3, 40, 10, 10, 1, 3, 2, "same", 1, id="3x3-s2-same-40ch"),
    pytest.param(1, 6, 8, 8, 2, 3, 1, 1, 1, id="multiplier2-s1"),
    pytest.param(2, 4, 9, 7, 2, 3, 2, "valid", 1, id="multiplier2-s2-valid"),
    pytest.param(2, 8, 11, 11, 1, 3, 1, "same", 2, id="dilation2"),
    pytest.param(1, 17, 11, 13, 1, 5, 3, 2, 1, id="5x5-s3"),
    pytest.param(2, 9, 3, 3, 1, 3, 2, "valid", 1, id="one-output-pixel"),
    pytest.param(2, 3, 1, 1, 1, 3, 1, 1, 1, id="1x1-image"),
    pytest.param(1, 35, 6, 29, 1, 3, 1, 0, 1, id="wide-rows-35ch"),
    pytest.param(1, 3, 4, 32, 1, 3, 1, "same", 1, id="rows-of-whole-vectors"),
    pytest.param(2, 21, 5, 37, 1, 3, 2, 1, 1, id="3x3-s2-wide-rows-21ch"),
    pytest.param(1, 19, 9, 35, 1, 3, 2, 2, 2, id="3x3-s2-dilation2"),
    pytest.param(1, 18, 8, 34, 1, 4, 2, ((1, 2), (2, 1)), 1, id="4x4-s2-asymmetric-pad"),
    pytest.param(1, 33, 3, 30, 1, 3, 1, "valid", 1, id="3x3-s1-blocks-of-8-4-2-33ch"),
    pytest.param(1, 7, 4, 5, 3, 2, 1, ((0, 1), (1, 0)), 1, id="2x2-asymmetric-pad"),
    # (channels_first planes over VIA_LAST_PLANE and VIA_LAST_GRAD_WEIGHT_PLANE output
    # pixels: the channels_first kernels; the cases above run on the channels_last ones)
    pytest.param(1, 5, 18, 19, 1, 3, 1, 1, 1, id="3x3-s1-plane-over-256"),
    pytest.param(1, 3, 29, 29, 1, 3, 1, 1, 1, id="3x3-s1-plane-over-784"),
    pytest.param(1, 3, 60, 58, 1, 3, 2, 1, 1, id="3x3-s2-plane-over-784"),
]


def _pads(h, w, k, stride, padding, dilation):
    if isinstance(padding, str) or isinstance(padding, tuple):
        if isinstance(padding, tuple):
            return padding
        keff = (k - 1) * dilation + 1
        return resolve_padding(padding, (h, w), (keff, keff), (stride, stride))
    return ((padding, padding), (padding, padding))


def _arrays(n, c, h, w, m, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((c * m, 1, k, k))
    b = rng.standard_normal(c * m)
    return x.astype(dtype), wt.astype(dtype), b.astype(dtype)


def _run(x, wt, b, gy, stride, padding, dilation, data_format):
    """(y, grad_x, grad_w, grad_b) of fastconv in data_format, back in channels_first."""
    c = x.shape[1]
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=c,
              data_format=data_format)
    if data_format == "channels_last":
        x, gy = ref.to_channels_last(x), ref.to_channels_last(gy)
        wt = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y = fastconv.conv2d(x, wt, b, **kw)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, wt, **kw)
    if data_format == "channels_last":
        y, gx = ref.to_channels_first(y), ref.to_channels_first(gx)
        gw = gw.transpose(3, 2, 0, 1)
    return y, gx, gw, gb


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("n, c, h, w, m, k, stride, padding, dilation", CASES)
def test_depthwise_matches_the_reference(isa, data_format, n, c, h, w, m, k, stride,
                                         padding, dilation):
    pads = _pads(h, w, k, stride, padding, dilation)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-5)):
        x, wt, b = _arrays(n, c, h, w, m, k, dtype)
        y_ref = ref.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                                   b.astype(np.float64), (stride, stride), pads,
                                   (dilation, dilation), groups=c)
        gy = np.random.default_rng(1).standard_normal(y_ref.shape).astype(dtype)
        gy64 = gy.astype(np.float64)
        want = (y_ref,
                ref.conv2d_grad_input(gy64, wt.astype(np.float64), x.shape,
                                      (stride, stride), pads, (dilation, dilation), c),
                ref.conv2d_grad_weight(gy64, x.astype(np.float64), wt.shape,
                                       (stride, stride), pads, (dilation, dilation), c),
                gy64.sum(axis=(0, 2, 3)))
        shape = x.shape if data_format == "channels_first" else (n, h, w, c)
        wshape = wt.shape if data_format == "channels_first" else (k, k, 1, c * m)
        for pass_ in ("forward", "grad_input", "grad_weight"):
            assert fastconv.explain_conv(shape, wshape, stride, padding, dilation, c,
                                         data_format, dtype, pass_).algorithm == \
                "depthwise"
        got = _run(x, wt, b, gy, stride, padding, dilation, data_format)
        for name, g, r in zip(("y", "grad_x", "grad_w", "grad_b"), got, want):
            assert g.dtype == dtype and g.shape == r.shape, name
            scale = max(1.0, float(np.abs(r).max()))
            np.testing.assert_allclose(g, r, rtol=0, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_depthwise_is_the_same_on_one_and_two_threads(data_format):
    """Big enough to run on two threads (rows, planes and channel blocks split), with
    work items fixed by the shapes: the same bits."""
    x, wt, b = _arrays(3, 72, 30, 30, 1, 3, np.float32, seed=5)
    gy = np.random.default_rng(6).standard_normal((3, 72, 15, 15)).astype(np.float32)
    before = fastconv.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            out.append(_run(x, wt, b, gy, 2, 1, 1, data_format) +
                       _run(x, wt, b, np.repeat(np.repeat(gy, 2, 2), 2, 3), 1, 1, 1,
                            data_format))
    finally:
        fastconv.set_num_threads(before)
    for a, o in zip(*out):
        np.testing.assert_array_equal(a, o)


def test_depthwise_relu_and_non_finite_weights_follow_the_reference():
    """ReLU after the kernels; a NaN weight leaves depthwise (it skips taps over the
    padding) for kernels that multiply the padding too, as the reference does."""
    x, wt, b = _arrays(2, 4, 5, 5, 1, 3, np.float64)
    y = fastconv.ops.conv.conv2d_act(x, wt, b, 1, 1, 1, 4, "channels_first", relu=True)
    want = np.maximum(ref.conv2d_forward(x, wt, b, (1, 1), ((1, 1), (1, 1)), groups=4), 0)
    np.testing.assert_allclose(y, want, atol=1e-12)
    wt[1, 0, 0, 0] = np.nan
    y = fastconv.conv2d(x, wt, b, padding=1, groups=4)
    want = ref.conv2d_forward(x, wt, b, (1, 1), ((1, 1), (1, 1)), groups=4)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y[:, 1]).all()   # (the padding's zeros times NaN: every pixel)
    np.testing.assert_allclose(y[:, [0, 2, 3]], want[:, [0, 2, 3]], atol=1e-12)


@pytest.mark.parametrize("stride, width", [(1, 31), (2, 45)])
def test_depthwise_channels_last_activations_follow_the_reference(isa, stride, width):
    """ReLU and ReLU6 in the channels_last output pass, over rows long enough for every
    pixel block of the three-column kernels (8, 4, 2, 1) and a scalar channel tail,
    with and without a bias."""
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        x, wt, b = _arrays(2, 37, 4, width, 1, 3, dtype, seed=3)
        x *= 3
        xl = ref.to_channels_last(x)
        wl = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
        for bias in (b, None):
            plain = ref.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                                       None if bias is None else bias.astype(np.float64),
                                       (stride, stride), ((1, 1), (1, 1)), groups=37)
            for relu, want in ((True, np.maximum(plain, 0)),
                               (fastconv.ops.conv.plan.RELU6, np.clip(plain, 0, 6))):
                y = fastconv.ops.conv.conv2d_act(xl, wl, bias, stride, 1, 1, 37,
                                                 "channels_last", relu=relu)
                np.testing.assert_allclose(ref.to_channels_first(y), want, rtol=0,
                                           atol=tol * np.abs(plain).max())


def test_depthwise_refuses_other_groupings():
    for x_shape, w_shape, groups in (((1, 4, 8, 8), (8, 2, 3, 3), 2),
                                     ((1, 4, 8, 8), (8, 4, 3, 3), 1),
                                     ((1, 1, 8, 8), (3, 1, 3, 3), 1)):
        e = fastconv.explain_conv(x_shape, w_shape, padding=1, groups=groups)
        assert e.algorithm != "depthwise"
        assert "groups == C_in" in e.refused["depthwise"]


def test_channels_first_small_planes_run_on_the_channels_last_kernels():
    """The rule of algorithms/depthwise.py: forwards and input gradients of planes of
    at most VIA_LAST_PLANE output pixels, strided input gradients of at most
    VIA_LAST_STRIDED_GRAD_INPUT_PLANE, weight gradients of at most
    VIA_LAST_GRAD_WEIGHT_PLANE, run through transposed copies (the reference cases
    above cover both sides in values)."""
    from fastconv.ops.conv.algorithms import depthwise
    small, mid = depthwise.VIA_LAST_PLANE, depthwise.VIA_LAST_GRAD_WEIGHT_PLANE
    strided = depthwise.VIA_LAST_STRIDED_GRAD_INPUT_PLANE
    everything = ("forward", "grad_input", "grad_weight")
    for stride, side, passes in (
            (1, int(small ** 0.5), everything),
            (1, int(small ** 0.5) + 1, ("grad_weight",)),
            (1, int(mid ** 0.5) + 1, ()),
            (2, int(small ** 0.5), everything),
            (2, int(small ** 0.5) + 1, ("grad_input", "grad_weight")),
            (2, int(strided ** 0.5) + 1, ())):
        h = side * stride   # (padding 1, 3x3: side output pixels a side)
        for pass_ in everything:
            for fmt, xs, ws in (("channels_first", (2, 8, h, h), (8, 1, 3, 3)),
                                ("channels_last", (2, h, h, 8), (3, 3, 1, 8))):
                plan = fastconv.explain_conv(xs, ws, stride, 1, 1, 8, fmt,
                                             pass_=pass_).plan
                assert (plan.g.oh, plan.g.ow) == (side, side)
                via = fmt == "channels_first" and pass_ in passes
                assert (plan.last is not None) == via, (stride, side, pass_, fmt)

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_batched_transpose_against_numpy(dtype):
    """_ext.conv2d.batched_transpose (the channels_first <-> channels_last copies):
    NumPy's transpose, on shapes around the 8 x 8 blocks and 32 x 32 tiles, one image
    and many, both directions; bad arguments raise naming them."""
    rng = np.random.default_rng(5)
    tr = _ext.conv2d.batched_transpose
    for n, c, p in ((1, 1, 1), (2, 8, 8), (3, 13, 37), (2, 33, 65), (4, 96, 256),
                    (130, 576, 4), (1, 7, 1)):
        a = (rng.standard_normal((n, c, p)) * 100).astype(dtype)
        out = tr(a, np.empty((n, p, c), dtype), n, c, p)
        np.testing.assert_array_equal(out, a.transpose(0, 2, 1))
        back = tr(out, np.empty_like(a), n, p, c)
        np.testing.assert_array_equal(back, a)
    a = np.zeros((2, 3, 4), dtype)
    with pytest.raises(TypeError, match="one dtype of 1, 4 or 8 bytes"):
        tr(a, np.zeros((2, 4, 3), np.float16 if dtype != np.float16 else np.float32),
           2, 3, 4)
    with pytest.raises(ValueError, match="n \\* rows \\* cols = 30"):
        tr(a, np.zeros((2, 4, 3), dtype), 2, 3, 5)
    with pytest.raises(ValueError, match="C-contiguous"):
        tr(a, np.zeros((2, 3, 4), dtype).transpose(0, 2, 1), 2, 3, 4)
    with pytest.raises(ValueError, match="must not overlap"):
        tr(a, a, 2, 3, 4)
    with pytest.raises(TypeError, match="must be ndarrays"):
        tr([0.0], np.zeros(1, dtype), 1, 1, 1)


def test_inference_packing_follows_the_layout_the_kernels_address():
    """A channels_first DepthwiseConv2D in inference keeps its packed weight between
    calls; small planes run on the channels_last kernels (another packing) and large
    ones on the channels_first kernels.  Calls alternating between the two get each
    its own packing (they once shared one: a silent wrong answer on the second)."""
    rng = np.random.default_rng(51)
    m = fastconv.models.Sequential([
        fastconv.layers.Input((8, None, None)),
        fastconv.layers.DepthwiseConv2D(3, padding="same", data_format="channels_first")])
    weights = [rng.standard_normal(a.shape).astype(np.float32) for a in m.get_weights()]
    m.set_weights(weights)
    wt = weights[0].transpose(2, 3, 0, 1).astype(np.float64)   # (C, 1, kh, kw)
    from fastconv.ops.conv.algorithms import depthwise
    side = int(np.sqrt(depthwise.VIA_LAST_PLANE))
    for hw in (side - 2, side + 4, side - 2, side + 4):   # small, large, small, large
        x = rng.standard_normal((2, 8, hw, hw)).astype(np.float32)
        want = ref.conv2d_forward(x.astype(np.float64), wt, weights[1].astype(np.float64),
                                  (1, 1), ((1, 1), (1, 1)), (1, 1), 8)
        np.testing.assert_allclose(m.predict_on_batch(x), want, rtol=1e-5,
                                   atol=1e-5 * np.abs(want).max())
