"""im2col_blas (fastconv/ops/conv/algorithms/blas.py): any channels_last convolution of
one group as BLAS products over its column matrix, against the naive reference loops
on every pass, and the shape rule that makes it the default."""
import numpy as np
import pytest

import fastconv
from fastconv import _ext, conv
from fastconv import reference as ref
from fastconv import tuning
from fastconv.shapes import normalize_pair, normalize_padding

F64 = np.float64

CASES = [  # (x_shape NHWC, c_out, kernel, stride, padding, dilation)
    ((1, 7, 7, 9), 13, (3, 3), 1, 1, 1),            # batch 1, same padding
    ((2, 9, 6, 5), 4, (3, 3), 2, 1, 1),             # strided, odd sizes
    ((1, 8, 8, 3), 6, (3, 3), 1, 2, 2),             # dilated
    ((3, 6, 7, 5), 2, (2, 2), 2, 0, 1),             # kernel = stride (no overlap)
    ((1, 5, 5, 2), 3, (5, 5), 3, ((0, 2), (1, 0)), 1),   # uneven padding, k > stride
    ((1, 4, 4, 3), 3, (1, 1), 2, 0, 1),             # strided 1x1 (ResNet's projection)
    ((1, 1, 1, 3), 2, (3, 3), 1, 1, 1),             # one pixel: all but one tap padding
    ((0, 5, 5, 3), 4, (3, 3), 1, 1, 1),             # an empty batch
]


def _reference(x, w, b, gy, stride, padding, dilation):
    """(y, grad_x, grad_w) of the channels_last call by the reference loops (float64)."""
    x64 = ref.to_channels_first(x.astype(F64))
    w64 = w.astype(F64).transpose(3, 2, 0, 1)
    gy64 = ref.to_channels_first(gy.astype(F64))
    kw = dict(stride=normalize_pair(stride, "stride"),
              pads=normalize_padding(padding),
              dilation=normalize_pair(dilation, "dilation"))
    y = ref.to_channels_last(ref.conv2d_forward(x64, w64, b.astype(F64), **kw))
    gx = ref.to_channels_last(ref.conv2d_grad_input(gy64, w64, x64.shape, **kw))
    gw = ref.conv2d_grad_weight(gy64, x64, w64.shape, **kw).transpose(2, 3, 1, 0)
    return y, gx, gw


@pytest.mark.parametrize("x_shape,c_out,kernel,stride,padding,dilation", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_blas_passes_match_the_reference(x_shape, c_out, kernel, stride, padding,
                                               dilation, dtype):
    """Forced on every pass: the forward with bias (and ReLU), the input gradient, the
    weight and bias gradients (float64 to 1e-10, float32 to 2e-5 of the scale)."""
    rng = np.random.default_rng(31)
    c = x_shape[3]
    x = (rng.standard_normal(x_shape) * 2).astype(dtype)
    w = rng.standard_normal(kernel + (c, c_out)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation,
              data_format="channels_last")
    y_shape = fastconv.conv2d_output_shape(x_shape, w.shape, **kw)
    gy = rng.standard_normal(y_shape).astype(dtype)
    want, want_gx, want_gw = _reference(x, w, b, gy, stride, padding, dilation)
    tol = 1e-10 if dtype == F64 else 2e-5
    g = conv._geometry(x.shape, w.shape, stride, padding, dilation, 1, "channels_last")
    with fastconv.force_conv_algorithm("im2col_blas"):
        y = fastconv.conv2d(x, w, b, **kw)
        yr = conv._conv_forward(g, x, w, b, dtype, relu=True)
        gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **kw)
    assert y.shape == want.shape and y.dtype == dtype and gx.shape == x.shape
    scale = max(1.0, np.abs(want).max(initial=0))
    np.testing.assert_allclose(yr, np.maximum(want, 0), rtol=tol, atol=tol * scale)
    for got, exp in ((y, want), (gx, want_gx), (gw, want_gw)):
        np.testing.assert_allclose(got, exp, rtol=tol,
                                   atol=tol * max(1.0, np.abs(exp).max(initial=0)))
    np.testing.assert_allclose(gb, gy.astype(F64).sum(axis=(0, 1, 2)), rtol=tol,
                               atol=tol * 10)


def _runs(x_shape, w_shape, pass_="forward", dtype="float32", **kw):
    return fastconv.explain_conv(x_shape, w_shape, data_format="channels_last",
                                 dtype=dtype, pass_=pass_, **kw).algorithm


