"""Every compiled conv2d path against the naive reference, for every micro-kernel build.

The conv engine (fastconv/ops/conv) picks an algorithm per pass: for the forward and
weight gradient Winograd, narrow, wide, pixel-row, the stride-1 "shifted" kernels
(padded image + offset table) or the generic implicit GEMM (im2col into packed panels);
for the input gradient, one of the forward's on grad_y with flipped weights (stride 1,
output at least kernel-sized) or a scatter over groups of whole images; channels_first
calls of 3x3 and larger kernels on the channels_last ones (via_last).  Each is checked
here (forced with force_conv_algorithm where the default would not take it) on shapes
that leave remainders in every blocking (channel counts that are not multiples of the
micro-tile, pixel counts that are not multiples of a strip, several partial
weight-gradient sums), with each ISA this CPU can run (the ``isa`` fixture, conftest).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import _ext, conv
from fastconv import reference as ref
from fastconv import tuning
from fastconv.ops.conv.algorithms import winograd as _winograd
from fastconv.ops.conv import plan as _plan
from fastconv.ops.conv.algorithms.dense import dense_chunks
from fastconv.ops.conv.algorithms.via_last import VIA_LAST_MIN_CHANNELS
from fastconv.ops.conv.geometry import geometry
from fastconv.shapes import normalize_pair, normalize_padding, resolve_padding

F64 = np.float64
_ISA_ORDER = ["portable", "avx2", "avx512"]
AVAILABLE_ISAS = _ISA_ORDER[:_ISA_ORDER.index(_ext.conv2d.best_isa()) + 1]


def supported_passes(name, x_shape, weight_shape, dtype, weight_finite=True, **kwargs):
    """{pass: name} for each pass whose algorithm `name` can run this convolution: the
    keywords of force_conv_algorithm that force it wherever it applies."""
    out = {}
    for pass_ in ("forward", "grad_input", "grad_weight"):
        if name in fastconv.conv_algorithms(pass_) and name in fastconv.explain_conv(
                x_shape, weight_shape, dtype=dtype, pass_=pass_,
                weight_finite=weight_finite, **kwargs).runnable:
            out[pass_] = name
    return out


def _explain(x_shape, w_shape, dtype, pass_="forward", stride=1, padding=0, dilation=1,
             groups=1, data_format="channels_last"):
    return fastconv.explain_conv(x_shape, w_shape, stride, padding, dilation, groups,
                                 data_format, dtype=dtype, pass_=pass_)


def _runs(*args, **kwargs):
    """The algorithm explain_conv chooses."""
    return _explain(*args, **kwargs).algorithm


def _can_run(name, *args, **kwargs):
    return name in _explain(*args, **kwargs).runnable


def _last_supported(name, n, c, h, w, c_out, kh, kw, stride, padding, dilation, dtype):
    """{pass: name} where the algorithm can run this channels_last, one-group case."""
    return supported_passes(name, (n, h, w, c), (kh, kw, c, c_out), dtype, stride=stride,
                            padding=padding, dilation=dilation,
                            data_format="channels_last")


def _pads(padding, hw, khw, stride, dilation):
    k_eff = tuple((k - 1) * d + 1 for k, d in zip(khw, dilation))
    return resolve_padding(normalize_padding(padding), hw, k_eff, stride)


def _case(seed, n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups, dtype,
          data_format, force=None):
    """conv2d and conv2d_backward of one random case against the reference; force: the
    force_conv_algorithm keywords to run them under."""
    if force:
        with fastconv.force_conv_algorithm(**force):
            return _case(seed, n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups,
                         dtype, data_format)
    rng = np.random.default_rng(seed)
    stride = normalize_pair(stride, "stride")
    dilation = normalize_pair(dilation, "dilation")
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((c_out, c // groups, kh, kw))
    b = rng.standard_normal(c_out)
    pads = _pads(padding, (h, w), (kh, kw), stride, dilation)
    y_ref = ref.conv2d_forward(x, wt, b, stride, pads, dilation, groups)
    gy = rng.standard_normal(y_ref.shape)
    refs = (y_ref, ref.conv2d_grad_input(gy, wt, x.shape, stride, pads, dilation, groups),
            ref.conv2d_grad_weight(gy, x, wt.shape, stride, pads, dilation, groups),
            ref.conv2d_grad_bias(gy))
    last = data_format == "channels_last"
    xi = (ref.to_channels_last(x) if last else x).astype(dtype)
    wi = (np.ascontiguousarray(wt.transpose(2, 3, 1, 0)) if last else wt).astype(dtype)
    gyi = (ref.to_channels_last(gy) if last else gy).astype(dtype)
    args = (stride, padding, dilation, groups, data_format)
    y = fastconv.conv2d(xi, wi, b.astype(dtype), *args)
    gx, gw, gb = fastconv.conv2d_backward(gyi, xi, wi, *args)
    if last:
        y, gx = ref.to_channels_first(y), ref.to_channels_first(gx)
        gw = np.ascontiguousarray(gw.transpose(3, 2, 0, 1))
    for a in (y, gx, gw, gb):
        assert a.dtype == dtype
    tol = 2e-4 if dtype == np.float32 else 1e-10
    kscale = [np.sqrt(c // groups * kh * kw), np.sqrt(c_out * kh * kw),
              np.sqrt(n * y_ref.shape[2] * y_ref.shape[3]), np.sqrt(gy.size)]
    for got, want, s in zip((y, gx, gw, gb), refs, kscale):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * s)
    # The stand-alone bias gradient is the very same sum as the fused one.
    np.testing.assert_array_equal(fastconv.conv2d_grad_bias(gyi, data_format), gb)
    return x, wt, b, gy, pads


PATH_CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups
    pytest.param(3, 5, 11, 13, 9, 3, 3, 1, "valid", 1, 1, id="shifted-valid"),
    pytest.param(2, 3, 10, 9, 17, 3, 2, 1, "same", 1, 1, id="shifted-same-odd-pad"),
    pytest.param(2, 4, 9, 12, 6, 2, 3, 1, ((2, 0), (1, 3)), (2, 1), 2, id="shifted-asym"),
    pytest.param(37, 3, 6, 7, 5, 3, 3, 1, 1, 1, 1, id="shifted-many-partials"),
    pytest.param(2, 2, 40, 41, 3, 5, 5, 1, 2, 1, 1, id="shifted-long-rows"),
    pytest.param(3, 33, 6, 6, 40, 3, 3, 1, "same", 1, 1, id="shifted-wide-channels"),
    pytest.param(5, 16, 5, 5, 21, 5, 5, 1, "valid", 1, 1, id="dense-one-output-pixel"),
    pytest.param(70, 3, 4, 3, 9, 4, 3, 1, "valid", 1, 1, id="dense-many-images"),
    pytest.param(48, 4, 3, 3, 20, 3, 3, 1, "valid", 1, 1, id="dense-batch-as-row-images"),
    pytest.param(3, 4, 5, 5, 6, 5, 5, 1, 1, 1, 1, id="small-output-padded"),
    pytest.param(2, 4, 5, 5, 6, 5, 5, 1, "valid", 1, 2, id="one-pixel-groups"),
    pytest.param(3, 4, 4, 9, 5, 3, 7, 1, 0, 1, 1, id="generic-short-rows"),
    pytest.param(3, 3, 11, 10, 7, 3, 3, 2, "same", 1, 1, id="generic-stride2"),
    pytest.param(2, 6, 9, 11, 6, 3, 2, (3, 1), 1, (1, 2), 3, id="generic-stride31"),
    pytest.param(2, 1, 12, 12, 6, 5, 5, 1, "valid", 1, 1, id="one-input-channel"),
    pytest.param(2, 4, 7, 7, 4, 3, 3, 1, 1, 1, 4, id="depthwise"),
]


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation,groups", PATH_CASES)
def test_paths_float64(isa, n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups,
                       data_format):
    _case(11, n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups, np.float64,
          data_format)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("case", [
    (4, 32, 12, 12, 32, 3, 3, 1, "valid", 1, 1),
    (3, 3, 16, 15, 32, 3, 3, 1, "same", 1, 1),
    (3, 8, 9, 9, 12, 3, 3, 2, 1, 1, 1),
    (9, 16, 5, 5, 24, 5, 5, 1, "valid", 1, 1),
])
def test_paths_float32(isa, case, data_format):
    _case(12, *case, dtype=np.float32, data_format=data_format)


WINOGRAD_CASES = [
    # n, c, h, w, c_out, padding -- 3x3, stride 1, channels_last, float32
    pytest.param(3, 16, 9, 8, 20, "valid", id="odd-rows-cout-below-tile"),
    pytest.param(2, 17, 7, 7, 33, "same", id="cin-remainder-cout-past-tile"),
    pytest.param(5, 32, 12, 10, 16, ((2, 0), (1, 3)), id="asymmetric-padding"),
    pytest.param(1, 16, 2, 2, 16, "same", id="one-tile"),
    pytest.param(19, 24, 6, 5, 40, 1, id="many-images-blocks-and-partials"),
    pytest.param(2, 16, 20, 22, 18, 2, id="wide-padding"),
    pytest.param(3, 16, 9, 11, 16, "valid", id="partial-4x4-tiles"),  # 7x9 output
]


@pytest.fixture(params=[(4, 4), (2, 2), (5, 5), (4, 5), (None, None)],
                ids=["F4x4", "F2x2", "F5x5", "F4x4-F5x5-gradients", "default"])
def winograd_tile(request):
    """(forward tile, gradient tile) of the Winograd passes (None: chosen per size)."""
    with tuning.override(winograd_tile=request.param[0],
                         winograd_grad_tile=request.param[1]):
        yield request.param


@pytest.mark.parametrize("n,c,h,w,c_out,padding", WINOGRAD_CASES)
def test_winograd_float32(isa, winograd_tile, n, c, h, w, c_out, padding):
    """The Winograd F(4x4, 3x3) and F(2x2, 3x3) kernels: the forward, the stride-1
    input gradient (the forward on grad_y) and the weight gradient, against the naive
    reference; float64, channels_first and narrow channel counts stay off them."""
    f4, f2 = winograd_tile[0] or 4, winograd_tile[1]
    chosen = _runs((n, h, w, c), (3, 3, c, c_out), np.float32, padding=padding)
    assert chosen.startswith("winograd") and (chosen == f"winograd_f{f4}" or
                                              winograd_tile[0] is None)
    assert _runs((n, h, w, c), (3, 3, c, c_out), np.float32, "grad_weight",
                 padding=padding) == f"winograd_f{f2 or chosen[-1]}" or f2 is None
    assert not _runs((n, h, w, c), (3, 3, c, c_out), np.float64,
                     padding=padding).startswith("winograd")
    assert not _runs((n, c, h, w), (c_out, c, 3, 3), np.float32, padding=padding,
                     data_format="channels_first").startswith("winograd")
    assert not _runs((n, h, w, 8), (3, 3, 8, c_out), np.float32,
                     padding=padding).startswith("winograd")
    _case(15, n, c, h, w, c_out, 3, 3, 1, padding, 1, 1, np.float32, "channels_last")


@pytest.mark.parametrize("n", [24, 1])
def test_winograd_is_the_same_for_any_thread_count(winograd_tile, n):
    """The Winograd forward and gradients give the same bits on one, two and three
    threads (each output from one tile's product; the weight gradient's partial sums
    over fixed groups of images, added in order; with fewer groups than threads, a
    batch of one, each group's entries cut into parts)."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((n, 16, 16, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 32, 48)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    gy = rng.standard_normal((n, 16, 16, 48)).astype(np.float32)
    g = conv._geometry(x.shape, w.shape, 1, "same", 1, 1, "channels_last")
    assert conv._forward_path(g, np.float32) == "winograd"
    before = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            fastconv.set_num_threads(threads)
            results.append((fastconv.conv2d(x, w, b, padding="same",
                                            data_format="channels_last"),
                            *fastconv.conv2d_backward(gy, x, w, padding="same",
                                                      data_format="channels_last")))
    finally:
        fastconv.set_num_threads(before)
    for other in results[1:]:
        for a, o in zip(results[0], other):
            np.testing.assert_array_equal(a, o)
    # and the weight gradient against the reference loops (float64), where the batch
    # of one cuts the entries
    want = ref.conv2d_grad_weight(ref.to_channels_first(gy.astype(F64)),
                                  ref.to_channels_first(x.astype(F64)),
                                  (48, 32, 3, 3), pads=((1, 1), (1, 1)))
    gw = results[0][2]
    np.testing.assert_allclose(gw, want.transpose(2, 3, 1, 0), rtol=2e-3,
                               atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("generic", ["im2col", "shifted"])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation,groups", PATH_CASES)
def test_channels_last_on_the_generic_kernels(isa, generic, n, c, h, w, c_out, kh, kw,
                                              stride, padding, dilation, groups):
    """channels_last through the layout-generic kernels, forced: im2col (the input
    gradient's scatter where it does not gather) or the shifted kernels where they run
    (stride 1)."""
    force = supported_passes(generic, (n, h, w, c), (kh, kw, c // groups, c_out),
                             np.float64, stride=stride, padding=padding,
                             dilation=dilation, groups=groups, data_format="channels_last")
    if generic == "im2col":
        assert set(force) >= {"forward", "grad_weight"}
        force.setdefault("grad_input", "scatter")
    elif not force:
        pytest.skip("stride above 1: no shifted kernels")
    _case(13, n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups, np.float64,
          "channels_last", force)


PIXEL_ROW_CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation -- one group, channels_last
    pytest.param(3, 5, 9, 11, 40, 3, 3, 1, "same", 1, id="same-cout-remainder"),
    pytest.param(2, 4, 10, 9, 33, 3, 2, 1, "valid", 1, id="read-in-place"),
    pytest.param(3, 3, 12, 13, 17, 3, 3, 2, ((1, 2), (0, 1)), 1, id="stride2-asym-pad"),
    pytest.param(2, 6, 13, 12, 24, 3, 3, 1, "same", (2, 3), id="dilated"),
    pytest.param(2, 2, 14, 15, 70, 5, 4, (3, 2), 2, (1, 2), id="stride-dilation-mixed"),
    pytest.param(17, 1, 6, 7, 16, 3, 3, 1, 1, 1, id="one-channel-many-partials"),
    pytest.param(2, 9, 4, 4, 32, 1, 1, 1, "valid", 1, id="pointwise-tail-tile"),
    pytest.param(2, 3, 4, 5, 17, 3, 3, 1, 4, 1, id="tiles-wholly-in-padding"),
    pytest.param(2, 3, 7, 6, 20, 3, 3, (2, 1), ((5, 3), (1, 1)), (2, 1),
                 id="padded-rows-strided-dilated"),
    # images whose input outgrows the forward's chunk of pixels (FC_PX_CHUNK_BYTES),
    # over several channel blocks (batches of 4 and more take all blocks per image):
    # the chunks and their last partial one
    pytest.param(4, 64, 30, 30, 40, 1, 1, 1, "valid", 1, id="1x1-pixel-chunks"),
    pytest.param(4, 16, 36, 36, 40, 3, 3, 1, 1, 1, id="3x3-pixel-chunks"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation", PIXEL_ROW_CASES)
def test_pixel_row_paths(isa, dtype, n, c, h, w, c_out, kh, kw, stride, padding,
                         dilation):
    """The channels_last pixel-row kernels (forward, weight gradient, and the stride-1
    input gradient that runs the forward on grad_y with cropping/full padding)."""
    force = _last_supported("pixel", n, c, h, w, c_out, kh, kw, stride, padding, dilation,
                            dtype)
    assert set(force) >= {"forward", "grad_weight"}
    _case(14, n, c, h, w, c_out, kh, kw, stride, padding, dilation, 1, dtype,
          "channels_last", force)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("half", [True, False])
@pytest.mark.parametrize("n,c,h,w,kh,kw,stride,padding,dilation", [
    pytest.param(5, 6, 9, 10, 3, 3, 1, "same", 1, id="stride1"),
    pytest.param(3, 3, 11, 12, 3, 2, 2, ((1, 0), (0, 1)), (1, 2), id="stride2-dilated"),
])
def test_pixel_row_tile_of_exactly_one_panel(isa, dtype, half, n, c, h, w, kh, kw, stride,
                                             padding, dilation):
    """C_out of exactly one tile's columns, where the weight gradient reads grad_y in
    place as its panel: the full tile, and the half-width tile (one vector of columns)
    that such layers take where the ISA has one (the forward too when the wide kernels
    do not apply: stride 2)."""
    c_out = _ext.conv2d.pixel_tile(dtype == F64, half)[1]
    force = _last_supported("pixel", n, c, h, w, c_out, kh, kw, stride, padding, dilation,
                            dtype)
    assert set(force) >= {"forward", "grad_weight"}
    with fastconv.force_conv_algorithm("pixel"):
        plan = _explain((n, h, w, c), (kh, kw, c, c_out), dtype, "grad_weight",
                        stride, padding, dilation).plan
    if half and not plan.half:
        pytest.skip(f"the {isa} build has no half-width pixel-row tile")
    assert plan.half == half
    _case(15, n, c, h, w, c_out, kh, kw, stride, padding, dilation, 1, dtype,
          "channels_last", force)


NARROW_CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation -- one group, channels_last,
    # few output channels, C a multiple of every build's vector length
    pytest.param(2, 32, 9, 8, 3, 3, 3, 1, "same", 1, id="same-3-out"),
    pytest.param(3, 32, 10, 11, 8, 3, 2, 2, ((1, 0), (2, 1)), (1, 2), id="stride2-dilated"),
    pytest.param(2, 48, 9, 10, 5, 5, 5, 1, "valid", 1, id="two-channel-blocks-tail"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation", NARROW_CASES)
def test_narrow_forward_paths(isa, dtype, n, c, h, w, c_out, kh, kw, stride, padding,
                              dilation):
    """The narrow kernel (few output channels, vectorised along the input channels)."""
    force = _last_supported("narrow", n, c, h, w, c_out, kh, kw, stride, padding,
                            dilation, dtype)
    assert "forward" in force
    _case(17, n, c, h, w, c_out, kh, kw, stride, padding, dilation, 1, dtype,
          "channels_last", force)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_narrow_kernel_runs_the_input_gradient_of_few_input_channels(isa, dtype):
    """3 input channels, 32 outputs (cifar.c1's shape): the stride-1 input gradient is a
    forward from 32 to 3 channels, which the narrow kernel computes."""
    assert _runs((2, 9, 10, 3), (3, 3, 3, 32), dtype, "grad_input",
                 padding="same") == "narrow"
    _case(18, 2, 3, 9, 10, 32, 3, 3, 1, "same", 1, 1, dtype, "channels_last")


def test_pixel_forward_of_one_image_splits_its_pixels():
    """A batch of one with a single block of output channels: the pixel-row forward
    cuts the image's pixel tiles into parts (each with its own padded copy).  The same
    bits on 1, 2 and 3 threads and the reference's values (MobileNet's stem shape,
    smaller)."""
    rng = np.random.default_rng(20)
    x = rng.standard_normal((1, 61, 59, 3))   # (31 x 30 pixels: enough for threads)
    w = rng.standard_normal((3, 3, 3, 29))
    b = rng.standard_normal(29)
    assert _runs(x.shape, w.shape, np.float64, stride=2, padding=1) == "pixel"
    out = _on_thread_counts(lambda: fastconv.conv2d(x, w, b, stride=2, padding=1,
                                                    data_format="channels_last"))
    _assert_all_equal(out)
    want = ref.conv2d_forward(ref.to_channels_first(x), w.transpose(3, 2, 0, 1), b,
                              stride=(2, 2), pads=((1, 1), (1, 1)))
    np.testing.assert_allclose(out[0], ref.to_channels_last(want), rtol=1e-12,
                               atol=1e-12)


def test_depthwise_weight_gradient_of_one_image_splits_its_channels():
    """A batch of one with fewer channel blocks than threads: the channels_last
    depthwise weight gradient takes narrower blocks of whole vectors (40 channels, a
    tail).  The same bits on 1, 2 and 3 threads and the reference's values."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 90, 90, 40))   # (2.9e6 multiply-adds: two threads)
    w = rng.standard_normal((3, 3, 1, 40))
    gy = rng.standard_normal((1, 90, 90, 40))
    assert _runs(x.shape, w.shape, np.float64, "grad_weight", padding=1,
                 groups=40) == "depthwise"
    out = _on_thread_counts(lambda: tuple(fastconv.conv2d_backward(
        gy, x, w, padding=1, groups=40, data_format="channels_last")[1:]))
    _assert_all_equal(out)
    want = ref.conv2d_grad_weight(ref.to_channels_first(gy), ref.to_channels_first(x),
                                  (40, 1, 3, 3), pads=((1, 1), (1, 1)), groups=40)
    np.testing.assert_allclose(out[0][0], want.transpose(2, 3, 1, 0), rtol=1e-11,
                               atol=1e-11)


def test_narrow_forward_of_one_image_splits_its_pixels():
    """A batch of one: the narrow forward cuts the image's pixel tiles into parts for
    the threads (each with its own padded copy).  The same bits on 1, 2 and 3 threads
    (17 x 19 pixels, enough work for threads; the last tile partly past the image) and
    the reference's values."""
    rng = np.random.default_rng(19)
    x = rng.standard_normal((1, 19, 19, 32))
    w = rng.standard_normal((3, 3, 32, 5))
    b = rng.standard_normal(5)
    assert _runs(x.shape, w.shape, np.float64, padding=(0, 1)) == "narrow"
    out = _on_thread_counts(lambda: fastconv.conv2d(x, w, b, padding=(0, 1),
                                                    data_format="channels_last"))
    _assert_all_equal(out)
    assert out[0].shape == (1, 17, 19, 5)
    want = ref.conv2d_forward(ref.to_channels_first(x), w.transpose(3, 2, 0, 1), b,
                              pads=((0, 0), (1, 1)))
    np.testing.assert_allclose(out[0], ref.to_channels_last(want), rtol=1e-12,
                               atol=1e-12)


WIDE_CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation -- one group, channels_last,
    # stride 1, few channels: the wide kernels (forward, weight gradient, and the input
    # gradient as a forward on grad_y)
    pytest.param(3, 1, 12, 20, 6, 5, 5, 1, "valid", 1, id="lenet-c1-like"),
    pytest.param(2, 6, 14, 14, 16, 5, 5, 1, "valid", 1, id="lenet-c3-like"),
    pytest.param(2, 3, 9, 23, 13, 3, 3, 1, ((1, 2), (0, 3)), (2, 1), id="dilated-asym-13"),
    pytest.param(2, 2, 7, 40, 5, 4, 7, 1, ((2, 0), (3, 1)), 1, id="kw7-two-column-blocks"),
    pytest.param(2, 5, 8, 12, 3, 3, 3, 1, 4, 1, id="padding-past-kernel-crops"),
    pytest.param(17, 2, 6, 18, 4, 3, 3, 1, "same", 1, id="many-partials"),
    # every block size (1, 2, 4, 6, 8 channels) somewhere among the ISAs; padding rows
    # past the kernel's reach, whose taps the forward skips
    pytest.param(2, 2, 11, 19, 15, 5, 3, 1, ((4, 4), (1, 1)), 1, id="15-wide-padding"),
    pytest.param(2, 3, 5, 21, 9, 3, 3, 1, "valid", 1, id="three-rows-nine-channels"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation", WIDE_CASES)
def test_wide_paths(isa, dtype, n, c, h, w, c_out, kh, kw, stride, padding, dilation):
    """The wide kernels (few channels, vectorised along the output rows), forced over
    the pixel-row and narrow kernels whatever their tiles (they differ by ISA and
    dtype) on every pass they can run."""
    force = _last_supported("wide", n, c, h, w, c_out, kh, kw, stride, padding, dilation,
                            dtype)
    assert set(force) >= {"forward", "grad_weight"}
    _case(19, n, c, h, w, c_out, kh, kw, stride, padding, dilation, 1, dtype,
          "channels_last", force)


@pytest.fixture
def forced_wide():
    with fastconv.force_conv_algorithm("wide"):
        yield


def test_wide_kernels_fused_relu_and_no_bias(isa, forced_wide):
    rng = np.random.default_rng(20)
    x, w = rng.standard_normal((3, 11, 21, 2)), rng.standard_normal((3, 3, 2, 6))
    b = rng.standard_normal(6)
    g = conv._geometry(x.shape, w.shape, 1, "same", 1, 1, "channels_last")
    want = ref.conv2d_forward(ref.to_channels_first(x), w.transpose(3, 2, 0, 1), b, (1, 1),
                              ((1, 1), (1, 1)))
    got = conv._conv_forward(g, x, w, b, np.float64, relu=True)
    np.testing.assert_allclose(ref.to_channels_first(got), np.maximum(want, 0),
                               rtol=1e-12, atol=1e-12)
    got = conv._conv_forward(g, x, w, None, np.float64)
    np.testing.assert_allclose(ref.to_channels_first(got), want - b[:, None, None],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_forward_with_tanh_is_tanh_of_the_convolution(isa, dtype):
    """tanh=True (the Conv2D layer's tanh) on every forward path -- fused into the wide
    and pixel-row kernels' output pass in float32, a pass after the others -- gives
    act.tanh of the plain convolution: bit for bit in float64 (np.tanh); in float32 the fused tanh is
    the same approximation, allowed one ulp for the compiler's different contraction of
    its polynomial, and NaN stays NaN."""
    from fastconv import activations as act
    rng = np.random.default_rng(21)
    cases = [((3, 11, 21, 2), (3, 3, 2, 6), 1, "same"),    # wide (C1-like)
             ((2, 9, 10, 6), (3, 3, 6, 16), 1, "valid"),   # wide / pixel rows
             ((2, 9, 10, 5), (3, 3, 5, 40), 2, "same"),    # pixel rows, strided
             ((4, 5, 5, 16), (5, 5, 16, 12), 1, "valid")]  # dense (BLAS)
    for xs, ws, stride, padding in cases:
        x = rng.standard_normal(xs).astype(dtype)
        w = (rng.standard_normal(ws) * 0.5).astype(dtype)
        b = rng.standard_normal(ws[-1]).astype(dtype)
        x[0, 0, 0, 0] = np.nan
        plain = fastconv.conv2d(x, w, b, stride, padding, data_format="channels_last")
        want = act.tanh(plain)
        got = conv._conv2d(x, w, b, stride, padding, 1, 1, "channels_last", tanh=True)
        assert got.dtype == dtype
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        if dtype == np.float64:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_array_max_ulp(np.nan_to_num(got), np.nan_to_num(want), 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ["linear", "relu", "tanh"])
def test_forward_with_average_pool_is_the_pool_of_the_forward(isa, dtype, act):
    """conv._forward_avg_pooled (a Conv2D and the 2x2/2 AveragePooling2D after it, in
    one pass, for inference) gives avg_pool2d of the activated convolution: bit for bit
    but for the fused tanh's one ulp (see above); odd rows and columns dropped; NaN
    kept.  None (the layers then run one by one) off the wide and pixel-row kernels and
    for tanh in float64."""
    from fastconv import pooling
    rng = np.random.default_rng(22)
    cases = [((3, 32, 32, 1), (5, 5, 1, 6), "valid"),   # LeNet-5's C1 + S2
             ((2, 14, 14, 6), (5, 5, 6, 16), "valid"),  # C3 + S4
             ((3, 11, 21, 2), (3, 3, 2, 6), "same"),    # odd rows and columns
             ((2, 12, 40, 2), (3, 3, 2, 4), "same"),    # wide, blocks of 5 rows (AVX-512)
             ((2, 9, 10, 5), (3, 3, 5, 40), "same"),    # pixel rows
             ((2, 7, 9, 32), (3, 3, 32, 3), "same")]    # narrow: not fused
    fused = 0
    for xs, ws, padding in cases:
        x = rng.standard_normal(xs).astype(dtype)
        w = (rng.standard_normal(ws) * 0.5).astype(dtype)
        b = rng.standard_normal(ws[-1]).astype(dtype)
        x[0, 3, 4, 0] = np.nan
        g = conv._geometry(x.shape, w.shape, 1, padding, 1, 1, "channels_last")
        flags = dict(relu=act == "relu", tanh=act == "tanh")
        got = conv._forward_avg_pooled(g, x, w, b, dtype, **flags)
        fusable = conv._forward_path(g, dtype) in ("wide", "pixel")
        if not fusable or (act == "tanh" and dtype == np.float64):
            assert got is None
            continue
        fused += 1
        want = pooling.avg_pool2d(
            conv._conv2d(x, w, b, 1, padding, 1, 1, "channels_last", **flags), 2,
            data_format="channels_last")
        assert got.dtype == dtype and got.shape == want.shape
        assert np.isnan(want).any()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        if act == "tanh":
            np.testing.assert_array_max_ulp(np.nan_to_num(got), np.nan_to_num(want), 1)
        else:
            np.testing.assert_array_equal(got, want)
        # keep (training): the activations as the unfused kernel writes them, and their
        # pool taken from them, both exactly
        full, pooled = conv._forward_avg_pooled(g, x, w, b, dtype, keep=True, **flags)
        np.testing.assert_array_equal(
            full, conv._conv2d(x, w, b, 1, padding, 1, 1, "channels_last", **flags))
        np.testing.assert_array_equal(
            pooled, pooling.avg_pool2d(full, 2, data_format="channels_last"))
    assert fused >= 1 or (act == "tanh" and dtype == np.float64)  # C1 at least


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_weight_gradient_ignores_columns_past_the_row(isa, dtype):
    """The weight gradient's last vector of a row reaches past the output row; an inf
    there (read only by those lanes for small kj) must not turn gradients into NaN."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 6, 14, 1)).astype(dtype)
    x[:, :, -1, :] = np.inf  # the last column: only kj = 2 reads it for a real pixel
    gy = rng.standard_normal((2, 4, 12, 3)).astype(dtype)
    assert _runs(x.shape, (3, 3, 1, 3), dtype, "grad_weight") == "wide"
    got = fastconv.conv2d_grad_weight(gy, x, (3, 3, 1, 3), data_format="channels_last")
    with np.errstate(invalid="ignore"):
        want = ref.conv2d_grad_weight(ref.to_channels_first(gy).astype(np.float64),
                                      ref.to_channels_first(x).astype(np.float64),
                                      (3, 1, 3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    want = want.transpose(2, 3, 1, 0)
    assert np.isfinite(got[:, :2]).all()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4)


def test_path_selection_is_what_the_cases_claim():
    """The cases above really reach the paths they are named after."""
    def first(x_shape, w_shape, **kw):
        return _runs(x_shape, w_shape, F64, data_format="channels_first", **kw)
    assert first((3, 5, 11, 13), (9, 5, 3, 3)) == "shifted"
    assert first((3, 4, 4, 9), (5, 4, 3, 7)) == "im2col"
    assert first((3, 3, 11, 10), (7, 3, 3, 3), stride=2) == "im2col"
    assert first((5, 16, 5, 5), (21, 16, 5, 5)) == "dense"
    assert not _can_run("dense_1x1", (5, 16, 5, 5), (21, 16, 5, 5), F64, padding=1,
                        data_format="channels_first")
    assert not _can_run("dense", (5, 16, 6, 5), (21, 16, 5, 5), F64,
                        data_format="channels_first")
    # channels_last: the batch as a few one-row images for the pixel-row kernels
    mr = _ext.conv2d.pixel_tile(True)[0]
    assert dense_chunks(8 * mr, mr) == 8 and dense_chunks(mr + 1, mr) is None
    with fastconv.force_conv_algorithm("dense_1x1"):
        plan = _explain((4 * mr, 5, 5, 16), (5, 5, 16, 40), F64).plan
    d = plan.run_g
    assert (d.n, d.h, d.w, d.c_in) == (4, 1, mr, 400) and plan.inner.name == "pixel"
    # The pixel-row kernels: channels_last, one group, enough channels and pixels.
    mr, nr = _ext.conv2d.pixel_tile(False)
    f32 = np.float32
    assert _can_run("pixel", (2, 8, 8, 3), (3, 3, 3, nr), f32, padding="same")
    assert not _can_run("pixel", (2, 3, 8, 8), (nr, 3, 3, 3), f32, padding="same",
                        data_format="channels_first")
    assert not _can_run("pixel", (2, 8, 8, 4), (3, 3, 2, nr), f32, padding="same",
                        groups=2)
    assert not _can_run("pixel", (2, 8, 8, 3), (3, 3, 3, 1), f32, padding="same")


def test_fused_relu_matches_reference():
    rng = np.random.default_rng(13)
    x, w, b = (rng.standard_normal((3, 4, 9, 8)), rng.standard_normal((6, 4, 3, 3)),
               rng.standard_normal(6))
    for stride in (1, 2):
        g = conv._geometry(x.shape, w.shape, stride, 1, 1, 1, "channels_first")
        y = conv._conv_forward(g, x, w, b, np.float64, relu=True)
        want = np.maximum(ref.conv2d_forward(x, w, b, (stride, stride), ((1, 1), (1, 1))),
                          0)
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


RELU6_CASES = [  # (x_shape NHWC, kh, kw, c_out, stride, groups)
    ((2, 9, 8, 5), 1, 1, 19, 1, 1),    # 1x1 (pixel rows, ...)
    ((8, 2, 2, 16), 1, 1, 24, 1, 1),   # 1x1 on tiny images (pointwise)
    ((3, 8, 8, 4), 3, 3, 20, 1, 1),    # 3x3 (Winograd, pixel rows, ...)
    ((2, 9, 9, 6), 3, 3, 10, 2, 1),    # strided
    ((2, 8, 7, 8), 3, 3, 8, 1, 8),     # depthwise
    ((1, 6, 6, 6), 3, 3, 4, 1, 2),     # grouped
]


@pytest.mark.parametrize("x_shape,kh,kw,c_out,stride,groups", RELU6_CASES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relu6_on_every_forward_algorithm(isa, x_shape, kh, kw, c_out, stride,
                                                 groups, data_format, dtype):
    """relu=RELU6 (conv_batch_norm_relu's ReLU6): each forward algorithm that can run
    the call, forced, gives clip(conv2d, 0, 6) -- in its output pass (the algorithms
    with relu6) or by the clamp after -- with values well beyond 6 and below 0; and
    relu=True max(conv2d, 0)."""
    from fastconv.ops.conv.plan import RELU6
    rng = np.random.default_rng(15)
    n, h, w_, c = x_shape
    x = (rng.standard_normal(x_shape) * 3).astype(dtype)
    wt = rng.standard_normal((kh, kw, c // groups, c_out)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        wt = np.ascontiguousarray(wt.transpose(3, 2, 0, 1))
    pad = (kh - 1) // 2
    g = conv._geometry(x.shape, wt.shape, stride, pad, 1, groups, data_format)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    ran = []
    for name in fastconv.conv_algorithms("forward"):
        if name not in fastconv.explain_conv(x.shape, wt.shape, stride, pad, 1, groups,
                                             data_format, dtype=dtype).runnable:
            continue
        with fastconv.force_conv_algorithm(forward=name):
            plain = conv._conv_forward(g, x, wt, b, dtype)
            y = conv._conv_forward(g, x, wt, b, dtype, relu=RELU6)
            y_relu = conv._conv_forward(g, x, wt, b, dtype, relu=True)
        want = np.clip(plain, 0, 6)
        assert (plain > 6).any() and (plain < 0).any()
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol, err_msg=name)
        assert y.max() <= 6 and y.min() >= 0
        np.testing.assert_allclose(y_relu, np.maximum(plain, 0), rtol=tol, atol=tol,
                                   err_msg=name)
        ran.append(name)
    assert ran


def test_fused_relu6_cases_reach_the_relu6_kernels():
    """Every algorithm that applies ReLU6 in its own output pass runs some case above
    (channels_last, float32)."""
    from fastconv.ops.conv.plan import registry
    fused = {a.name for a in registry("forward") if a.relu6}
    seen = set()
    for (n, h, w, c), kh, kw, c_out, stride, groups in RELU6_CASES:
        seen.update(fastconv.explain_conv((n, h, w, c), (kh, kw, c // groups, c_out),
                                          stride, (kh - 1) // 2, 1, groups,
                                          "channels_last", dtype="float32").runnable)
    assert {"pixel", "pointwise", "depthwise"} <= seen
    # (planes_blas runs channels_first only: its ReLU6 is checked against the
    # reference in tests/test_conv_planes_blas.py)
    seen.update(fastconv.explain_conv((1, 64, 32, 32), (128, 64, 1, 1)).runnable)
    assert fused and fused <= seen, fused - seen


def _all_results(x, w, b, gy, padding, data_format):
    return (fastconv.conv2d(x, w, b, padding=padding, data_format=data_format),
            *fastconv.conv2d_backward(gy, x, w, padding=padding, data_format=data_format),
            fastconv.conv2d(x, w, b, stride=2, padding=padding, data_format=data_format),
            *fastconv.conv2d_backward(gy[:, :, ::2, ::2].copy() if data_format ==
                                      "channels_first" else gy[:, ::2, ::2].copy(), x, w,
                                      stride=2, padding=padding, data_format=data_format))


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_results_identical_for_any_thread_count(data_format):
    """Bit-identical for 1, 2 and 3 OpenMP threads, whatever the BLAS threads (no BLAS
    runs here; dense convolutions are checked below): work items and summation orders
    depend on the shapes only."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((37, 12, 14, 14)).astype(np.float32)
    w = rng.standard_normal((20, 12, 3, 3)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    gy = rng.standard_normal((37, 20, 14, 14)).astype(np.float32)
    if data_format == "channels_last":
        x, gy = ref.to_channels_last(x), ref.to_channels_last(gy)
        w = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    before = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            fastconv.set_num_threads(threads)
            results.append(_all_results(x, w, b, gy, "same", data_format))
    finally:
        fastconv.set_num_threads(before)
    for other in results[1:]:
        for a, o in zip(results[0], other):
            np.testing.assert_array_equal(a, o)


def _on_thread_counts(run, counts=(1, 2, 3)):
    """[run() with fastconv on each thread count], the count restored after."""
    before = fastconv.get_num_threads()
    out = []
    try:
        for threads in counts:
            fastconv.set_num_threads(threads)
            out.append(run())
    finally:
        fastconv.set_num_threads(before)
    return out


def _assert_all_equal(results):
    """Every result (a tuple of arrays, or an array) bit-equal to the first."""
    first = results[0] if isinstance(results[0], tuple) else (results[0],)
    for other in results[1:]:
        for a, o in zip(first, other if isinstance(other, tuple) else (other,)):
            np.testing.assert_array_equal(a, o)


def test_pixel_weight_gradient_of_one_image_splits_its_tiles():
    """A batch of one is one group of images: the pixel-row weight gradient cuts its
    tiles (column block x row block) into parts instead (work for several threads).
    The same bits on 1, 2 and 3 threads, the bias gradient taken once, and the
    reference's values."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((1, 9, 11, 13))
    w = rng.standard_normal((3, 3, 13, 150))
    gy = rng.standard_normal((1, 9, 11, 150))
    def run():
        with fastconv.force_conv_algorithm(grad_weight="pixel"):
            return tuple(fastconv.conv2d_backward(gy, x, w, padding=1,
                                                  data_format="channels_last")[1:])
    results = _on_thread_counts(run)
    _assert_all_equal(results)
    gw, gb = results[0]
    want = ref.conv2d_grad_weight(ref.to_channels_first(gy), ref.to_channels_first(x),
                                  w.transpose(3, 2, 0, 1).shape, pads=((1, 1), (1, 1)))
    np.testing.assert_allclose(gw, want.transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gb, gy.sum(axis=(0, 1, 2)), rtol=1e-12, atol=1e-12)


DENSE_CASES = [c for c in PATH_CASES if c.id.startswith("dense")]


@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation,groups", DENSE_CASES)
def test_dense_convolutions_on_the_kernels(isa, n, c, h, w, c_out, kh, kw, stride, padding,
                                           dilation, groups):
    """Dense convolutions too large for one BLAS thread run the kernels as a 1x1
    convolution (channels_last: the batch as one-row images for the pixel-row
    kernels), forced here on small ones."""
    for data_format in ("channels_first", "channels_last"):
        _case(22, n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups,
              np.float64, data_format, {"name": "dense_1x1"})


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_dense_convolution_is_the_same_for_any_blas_thread_count(data_format):
    """A dense convolution (LeNet-5's C5) runs NumPy's BLAS on one thread: the same bits
    whatever the BLAS and OpenMP thread counts (OpenBLAS on 2 threads rounds this
    float64 shape differently)."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(23)
    x = rng.standard_normal((128, 16, 5, 5))
    w = rng.standard_normal((120, 16, 5, 5))
    b = rng.standard_normal(120)
    gy = rng.standard_normal((128, 120, 1, 1))
    if data_format == "channels_last":
        x, gy = ref.to_channels_last(x), ref.to_channels_last(gy)
        w = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    for pass_ in ("forward", "grad_input", "grad_weight"):
        assert _runs(x.shape, w.shape, F64, pass_, data_format=data_format) == "dense"
    before = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            with threadpool_limits(threads, user_api="blas"):
                results.append((fastconv.conv2d(x, w, b, data_format=data_format),
                                *fastconv.conv2d_backward(gy, x, w,
                                                          data_format=data_format)))
    finally:
        fastconv.set_num_threads(before)
    for a, o in zip(*results):
        np.testing.assert_array_equal(a, o)
    want = ref.conv2d_forward(ref.to_channels_first(x) if data_format == "channels_last"
                              else x, w.transpose(3, 2, 0, 1) if data_format ==
                              "channels_last" else w, b, (1, 1), ((0, 0), (0, 0)))
    np.testing.assert_allclose(results[0][0].reshape(128, 120), want.reshape(128, 120),
                               rtol=1e-10, atol=1e-10)


def test_isa_selection_and_errors():
    assert _ext.conv2d.isa() in ("portable", "avx2", "avx512")
    assert fastconv.config()["conv_isa"] == _ext.conv2d.isa()
    with pytest.raises(ValueError, match="isa must be one of the builds.*got 'sse9'"):
        _ext.conv2d.set_isa("sse9")
    assert _ext.conv2d.micro_tile(True)[0] >= 1


def test_disable_simd_environment_variable_forces_portable(tmp_path):
    code = ("import numpy as np, fastconv; from fastconv import _ext; "
            "rng = np.random.default_rng(0); x = rng.standard_normal((2, 3, 9, 9)); "
            "w = rng.standard_normal((5, 3, 3, 3)); "
            "np.save(__import__('sys').argv[1], fastconv.conv2d(x, w, padding=1)); "
            "print(_ext.conv2d.isa())")
    env = dict(os.environ, FASTCONV_DISABLE_SIMD="1")
    here = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    out_file = str(tmp_path / "y.npy")
    out = subprocess.run([sys.executable, "-c", code, out_file], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert out.strip() == "portable"
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((5, 3, 3, 3))
    np.testing.assert_allclose(np.load(out_file), fastconv.conv2d(x, w, padding=1),
                               rtol=1e-12, atol=1e-12)


def _forward_tile(x, w, padding):
    """The Winograd tile the engine's forward of this channels_last call runs on."""
    return fastconv.explain_conv(x.shape, w.shape, padding=padding,
                                 data_format="channels_last", dtype=x.dtype).plan.tile


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ["linear", "relu"])
def test_forward_with_max_pool_is_the_pool_of_the_forward(isa, dtype, act):
    """conv._forward_max_pooled (a Conv2D and the 2x2/2 MaxPooling2D after it, in one
    pass, for inference) gives max_pool2d of the activated convolution bit for bit: odd
    rows and columns dropped, ties and NaN (the first NaN of a window wins) as the
    pooling kernels have them.  None (the layers then run one by one) off the pixel-row
    and Winograd kernels, and on Winograd F(5x5) (no tile holds whole windows), which a
    Conv2D before a MaxPooling2D avoids by asking for F(4x4) (winograd_tile)."""
    from fastconv import pooling
    rng = np.random.default_rng(24)
    cases = [((3, 12, 12, 32), (3, 3, 32, 32), "valid"),  # CIFAR-10's conv + pool
             ((2, 11, 13, 5), (3, 3, 5, 40), "same"),     # odd rows and columns
             ((2, 13, 11, 16), (3, 3, 16, 20), "same"),   # odd, Winograd in float32
             ((2, 9, 10, 6), (2, 2, 6, 70), "valid"),     # C_out past one tile
             ((3, 32, 32, 1), (5, 5, 1, 6), "valid")]     # wide kernels: not fused
    fused = 0
    for xs, ws, padding in cases:
        # small integers: many equal outputs in a window (ties) and exact zeros
        x = rng.integers(-2, 3, xs).astype(dtype)
        w = rng.integers(-1, 2, ws).astype(dtype)
        b = rng.integers(-1, 2, ws[-1]).astype(dtype)
        x[0, 3, 4, 0] = np.nan
        x[-1, 1, 1, 0] = -np.inf
        g = conv._geometry(x.shape, w.shape, 1, padding, 1, 1, "channels_last")
        got = conv._forward_max_pooled(g, x, w, b, dtype, relu=act == "relu")
        path = conv._forward_path(g, dtype)
        if path not in ("pixel", "winograd"):
            assert got is None
            continue
        tile = None
        if path == "winograd" and _forward_tile(x, w, padding) == 5:
            assert got is None
            tile = conv._winograd_pool_tile()
            got = conv._forward_max_pooled(g, x, w, b, dtype, act == "relu", tile)
        fused += 1
        want = pooling.max_pool2d(
            conv._conv2d(x, w, b, 1, padding, 1, 1, "channels_last", relu=act == "relu",
                         winograd_tile=tile), 2, data_format="channels_last")
        assert got.dtype == dtype and got.shape == want.shape
        assert np.isnan(want).any()
        np.testing.assert_array_equal(got.view(f"u{got.itemsize}"),
                                      want.view(f"u{want.itemsize}"))
    assert fused >= 2


@pytest.mark.parametrize("x_shape, padding", [
    ((3, 12, 12, 16), "valid"),  # 10x10 output: 5x5 pooled, partial 4x4 tiles
    ((2, 13, 11, 16), "same"),   # odd output rows and columns dropped
    ((2, 18, 18, 16), "valid"),  # 16x16 output: whole tiles
])
def test_winograd_forward_with_max_pool_is_the_pool_of_the_forward(isa, winograd_tile,
                                                                   x_shape, padding):
    """The Winograd forward with the 2x2/2 max pool fused gives max_pool2d of the
    unfused Winograd forward bit for bit, for both tile sizes, on shapes whose pooled
    output does and does not fill whole tiles; ties and NaN as the pooling kernels."""
    from fastconv import pooling
    rng = np.random.default_rng(26)
    x = rng.integers(-2, 3, x_shape).astype(np.float32)
    w = rng.integers(-1, 2, (3, 3, x_shape[-1], 20)).astype(np.float32)
    b = rng.integers(-1, 2, 20).astype(np.float32)
    x[0, 3, 4, 0] = np.nan
    g = conv._geometry(x.shape, w.shape, 1, padding, 1, 1, "channels_last")
    assert conv._forward_path(g, np.float32) == "winograd"
    odd = _forward_tile(x, w, padding) % 2
    for relu in (False, True):
        # F(5x5) (chosen or forced) fuses no pool: None, the caller runs both passes
        assert (conv._forward_max_pooled(g, x, w, b, np.float32, relu=relu) is None) == odd
        for tile in (None, conv._winograd_pool_tile()):
            got = conv._forward_max_pooled(g, x, w, b, np.float32, relu, tile)
            if got is None:
                continue
            want = pooling.max_pool2d(
                conv._conv2d(x, w, b, 1, padding, 1, 1, "channels_last", relu=relu,
                             winograd_tile=tile), 2, data_format="channels_last")
            assert got.shape == want.shape and np.isnan(want).any()
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_winograd_forward_refuses_a_tile_it_has_not():
    """winograd_forward takes tiles 2, 4 and 5, the fused pool only the even ones: a
    clear ValueError otherwise, before any memory is touched."""
    g = conv._geometry((1, 10, 10, 16), (3, 3, 16, 16), 1, "same", 1, 1, "channels_last")
    x = np.zeros(g.x_shape, np.float32).reshape(-1)
    w = np.zeros((16, 16, 3, 3), np.float32)
    for tile, pool, match in ((3, False, "tile must be 2, 4 or 5, got 3"),
                              (5, True, "fused pool needs an even tile, got 5")):
        u = _winograd.winograd_weights(w, 4)
        y = np.zeros(g.n * (g.oh // 2) * (g.ow // 2) * 16 if pool else
                     int(np.prod(g.y_shape)), np.float32)
        with pytest.raises(ValueError, match=match):
            _ext.conv2d.winograd_forward(x, u, None, y, g.c,
                                         _winograd.forward_block(tuning.current()), False,
                                         pool, tile)


@pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs AVX-512")
@pytest.mark.parametrize("x_shape, c_out, padding", [
    ((2, 15, 15, 32), 64, "same"),   # CIFAR-10's c3: partial last F(4x4) tiles
    ((3, 13, 11, 16), 20, "valid"),  # 11x9 output; a masked vector of 4 channels
    ((2, 16, 16, 16), 40, "same"),   # whole F(4x4) tiles; 32 + 8 channels
    ((2, 17, 12, 24), 18, "same"),   # partial F(5x5) tiles of the input gradient
])
def test_winograd_tile_output_kernel_gives_the_loops_bits(x_shape, c_out, padding):
    """The AVX-512 output transform of one tile (fc_wgo_avx512_f: F(4x4) with ReLU and
    the fused max pool, F(5x5); forward and input gradient; whole and partial tiles, channel
    counts that are not whole vectors, NaN) gives the bits of fc_wg4_output's and
    fc_wg5_output's loops, which the AVX2 ISA runs: the two ISAs' pixel-row kernels add
    each product in the same order, so their M is the same."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((3, 3, x_shape[-1], c_out)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    x[0, 5, 6, 1] = np.nan
    g = conv._geometry(x.shape, w.shape, 1, padding, 1, 1, "channels_last")
    gy = rng.standard_normal(g.y_shape).astype(np.float32)
    gy[1, 2, 3, 4] = np.nan
    before = _ext.conv2d.isa()
    got = {}
    try:
        for name in ("avx2", "avx512"):
            _ext.conv2d.set_isa(name)
            assert conv._forward_path(g, np.float32) == "winograd"
            got[name] = [conv._conv2d(x, w, b, 1, padding, 1, 1, "channels_last",
                                      relu=relu, winograd_tile=tile)
                         for relu in (False, True) for tile in (4, 5)]
            got[name] += [conv._forward_max_pooled(g, x, w, b, np.float32, relu, 4)
                          for relu in (False, True)]
            for tile in (4, 5):
                with tuning.override(winograd_grad_tile=tile):
                    got[name].append(conv._grad_input(g, gy, w, np.float32))
    finally:
        _ext.conv2d.set_isa(before)
    for a, k in zip(got["avx2"], got["avx512"]):
        assert np.isnan(a).any() and not np.isnan(a).all()
        np.testing.assert_array_equal(k.view(np.uint32), a.view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_forward_on_the_pixel_row_kernel(isa, dtype):
    """_ext.conv2d.dense_forward (the Dense layer's and dense convolutions' products):
    x @ w (+ bias) (then ReLU) as the float64 product, for column counts that are and
    are not whole tiles, rows past a tile, a single row; the same bits on one and two
    threads and with either operand given transposed; mismatched shapes refused."""
    rng = np.random.default_rng(25)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for m, k, n in [(1, 7, 33), (13, 50, 31), (25, 3, 65), (130, 100, 64), (32, 300, 96)]:
        x = rng.standard_normal((m, k)).astype(dtype)
        w = rng.standard_normal((k, n)).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        for bias, relu in ((None, False), (b, False), (b, True)):
            want = x.astype(np.float64) @ w.astype(np.float64)
            if bias is not None:
                want += bias
            if relu:
                want = np.maximum(want, 0)
            got = {}
            for threads in (1, 2):
                y = np.full((m, n), np.nan, dtype)
                with fastconv.num_threads(threads):
                    _ext.conv2d.dense_forward(x, w, bias, y, relu)
                got[threads] = y
            np.testing.assert_allclose(got[2], want, rtol=tol, atol=tol * np.sqrt(k))
            np.testing.assert_array_equal(got[1], got[2])
            # x and w given as their transposes (x_t, w_t): the same products, bit for
            # bit (the same sums in the same order)
            for x_t, w_t in ((True, False), (False, True), (True, True)):
                y = np.full((m, n), np.nan, dtype)
                _ext.conv2d.dense_forward(np.ascontiguousarray(x.T) if x_t else x,
                                          np.ascontiguousarray(w.T) if w_t else w, bias,
                                          y, relu, x_t, w_t)
                np.testing.assert_array_equal(y, got[2])
    x = np.ones((3, 4), dtype)
    with pytest.raises(ValueError, match="shapes"):
        _ext.conv2d.dense_forward(x, np.ones((5, 6), dtype), None, np.empty((3, 6), dtype))
    with pytest.raises(ValueError, match="shapes"):  # x_t: x is (k, m) = (3, 4)
        _ext.conv2d.dense_forward(x, np.ones((4, 6), dtype), None, np.empty((3, 6), dtype),
                                  False, True)
    with pytest.raises(ValueError, match="shapes"):
        _ext.conv2d.dense_forward(x, np.ones((4, 6), dtype), np.ones(5, dtype),
                                  np.empty((3, 6), dtype))


def test_products_take_the_kernel_where_it_suits(monkeypatch):
    """_blas._product (the Dense layer's and dense convolutions' products, forward and
    both gradients) runs dense_forward from Tuning.kernel_min_macs multiply-adds with a
    reduction of at least kernel_min_k, for arrays of one dtype (any strides), a tile
    of columns or more and a first operand that stays in cache, NumPy's product
    otherwise; either way a @ b + bias."""
    from fastconv import _blas, layers as L
    rng = np.random.default_rng(26)
    x = rng.standard_normal((32, 2304)).astype(np.float32)
    w = rng.standard_normal((2304, 512)).astype(np.float32)
    b = rng.standard_normal(512).astype(np.float32)
    suits = _blas._kernel_suits
    assert suits(x, w, b)
    np.testing.assert_allclose(_blas._product(x, w, b), x.astype(np.float64) @ w + b,
                               rtol=2e-5, atol=2e-3)
    assert not suits(np.ascontiguousarray(x[:, :60]), np.ascontiguousarray(w[:60]), b)
    assert not suits(x[:4, :64], w[:64, :64], None)                     # few macs
    cols = _ext.conv2d.pixel_tile(False)[1] // 2
    assert not suits(x, w[:, :cols].copy(), b[:cols])                   # < one tile
    assert not suits(x, w.astype(np.float64), None)                     # two dtypes
    assert not suits(x, w, b.astype(np.float64))
    big = np.ones((300, 2304), np.float32)                              # 2.8 MB input
    assert not suits(big, w, b) and suits(big[:200], w, b)
    assert not suits(big[:64].T, big[:64, :512], None)                 # a 590 KB copy
    assert not suits(big[:8, :512], w.T, None)                          # a 4.7 MB copy
    assert suits(big[:8, :512], np.ascontiguousarray(w.T), None)
    # strided and transposed operands (the gradients' x.T and kernel.T) are copied
    x5 = rng.standard_normal((128, 400)).astype(np.float32)   # LeNet-5's C5 at batch 128
    w5 = rng.standard_normal((400, 120)).astype(np.float32)
    g5 = rng.standard_normal((128, 120)).astype(np.float32)
    for a_, b_ in ((x5.T, g5), (g5, w5.T), (x[::2], w)):
        assert suits(a_, b_, None)
        np.testing.assert_allclose(_blas._product(a_, b_), a_.astype(np.float64) @ b_,
                                   rtol=2e-5, atol=2e-3)
    calls = []

    def spy(*args):
        out = suits(*args)
        calls.append(out)
        return out
    monkeypatch.setattr(_blas, "_kernel_suits", spy)
    layer = L.Dense(40, dtype="float64")
    xs = rng.standard_normal((70, 80))
    layer(xs)
    with tuning.override(kernel_min_macs=1):
        y = layer(xs)
        assert calls == [False, True]
        np.testing.assert_allclose(y, xs @ layer.kernel + layer.bias, rtol=1e-12,
                                   atol=1e-12)
        gx = layer.backward(np.ones_like(y))
    np.testing.assert_allclose(gx, np.ones_like(y) @ layer.kernel.T, rtol=1e-12)
    np.testing.assert_allclose(layer.gradients[0], xs.T @ np.ones_like(y), rtol=1e-12)
    assert calls[2:] == [True, False]  # weight gradient; input (k = 40 < kernel_min_k)




@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_gradient_from_the_average_pool_through_tanh(isa, dtype):
    """conv._grad_weight_avg_tanh (a tanh Conv2D's parameter gradients straight from
    the output gradient of the 2x2/2 AveragePooling2D after it, the gradient through
    both made inside the wide weight gradient) gives _grad_weight of what
    _avg_backward_tanh writes, bit for bit: even and odd map sizes (an odd last row or
    column gets no gradient), with and without bias, a batch of several work items;
    None where the weight gradient does not run on the wide kernels, or is not finite
    (the separate passes then apply conv._finite's rule)."""
    from fastconv import pooling
    rng = np.random.default_rng(27)
    for n, h, w, c, c_out in [(3, 32, 32, 1, 6), (37, 13, 22, 2, 5), (2, 11, 25, 1, 3),
                              (2, 11, 9, 1, 3)]:
        x = rng.standard_normal((n, h, w, c)).astype(dtype)
        g = conv._geometry(x.shape, (5, 5, c, c_out), 1, "valid", 1, 1, "channels_last")
        a = np.tanh(rng.standard_normal(g.y_shape)).astype(dtype)
        if n == 3:  # (LeNet-5's C1, on the wide kernels: NaN, so None)
            a[0, 0, 0, 0] = np.nan
        gp = rng.standard_normal((n, g.oh // 2, g.ow // 2, c_out)).astype(dtype)
        pg = pooling._geometry(a.shape, 2, None, 0, "channels_last")
        gy = pooling._avg_backward_tanh(pg, gp, a)
        assert gy is not None
        wide = _runs(x.shape, (5, 5, c, c_out), dtype, "grad_weight") == "wide"
        assert wide or (h, c_out) != (32, 6)  # LeNet-5's C1: always on the wide kernels
        for bias in (True, False):
            want = conv._grad_weight(g, gy, x, dtype, bias)
            got = conv._grad_weight_avg_tanh(g, gp, x, a, dtype, bias)
            if not wide or np.isnan(a).any():
                assert got is None
                continue
            np.testing.assert_array_equal(got[0], want[0])
            if bias:
                np.testing.assert_array_equal(got[1], want[1])
            else:
                assert got[1] is None
    # not on the wide kernels: the pixel-row kernels' weight gradient (LeNet-5's C3)
    x = rng.standard_normal((2, 14, 14, 6)).astype(dtype)
    g = conv._geometry(x.shape, (5, 5, 6, 16), 1, "valid", 1, 1, "channels_last")
    plan = _explain(x.shape, (5, 5, 6, 16), dtype, "grad_weight").plan
    if plan.name == "pixel" and plan.half:
        a = np.tanh(rng.standard_normal(g.y_shape)).astype(dtype)
        gp = rng.standard_normal((2, 5, 5, 16)).astype(dtype)
        assert conv._grad_weight_avg_tanh(g, gp, x, a, dtype, True) is None


# (n, c, h, w, c_out, dilation): 1x1 convolutions over images of a few pixels, one
# pixel, odd sizes, dilation (a 1x1 kernel ignores it), a bias gradient over chunks
POINTWISE_CASES = [(32, 24, 2, 2, 40, 1), (48, 16, 1, 1, 33, 1), (12, 5, 3, 5, 64, 2),
                   (24, 64, 1, 3, 17, 1), (26, 160, 1, 1, 648, 1)]


@pytest.mark.parametrize("n,c,h,w,c_out,dilation", POINTWISE_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pointwise_runs_the_batch_as_rows(isa, n, c, h, w, c_out, dilation, dtype):
    """A channels_last 1x1 convolution as a few long rows of the batch's pixels, forced
    on all three passes: the reference's results (float64 to 1e-10)."""
    force = {p: "pointwise" for p in ("forward", "grad_input", "grad_weight")}
    xs, ws = (n, h, w, c), (1, 1, c, c_out)
    for p in force:
        plan = fastconv.explain_conv(xs, ws, dilation=dilation, data_format="channels_last",
                                     dtype=dtype, pass_=p)
        assert "pointwise" in plan.runnable
    with fastconv.force_conv_algorithm(**force):
        plan = fastconv.explain_conv(xs, ws, dilation=dilation, dtype=dtype,
                                     data_format="channels_last").plan
    d = plan.run_g
    assert d.n * d.w == n * h * w and d.h == 1
    # (one row of a large weight is a batch of one, which the planner may put on the
    # BLAS: dense.ONE_ROW_WEIGHT_BYTES)
    assert plan.inner.name == "pixel" or d.n == 1
    _case(31, n, c, h, w, c_out, 1, 1, 1, 0, dilation, 1, dtype, "channels_last", force)


def test_pointwise_runs_a_large_weight_as_one_row():
    """Over dense.ONE_ROW_WEIGHT_BYTES (and two output blocks) the batch's pixels are one
    row (the weight read once); smaller weights keep a few rows."""
    from fastconv.ops.conv.algorithms import dense
    force = {p: "pointwise" for p in ("forward", "grad_input", "grad_weight")}
    nr = _ext.conv2d.pixel_tile(False)[1]
    big = dense.ONE_ROW_WEIGHT_BYTES // (4 * 4 * nr) + 1      # C_in of a 4 nr weight
    for c_in, rows in ((big, 1), (16, None)):
        with fastconv.force_conv_algorithm(**force):
            d = fastconv.explain_conv((128, 1, 1, c_in), (1, 1, c_in, 4 * nr),
                                      data_format="channels_last").plan.run_g
        assert d.n * d.w == 128 and (d.n == 1) == (rows == 1), (c_in, d.n)


def test_pointwise_is_for_small_images_and_refuses_the_rest():
    f32 = np.float32
    mr = _ext.conv2d.pixel_tile(False)[0]
    if mr > 4:   # (the portable build's 4-row tile is filled by a 2x2 image itself)
        assert _runs((128, 2, 2, 192), (1, 1, 192, 64), f32) == "pointwise"
    # (inference keeps the weight packed; a call that packs it on its own runs 128
    # pixels of a 600 KB weight on the BLAS: pointwise_blas, Tuning.pointwise_pack_pixels)
    g = geometry((128, 1, 1, 960), (1, 1, 960, 160), 1, 0, 1, 1, "channels_last")
    assert _plan.select(g, f32, _plan.FORWARD, packed=True).name == "pointwise"
    assert _runs((128, 1, 1, 960), (1, 1, 960, 160), f32) == "pointwise_blas"
    assert _runs((8, 56, 56, 64), (1, 1, 64, 256), f32) != "pointwise"  # rows fill tiles
    for xs, ws, kw in [((32, 2, 2, 24), (1, 1, 24, 40), {"padding": 1}),
                       ((32, 4, 4, 24), (1, 1, 24, 40), {"stride": 2}),
                       ((32, 2, 2, 24), (3, 3, 24, 40), {"padding": "same"}),
                       ((32, 2, 2, 24), (1, 1, 12, 40), {"groups": 2}),
                       ((32, 24, 2, 2), (40, 24, 1, 1), {"data_format": "channels_first"}),
                       ((1, 1, mr + 1, 24), (1, 1, 24, 40), {})]:   # no rows to cut
        assert not _can_run("pointwise", xs, ws, f32, **kw), (xs, kw)


@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pixel_forward_splits_small_batches_over_channel_blocks(isa, n, dtype):
    """Under FC_PX_SPLIT_IMAGES images the pixel-row forward gives each block of NR
    output channels its own work item (batch 1 on all cores): the reference's output,
    with a last block part full, stride 2 and padding."""
    nr = _ext.conv2d.pixel_tile(dtype == np.float64)[1]
    force = {"forward": "pixel"}
    _case(41, n, 5, 9, 7, 3 * nr + 5, 3, 3, 1, 1, 1, 1, dtype, "channels_last", force)
    _case(42, n, 6, 11, 10, 2 * nr + 1, 3, 3, 2, "same", 1, 1, dtype, "channels_last",
          force)


# -- pointwise convolutions on NumPy's BLAS ---------------------------------------------
POINTWISE_BLAS_CASES = [  # (x_shape NHWC, c_out): bands of rows, of columns, one band
    ((1, 1, 1, 37), 70),       # one pixel (batch-1 latency): the default's choice
    ((3, 2, 3, 64), 40),       # fewer pixels than a tile
    ((2, 13, 11, 19), 33),     # rows cut into bands, odd sizes
    ((4, 1, 1, 300), 900),     # columns cut into bands (a weight over the L2 budget)
    ((0, 3, 3, 8), 5),         # an empty batch
]


@pytest.mark.parametrize("x_shape,c_out", POINTWISE_BLAS_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_blas_passes_match_the_reference(x_shape, c_out, dtype):
    """pointwise_blas, forced on every pass, against the reference loops: the forward
    with bias and ReLU / ReLU6 / tanh, the input gradient, the weight and bias
    gradients (float64 to 1e-10, float32 to 2e-5 relative)."""
    from fastconv.ops.conv.plan import RELU6
    rng = np.random.default_rng(21)
    c = x_shape[3]
    x = (rng.standard_normal(x_shape) * 3).astype(dtype)
    w = (rng.standard_normal((1, 1, c, c_out)) / np.sqrt(max(c, 1))).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    gy = rng.standard_normal(x_shape[:3] + (c_out,)).astype(dtype)
    x64, w64 = ref.to_channels_first(x.astype(F64)), w.astype(F64).transpose(3, 2, 0, 1)
    gy64 = ref.to_channels_first(gy.astype(F64))
    want = ref.to_channels_last(ref.conv2d_forward(x64, w64, b.astype(F64)))
    want_gx = ref.to_channels_last(ref.conv2d_grad_input(gy64, w64, x64.shape))
    want_gw = ref.conv2d_grad_weight(gy64, x64, w64.shape).transpose(2, 3, 1, 0)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    scale = max(1.0, np.abs(want).max(initial=0))
    g = conv._geometry(x.shape, w.shape, 1, 0, 1, 1, "channels_last")
    with fastconv.force_conv_algorithm("pointwise_blas"):
        y = conv._conv_forward(g, x, w, b, dtype)
        y6 = conv._conv_forward(g, x, w, b, dtype, relu=RELU6)
        yr = conv._conv_forward(g, x, w, b, dtype, relu=True)
        yt = conv._conv_forward(g, x, w, b, dtype, tanh=True)
        gx, gw, gb = fastconv.conv2d_backward(gy, x, w, data_format="channels_last")
    assert y.shape == want.shape and y.dtype == dtype
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(y6, np.clip(want, 0, 6), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(yr, np.maximum(want, 0), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(yt, np.tanh(want), rtol=tol, atol=tol)
    if y.size:
        assert (want > 6).any() and (want < 0).any()   # (the clamps have work)
    for got, want_g in ((gx, want_gx), (gw, want_gw)):
        np.testing.assert_allclose(got, want_g, rtol=tol,
                                   atol=tol * max(1, np.abs(want_g).max(initial=0)))
    np.testing.assert_allclose(gb, gy64.sum(axis=(0, 2, 3)), rtol=tol, atol=tol * 10)


def test_pointwise_blas_is_chosen_by_the_shape_rule():
    """The default order: the forward of fewer pixels than a pixel-row tile, the
    input gradient of a weight over the L2 budget and every pass of a few output
    channels run on the BLAS; a forward whose pixels fill the tiles, and the other
    weight gradients, stay on the pixel-row kernels."""
    mr = _ext.conv2d.pixel_tile(False)[0]
    assert _runs((1, 1, 1, 320), (1, 1, 320, 1280), "float32") == "pointwise_blas"
    assert _runs((1, 1, mr - 1, 64), (1, 1, 64, 64), "float32") == "pointwise_blas"
    assert _runs((2, 8, 8, 64), (1, 1, 64, 64), "float32") != "pointwise_blas"
    # a forward that packs its weight on the call (Tuning.pointwise_pack_pixels): few
    # pixels, or fewer than that with a weight over pointwise_weight_bytes, on the BLAS;
    # the same with the weight kept packed (inference) on the kernels
    f32 = np.float32
    few, big = tuning.current().pointwise_pack_pixels, tuning.current().pointwise_weight_bytes
    assert 49 * 2 < few and 196 < few and 576 * 96 * 4 <= big < 512 * 512 * 4
    for xs, ws, blas in (((1, 7, 7, 160), (1, 1, 160, 960), True),
                         ((1, 14, 14, 576), (1, 1, 576, 96), False),
                         ((1, 14, 14, 512), (1, 1, 512, 512), True)):
        assert (_runs(xs, ws, "float32") == "pointwise_blas") == blas, xs
        g = geometry(xs, ws, 1, 0, 1, 1, "channels_last")
        assert _plan.select(g, f32, _plan.FORWARD, packed=True).name != "pointwise_blas"
    big = (1, 1, 512, 512)   # 1 MiB in float32
    assert tuning.current().pointwise_weight_bytes < 512 * 512 * 4
    assert _runs((2, 8, 8, 512), big, "float32", pass_="grad_input") == "pointwise_blas"
    assert _runs((2, 8, 8, 64), (1, 1, 64, 64), "float32",
                 pass_="grad_input") != "pointwise_blas"
    assert _runs((2, 8, 8, 512), big, "float32", pass_="grad_weight") != "pointwise_blas"
    with tuning.override(pointwise_weight_bytes=512 * 512 * 4):
        assert _runs((2, 8, 8, 512), big, "float32",
                     pass_="grad_input") != "pointwise_blas"
    # every pass of a few output channels (a segmentation head), and not past the bound
    few = tuning.current().pointwise_blas_max_c_out
    for pass_ in ("forward", "grad_input", "grad_weight"):
        assert _runs((1, 64, 64, 64), (1, 1, 64, few), "float32",
                     pass_=pass_) == "pointwise_blas"
        assert _runs((1, 64, 64, 64), (1, 1, 64, 2 * few + 8), "float32",
                     pass_=pass_) != "pointwise_blas"


def test_pointwise_blas_bits_do_not_depend_on_the_thread_count():
    """The bands are the shape's, not the threads': one thread and two give the same
    bits (forward with its output pass, input and weight gradients)."""
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 9, 10, 200)).astype(np.float32)
    w = rng.standard_normal((1, 1, 200, 700)).astype(np.float32)
    b = rng.standard_normal(700).astype(np.float32)
    gy = rng.standard_normal((2, 9, 10, 700)).astype(np.float32)
    out = []
    before = _ext.openmp.get_max_threads()
    try:
        for threads in (1, 2):
            _ext.openmp.set_num_threads(threads)
            with fastconv.force_conv_algorithm("pointwise_blas"):
                y = fastconv.conv2d(x, w, b, data_format="channels_last")
                out.append((y, *fastconv.conv2d_backward(gy, x, w,
                                                         data_format="channels_last")))
    finally:
        _ext.openmp.set_num_threads(before)
    for a, b_ in zip(*out):
        assert _ext.conv2d.same_bytes(a, b_)


def test_run_jobs_raises_a_jobs_exception_after_all_jobs():
    """_ext.openmp.run_jobs runs every job on the OpenMP threads and raises the first
    exception a job raised, in the caller."""
    done = []

    def run(job):
        if job == 3:
            raise ValueError("job 3")
        done.append(job)
    with pytest.raises(ValueError, match="job 3"):
        _ext.openmp.run_jobs(list(range(6)), run, 2)
    assert sorted(done) == [0, 1, 2, 4, 5]


def test_bias_act_matches_the_kernels_output_pass():
    """bias_act: y + bias, then ReLU / ReLU6 keeping NaN and -0.0 as the conv kernels'
    output pass does; bad sizes raise ValueError."""
    y = np.array([[-1.0, 2.0, 7.0], [np.nan, -0.5, 3.0]], np.float32)
    bias = np.array([0.5, 0.5, 0.5], np.float32)
    for act, want in ((0, y + bias), (1, np.where(y + bias < 0, 0, y + bias)),
                      (2, np.clip(y + bias, 0, 6))):
        for serial in (False, True):
            z = y.copy().reshape(-1)
            _ext.activations.bias_act(z, bias, 3, act, serial)
            np.testing.assert_array_equal(z.reshape(2, 3), want)
    z = np.array([-0.0, -2.0], np.float64)
    _ext.activations.bias_act(z, None, 2, 1)
    assert np.signbit(z[0]) and z[1] == 0
    with pytest.raises(ValueError, match="rows of C=4"):
        _ext.activations.bias_act(np.zeros(6, np.float32), None, 4, 0)
    with pytest.raises(ValueError, match="bias has 2"):
        _ext.activations.bias_act(np.zeros(6, np.float32), np.zeros(2, np.float32), 3, 0)
    with pytest.raises(ValueError, match="act must be"):
        _ext.activations.bias_act(np.zeros(6, np.float32), None, 3, 3)


# -- the strided input gradient as phases ------------------------------------------------
PHASES_CASES = [  # (x_shape NCHW, c_out, kh, kw, stride, padding ((t, b), (l, r)))
    ((2, 5, 16, 16), 7, 3, 3, (2, 2), ((0, 1), (0, 1))),   # "same", stride 2
    ((2, 4, 15, 13), 6, 3, 3, (2, 2), ((1, 1), (1, 1))),   # odd sizes
    ((1, 3, 17, 19), 5, 5, 4, (3, 2), ((2, 1), (0, 3))),   # kernel > stride, mixed
    ((2, 6, 12, 12), 4, 1, 1, (2, 2), ((0, 0), (0, 0))),   # 1x1: three empty phases
    ((2, 3, 11, 10), 4, 2, 3, (3, 4), ((0, 0), (1, 0))),   # kernel < stride
    ((3, 4, 10, 10), 5, 3, 3, (4, 4), ((0, 0), (0, 0))),   # rows no window reads
    ((1, 8, 8, 8), 16, 2, 2, (2, 2), ((0, 0), (0, 0))),    # U-Net up-convolution
    ((2, 3, 5, 5), 2, 3, 3, (2, 2), ((3, 3), (2, 2))),     # padding beyond the kernel
    ((1, 2, 4, 4), 3, 4, 4, (2, 2), ((0, 0), (0, 0))),     # one output pixel
]


@pytest.mark.parametrize("x_shape,c_out,kh,kw,stride,padding", PHASES_CASES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_phases_grad_input_matches_the_reference(x_shape, c_out, kh, kw, stride, padding,
                                                 data_format, dtype):
    """phases, forced, against the scatter of the reference loops: every phase of every
    stride, kernels larger and smaller than the stride (empty phases), odd sizes,
    asymmetric padding, rows that no window reads (float64 to 1e-10, float32 2e-5)."""
    rng = np.random.default_rng(31)
    n, c, h, w_ = x_shape
    w64 = rng.standard_normal((c_out, c, kh, kw))
    oh = (h + sum(padding[0]) - kh) // stride[0] + 1
    ow = (w_ + sum(padding[1]) - kw) // stride[1] + 1
    gy64 = rng.standard_normal((n, c_out, oh, ow))
    want = ref.conv2d_grad_input(gy64, w64, x_shape, stride, padding)
    gy, w = gy64.astype(dtype), w64.astype(dtype)
    xs = x_shape
    if data_format == "channels_last":
        gy, w = ref.to_channels_last(gy), np.ascontiguousarray(w.transpose(2, 3, 1, 0))
        xs = (n, h, w_, c)
    assert fastconv.explain_conv(xs, w.shape, stride, padding, 1, 1, data_format,
                                 dtype=dtype, pass_="grad_input").runnable.count("phases")
    with fastconv.force_conv_algorithm(grad_input="phases"):
        got = fastconv.conv2d_grad_input(gy, w, xs, stride, padding,
                                         data_format=data_format)
    if data_format == "channels_last":
        got = ref.to_channels_first(got)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1, np.abs(want).max()))


def test_phases_take_strided_channels_last_gradients_by_the_rule():
    """The default order: channels_last stride-2 input gradients with enough work run
    as phases; small ones, channels_first, stride 1, dilation and groups do not."""
    f32 = "float32"
    big = ((128, 32, 32, 16), (3, 3, 16, 32))
    assert _runs(*big, f32, pass_="grad_input", stride=2, padding=((0, 1), (0, 1))) \
        == "phases"
    assert _runs((2, 9, 9, 4), (3, 3, 4, 6), f32, pass_="grad_input", stride=2) \
        != "phases"
    assert _runs((128, 16, 32, 32), (32, 16, 3, 3), f32, pass_="grad_input", stride=2,
                 padding=((0, 1), (0, 1)), data_format="channels_first") != "phases"
    for kw in ({"stride": 1}, {"stride": 2, "dilation": 2}, {"stride": 2, "groups": 2}):
        w = (3, 3, 16 // kw.get("groups", 1), 32)
        assert not _can_run("phases", big[0], w, f32, pass_="grad_input", **kw), kw


def test_same_all_compares_shape_format_and_bytes():
    """_ext.conv2d.same_all (Prepared.of's one-call check): True only where every array
    has the kept signature's shape, dtype and bytes (None only for None); a
    non-contiguous array, a non-buffer or a kept value that is not a signature gives
    False (the Python comparison then decides)."""
    same_all, sig = _ext.conv2d.same_all, _ext.conv2d.signature
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    eps = np.float64(1e-3)
    k = sig(a.copy())
    assert same_all((k, None, sig(eps)), (a, None, np.float64(1e-3)))
    changed = a.copy()
    changed[1, 2] = -0.0 if changed[1, 2] == 0 else 0.0
    for other in (a.reshape(3, 2), a.astype(np.float64), a.T, changed, None, [0, 1],
                  np.float64(2e-3), a.view(np.int32), a[:, :2].copy()):
        assert not same_all((k,), (other,)), other
    assert not same_all((k, None), (a, a)) and not same_all((k,), (a, a))
    for not_signature in (a, (b"f", (2, 3)), (b"f", (2, 3), -1), ("f", (2, 3), k[2]),
                          (b"f", [2, 3], k[2]), (b"f", (2, 3), float(k[2]))):
        assert not same_all((not_signature,), (a,)), not_signature


def test_winograd_tiles_and_blocks_for_batch_one():
    """The forward's tile counts the products' MR-row blocks: F(2x2) on maps whose
    F(4x4) tiles leave most of a block empty (batch 1 at 8x8 and 7x7), F(4x4)/F(5x5)
    as before once the tiles fill blocks; a call of few tiles cuts them into smaller
    blocks (at least MR) so that it has work items for several threads."""
    mr = _ext.conv2d.winograd_tile()[0]
    if mr >= 8:   # (4 F(4x4) tiles fill under half a block; the portable MR is 4)
        assert _winograd.tile_for(8, 8, n=1) == 2 and _winograd.tile_for(7, 7, n=1) == 2
        assert _runs((1, 8, 8, 64), (3, 3, 64, 64), "float32", padding=1) == \
            "winograd_f2"
    assert _winograd.tile_for(8, 8, n=4) == 4 and _winograd.tile_for(16, 16, n=1) == 4
    assert _winograd.tile_for(30, 30, n=128) == _winograd.tile_for(30, 30) == 5
    assert _winograd.tile_for(8, 8) == 4 and _winograd.tile_for(8, 8, forced=4, n=1) == 4
    t = tuning.current()
    full = _winograd.forward_block(t)
    assert _winograd.forward_block(t, 16) == mr < full
    assert _winograd.forward_block(t, 10 ** 6) == full
    assert mr <= _winograd.forward_block(t, 64) <= full


def test_wide_choice_weighs_its_planar_copies():
    """The wide kernels copy x into planes on every call: a 1x1 layer with many input
    channels and 24 outputs (MobileNetV2's projections) goes to the pixel-row tile,
    while LeNet-5's C1 (5x5, 6 outputs) stays wide; without the copy's weight the
    1x1 layer would be wide (the lanes' share alone)."""
    from fastconv import tuning
    assert _runs((8, 56, 56, 144), (1, 1, 144, 24), "float32") == "pixel"
    assert _runs((128, 16, 16, 96), (1, 1, 96, 24), "float32",
                 pass_="grad_weight") == "pixel"
    assert _runs((128, 32, 32, 1), (5, 5, 1, 6), "float32", padding="valid") == "wide"
    with tuning.override(wide_copy_macs=1):
        assert _runs((8, 56, 56, 144), (1, 1, 144, 24), "float32") == "wide"


def test_winograd_tile_weighs_the_weight_transform():
    """Where the weight is transformed on every call (Tuning.winograd_weight_rows),
    few tiles choose the tile with fewer transformed values per weight: batch 1 at
    14x14 runs F(2x2) on every pass (F(5x5) by the tiles alone), while a training
    batch keeps F(4x4)/F(5x5) (the transform is small beside its products)."""
    rows = tuning.current().winograd_weight_rows
    assert rows > 0
    assert _winograd.tile_for(14, 14, n=1) == 5
    assert _winograd.tile_for(14, 14, n=1, weight_rows=rows) == 2
    assert _winograd.tile_for(14, 14, weight_rows=rows, images=1) == 2
    assert _winograd.tile_for(32, 32, n=128, weight_rows=rows) == 4
    assert _winograd.tile_for(30, 30, weight_rows=rows, images=128) == 5
    for pass_ in ("forward", "grad_input", "grad_weight"):
        assert _runs((1, 14, 14, 256), (3, 3, 256, 256), "float32", pass_=pass_,
                     padding=1) == "winograd_f2"
        assert _runs((128, 32, 32, 16), (3, 3, 16, 16), "float32", pass_=pass_,
                     padding=1) == "winograd_f4"
    with tuning.override(winograd_weight_rows=1):   # (the tiles alone, nearly)
        assert _runs((1, 14, 14, 256), (3, 3, 256, 256), "float32", padding=1) == \
            "winograd_f5"


def test_winograd_products_take_the_half_tile_for_few_output_channels():
    """Where C_out fits in one vector of the pixel-row tile (16 float32 on AVX-512),
    every Winograd pass runs its products on the half-width tile (the full one would
    compute zeros in half its columns); more channels, or pixel_half off, the full.
    (WINOGRAD_CASES check the values on every ISA.)"""
    half_nr, full_nr = _ext.conv2d.winograd_tile(True)[1], _ext.conv2d.winograd_tile()[1]
    if half_nr >= full_nr or half_nr < tuning.current().winograd_min_channels:
        pytest.skip("no half-width tile, or none as wide as a Winograd layer's channels")
    for pass_ in ("forward", "grad_weight"):
        plan = _explain((8, 16, 16, 32), (3, 3, 32, half_nr), "float32", pass_,
                        padding=1).plan
        assert plan.name.startswith("winograd") and plan.half, pass_
        assert not _explain((8, 16, 16, 32), (3, 3, 32, half_nr + 1), "float32", pass_,
                            padding=1).plan.half
    gi = _explain((8, 16, 16, half_nr), (3, 3, half_nr, 32), "float32", "grad_input",
                  padding=1).plan
    assert gi.name.startswith("winograd") and gi.inner.half   # (the mirrored forward)
    with tuning.override(pixel_half=False):
        assert not _explain((8, 16, 16, 32), (3, 3, 32, half_nr), "float32",
                            padding=1).plan.half


# -- via_last: channels_first calls on the channels_last algorithms -------------------
# (fastconv/ops/conv/algorithms/via_last.py) Each case against the naive reference, and
# against the channels_last call of the same convolution, whose kernels it runs: the
# same bits in every pass.  The rule (which calls take it) on both sides of its edges.
LOW = VIA_LAST_MIN_CHANNELS

VIA_LAST_CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation
    pytest.param(3, 16, 9, 8, 20, 3, 3, 1, "valid", 1, id="winograd-twin"),
    pytest.param(2, 17, 7, 7, 33, 3, 3, 1, "same", 1, id="winograd-remainders"),
    pytest.param(3, 18, 11, 10, 16, 3, 3, 2, 1, 1, id="stride2"),
    pytest.param(2, 16, 12, 13, 24, 3, 3, 1, "same", (2, 3), id="dilated"),
    pytest.param(2, 20, 9, 11, 17, 3, 3, 1, ((2, 0), (1, 3)), 1, id="asymmetric-pad"),
    pytest.param(2, 16, 13, 12, 21, 5, 5, 2, 2, 1, id="5x5-stride2"),
    pytest.param(1, 16, 2, 2, 16, 3, 3, 1, "same", 1, id="one-tile"),
    pytest.param(2, 16, 1, 1, 16, 3, 3, 1, 1, 1, id="one-pixel-padded"),
    pytest.param(19, 24, 6, 5, 40, 3, 3, 1, 1, 1, id="many-images-partials"),
    pytest.param(3, 3, 10, 9, 16, 3, 3, 1, 1, 1, id="first-layer-weight-gradient-only"),
    pytest.param(2, 3, 13, 12, 20, 3, 3, 2, ((0, 1), (0, 1)), 1, id="strided-stem"),
    pytest.param(2, 3, 16, 15, 24, 7, 7, 2, 3, 1, id="strided-7x7-stem"),
]


def _passes_of(n, c, h, w, c_out, kh, kw, stride, padding, dilation, dtype):
    """{pass: algorithm} the default chooses for the channels_first case."""
    out = {}
    for pass_ in ("forward", "grad_input", "grad_weight"):
        out[pass_] = _explain((n, c, h, w), (c_out, c, kh, kw), dtype, pass_, stride,
                              padding, dilation, 1, "channels_first").algorithm
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation", VIA_LAST_CASES)
def test_via_last_against_the_reference(isa, dtype, n, c, h, w, c_out, kh, kw, stride,
                                        padding, dilation):
    """Every pass of each case (the ones the rule gives via_last, and the rest where it
    does not) within the reference's tolerance; the grad_bias identity of _case."""
    chosen = _passes_of(n, c, h, w, c_out, kh, kw, stride, padding, dilation, dtype)
    assert chosen["grad_weight"] == "via_last"
    wide = min(c, c_out) >= LOW
    twin = _explain((n, h, w, c), (kh, kw, c, c_out), dtype, "forward", stride, padding,
                    dilation).algorithm
    strided = stride > 1 and twin != "im2col"
    assert (chosen["forward"] == "via_last") == (wide or strided), (chosen, twin)
    assert (chosen["grad_input"] == "via_last") == wide, chosen
    _case(21, n, c, h, w, c_out, kh, kw, stride, padding, dilation, 1, dtype,
          "channels_first")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c,h,w,c_out,kh,kw,stride,padding,dilation", VIA_LAST_CASES)
def test_via_last_gives_the_channels_last_calls_bits(dtype, n, c, h, w, c_out, kh, kw,
                                                     stride, padding, dilation):
    """Forced, via_last runs the channels_last call's plan: forward, input and weight
    gradient and bias gradient equal the channels_last results, transposed, bit for
    bit (with a fused ReLU too)."""
    rng = np.random.default_rng(22)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    args = (stride, padding, dilation, 1)
    with fastconv.force_conv_algorithm("via_last"):
        y = fastconv.conv2d(x, wt, b, *args, "channels_first")
        gy = rng.standard_normal(y.shape).astype(dtype)
        gx, gw, gb = fastconv.conv2d_backward(gy, x, wt, *args, "channels_first")
    xl, gyl = ref.to_channels_last(x), ref.to_channels_last(gy)
    wl = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    yl = fastconv.conv2d(xl, wl, b, *args, "channels_last")
    gxl, gwl, gbl = fastconv.conv2d_backward(gyl, xl, wl, *args, "channels_last")
    np.testing.assert_array_equal(y, ref.to_channels_first(yl))
    np.testing.assert_array_equal(gx, ref.to_channels_first(gxl))
    np.testing.assert_array_equal(gw, gwl.transpose(3, 2, 0, 1))
    np.testing.assert_allclose(gb, gbl, rtol=1e-12 if dtype == np.float64 else 1e-6)
    assert gw.flags.c_contiguous and gx.flags.c_contiguous and y.flags.c_contiguous


def test_the_rule_at_its_edges():
    """1x1 kernels decline; under VIA_LAST_MIN_CHANNELS in or out the forward (but a
    strided one) and input gradient decline (the weight gradient takes it); groups and
    channels_last refuse."""
    f32 = np.float32

    def algs(x_shape, w_shape, groups=1, data_format="channels_first"):
        return [_explain(x_shape, w_shape, f32, p, 1, 1 if w_shape[-1] > 1 else 0, 1,
                         groups, data_format).algorithm
                for p in ("forward", "grad_input", "grad_weight")]

    assert algs((2, LOW, 8, 8), (LOW, LOW, 3, 3)) == ["via_last"] * 3
    low = algs((2, LOW - 1, 8, 8), (LOW, LOW - 1, 3, 3))
    assert "via_last" not in low[:2] and low[2] == "via_last"
    low_out = algs((2, LOW, 8, 8), (LOW - 1, LOW, 3, 3))
    assert "via_last" not in low_out[:2] and low_out[2] == "via_last"
    strided = [_explain((2, 3, 9, 9), (LOW, 3, 3, 3), f32, p, 2, 1, 1, 1,
                        "channels_first").algorithm
               for p in ("forward", "grad_input", "grad_weight")]
    assert strided[0] == "via_last" and strided[1] != "via_last"
    assert strided[2] == "via_last"
    assert "via_last" not in algs((2, 32, 8, 8), (32, 32, 1, 1))
    assert "via_last" not in algs((2, 32, 8, 8), (32, 16, 3, 3), groups=2)
    assert "via_last" not in algs((2, 8, 8, 32), (3, 3, 32, 32),
                                  data_format="channels_last")
    e = _explain((2, 32, 8, 8), (32, 32, 1, 1), f32, data_format="channels_first")
    assert "1x1 kernel" in e.refused["via_last"]
    e = _explain((2, 32, 8, 8), (32, 16, 3, 3), f32, groups=2, padding=1,
                 data_format="channels_first")
    assert "2 groups" in e.refused["via_last"]
    with pytest.raises(ValueError, match="via_last cannot run"):
        with fastconv.force_conv_algorithm("via_last"):
            fastconv.conv2d(np.ones((1, 5, 5, 8), f32), np.ones((3, 3, 8, 8), f32),
                            data_format="channels_last")


def test_explain_names_the_twins_plan():
    e = _explain((4, 32, 16, 16), (32, 32, 3, 3), np.float32, padding=1,
                 data_format="channels_first")
    assert e.algorithm == "via_last"
    assert "through transposed copies, then winograd_f" in str(e)


def test_a_channels_first_layer_in_inference_equals_its_channels_last_twin():
    """A Conv2D + BatchNormalization + ReLU model in channels_first (folded, the packed
    weights kept between calls) predicts what its channels_last twin does, and sees a
    change written into the kernel in place."""
    rng = np.random.default_rng(23)

    def model(fmt, shape):
        m = fastconv.models.Sequential([
            fastconv.layers.Input(shape),
            fastconv.layers.Conv2D(24, 3, padding="same", data_format=fmt),
            fastconv.layers.BatchNormalization(axis=1 if fmt == "channels_first" else -1),
            fastconv.layers.ReLU()])
        return m

    first, last = model("channels_first", (16, 9, 9)), model("channels_last", (9, 9, 16))
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.3
               for w in last.get_weights()]
    weights[-1] = np.abs(weights[-1]) + 0.5    # (moving variance)
    last.set_weights(weights)
    first.set_weights(weights)
    x = rng.standard_normal((3, 9, 9, 16)).astype(np.float32)
    xf = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    for _ in range(2):   # (the second call on the kept, packed weights)
        np.testing.assert_array_equal(first.predict_on_batch(xf),
                                      last.predict_on_batch(x).transpose(0, 3, 1, 2))
    first.layers[0].kernel[0, 0, 0, 0] += 1.0
    last.layers[0].kernel[0, 0, 0, 0] += 1.0
    np.testing.assert_array_equal(first.predict_on_batch(xf),
                                  last.predict_on_batch(x).transpose(0, 3, 1, 2))


def test_inference_on_a_blas_twin_keeps_its_weight_copy():
    """A batch-1 channels_first layer whose channels_last twin runs im2col_blas (a large
    weight for its 4 output pixels): without a kept weight the forward declines
    via_last (its weight would be copied every call); in inference it runs it, on a
    copy kept with the layer's packed weights, equal to the channels_last layer's
    output and renewed when the kernel is written in place.  (planes_blas, which
    takes such calls in channels_first before via_last is asked, is held off.)"""
    with tuning.override(planes_weight_bytes_per_pixel=1 << 40):
        _check_inference_on_a_blas_twin()


def _check_inference_on_a_blas_twin():
    f32 = np.float32
    e = _explain((1, 64, 2, 2), (64, 64, 3, 3), f32, padding=1,
                 data_format="channels_first")
    assert e.algorithm != "via_last" and "im2col_blas" in e.refused["via_last"]
    rng = np.random.default_rng(24)

    def conv(fmt):
        layer = fastconv.layers.Conv2D(64, 3, padding="same", data_format=fmt)
        shape = (64, 2, 2) if fmt == "channels_first" else (2, 2, 64)
        return fastconv.models.Sequential([fastconv.layers.Input(shape), layer]), layer

    (first, lf), (last, ll) = conv("channels_first"), conv("channels_last")
    weights = [rng.standard_normal(w.shape).astype(f32) for w in last.get_weights()]
    first.set_weights(weights)
    last.set_weights(weights)
    x = rng.standard_normal((1, 2, 2, 64)).astype(f32)
    xf = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    for step in range(3):
        if step == 2:
            lf.kernel[1, 2, 3, 4] += 1.0
            ll.kernel[1, 2, 3, 4] += 1.0
        np.testing.assert_array_equal(first.predict_on_batch(xf),
                                      last.predict_on_batch(x).transpose(0, 3, 1, 2))
    assert "via_last weight" in lf._prepared["kernel"]._values
