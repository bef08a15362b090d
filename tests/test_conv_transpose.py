"""conv_transpose2d and its gradients: against a naive scatter loop (the definition),
PyTorch's conv_transpose2d + autograd where torch is importable, float64 finite
differences, both layouts, and the error messages."""
import numpy as np
import pytest

import fastconv
from fastconv.reference import numeric_gradient

# (stride, padding, output_padding, groups, dilation)
CASES = [(1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (3, 0, 2, 2, 1), (2, 2, 1, 2, 2),
         ((2, 3), (0, 1), (1, 2), 1, 1), (1, 1, 1, 1, 2), ((1, 2), (2, 0), (0, 1), 3, (2, 1)),
         (2, (1, 3), 0, 1, 1)]


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def naive(x, w, b, stride, padding, output_padding, groups, dilation):
    """The definition, channels_first: every input pixel scatters its kernel-weighted
    value into the output at i * stride - padding + k * dilation."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(pair, (stride, padding,
                                                          output_padding, dilation))
    n, c_in, h, wd = x.shape
    _, cog, kh, kw = w.shape
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    # an uncropped canvas large enough for every scattered position
    full = np.zeros((n, cog * groups, ph + ho + (h - 1) * sh + dh * kh,
                     pw + wo + (wd - 1) * sw + dw * kw))
    cig = c_in // groups
    for g in range(groups):
        xs = x[:, g * cig:(g + 1) * cig]
        for a in range(kh):
            for c in range(kw):
                contrib = np.einsum("nchw,co->nohw", xs, w[g * cig:(g + 1) * cig, :, a, c])
                full[:, g * cog:(g + 1) * cog,
                     a * dh:a * dh + (h - 1) * sh + 1:sh,
                     c * dw:c * dw + (wd - 1) * sw + 1:sw] += contrib
    y = full[:, :, ph:ph + ho, pw:pw + wo]
    return y + (0 if b is None else b[:, None, None])


def arrays(rng, case, dtype=np.float64, n=2, c_in=6, cog=2, hw=(5, 4), k=(3, 2)):
    stride, padding, output_padding, groups, dilation = case
    x = rng.standard_normal((n, c_in) + hw).astype(dtype)
    w = rng.standard_normal((c_in, cog) + k).astype(dtype)
    b = rng.standard_normal(cog * groups).astype(dtype)
    return x, w, b


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_the_scatter_definition(case, rng):
    x, w, b = arrays(rng, case)
    y = fastconv.conv_transpose2d(x, w, b, *case[:3], groups=case[3], dilation=case[4])
    np.testing.assert_allclose(y, naive(x, w, b, *case), rtol=1e-12, atol=1e-12)
    assert y.shape == fastconv.conv_transpose2d_output_shape(
        x.shape, w.shape, *case[:3], groups=case[3], dilation=case[4])


@pytest.mark.parametrize("case", CASES)
def test_channels_last_is_channels_first_transposed(case, rng):
    x, w, b = arrays(rng, case, np.float32)
    kw = dict(stride=case[0], padding=case[1], output_padding=case[2], groups=case[3],
              dilation=case[4])
    y = fastconv.conv_transpose2d(x, w, b, **kw)
    x_last, w_last = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    y_last = fastconv.conv_transpose2d(x_last, w_last, b, data_format="channels_last",
                                       **kw)
    assert y_last.dtype == np.float32
    np.testing.assert_allclose(y_last, y.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    up = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = fastconv.conv_transpose2d_backward(up, x, w, **kw)
    gxl, gwl, gbl = fastconv.conv_transpose2d_backward(
        up.transpose(0, 2, 3, 1), x_last, w_last, data_format="channels_last", **kw)
    np.testing.assert_allclose(gxl, gx.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gwl, gw.transpose(2, 3, 1, 0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gbl, gb, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_and_autograd(case, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = arrays(rng, case)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv_transpose2d(xt, wt, bt, case[0], case[1], case[2], case[3], case[4])
    kw = dict(stride=case[0], padding=case[1], output_padding=case[2], groups=case[3],
              dilation=case[4])
    y = fastconv.conv_transpose2d(x, w, b, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    up = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(up))
    gx = fastconv.conv_transpose2d_grad_input(up, w, x.shape, **kw)
    gw = fastconv.conv_transpose2d_grad_weight(up, x, w.shape, **kw)
    gb = fastconv.conv_transpose2d_grad_bias(up)
    for got, want in ((gx, xt.grad), (gw, wt.grad), (gb, bt.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-11, atol=1e-11)
    bx, bw, bb = fastconv.conv_transpose2d_backward(up, x, w, **kw)
    np.testing.assert_array_equal(bx, gx)
    np.testing.assert_array_equal(bw, gw)
    np.testing.assert_array_equal(bb, gb)
    assert fastconv.conv_transpose2d_backward(up, x, w, has_bias=False, **kw)[2] is None


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[6]])
def test_gradients_match_finite_differences(case, rng):
    x, w, b = arrays(rng, case, n=1, c_in=3 * case[3], cog=2, hw=(3, 3))
    kw = dict(stride=case[0], padding=case[1], output_padding=case[2], groups=case[3],
              dilation=case[4])
    y = fastconv.conv_transpose2d(x, w, b, **kw)
    up = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(up * fastconv.conv_transpose2d(x, w, b, **kw)))
    gx, gw, gb = fastconv.conv_transpose2d_backward(up, x, w, **kw)
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gw, numeric_gradient(f, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, numeric_gradient(f, b), rtol=1e-6, atol=1e-8)


def test_a_transposed_convolution_is_the_adjoint_of_conv2d(rng):
    """<conv2d(u), v> == <u, conv_transpose2d(v)> for the same weight and arguments."""
    u = rng.standard_normal((2, 4, 11, 9))
    w = rng.standard_normal((6, 2, 3, 3))
    y = fastconv.conv2d(u, w, stride=2, padding=1, groups=2)
    v = rng.standard_normal(y.shape)
    t = fastconv.conv_transpose2d(v, w, stride=2, padding=1, groups=2,
                                  output_padding=0)
    t = np.pad(t, ((0, 0), (0, 0), (0, 11 - t.shape[2]), (0, 9 - t.shape[3])))
    assert np.sum(y * v) == pytest.approx(np.sum(u * t), rel=1e-12)


def test_bad_arguments_raise_clear_errors(rng):
    x = rng.standard_normal((1, 4, 5, 5))
    w = rng.standard_normal((4, 2, 3, 3))
    ct = fastconv.conv_transpose2d
    with pytest.raises(ValueError, match="output_padding must be smaller.*output_padding=2"):
        ct(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="weight must have C_in = 4"):
        ct(x, rng.standard_normal((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="groups=3 does not divide"):
        ct(x, w, groups=3)
    with pytest.raises(ValueError, match="padding must be"):
        ct(x, w, padding=-1)
    with pytest.raises(ValueError, match="stride must be positive, got 0"):
        ct(x, w, stride=0)
    with pytest.raises(TypeError, match="groups must be a positive int, got 1.5"):
        ct(x, w, groups=1.5)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        ct(x, w, np.zeros(3))
    with pytest.raises(ValueError, match="padding=4 leaves no output height"):
        ct(x, w, padding=4)
    with pytest.raises(ValueError, match="input must be a 4-D array"):
        ct(x[0], w)
    with pytest.raises(TypeError, match="share one dtype"):
        ct(x.astype(np.float32), w)
    with pytest.raises(ValueError, match="data_format must be"):
        ct(x, w, data_format="NCHW")
    with pytest.raises(ValueError, match=r"grad_output must have the output shape"):
        fastconv.conv_transpose2d_grad_input(np.zeros((1, 2, 6, 6)), w, x.shape)