@pytest.mark.parametrize("pass_", ["forward", "grad_input", "grad_weight"])
def test_im2col_blas_is_chosen_where_the_weight_outweighs_the_pixels(pass_):
    """The default where the weight has blas_weight_bytes_per_pixel or more per output
    pixel (512 -> 512 3x3 at 7x7 and 14x14, batch 1), not where the pixels use it
    enough (the same layer at 28x28, 256 channels at 14x14), nor channels_first."""
    per_pixel = tuning.current().blas_weight_bytes_per_pixel
    w512 = (3, 3, 512, 512)
    assert 9 * 512 * 512 * 4 >= 14 * 14 * per_pixel   # (the rule's premise here)
    assert _runs((1, 7, 7, 512), w512, pass_, padding=1) == "im2col_blas"
    assert _runs((1, 14, 14, 512), w512, pass_, padding=1) == "im2col_blas"
    assert _runs((1, 28, 28, 512), w512, pass_, padding=1) != "im2col_blas"
    assert _runs((1, 14, 14, 256), (3, 3, 256, 256), pass_, padding=1) != "im2col_blas"
    assert fastconv.explain_conv((1, 512, 7, 7), (512, 512, 3, 3), padding=1,
                                 pass_=pass_).algorithm != "im2col_blas"
    with tuning.override(blas_weight_bytes_per_pixel=per_pixel * 1000):
        assert _runs((1, 7, 7, 512), w512, pass_, padding=1) != "im2col_blas"


def test_im2col_blas_refuses_what_it_cannot_run():
    """groups, channels_first and a column matrix over blas_col_bytes: refused with the
    reason (forcing it raises ValueError naming it)."""
    e = fastconv.explain_conv((1, 8, 8, 4), (3, 3, 2, 4), groups=2,
                              data_format="channels_last")
    assert "groups" in e.refused["im2col_blas"]
    e = fastconv.explain_conv((1, 4, 8, 8), (4, 4, 3, 3))
    assert "channels_first" in e.refused["im2col_blas"]
    with tuning.override(blas_col_bytes=1000):
        e = fastconv.explain_conv((1, 8, 8, 4), (3, 3, 4, 4), padding=1,
                                  data_format="channels_last")
        assert "column matrix" in e.refused["im2col_blas"]
        x = np.zeros((1, 8, 8, 4), np.float32)
        with pytest.raises(ValueError, match="im2col_blas"):
            with fastconv.force_conv_algorithm("im2col_blas"):
                fastconv.conv2d(x, np.zeros((3, 3, 4, 4), np.float32), padding=1,
                                data_format="channels_last")


def test_im2col_blas_bits_do_not_depend_on_the_thread_count():
    """Its bands are the shape's: one thread and two give the same bits."""
    rng = np.random.default_rng(32)
    x = rng.standard_normal((1, 7, 7, 256)).astype(np.float32)
    w = rng.standard_normal((3, 3, 256, 300)).astype(np.float32)
    gy = rng.standard_normal((1, 7, 7, 300)).astype(np.float32)
    kw = dict(padding=1, data_format="channels_last")
    out = []
    before = _ext.openmp.get_max_threads()
    try:
        for threads in (1, 2):
            _ext.openmp.set_num_threads(threads)
            with fastconv.force_conv_algorithm("im2col_blas"):
                out.append((fastconv.conv2d(x, w, **kw),
                            *fastconv.conv2d_backward(gy, x, w, **kw)))
    finally:
        _ext.openmp.set_num_threads(before)
    for a, b in zip(*out):
        assert _ext.conv2d.same_bytes(a, b)


def test_im2col_blas_on_cropping_geometries():
    """The phases of a strided input gradient run forwards whose padding may be
    negative (a crop of x): im2col_blas, forced on those geometries, against the
    reference on x cropped and then padded (forward, input and weight gradients)."""
    from fastconv.ops.conv.algorithms.phases import phases
    rng = np.random.default_rng(33)
    g = conv._geometry((1, 11, 11, 3), (4, 4, 3, 4), 3, 2, 1, 1, "channels_last")
    cropping = [pg for *_, pg in phases(g) if pg is not None and
                min(pg.pad_top, pg.pad_bottom, pg.pad_left, pg.pad_right) < 0]
    assert cropping   # (the case has them)
    for pg in cropping:
        x = rng.standard_normal(pg.x_shape)
        w = rng.standard_normal(pg.weight_shape)
        gy = rng.standard_normal(pg.y_shape)
        t, b, l, r = pg.pad_top, pg.pad_bottom, pg.pad_left, pg.pad_right
        crop = x[:, max(0, -t):pg.h - max(0, -b), max(0, -l):pg.w - max(0, -r)]
        pads = ((max(t, 0), max(b, 0)), (max(l, 0), max(r, 0)))
        xc, w64 = ref.to_channels_first(crop), w.transpose(3, 2, 0, 1)
        want = ref.conv2d_forward(xc, w64, pads=pads)
        gyc = ref.to_channels_first(gy)
        want_gx = np.zeros(pg.x_shape)
        want_gx[:, max(0, -t):pg.h - max(0, -b), max(0, -l):pg.w - max(0, -r)] = \
            ref.to_channels_last(ref.conv2d_grad_input(gyc, w64, xc.shape, pads=pads))
        want_gw = ref.conv2d_grad_weight(gyc, xc, w64.shape, pads=pads)
        with fastconv.force_conv_algorithm("im2col_blas"):
            y = conv._conv_forward(pg, x, w, None, F64)
            gx = conv._backward(pg, gy, x, w, F64, True, False)[0]
            gw = conv._backward(pg, gy, x, w, F64, False, True)[1]
        np.testing.assert_allclose(y, ref.to_channels_last(want), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, want_gx, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw, want_gw.transpose(2, 3, 1, 0), rtol=1e-12,
                                   atol=1e-12)
