"""Packed and folded weights kept between inference calls (fastconv/ops/conv/prepared.py).

The oracle of every case is a model built afresh with the same weights (nothing kept),
or the training-mode forward, which never keeps anything: a kept value that outlives a
change of the weights it came from shows up as a different prediction."""
import numpy as np
import pytest

import fastconv
from fastconv import layers
from fastconv.ops.conv.algorithms import winograd as _winograd
from fastconv.ops.conv.prepared import Prepared


def _net(data_format="channels_last", seed=0):
    shape = (12, 12, 16) if data_format == "channels_last" else (16, 12, 12)
    inp = fastconv.Input(shape)
    h = layers.Conv2D(32, 3, padding="same", use_bias=False,
                      data_format=data_format)(inp)
    h = layers.BatchNormalization(axis=-1 if data_format == "channels_last" else 1)(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(32, 3, padding="same", activation="relu",
                      data_format=data_format)(h)
    h = layers.DepthwiseConv2D(3, padding="same", data_format=data_format)(h)
    h = layers.Conv2D(8, 1, data_format=data_format)(h)
    model = fastconv.Model(inp, h)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.2
                       for w in model.get_weights()])
    bn = _bn(model)
    bn.gamma[...] = rng.uniform(0.5, 1.5, bn.gamma.shape)
    bn.moving_variance[...] = rng.uniform(0.5, 2.0, bn.moving_variance.shape)
    return model


def _bn(model):
    return next(layer for layer in model.layers
                if isinstance(layer, layers.BatchNormalization))


def _convs(model):
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]


def _fresh_prediction(model, x, data_format):
    other = _net(data_format, seed=1)
    other.set_weights(model.get_weights())
    _bn(other).epsilon = _bn(model).epsilon
    return other.predict(x, verbose=0)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_in_place_changes_are_seen(data_format):
    model = _net(data_format)
    shape = (3, 12, 12, 16) if data_format == "channels_last" else (3, 16, 12, 12)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    np.testing.assert_array_equal(first, _fresh_prediction(model, x, data_format))
    convs, bn = _convs(model), _bn(model)
    changes = [
        lambda: convs[0].kernel.__imul__(1.5),            # folded with the BN
        lambda: bn.moving_mean.__iadd__(0.25),
        lambda: bn.gamma.__setitem__(3, -2.0),
        lambda: setattr(bn, "epsilon", 0.5),
        lambda: convs[1].kernel.__setitem__((0, 0, 0, 0), 7.0),  # alone
        lambda: convs[2].kernel.__imul__(-1.0),           # depthwise
        lambda: convs[3].bias.__iadd__(1.0),              # bias (not packed)
    ]
    before = first
    for change in changes:
        change()
        now = model.predict(x, verbose=0)
        assert not np.array_equal(now, before)
        np.testing.assert_array_equal(now, _fresh_prediction(model, x, data_format))
        before = now


def test_set_weights_and_training_steps_are_seen():
    model = _net()
    model.compile(optimizer=fastconv.optimizers.SGD(0.05), loss="mse")
    x = np.random.default_rng(3).standard_normal((4, 12, 12, 16)).astype(np.float32)
    y = np.random.default_rng(4).standard_normal((4, 12, 12, 8)).astype(np.float32)
    model.predict(x, verbose=0)
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  _fresh_prediction(model, x, "channels_last"))
    model.set_weights([w * 0.5 for w in model.get_weights()])
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  _fresh_prediction(model, x, "channels_last"))


def test_inference_packs_once(monkeypatch):
    """The Winograd transform runs once per layer over repeated predictions (the
    point of keeping it), and again after the weights change."""
    calls = []
    real = _winograd.winograd_weights
    monkeypatch.setattr(_winograd, "winograd_weights",
                        lambda w, tile, half=False: calls.append(tile) or
                        real(w, tile, half))
    model = _net()
    x = np.random.default_rng(5).standard_normal((2, 12, 12, 16)).astype(np.float32)
    model.predict(x, verbose=0)
    first = len(calls)
    assert first == 2   # the two 3x3 convolutions (32 -> 32 at 12x12: Winograd)
    for _ in range(3):
        model.predict(x, verbose=0)
    assert len(calls) == first
    _convs(model)[1].kernel[...] += 0.0   # the same bits: still kept
    model.predict(x, verbose=0)
    assert len(calls) == first
    _convs(model)[1].kernel[0, 0, 0, 0] += 1.0
    model.predict(x, verbose=0)
    assert len(calls) == first + 1


def test_training_forward_keeps_nothing():
    model = _net()
    conv = _convs(model)[0]
    x = np.random.default_rng(6).standard_normal((2, 12, 12, 16)).astype(np.float32)
    conv.forward(x, training=True)
    assert all(len(p) == 0 for p in conv._prepared.values())
    conv.forward(x, training=False)
    assert len(conv._prepared["kernel"]) > 0


def test_prepared_compares_bits():
    a = np.array([1.0, np.nan, -0.0], np.float32)
    p = Prepared().of(a, None)
    assert p.get("k", lambda: 1) == 1
    assert p.of(a.copy(), None).get("k", lambda: 2) == 1      # same bits
    assert p.of(np.array([1.0, np.nan, 0.0], np.float32), None).get(
        "k", lambda: 3) == 3                                   # -0.0 -> 0.0 differs
    assert p.of(a.astype(np.float64), None).get("k", lambda: 4) == 4   # dtype
    assert p.of(a.reshape(3, 1), None).get("k", lambda: 5) == 5         # shape
    assert p.of(a.reshape(3, 1), np.zeros(2)).get("k", lambda: 6) == 6  # None -> array
    assert p.of(a.reshape(3, 1)).get("k", lambda: 7) == 7                # fewer arrays
    assert p.get("k", lambda: 8) == 7


def test_packs_are_kept_per_isa():
    """Predictions after switching the kernels' ISA (whose panels differ in width)
    equal a fresh model's: a pack made for one ISA is never fed to another's kernels."""
    from fastconv import _ext
    isas = ["portable", "avx2", "avx512"]
    available = isas[:isas.index(_ext.conv2d.best_isa()) + 1]
    if len(available) < 2:
        pytest.skip("one ISA on this CPU")
    model = _net()
    x = np.random.default_rng(8).standard_normal((2, 12, 12, 16)).astype(np.float32)
    before = _ext.conv2d.isa()
    try:
        for isa in available[::-1] + available:
            _ext.conv2d.set_isa(isa)
            np.testing.assert_allclose(model.predict(x, verbose=0),
                                       _fresh_prediction(model, x, "channels_last"),
                                       rtol=0, atol=0)
    finally:
        _ext.conv2d.set_isa(before)
