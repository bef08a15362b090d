"""Resampling of image batches, shared by the random geometric layers
(fastconv/layers/image_augmentation.py) and public as :func:`affine_transform`.

Geometric transforms resample the image through :func:`affine_transform` (Keras's
``keras.ops.image.affine_transform``): each output pixel reads the input at a point
given by a 3x3 projective matrix (Keras's 8 numbers ``a0 a1 a2 b0 b1 b2 c0 c1``),
with ``"bilinear"`` or ``"nearest"`` interpolation; input pixels outside the image
are taken by ``fill_mode``: ``"reflect"`` (d c b a | a b c d | d c b a), ``"wrap"``
(a b c d | a b c d), ``"nearest"`` (a a | a b c d | d d) or ``"constant"``
(``fill_value``).  Each of the interpolation's neighbours is mapped separately (as
Keras's NumPy and JAX backends and SciPy's padded map_coordinates do).

A resample plan (``resample_plan``) lists, per output pixel, the input pixels read and
their weights: ``_gather`` applies it, ``_scatter`` its adjoint (the gradient: each
input pixel collects the gradient of the outputs that read it, with their
interpolation weights).  ``_resize_plan`` is TF/Keras's bilinear resize (RandomCrop).
"""
import numpy as np

from .._validation import as_array
from .common import check_choice, check_layer_data_format

__all__ = ["affine_transform", "resample_plan", "FILL_MODES", "INTERPOLATIONS"]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")


def _map_indices(idx, size, fill_mode):
    """Integer indices (any ints) -> indices in [0, size), and a mask of the valid
    ones for "constant" (None otherwise)."""
    if fill_mode == "reflect":
        m = np.mod(idx, 2 * size)
        return np.where(m >= size, 2 * size - 1 - m, m), None
    if fill_mode == "wrap":
        return np.mod(idx, size), None
    if fill_mode == "nearest":
        return np.clip(idx, 0, size - 1), None
    valid = (idx >= 0) & (idx < size)
    return np.clip(idx, 0, size - 1), valid


def _round_half_up(v):
    return np.floor(v + 0.5)


def resample_plan(ys, xs, height, width, interpolation, fill_mode):
    """Where each output pixel reads: ``ys``, ``xs`` (N, Ho, Wo) source coordinates
    (row, column) in images of ``height`` x ``width``.

    Returns (index, weight, fill): index (K, M) rows of the (N*H*W)-row input (M =
    N*Ho*Wo, K = 4 neighbours for bilinear, 1 for nearest), their weights (K, M)
    (0 where "constant" leaves the image) and the weight of ``fill_value`` per output
    pixel (M,) (None unless fill_mode is "constant").
    """
    n = ys.shape[0]
    base = (np.arange(n, dtype=np.int64) * (height * width)).reshape(n, 1, 1)
    if interpolation == "nearest":
        corners = [(_round_half_up(ys).astype(np.int64),
                    _round_half_up(xs).astype(np.int64), None)]
    else:
        y0f, x0f = np.floor(ys), np.floor(xs)
        wy, wx = ys - y0f, xs - x0f
        y0, x0 = y0f.astype(np.int64), x0f.astype(np.int64)
        corners = [(y0, x0, (1 - wy) * (1 - wx)), (y0, x0 + 1, (1 - wy) * wx),
                   (y0 + 1, x0, wy * (1 - wx)), (y0 + 1, x0 + 1, wy * wx)]
    index, weight = [], []
    fill = None
    for iy, ix, w in corners:
        my, vy = _map_indices(iy, height, fill_mode)
        mx, vx = _map_indices(ix, width, fill_mode)
        w = np.ones(ys.shape) if w is None else w
        if vy is not None:
            valid = vy & vx
            fill = (0 if fill is None else fill) + np.where(valid, 0.0, w)
            w = np.where(valid, w, 0.0)
        index.append((base + my * width + mx).reshape(-1))
        weight.append(w.reshape(-1))
    return (np.stack(index), np.stack(weight),
            None if fill is None else fill.reshape(-1))


def _gather(x, plan, fill_value, out_hw):
    """Apply a resample plan to channels_last images x (N, H, W, C)."""
    index, weight, fill = plan
    n, c = x.shape[0], x.shape[-1]
    rows = x.reshape(-1, c)
    w = weight.astype(x.dtype)
    out = rows[index[0]] * w[0][:, None]
    for k in range(1, len(index)):
        out += rows[index[k]] * w[k][:, None]
    if fill is not None and fill_value != 0:
        out += (fill.astype(x.dtype) * x.dtype.type(fill_value))[:, None]
    return out.reshape((n,) + tuple(out_hw) + (c,))


