"""Batch augmentations on (images, one-hot labels): mixup and cutmix.

These mix samples *and* labels, so they are not layers (a layer sees only the
images): they are functions of a batch, and callables (``MixUp``, ``CutMix``) that
keep their own seeded generator, for use as a batch transform
``(x, y) -> (x, y)`` of a data pipeline.

- ``mixup(x, y, alpha, rng)`` (Zhang et al. 2018): ``lam * a + (1 - lam) * b`` for
  images and labels, lam ~ Beta(alpha, alpha) per sample, b a shuffled partner
  (the same function as ``fastconv.datasets.mixup``).
- ``cutmix(x, y, alpha, rng)`` (Yun et al. 2019): per sample, lam ~ Beta(alpha,
  alpha), a box of side ratio sqrt(1 - lam) (area about 1 - lam) centred at a
  uniform pixel and clipped to the image is pasted from the shuffled partner; the
  labels are mixed by the box's actual area: ``y' = (1 - r) y_a + r y_b``, r = box
  area / image area.
"""
import numbers

import numpy as np

from . import _random
from ._augment import _rng, _spatial_axes, mixup

__all__ = ["mixup", "cutmix", "cutmix_boxes", "MixUp", "CutMix"]


def _check_alpha(alpha):
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) \
            or not alpha > 0 or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return float(alpha)


def _check_xy(x, y):
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if y.ndim != 2:
        raise ValueError(f"y must be one-hot labels of shape (N, K) (see to_categorical), "
                         f"got shape {y.shape}")
    return x, y


def cutmix_boxes(lam, height, width, rng):
    """Boxes (y0, y1, x0, x1) (each (N,) ints, end exclusive) of side ratio
    sqrt(1 - lam), centred at uniform pixels, clipped to the image."""
    ratio = np.sqrt(1.0 - np.asarray(lam, dtype=np.float64))
    cut_h = (height * ratio).astype(np.int64)
    cut_w = (width * ratio).astype(np.int64)
    cy = rng.integers(0, height, size=len(ratio))
    cx = rng.integers(0, width, size=len(ratio))
    y0 = np.clip(cy - cut_h // 2, 0, height)
    y1 = np.clip(cy + cut_h - cut_h // 2, 0, height)
    x0 = np.clip(cx - cut_w // 2, 0, width)
    x1 = np.clip(cx + cut_w - cut_w // 2, 0, width)
    return y0, y1, x0, x1


def cutmix(x, y, alpha=1.0, rng=None, data_format="channels_last"):
    """CutMix of a batch of images (N, H, W, C) (or (N, C, H, W)) and one-hot labels
    (N, K); returns new arrays (float labels, images of x's dtype).

    Draw order from ``rng`` (a Generator or seed): lam (N,) ~ Beta(alpha, alpha), box
    centres y then x (N,) each, then the partner permutation.
    """
    alpha = _check_alpha(alpha)
    x, y = _check_xy(x, y)
    h_axis, w_axis = _spatial_axes(x, data_format)
    g = _rng(rng)
    n, height, width = len(x), x.shape[h_axis], x.shape[w_axis]
    lam = g.beta(alpha, alpha, size=n)
    y0, y1, x0, x1 = cutmix_boxes(lam, height, width, g)
    perm = g.permutation(n)
    rows = np.arange(height).reshape(1, -1, 1)
    cols = np.arange(width).reshape(1, 1, -1)
    inside = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None])
              & (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))
    mask = inside[..., None] if data_format == "channels_last" else inside[:, None]
    xm = np.where(mask, x[perm], x)
    area = ((y1 - y0) * (x1 - x0)) / float(height * width)
    ydt = y.dtype if np.issubdtype(y.dtype, np.floating) else np.dtype(np.float32)
    r = area.astype(ydt)[:, None]
    ym = (1 - r) * y.astype(ydt) + r * y[perm].astype(ydt)
    return xm, ym


class _BatchTransform:
    """A seeded (x, y) -> (x, y) transform; ``generator`` is its own Generator."""

    def __init__(self, alpha, seed=None):
        self.alpha = _check_alpha(alpha)
        self.seed = seed
        self.generator = _random.make_generator(seed)

    def __repr__(self):
        return f"{type(self).__name__}(alpha={self.alpha!r}, seed={self.seed!r})"

    def get_config(self):
        return {"alpha": self.alpha, "seed": self.seed}


class MixUp(_BatchTransform):
    """``MixUp(alpha=0.2, seed=None)(x, y)`` -> mixup(x, y, alpha, own generator)."""

    def __init__(self, alpha=0.2, seed=None):
        super().__init__(alpha, seed)

    def __call__(self, x, y):
        return mixup(x, y, alpha=self.alpha, rng=self.generator)


class CutMix(_BatchTransform):
    """``CutMix(alpha=1.0, seed=None, data_format="channels_last")(x, y)`` ->
    cutmix(x, y, alpha, own generator)."""

    def __init__(self, alpha=1.0, seed=None, data_format="channels_last"):
        super().__init__(alpha, seed)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', "
                             f"got {data_format!r}")
        self.data_format = data_format

    def __call__(self, x, y):
        return cutmix(x, y, alpha=self.alpha, rng=self.generator,
                      data_format=self.data_format)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}
