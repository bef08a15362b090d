"""Parity of functional models with Keras 3: a residual block (conv, batch norm) with
Add, a Concatenate of two branches, a shared layer, two outputs; Keras's weights
through set_weights give Keras's predictions, and three SGD steps give Keras's weights
and moving statistics.

Skipped when keras is not importable; run it in the TensorFlow environment:

    KERAS_BACKEND=tensorflow PYTHONPATH=. /tmp/venv-tf/bin/python -m pytest \\
        -o addopts="" tests/test_keras_parity_functional.py
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import fastconv  # noqa: E402
from fastconv import layers as fl  # noqa: E402

KL = keras.layers


def build(lib, L, input_fn, model_cls):
    """The same graph in Keras (lib=keras) or fastconv."""
    x = input_fn((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", name="c1")(x)
    h = L.Activation("relu", name="r1")(L.BatchNormalization(
        momentum=0.9, gamma_initializer="random_normal",
        beta_initializer="random_normal", name="bn1")(h))
    h = L.Conv2D(3, 3, padding="same", name="c2")(h)
    h = L.Add(name="add")([h, x])
    a = L.Conv2D(2, 1, activation="tanh", name="branch_a")(h)
    b = L.MaxPooling2D(2, strides=1, padding="same", name="branch_b")(h)
    h = L.Concatenate(name="cat")([a, b])
    h = L.AveragePooling2D(2, name="pool")(h)
    f = L.Flatten(name="flat")(h)
    shared = L.Dense(6, activation="sigmoid", name="shared")
    h = L.Average(name="avg")([shared(f), shared(L.Dense(int(f.shape[-1]),
                                                          name="proj")(f))])
    out = L.Dense(3, activation="softmax", name="out")(h)
    return model_cls(x, out)


def pair():
    k = build(keras, KL, lambda s: keras.Input(s), keras.Model)
    f = build(fastconv, fl, lambda s: fastconv.Input(s), fastconv.Model)
    return k, f


def test_layer_order_and_weights_follow_keras():
    k, f = pair()
    assert [la.name for la in f.layers][1:] == [la.name for la in k.layers][1:]
    assert [w.shape for w in f.get_weights()] == \
        [tuple(w.shape) for w in k.get_weights()]


def test_predictions_match_keras():
    k, f = pair()
    f.set_weights(k.get_weights())
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 3)).astype(np.float32)
    want = k.predict(x, verbose=0)
    np.testing.assert_allclose(f.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f(x), want, rtol=1e-5, atol=1e-6)


def test_three_sgd_steps_give_keras_weights():
    k, f = pair()
    f.set_weights(k.get_weights())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    k.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    f.compile(fastconv.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    kh = k.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    fh = f.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(fh["loss"], kh["loss"], rtol=1e-5)
    for a, b in zip(f.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_two_outputs_match_keras_losses_and_weights():
    def two(L, input_fn, model_cls):
        x = input_fn((5,))
        h = L.Dense(4, activation="tanh", name="h")(x)
        return model_cls(x, [L.Dense(3, activation="softmax", name="p")(h),
                             L.Dense(1, name="r")(h)])
    k = two(KL, lambda s: keras.Input(s), keras.Model)
    f = two(fl, lambda s: fastconv.Input(s), fastconv.Model)
    f.set_weights(k.get_weights())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = [rng.integers(0, 3, 8), rng.standard_normal((8, 1)).astype(np.float32)]
    k.compile(keras.optimizers.SGD(0.05), ["sparse_categorical_crossentropy", "mse"],
              loss_weights=[1.0, 0.5])
    f.compile(fastconv.optimizers.SGD(0.05), ["sparse_categorical_crossentropy", "mse"],
              loss_weights=[1.0, 0.5])
    kh = k.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    fh = f.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    for key in ("loss", "p_loss", "r_loss"):
        np.testing.assert_allclose(fh[key], kh[key], rtol=1e-5)
    for a, b in zip(f.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    ke = k.evaluate(x, y, verbose=0)
    fe = f.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(fe, ke, rtol=1e-5)


def test_model_from_a_keras_functional_config():
    """Keras's own get_config() (inbound_nodes, input_layers, output_layers) builds
    the same graph here, each layer entry made by a translator (what a reader of
    .keras files passes as make_layer)."""
    from fastconv.keras_files._config import layer_from_keras

    k, _ = pair()
    merges = {"Add": fl.Add, "Concatenate": fl.Concatenate, "Average": fl.Average}

    def make_layer(entry):
        cfg = entry["config"]
        if entry["class_name"] == "InputLayer":
            return fl.InputLayer(batch_shape=cfg["batch_shape"], name=cfg["name"])
        if entry["class_name"] in merges:
            extra = {"axis": cfg["axis"]} if "axis" in cfg else {}
            return merges[entry["class_name"]](name=cfg["name"], **extra)
        return layer_from_keras("<keras config>", entry)

    f = fastconv.Model.from_config(k.get_config(), make_layer=make_layer)
    assert [la.name for la in f.layers] == [la.name for la in k.layers]
    f.set_weights(k.get_weights())
    x = np.random.default_rng(3).standard_normal((4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(f.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_every_merge_layer_trains_as_keras():
    """Two inputs through Subtract, Multiply, Maximum, Minimum, Average, Add and
    Concatenate (axis 1): three Adam steps give Keras's losses and weights."""
    def net(L, input_fn, model_cls):
        a, b = input_fn((4, 3)), input_fn((4, 3))
        da = L.Dense(3, activation="tanh", name="da")(a)
        db = L.Dense(3, name="db")(b)
        merged = [L.Subtract(name="sub")([da, db]), L.Multiply(name="mul")([da, db, a]),
                  L.Maximum(name="max")([da, db]), L.Minimum(name="min")([db, a]),
                  L.Average(name="avg")([da, b]), L.Add(name="sum")([da, db, b])]
        h = L.Concatenate(axis=1, name="cat")(merged)
        out = L.Dense(2, name="out")(L.Flatten(name="flat")(h))
        return model_cls([a, b], out)
    k = net(KL, lambda s: keras.Input(s), keras.Model)
    f = net(fl, lambda s: fastconv.Input(s), fastconv.Model)
    f.set_weights(k.get_weights())
    rng = np.random.default_rng(4)
    x = [rng.standard_normal((9, 4, 3)).astype(np.float32) for _ in range(2)]
    y = rng.standard_normal((9, 2)).astype(np.float32)
    np.testing.assert_allclose(f.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    f.compile(fastconv.optimizers.Adam(0.01), "mse")
    kh = k.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0).history
    fh = f.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(fh["loss"], kh["loss"], rtol=1e-5)
    for a, b in zip(f.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
