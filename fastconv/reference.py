"""Naive reference implementations: the test oracle and the benchmark baseline.

Written for clarity, not speed: a NumPy loop over output pixels, channels_first,
float64 accumulation unless the input is float32.  They share nothing with the compiled
kernels except the shape arithmetic in fastconv/shapes.py (itself tested against
hand-computed cases), so agreement between the two is real evidence.

Every function takes explicit ``pads = ((top, bottom), (left, right))``; use
:func:`fastconv.shapes.resolve_padding` to turn "same"/"valid" into that.
"""
import numpy as np

__all__ = ["numeric_gradient", "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "to_channels_first", "to_channels_last",
           "max_pool2d_forward", "max_pool2d_grad_input", "avg_pool2d_forward",
           "avg_pool2d_grad_input"]


def to_channels_first(x):
    """(N, H, W, C) -> (N, C, H, W)."""
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def to_channels_last(x):
    """(N, C, H, W) -> (N, H, W, C)."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def _pad(x, pads):
    (t, b), (l, r) = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def _out_size(n, k, s, d, before, after):
    return (n + before + after - (k - 1) * d - 1) // s + 1


def _windows(h, w, kh, kw, stride, dilation, pads):
    """Yield (oy, ox, row_slice, col_slice) into the padded input, one per output pixel."""
    sy, sx = stride
    dy, dx = dilation
    oh = _out_size(h, kh, sy, dy, *pads[0])
    ow = _out_size(w, kw, sx, dx, *pads[1])
    for oy in range(oh):
        for ox in range(ow):
            rows = slice(oy * sy, oy * sy + (kh - 1) * dy + 1, dy)
            cols = slice(ox * sx, ox * sx + (kw - 1) * dx + 1, dx)
            yield oy, ox, rows, cols


def conv2d_forward(x, weight, bias=None, stride=(1, 1), pads=((0, 0), (0, 0)),
                   dilation=(1, 1), groups=1):
    """y[n, o, oy, ox] = sum_{c, i, j} x_pad[n, g*Cg + c, oy*sy + i*dy, ox*sx + j*dx]
    * weight[o, c, i, j] (+ bias[o]), with g the group of output channel o.

    x: (N, C, H, W); weight: (C_out, C/groups, kh, kw) (channels_first).
    """
    n, c, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    cog = c_out // groups
    xp = _pad(x, pads)
    oh = _out_size(h, kh, stride[0], dilation[0], *pads[0])
    ow = _out_size(w, kw, stride[1], dilation[1], *pads[1])
    y = np.zeros((n, c_out, oh, ow), dtype=np.result_type(x, weight))
    for oy, ox, rows, cols in _windows(h, w, kh, kw, stride, dilation, pads):
        for g in range(groups):
            win = xp[:, g * cg:(g + 1) * cg, rows, cols]            # (N, Cg, kh, kw)
            wg = weight[g * cog:(g + 1) * cog]                       # (Cog, Cg, kh, kw)
            y[:, g * cog:(g + 1) * cog, oy, ox] = np.tensordot(win, wg, axes=([1, 2, 3],
                                                                              [1, 2, 3]))
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv2d_grad_input(grad_y, weight, x_shape, stride=(1, 1), pads=((0, 0), (0, 0)),
                      dilation=(1, 1), groups=1):
    """dL/dx: every output pixel's gradient scattered back through its window."""
    n, c, h, w = x_shape
    c_out, cg, kh, kw = weight.shape
    cog = c_out // groups
    (t, b), (l, r) = pads
    gxp = np.zeros((n, c, h + t + b, w + l + r), dtype=grad_y.dtype)
    for oy, ox, rows, cols in _windows(h, w, kh, kw, stride, dilation, pads):
        for g in range(groups):
            gy = grad_y[:, g * cog:(g + 1) * cog, oy, ox]             # (N, Cog)
            wg = weight[g * cog:(g + 1) * cog]                        # (Cog, Cg, kh, kw)
            gxp[:, g * cg:(g + 1) * cg, rows, cols] += np.tensordot(gy, wg, axes=(1, 0))
    return gxp[:, :, t:t + h, l:l + w]


def conv2d_grad_weight(grad_y, x, weight_shape, stride=(1, 1), pads=((0, 0), (0, 0)),
                       dilation=(1, 1), groups=1):
    """dL/dweight: each output pixel's gradient times the input window it saw."""
    n, c, h, w = x.shape
    c_out, cg, kh, kw = weight_shape
    cog = c_out // groups
    xp = _pad(x, pads)
    gw = np.zeros(weight_shape, dtype=grad_y.dtype)
    for oy, ox, rows, cols in _windows(h, w, kh, kw, stride, dilation, pads):
        for g in range(groups):
            gy = grad_y[:, g * cog:(g + 1) * cog, oy, ox]             # (N, Cog)
            win = xp[:, g * cg:(g + 1) * cg, rows, cols]              # (N, Cg, kh, kw)
            gw[g * cog:(g + 1) * cog] += np.tensordot(gy, win, axes=(0, 0))
    return gw


