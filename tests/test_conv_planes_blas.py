"""planes_blas (fastconv/ops/conv/algorithms/planes.py): channels_first convolutions
as BLAS products over each image's planes (1x1) or column matrices, against the naive
reference loops on every pass, and the shape rules that make it the default."""
import numpy as np
import pytest

import fastconv
from fastconv import _ext, conv
from fastconv import reference as ref
from fastconv import tuning
from fastconv.shapes import normalize_pair, normalize_padding

F64 = np.float64

CASES = [  # (x_shape NCHW, c_out, kernel, stride, padding, dilation)
    ((1, 5, 6, 7), 9, (1, 1), 1, 0, 1),      # batch 1, odd sizes
    ((3, 4, 7, 7), 6, (1, 1), 2, 0, 1),      # strided: the last row and column read
    ((2, 8, 10, 7), 3, (1, 1), 3, 0, 1),     # a stride that leaves rows and columns unread
    ((4, 16, 1, 1), 16, (1, 1), 1, 0, 1),    # one pixel per plane
    ((2, 3, 5, 4), 40, (1, 1), (2, 1), 0, 1),   # uneven strides, more rows than pixels
    ((0, 4, 5, 5), 3, (1, 1), 1, 0, 1),      # an empty batch
    ((1, 7, 7, 7), 13, (3, 3), 1, 1, 1),     # 3x3 same padding
    ((2, 5, 9, 6), 4, (3, 3), 2, 1, 1),      # strided, odd sizes
    ((1, 3, 8, 8), 6, (3, 3), 1, 2, 2),      # dilated
    ((3, 5, 6, 7), 2, (2, 2), 2, 0, 1),      # kernel = stride
    ((1, 2, 5, 5), 3, (5, 5), 3, ((0, 2), (1, 0)), 1),   # uneven padding, k > stride
    ((1, 3, 1, 1), 2, (3, 3), 1, 1, 1),      # one pixel: all but one tap padding
    ((2, 3, 4, 4), 5, (1, 1), 1, 1, 1),      # a padded 1x1
]


def _reference(x, w, b, gy, stride, padding, dilation):
    kw = dict(stride=normalize_pair(stride, "stride"), pads=normalize_padding(padding),
              dilation=normalize_pair(dilation, "dilation"))
    x64, w64, gy64 = x.astype(F64), w.astype(F64), gy.astype(F64)
    return (ref.conv2d_forward(x64, w64, b.astype(F64), **kw),
            ref.conv2d_grad_input(gy64, w64, x64.shape, **kw),
            ref.conv2d_grad_weight(gy64, x64, w64.shape, **kw))


def _close(got, want, tol):
    np.testing.assert_allclose(got, want, rtol=tol,
                               atol=tol * max(1.0, np.abs(want).max(initial=0)))


