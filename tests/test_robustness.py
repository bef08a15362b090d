"""Robustness: NaN/Inf propagation, memory stability, 64-bit index arithmetic."""
import contextlib
import sys

import numpy as np
import pytest

import fastconv


def test_nan_and_inf_propagate_through_conv_and_gradients():
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 2, 2] = np.nan
    x[0, 0, 5, 5] = np.inf
    w = np.ones((1, 1, 2, 2))
    y = fastconv.conv2d(x, w)                       # 5x5 output, windows of 2x2
    nan_windows = np.zeros((5, 5), bool)
    nan_windows[1:3, 1:3] = True                    # windows that contain (2, 2)
    assert np.isnan(y[0, 0][nan_windows]).all()
    assert y[0, 0, 4, 4] == np.inf                  # only window containing (5, 5)
    finite = ~nan_windows
    finite[4, 4] = False
    assert np.isfinite(y[0, 0][finite]).all() and not y[0, 0][finite].any()
    gy = np.zeros((1, 1, 5, 5))
    gy[0, 0, 0, 0] = np.nan
    gx, gw, gb = fastconv.conv2d_backward(gy, np.ones((1, 1, 6, 6)), w)
    assert np.isnan(gx[0, 0, :2, :2]).all() and np.isfinite(gx[0, 0, 2:, 2:]).all()
    assert np.isnan(gw).all() and np.isnan(gb).all()


_NAN_CASES = [
    # n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups: every kernel path
    (2, 3, 10, 9, 5, 3, 3, 1, ((0, 3), (1, 1)), 1, 1),     # windows wholly in padding
    (2, 4, 9, 12, 6, 2, 3, 1, ((2, 0), (1, 3)), (2, 1), 2),
    (2, 3, 12, 11, 7, 3, 3, 2, 1, 1, 1),                   # scatter input gradient
    (2, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1),                   # LeNet-5's C1
    (2, 6, 14, 14, 16, 5, 5, 1, ((0, 4), (0, 0)), 1, 1),
    (2, 16, 12, 12, 16, 3, 3, 1, 1, 1, 1),                 # Winograd (float32)
    (3, 8, 7, 40, 24, 3, 3, 1, ((0, 2), (0, 0)), 1, 1),
    (16, 8, 2, 3, 36, 1, 1, 1, 0, 1, 1),                   # pointwise (channels_last)
]
# Every algorithm that can run a case, forced on each pass it has (besides the default
# choice); Winograd aside where x or grad_y holds the NaN (the documented exception).
_NAN_ALGORITHMS = ["narrow", "wide", "pixel", "shifted", "im2col", "scatter", "dense_1x1",
                   "pointwise", "pointwise_blas", "im2col_blas", "phases"]


def _nan_paths(x_shape, w_shape, args, where, dtype):
    from fastconv import tuning
    stride, padding, dilation, groups, data_format = args
    paths = {"default": {}}
    for name in _NAN_ALGORITHMS:
        force = {}
        for pass_ in ("forward", "grad_input", "grad_weight"):
            if name not in fastconv.conv_algorithms(pass_):
                continue
            e = fastconv.explain_conv(x_shape, w_shape, stride, padding, dilation, groups,
                                      data_format, dtype=dtype, pass_=pass_,
                                      weight_finite=where != "w")
            if name in e.runnable:
                force[pass_] = name
        if force:
            paths[name] = force
    def no_winograd():
        return (tuning.override(winograd_min_channels=1 << 30) if where != "w"
                else contextlib.nullcontext())
    return paths, no_winograd