def conv2d_grad_bias(grad_y):
    """dL/dbias for channels_first grad_y: a sum over batch and pixels."""
    return grad_y.sum(axis=(0, 2, 3))


# --------------------------------------------------------------------------------------
# Pooling (channels_first, explicit pads ((top, bottom), (left, right)))
# --------------------------------------------------------------------------------------

def _window_cells(h, w, kh, kw, stride, pads):
    """Yield (oy, ox, cells): cells lists (position in window, iy, ix) of the real
    (unpadded) input cells of each output pixel's window, in row-major window order."""
    (t, _), (l, _) = pads
    for oy, ox, rows, cols in _windows(h, w, kh, kw, stride, (1, 1), pads):
        cells = []
        for i, py in enumerate(range(rows.start, rows.stop)):
            for j, px in enumerate(range(cols.start, cols.stop)):
                iy, ix = py - t, px - l
                if 0 <= iy < h and 0 <= ix < w:
                    cells.append((i * kw + j, iy, ix))
        yield oy, ox, cells


def max_pool2d_forward(x, pool_size, stride, pads=((0, 0), (0, 0))):
    """Max pooling of x (N, C, H, W) over the real cells of each window.

    Returns ``(y, positions)``: positions (int64, shaped like y) is the row-major place
    ``i * kw + j`` in the window of the first maximum (np.argmax's rule, under which the
    first NaN counts as the maximum).
    """
    n, c, h, w = x.shape
    kh, kw = pool_size
    oh = _out_size(h, kh, stride[0], 1, *pads[0])
    ow = _out_size(w, kw, stride[1], 1, *pads[1])
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    positions = np.empty((n, c, oh, ow), dtype=np.int64)
    for oy, ox, cells in _window_cells(h, w, kh, kw, stride, pads):
        vals = np.stack([x[:, :, iy, ix] for _, iy, ix in cells], axis=-1)  # (N, C, K)
        best = np.argmax(vals, axis=-1)
        y[:, :, oy, ox] = np.take_along_axis(vals, best[..., None], axis=-1)[..., 0]
        positions[:, :, oy, ox] = np.array([p for p, _, _ in cells])[best]
    return y, positions


def max_pool2d_grad_input(grad_y, positions, x_shape, pool_size, stride,
                          pads=((0, 0), (0, 0))):
    """dL/dx of max pooling: each output's gradient added to its window's winner."""
    n, c, h, w = x_shape
    kh, kw = pool_size
    (t, _), (l, _) = pads
    gx = np.zeros(x_shape, dtype=grad_y.dtype)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for oy, ox, _ in _window_cells(h, w, kh, kw, stride, pads):
        pos = positions[:, :, oy, ox]
        iy = oy * stride[0] - t + pos // kw
        ix = ox * stride[1] - l + pos % kw
        np.add.at(gx, (nn, cc, iy, ix), grad_y[:, :, oy, ox])
    return gx


def _divisor(cells, kh, kw, count_include_pad):
    return kh * kw if count_include_pad else len(cells)


def avg_pool2d_forward(x, pool_size, stride, pads=((0, 0), (0, 0)),
                       count_include_pad=True):
    """Average pooling of x (N, C, H, W): the sum of each window's real cells divided by
    kh * kw (count_include_pad) or by the number of real cells."""
    n, c, h, w = x.shape
    kh, kw = pool_size
    oh = _out_size(h, kh, stride[0], 1, *pads[0])
    ow = _out_size(w, kw, stride[1], 1, *pads[1])
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for oy, ox, cells in _window_cells(h, w, kh, kw, stride, pads):
        total = sum(x[:, :, iy, ix] for _, iy, ix in cells)
        y[:, :, oy, ox] = total / _divisor(cells, kh, kw, count_include_pad)
    return y


def avg_pool2d_grad_input(grad_y, x_shape, pool_size, stride, pads=((0, 0), (0, 0)),
                          count_include_pad=True):
    """dL/dx of average pooling: each output's gradient / divisor added to its cells."""
    n, c, h, w = x_shape
    kh, kw = pool_size
    gx = np.zeros(x_shape, dtype=grad_y.dtype)
    for oy, ox, cells in _window_cells(h, w, kh, kw, stride, pads):
        share = grad_y[:, :, oy, ox] / _divisor(cells, kh, kw, count_include_pad)
        for _, iy, ix in cells:
            gx[:, :, iy, ix] += share
    return gx


def numeric_gradient(f, x, eps=1e-6):
    """Central finite differences of the scalar ``f()`` with respect to every entry of x.

    ``x`` (float64) is perturbed in place, one entry at a time, and restored; ``f`` must
    read it.  The gradient oracle of the test suite.
    """
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g
