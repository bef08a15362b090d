"""Augmentation of training batches: random flips, random shifts (a random crop of a
zero-padded image) and mixup (exported by fastconv.datasets)."""
import numpy as np

__all__ = ["random_flip", "random_shift", "mixup"]


def _rng(seed_or_rng):
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def _spatial_axes(x, data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', "
                         f"got {data_format!r}")
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, H, W, C) or (N, C, H, W), "
                         f"got shape {x.shape}")
    return (1, 2) if data_format == "channels_last" else (2, 3)


def random_flip(x, rng=None, p=0.5, data_format="channels_last"):
    """Flip each image left-right with probability ``p``; returns a new array."""
    x = np.asarray(x)
    _, w_axis = _spatial_axes(x, data_format)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    flip = _rng(rng).random(len(x)) < p
    out = x.copy()
    out[flip] = np.flip(x[flip], axis=w_axis)
    return out


def random_shift(x, max_shift=4, rng=None, data_format="channels_last"):
    """Random crop of a zero-padded image: pad by ``max_shift`` on every side and cut a
    window of the original size at a random offset, so each image moves by up to
    ``max_shift`` pixels in each direction (the CIFAR "pad 4, crop 32" augmentation)."""
    x = np.asarray(x)
    h_axis, w_axis = _spatial_axes(x, data_format)
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) \
            or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
    if max_shift == 0:
        return x.copy()
    pad = [(0, 0)] * 4
    pad[h_axis] = pad[w_axis] = (max_shift, max_shift)
    padded = np.pad(x, pad)
    h, w = x.shape[h_axis], x.shape[w_axis]
    offs = _rng(rng).integers(0, 2 * max_shift + 1, size=(len(x), 2))
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(offs):
        if data_format == "channels_last":
            out[i] = padded[i, dy:dy + h, dx:dx + w, :]
        else:
            out[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return out


def mixup(x, y, alpha=0.2, rng=None):
    """Mixup (Zhang et al. 2018): blend each sample with a random partner,
    ``lam * a + (1 - lam) * b`` for inputs and one-hot labels, lam ~ Beta(alpha, alpha)
    drawn per sample. ``x`` is converted to float; ``y`` must be one-hot (N, K)."""
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if y.ndim != 2:
        raise ValueError(f"y must be one-hot labels of shape (N, K) (see to_categorical), "
                         f"got shape {y.shape}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    g = _rng(rng)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    lam = g.beta(alpha, alpha, size=len(x)).astype(dtype)
    perm = g.permutation(len(x))
    lx = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    xm = lx * x.astype(dtype) + (1 - lx) * x[perm].astype(dtype)
    ydt = y.dtype if np.issubdtype(y.dtype, np.floating) else np.dtype(np.float32)
    ly = lam.astype(ydt)[:, None]
    ym = ly * y.astype(ydt) + (1 - ly) * y[perm].astype(ydt)
    return xm, ym