def _scatter(grad, plan, in_shape):
    """The adjoint of _gather: the gradient (N, H, W, C) of the input from the
    output's (N, Ho, Wo, C)."""
    index, weight, _ = plan
    c = grad.shape[-1]
    g = grad.reshape(1, -1, c)
    flat = (index[:, :, None] * c + np.arange(c)).reshape(-1)
    vals = (weight[:, :, None] * g).reshape(-1)
    out = np.bincount(flat, weights=vals, minlength=int(np.prod(in_shape)))
    return out.reshape(in_shape).astype(grad.dtype, copy=False)


def _affine_coordinates(transform, height, width):
    """Source (ys, xs) of each output pixel for Keras's (N, 8) projective transforms
    (output column x, row y -> input ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k),
    k = c0 x + c1 y + 1)."""
    t = np.asarray(transform, dtype=np.float64)
    a0, a1, a2, b0, b1, b2, c0, c1 = (t[:, i].reshape(-1, 1, 1) for i in range(8))
    y = np.arange(height, dtype=np.float64).reshape(1, -1, 1)
    x = np.arange(width, dtype=np.float64).reshape(1, 1, -1)
    k = c0 * x + c1 * y + 1.0
    return (b0 * x + b1 * y + b2) / k, (a0 * x + a1 * y + a2) / k


def _to_last(x, data_format):
    return x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 2, 3, 1))


def _from_last(x, data_format):
    return x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 3, 1, 2))


def _check_transform(transform, n):
    t = np.asarray(transform, dtype=np.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != 8 or t.shape[0] not in (1, n):
        raise ValueError(f"transform must have shape (8,) or (N, 8) with N = {n} "
                         f"images, got shape {np.shape(transform)}")
    if not np.all(np.isfinite(t)):
        raise ValueError("transform must be finite")
    return np.broadcast_to(t, (n, 8))


def affine_transform(images, transform, interpolation="bilinear",
                     fill_mode="constant", fill_value=0.0, data_format=None):
    """Keras's ``keras.ops.image.affine_transform`` on a batch (N, H, W, C) (or
    (N, C, H, W) for channels_first): ``transform`` (8,) or (N, 8) maps each output
    pixel to the input point it reads (see the module docstring)."""
    data_format = check_layer_data_format(data_format)
    check_choice(interpolation, INTERPOLATIONS, "interpolation")
    check_choice(fill_mode, FILL_MODES, "fill_mode")
    x = as_array(images, "images")
    if x.ndim != 4:
        raise ValueError(f"images must be a batch of rank 4, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return _affine(x, _check_transform(transform, x.shape[0]), interpolation,
                   fill_mode, float(fill_value), data_format)[0]


def _affine(x, transform, interpolation, fill_mode, fill_value, data_format):
    xl = _to_last(x, data_format)
    n, h, w, _ = xl.shape
    ys, xs = _affine_coordinates(transform, h, w)
    plan = resample_plan(ys, xs, h, w, interpolation, fill_mode)
    return _from_last(_gather(xl, plan, fill_value, (h, w)), data_format), plan


def _affine_backward(grad, transform, interpolation, fill_mode, data_format):
    gl = _to_last(grad, data_format)
    n, h, w, _ = gl.shape
    ys, xs = _affine_coordinates(transform, h, w)
    plan = resample_plan(ys, xs, h, w, interpolation, fill_mode)
    return _from_last(_scatter(gl, plan, gl.shape), data_format)


def _resize_plan(n, in_hw, out_hw):
    """TF/Keras bilinear resize with half-pixel centres (no antialiasing): output
    pixel i reads (i + 0.5) * in / out - 0.5, edges clamped."""
    (h, w), (ho, wo) = in_hw, out_hw
    ys = (np.arange(ho) + 0.5) * (h / ho) - 0.5
    xs = (np.arange(wo) + 0.5) * (w / wo) - 0.5
    ys = np.broadcast_to(ys.reshape(1, -1, 1), (n, ho, wo))
    xs = np.broadcast_to(xs.reshape(1, 1, -1), (n, ho, wo))
    return resample_plan(ys, xs, h, w, "bilinear", "nearest")
