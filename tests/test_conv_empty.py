"""Convolutions with an empty dimension (batch, map, input or output channels), by
default and forced on every algorithm that says it can run them: the reference
loops' values, never a crash (a zero-channel weight gradient once divided by zero in
the kernels; the wide plan divided by a zero image size)."""
import contextlib

import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

CASES = [  # (n, h, c, c_out, k, stride, padding)
    (1, 0, 0, 0, 1, 1, 1),    # an empty map, padded: a 2x2 output of no channels
    (1, 7, 0, 0, 1, 1, 1),
    (2, 7, 0, 40, 3, 1, 1),   # no input channels: the bias gradient alone
    (2, 7, 16, 0, 3, 2, 1),   # no output channels
    (0, 7, 16, 40, 3, 1, 1),  # an empty batch
    (1, 7, 3, 40, 3, 1, 0),
]


def _reference(x, w, b, gy, stride, padding):
    kw = dict(stride=(stride, stride), pads=((padding, padding), (padding, padding)))
    x64, w64 = ref.to_channels_first(x), w.transpose(3, 2, 0, 1)
    gy64 = ref.to_channels_first(gy)
    y = ref.to_channels_last(ref.conv2d_forward(x64, w64, b, **kw))
    gx = ref.to_channels_last(ref.conv2d_grad_input(gy64, w64, x64.shape, **kw))
    gw = ref.conv2d_grad_weight(gy64, x64, w64.shape, **kw).transpose(2, 3, 1, 0)
    return y, gx, gw, gy.sum(axis=(0, 1, 2))


@pytest.mark.parametrize("n,h,c,c_out,k,stride,padding", CASES)
def test_empty_dimensions_on_every_algorithm(n, h, c, c_out, k, stride, padding):
    rng = np.random.default_rng(40)
    x = rng.standard_normal((n, h, h, c))
    w = rng.standard_normal((k, k, c, c_out))
    b = rng.standard_normal(c_out)
    kw = dict(stride=stride, padding=padding, data_format="channels_last")
    gy = rng.standard_normal(fastconv.conv2d_output_shape(x.shape, w.shape, **kw))
    want = _reference(x, w, b, gy, stride, padding)
    runs = [{}]
    for pass_ in ("forward", "grad_input", "grad_weight"):
        e = fastconv.explain_conv(x.shape, w.shape, stride, padding,
                                  data_format="channels_last", dtype="float64",
                                  pass_=pass_)
        runs += [{pass_: name} for name in e.runnable]
    for force in runs:
        with (fastconv.force_conv_algorithm(**force) if force
              else contextlib.nullcontext()):
            y = fastconv.conv2d(x, w, b, **kw)
            gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **kw)
        for got, exp in zip((y, gx, gw, gb), want):
            assert got.shape == exp.shape, force
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12, err_msg=str(force))