@pytest.mark.parametrize("x_shape,c_out,kernel,stride,padding,dilation", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_per", [None, 2])
def test_planes_blas_passes_match_the_reference(x_shape, c_out, kernel, stride, padding,
                                               dilation, dtype, n_per):
    """Forced on every pass: the forward with bias (and with ReLU, ReLU6 and tanh
    fused), the input gradient, the weight gradient (per image at batch 1, partial
    sums over groups of images otherwise; n_per=2: groups of two images) and the bias
    gradient; float64 to 1e-10, float32 to 2e-5 of the scale."""
    rng = np.random.default_rng(41)
    x = (rng.standard_normal(x_shape) * 2).astype(dtype)
    w = rng.standard_normal((c_out, x_shape[1]) + kernel).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y_shape = fastconv.conv2d_output_shape(x_shape, w.shape, **kw)
    gy = rng.standard_normal(y_shape).astype(dtype)
    want, want_gx, want_gw = _reference(x, w, b, gy, stride, padding, dilation)
    tol = 1e-10 if dtype == F64 else 2e-5
    g = conv._geometry(x.shape, w.shape, stride, padding, dilation, 1, "channels_first")
    override = {} if n_per is None else dict(
        max_weight_partials=max(1, -(-x_shape[0] // n_per)), min_partial_pixels=1)
    with tuning.override(**override), fastconv.force_conv_algorithm("planes_blas"):
        assert fastconv.explain_conv(x.shape, w.shape, dtype=dtype, pass_="grad_weight",
                                     **kw).algorithm == "planes_blas"
        y = fastconv.conv2d(x, w, b, **kw)
        relu = conv._conv_forward(g, x, w, b, dtype, relu=True)
        relu6 = conv._conv_forward(g, x, w, b, dtype, relu=conv._plan.RELU6)
        tanh = conv._conv_forward(g, x, w, None, dtype, tanh=True)
        gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **kw)
    assert y.shape == want.shape and y.dtype == dtype and gx.shape == x.shape
    for got, exp in ((y, want), (relu, np.maximum(want, 0)),
                     (relu6, np.clip(want, 0, 6)), (tanh, np.tanh(want - b[:, None, None])),
                     (gx, want_gx), (gw, want_gw)):
        _close(got, exp, tol)
    _close(gb, gy.astype(F64).sum(axis=(0, 2, 3)), tol * 10)


def test_planes_blas_carries_a_nan_weight_to_its_channel():
    """No shortcut over zeros: a NaN weight makes every output of its channel NaN
    (0 * NaN), as the reference's arithmetic does, and no other channel's."""
    x = np.zeros((2, 64, 16, 16), np.float32)
    w = np.ones((64, 64, 1, 1), np.float32)
    w[3, 1] = np.nan
    with fastconv.force_conv_algorithm("planes_blas"):
        y = fastconv.conv2d(x, w)
        gx = fastconv.conv2d_grad_input(np.ones_like(y), w, x.shape)
    assert np.isnan(y[:, 3]).all() and not np.isnan(np.delete(y, 3, axis=1)).any()
    assert np.isnan(gx[:, 1]).all() and not np.isnan(np.delete(gx, 1, axis=1)).any()


def test_planes_blas_output_pass_keeps_minus_zero_and_nan():
    """The output pass's ReLU and ReLU6 are the conv kernels' (a clamp: -0.0 and NaN
    kept, where Keras's relu gives +0.0); a bias is added per channel."""
    from fastconv.ops.conv.algorithms import planes
    for act, top in ((1, 7.0), (2, 6.0)):
        y = np.array([[[-0.0, -1.0, 7.0, np.nan]]], np.float32)
        planes._output_pass(y, None, act, np.float32)
        assert np.signbit(y[0, 0, 0]) and y[0, 0, 0] == 0
        np.testing.assert_array_equal(y[0, 0, 1:], [0.0, top, np.nan])
    y = np.array([[[-0.0, 1.0], [2.0, -3.0]]], np.float32)
    planes._output_pass(y, np.array([0.5, -1.0], np.float32), 1, np.float32)
    np.testing.assert_array_equal(y.ravel(), [0.5, 1.5, 1.0, 0.0])


def _runs(x_shape, c_out, pass_="forward", **kw):
    return fastconv.explain_conv(x_shape, (c_out, x_shape[1], 1, 1), pass_=pass_,
                                 **kw).algorithm


@pytest.mark.parametrize("pass_", ["forward", "grad_input"])
def test_planes_blas_is_chosen_from_the_products_size(pass_):
    """The default for channels_first 1x1 convolutions of planes_min_macs or more per
    image, at any batch and stride (ResNet-50's and MobileNet's at 224x224); not for
    smaller products (MobileNetV2's at 32x32), nor where tuning raises the bound."""
    least = tuning.current().planes_min_macs
    assert 16 * 96 * 16 * 16 < least <= 256 * 64 * 56 * 56   # (the rule's premise here)
    assert _runs((1, 256, 56, 56), 64, pass_) == "planes_blas"
    assert _runs((8, 1024, 14, 14), 256, pass_) == "planes_blas"
    assert _runs((1, 2048, 7, 7), 512, pass_) == "planes_blas"
    assert _runs((2, 256, 56, 56), 512, pass_, stride=2) == "planes_blas"
    assert _runs((128, 16, 16, 16), 96, pass_) != "planes_blas"
    assert _runs((128, 144, 4, 4), 32, pass_) != "planes_blas"
    with tuning.override(planes_min_macs=256 * 64 * 56 * 56 + 1):
        assert _runs((1, 256, 56, 56), 64, pass_) != "planes_blas"


def test_planes_blas_weight_gradient_rule_and_refusals():
    """A 1x1 weight gradient: the default at batch 1, declined over a batch.  Refused
    (with the reason; forcing it raises ValueError naming it): channels_last, groups,
    column matrices over blas_col_bytes."""
    assert _runs((1, 256, 56, 56), 64, "grad_weight") == "planes_blas"
    e = fastconv.explain_conv((8, 256, 56, 56), (64, 256, 1, 1), pass_="grad_weight")
    assert e.algorithm != "planes_blas" and "batch" in e.refused["planes_blas"]
    e = fastconv.explain_conv((1, 56, 56, 256), (1, 1, 256, 64),
                              data_format="channels_last")
    assert "channels_last" in e.refused["planes_blas"]
    e = fastconv.explain_conv((1, 64, 56, 56), (64, 32, 1, 1), groups=2)
    assert "groups" in e.refused["planes_blas"]
    with tuning.override(blas_col_bytes=1000):
        e = fastconv.explain_conv((1, 4, 8, 8), (4, 4, 3, 3), padding=1)
        assert "column matrices" in e.refused["planes_blas"]
        x = np.zeros((1, 4, 8, 8), np.float32)
        with pytest.raises(ValueError, match="planes_blas"):
            with fastconv.force_conv_algorithm("planes_blas"):
                fastconv.conv2d(x, np.zeros((4, 4, 3, 3), np.float32), padding=1)


@pytest.mark.parametrize("pass_", ["forward", "grad_input", "grad_weight"])
def test_planes_blas_takes_larger_kernels_where_the_weight_outweighs_the_pixels(pass_):
    """Above 1x1: the default where the weight has planes_weight_bytes_per_pixel or
    more per output pixel of the call (512 -> 512 3x3 at 7x7 up to batch 4 and at
    14x14 batch 1), not where the pixels use it enough (batch 8 at 7x7, 256 channels
    at 14x14), nor where tuning raises the bound."""
    least = tuning.current().planes_weight_bytes_per_pixel
    w512 = (512, 512, 3, 3)
    assert 9 * 512 * 512 * 4 >= 4 * 49 * least > 9 * 512 * 512 * 4 / 2   # (premise)
    runs = lambda xs, ws: fastconv.explain_conv(xs, ws, padding=1, pass_=pass_).algorithm
    assert runs((1, 512, 7, 7), w512) == "planes_blas"
    assert runs((4, 512, 7, 7), w512) == "planes_blas"
    assert runs((1, 512, 14, 14), w512) == "planes_blas"
    assert runs((8, 512, 7, 7), w512) != "planes_blas"
    assert runs((1, 256, 14, 14), (256, 256, 3, 3)) != "planes_blas"
    with tuning.override(planes_weight_bytes_per_pixel=least * 1000):
        assert runs((1, 512, 7, 7), w512) != "planes_blas"


def test_planes_blas_bits_do_not_depend_on_the_thread_count():
    """Its bands and partial sums are the shape's: one thread and two give the same
    bits on every pass (batch 1: bands of rows and of columns; batch 3: partials)."""
    rng = np.random.default_rng(42)
    cases = [((1, 256, 14, 14), 300, 1), ((1, 32, 40, 40), 64, 1), ((3, 64, 9, 9), 96, 2)]
    before = _ext.openmp.get_max_threads()
    for x_shape, c_out, stride in cases:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal((c_out, x_shape[1], 1, 1)).astype(np.float32)
        gy = rng.standard_normal(fastconv.conv2d_output_shape(
            x_shape, w.shape, stride=stride)).astype(np.float32)
        out = []
        try:
            for threads in (1, 2):
                _ext.openmp.set_num_threads(threads)
                with tuning.override(blas_band_macs=1 << 14), \
                        fastconv.force_conv_algorithm("planes_blas"):
                    out.append((fastconv.conv2d(x, w, stride=stride),
                                *fastconv.conv2d_backward(gy, x, w, stride=stride)))
        finally:
            _ext.openmp.set_num_threads(before)
        for a, b in zip(*out):
            assert _ext.conv2d.same_bytes(a, b), x_shape


def test_planes_blas_inside_a_model_matches_channels_last():
    """A channels_first Conv2D 1x1 layer at batch 1 (every pass on planes_blas) gives
    the channels_last layer's predictions and, after a training step, its weights,
    within float32 rounding."""
    from fastconv import layers as L
    from fastconv.models import Sequential
    rng = np.random.default_rng(43)
    x = rng.standard_normal((1, 64, 32, 32)).astype(np.float32)
    xl = x.transpose(0, 2, 3, 1)
    target = rng.standard_normal((1, 10)).astype(np.float32)
    models = []
    for fmt, shape in (("channels_first", x.shape[1:]), ("channels_last", xl.shape[1:])):
        models.append(Sequential([L.Input(shape),
                                  L.Conv2D(128, 1, activation="relu", data_format=fmt),
                                  L.GlobalAveragePooling2D(data_format=fmt),
                                  L.Dense(10)]))
        models[-1].compile(optimizer="sgd", loss="mse")
    cf, cl = models
    cf.set_weights(cl.get_weights())   # (Keras's kernel layout in both formats)
    for p in ("forward", "grad_input", "grad_weight"):
        assert fastconv.explain_conv(x.shape, (128, 64, 1, 1),
                                     pass_=p).algorithm == "planes_blas"
    np.testing.assert_allclose(cf.predict(x, verbose=0), cl.predict(xl, verbose=0),
                               rtol=1e-5, atol=1e-5)
    cf.train_on_batch(x, target)
    cl.train_on_batch(xl, target)
    for a, b in zip(cf.get_weights(), cl.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
