"""Batch augmentations: mixup and cutmix (fastconv/augmentation.py)."""
import numpy as np
import pytest

from fastconv import augmentation as A
from fastconv import datasets


def batch(n=6, h=8, w=10, c=3, k=4, data_format="channels_last", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, h, w, c)).astype(np.float32)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    return x, y


def test_mixup_is_the_datasets_mixup():
    assert A.mixup is datasets.mixup
    x, y = batch()
    xm, ym = A.MixUp(alpha=0.4, seed=3)(x, y)
    xr, yr = datasets.mixup(x, y, alpha=0.4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(xm, xr)
    np.testing.assert_array_equal(ym, yr)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_cutmix_pastes_a_box_and_mixes_labels_by_its_area(data_format):
    x, y = batch(n=16, data_format=data_format)
    xm, ym = A.cutmix(x, y, alpha=1.0, rng=np.random.default_rng(5),
                      data_format=data_format)
    # the same draws, recomputed independently
    g = np.random.default_rng(5)
    lam = g.beta(1.0, 1.0, 16)
    h, w = 8, 10
    cy, cx = g.integers(0, h, 16), g.integers(0, w, 16)
    perm = g.permutation(16)
    xl = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    xml = xm if data_format == "channels_last" else xm.transpose(0, 2, 3, 1)
    for i in range(16):
        ch, cw = int(h * np.sqrt(1 - lam[i])), int(w * np.sqrt(1 - lam[i]))
        y0, y1 = max(cy[i] - ch // 2, 0), min(cy[i] - ch // 2 + ch, h)
        x0, x1 = max(cx[i] - cw // 2, 0), min(cx[i] - cw // 2 + cw, w)
        expected = xl[i].copy()
        expected[y0:y1, x0:x1] = xl[perm[i]][y0:y1, x0:x1]
        np.testing.assert_array_equal(xml[i], expected)
        r = max(y1 - y0, 0) * max(x1 - x0, 0) / (h * w)
        np.testing.assert_allclose(ym[i], (1 - r) * y[i] + r * y[perm[i]], rtol=1e-6)
    assert xm.dtype == x.dtype and ym.dtype == np.float32


def test_cutmix_box_area_is_about_one_minus_lambda():
    lam = np.full(2000, 0.64)
    y0, y1, x0, x1 = A.cutmix_boxes(lam, 100, 100, np.random.default_rng(0))
    area = (y1 - y0) * (x1 - x0) / 1e4
    assert area.max() == pytest.approx(0.36)      # unclipped boxes: 60 x 60
    assert 0.09 <= area.min() and area.mean() < 0.36   # clipped at the edges


def test_callables_are_seeded_batch_transforms():
    x, y = batch()
    for cls in (A.MixUp, A.CutMix):
        a, b = cls(seed=1), cls(seed=1)
        first = a(x, y)
        for u, v in zip(first, b(x, y)):
            np.testing.assert_array_equal(u, v)
        assert not np.array_equal(first[0], a(x, y)[0])  # the generator moves on
        assert repr(a).startswith(cls.__name__)
        assert cls(**a.get_config()).get_config() == a.get_config()


@pytest.mark.parametrize("call, match", [
    (lambda x, y: A.cutmix(x, y, alpha=0), "alpha"),
    (lambda x, y: A.cutmix(x, y[:3]), "same length"),
    (lambda x, y: A.cutmix(x, y.argmax(1)), "one-hot"),
    (lambda x, y: A.cutmix(x[:, 0], y), "batch of images"),
    (lambda x, y: A.cutmix(x, y, data_format="nhwc"), "data_format"),
    (lambda x, y: A.CutMix(alpha=-1.0), "alpha"),
    (lambda x, y: A.MixUp(alpha=float("inf")), "alpha"),
    (lambda x, y: A.CutMix(data_format="nchw"), "data_format"),
])
def test_errors(call, match):
    x, y = batch()
    with pytest.raises(ValueError, match=match):
        call(x, y)
