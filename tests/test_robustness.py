"""Robustness: NaN/Inf propagation, memory stability, 64-bit index arithmetic."""
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