@pytest.mark.parametrize("case", _NAN_CASES)
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_non_finite_values_follow_the_reference_on_every_path(case, data_format):
    """A NaN or infinity in the weight, x or grad_y gives the reference's NaN and inf
    maps (the definition's arithmetic on the zero-padded input, as PyTorch) for y,
    grad_x and grad_weight, on every algorithm that runs the case and in both layouts.
    A NaN weight makes its whole output channel NaN, windows wholly in the bottom
    padding included.  (Only Winograd's NaN input reaching its whole tile is exempt:
    README.)"""
    from fastconv import reference as ref
    from fastconv.shapes import normalize_pair, normalize_padding, resolve_padding
    n, c, h, w, c_out, kh, kw, stride, padding, dilation, groups = case
    stride, dilation = normalize_pair(stride, "stride"), normalize_pair(dilation, "d")
    k_eff = tuple((k - 1) * d + 1 for k, d in zip((kh, kw), dilation))
    pads = resolve_padding(normalize_padding(padding), (h, w), k_eff, stride)
    last = data_format == "channels_last"
    args = (stride, padding, dilation, groups, data_format)
    for where, value in [("w", np.nan), ("w", np.inf), ("x", np.nan), ("gy", np.nan)]:
        rng = np.random.default_rng(5)
        x = rng.standard_normal((n, c, h, w))
        wt = rng.standard_normal((c_out, c // groups, kh, kw))
        b = rng.standard_normal(c_out)
        gy = rng.standard_normal(ref.conv2d_forward(x, wt, b, stride, pads, dilation,
                                                    groups).shape)
        {"w": wt, "x": x, "gy": gy}[where][-1, 0, -1, kw // 2] = value
        with np.errstate(all="ignore"):
            want = (ref.conv2d_forward(x, wt, b, stride, pads, dilation, groups),
                    ref.conv2d_grad_input(gy, wt, x.shape, stride, pads, dilation, groups),
                    ref.conv2d_grad_weight(gy, x, wt.shape, stride, pads, dilation,
                                           groups))
        if where == "w" and np.isnan(value):
            assert np.isnan(want[0][:, -1]).all()   # the whole output channel
        for dtype in (np.float32, np.float64):
            xi = (ref.to_channels_last(x) if last else x).astype(dtype)
            wi = (wt.transpose(2, 3, 1, 0) if last else wt).astype(dtype)
            gyi = (ref.to_channels_last(gy) if last else gy).astype(dtype)
            paths, no_winograd = _nan_paths(xi.shape, wi.shape, args, where, dtype)
            for name, force in paths.items():
                forced = (fastconv.force_conv_algorithm(**force) if force
                          else contextlib.nullcontext())
                with no_winograd(), forced, np.errstate(all="ignore"):
                    y = fastconv.conv2d(xi, wi, b.astype(dtype), *args)
                    gx, gw, _ = fastconv.conv2d_backward(gyi, xi, wi, *args)
                if last:
                    y, gx = ref.to_channels_first(y), ref.to_channels_first(gx)
                    gw = gw.transpose(3, 2, 0, 1)
                for label, got, ref_a in zip(("y", "grad_x", "grad_weight"),
                                             (y, gx, gw), want):
                    for test in (np.isnan, np.isposinf, np.isneginf):
                        assert np.array_equal(test(got), test(ref_a)), (
                            f"{label} {test.__name__} map, {where}={value}, path "
                            f"{name}, {np.dtype(dtype)}")


def test_forcing_a_shortcut_algorithm_on_a_non_finite_weight_raises():
    """The kernels that assume a finite weight refuse a NaN one, even when forced."""
    x = np.ones((2, 9, 9, 16), np.float32)
    w = np.ones((3, 3, 16, 32), np.float32)
    w[0, 0, 0, 0] = np.nan
    assert "pixel" in fastconv.explain_conv(x.shape, w.shape, padding=1,
                                            data_format="channels_last").runnable
    with fastconv.force_conv_algorithm(forward="pixel"):
        with pytest.raises(ValueError, match="pixel cannot run.*weight is not finite"):
            fastconv.conv2d(x, w, padding=1, data_format="channels_last")
    e = fastconv.explain_conv(x.shape, w.shape, padding=1, data_format="channels_last",
                              weight_finite=False)
    assert e.algorithm in ("shifted", "im2col")
    assert "not finite" in e.refused["pixel"]


def test_fused_conv_pool_leaves_non_finite_weights_to_the_separate_passes():
    """The fused Conv2D + pooling forwards decline a non-finite weight (None), so the
    layers run the separate passes, which follow the rule above."""
    from fastconv import conv
    x = np.random.default_rng(0).standard_normal((2, 28, 28, 1)).astype(np.float32)
    wt = np.ones((5, 5, 1, 6), np.float32)
    g = conv._geometry(x.shape, wt.shape, 1, 2, 1, 1, "channels_last")
    assert conv._forward_avg_pooled(g, x, wt, None, np.float32) is not None
    wt[4, 2, 0, 5] = np.nan
    assert conv._forward_avg_pooled(g, x, wt, None, np.float32) is None
    assert conv._forward_max_pooled(g, x, wt, None, np.float32) is None


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_repeated_calls_do_not_grow_memory():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4, 16, 16)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wl = np.ascontiguousarray(w.transpose(2, 3, 1, 0))

    def step():
        y = fastconv.conv2d(x, w, padding=1)
        fastconv.conv2d_backward(y, x, w, padding=1)
        yl = fastconv.conv2d(xl, wl, padding="same", data_format="channels_last")
        fastconv.conv2d_backward(yl, xl, wl, padding="same", data_format="channels_last")
        p, idx = fastconv.max_pool2d(y, 2, return_indices=True)
        fastconv.max_pool2d_backward(p, y, 2, indices=idx)
        a = fastconv.avg_pool2d(y, 2)
        fastconv.avg_pool2d_backward(a, y, 2)

    for _ in range(50):
        step()
    before = _rss_bytes()
    for _ in range(1000):
        step()
    growth = _rss_bytes() - before
    # One call allocates ~100 KB; a leak of even one buffer per call would add ~100 MB.
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 1000 calls"


@pytest.mark.slow
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_input_over_2_31_elements(data_format):
    """Index arithmetic is 64-bit: an input of more than 2**31 elements (8.6 GB float32).

    The input is np.zeros (pages only mapped when read) with two marked patches, one
    past element 2**31; outputs there are checked against a hand computation.
    """
    side = 46400                                    # side**2 = 2_152_960_000 > 2**31
    shape = (1, 1, side, side) if data_format == "channels_first" else (1, side, side, 1)
    x = np.zeros(shape, np.float32)
    plane = x.reshape(side, side)
    plane[-4:, -4:] = np.arange(16, dtype=np.float32).reshape(4, 4) + 1   # past 2**31
    plane[:2, :2] = [[1, 2], [3, 4]]
    assert (side - 4) * side > 2**31                 # the last patch lies past 2**31
    w = np.ones((1, 1, 2, 2), np.float32)
    if data_format == "channels_last":
        w = w.transpose(2, 3, 1, 0).copy()
    y = fastconv.conv2d(x, w, stride=2, data_format=data_format).reshape(side // 2, side // 2)
    # The patch covers rows/cols 46396..46399; the last two output windows start at
    # 46396 and 46398.
    patch = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    assert y[0, 0] == 10 and y[1, 1] == 0
    assert y[-1, -1] == patch[2:, 2:].sum() and y[-2, -2] == patch[:2, :2].sum()
    assert y[-1, -2] == patch[2:, :2].sum()
    p = fastconv.max_pool2d(x, 2, data_format=data_format).reshape(side // 2, side // 2)
    assert p[0, 0] == 4 and p[-1, -1] == patch[2:, 2:].max() and p[-2, -1] == 8
