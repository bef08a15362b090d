"""Parity with Keras 3 (the semantic oracle): same weights -> same predictions, and the
same training steps -> same losses and weights, for SGD, RMSprop and Adam.

Skipped when keras is not importable; run it in the TensorFlow environment:

    PYTHONPATH=/work/main /work/venv-tf/bin/python -m pytest tests/test_keras_parity.py
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import fastconv  # noqa: E402
from fastconv import layers as fl  # noqa: E402
from fastconv.models import Sequential  # noqa: E402

KL = keras.layers


def small_pair():
    """A small conv/pool/dense net exercising both pool types, 'same' padding, strides,
    rectangular kernels and every activation."""
    shape = (12, 10, 2)
    k = keras.Sequential([
        keras.Input(shape),
        KL.Conv2D(4, (3, 2), padding="same", activation="relu"),
        KL.MaxPooling2D(2),
        KL.Conv2D(6, 3, strides=(2, 1), padding="same", activation="tanh"),
        KL.AveragePooling2D((2, 2), padding="same"),
        KL.Flatten(),
        KL.Dense(8, activation="sigmoid"),
        KL.Dense(5, activation="softmax"),
    ])
    f = Sequential([
        fl.Input(shape),
        fl.Conv2D(4, (3, 2), padding="same", activation="relu"),
        fl.MaxPooling2D(2),
        fl.Conv2D(6, 3, strides=(2, 1), padding="same", activation="tanh"),
        fl.AveragePooling2D((2, 2), padding="same"),
        fl.Flatten(),
        fl.Dense(8, activation="sigmoid"),
        fl.Dense(5, activation="softmax"),
    ])
    return k, f, shape, 5


def lenet_pair():
    k = keras.Sequential([
        keras.Input((32, 32, 1)),
        KL.Conv2D(6, 5, activation="tanh"),
        KL.AveragePooling2D(2),
        KL.Conv2D(16, 5, activation="tanh"),
        KL.AveragePooling2D(2),
        KL.Conv2D(120, 5, activation="tanh"),
        KL.Flatten(),
        KL.Dense(84, activation="tanh"),
        KL.Dense(10, activation="softmax"),
    ])
    f = fastconv.applications.lenet5()
    return k, f, (32, 32, 1), 10


def gap_pair():
    """Global average pooling, groups and dilation, with a linear (logits) output."""
    shape = (9, 9, 4)
    k = keras.Sequential([
        keras.Input(shape),
        KL.Conv2D(6, 3, dilation_rate=2, groups=2, activation="relu"),
        KL.GlobalAveragePooling2D(),
        KL.Dense(3),
    ])
    f = Sequential([
        fl.Input(shape),
        fl.Conv2D(6, 3, dilation_rate=2, groups=2, activation="relu"),
        fl.GlobalAveragePooling2D(),
        fl.Dense(3),
    ])
    return k, f, shape, 3


PAIRS = {"small": small_pair, "lenet5": lenet_pair, "gap": gap_pair}


def data(shape, classes, n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    labels = rng.integers(0, classes, n)
    onehot = np.eye(classes, dtype=np.float32)[labels]
    return x, labels, onehot


@pytest.mark.parametrize("net", sorted(PAIRS))
def test_predictions_match_with_keras_weights(net):
    k, f, shape, classes = PAIRS[net]()
    f.set_weights(k.get_weights())
    x, _, _ = data(shape, classes, n=20)
    expected = k.predict(x, verbose=0)
    got = f.predict(x, verbose=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    # weights round-trip in Keras's order and shapes
    for a, b in zip(f.get_weights(), k.get_weights()):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def optimizers(name):
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=0.1), fastconv.optimizers.SGD(0.1)
    if name == "sgd_momentum":
        return (keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                fastconv.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
    if name == "rmsprop":
        return keras.optimizers.RMSprop(), fastconv.optimizers.RMSprop()
    if name == "rmsprop_momentum":
        return (keras.optimizers.RMSprop(momentum=0.5, centered=True),
                fastconv.optimizers.RMSprop(momentum=0.5, centered=True))
    return keras.optimizers.Adam(), fastconv.optimizers.Adam()


CASES = [("small", "sgd", "categorical_crossentropy"),
         ("small", "rmsprop", "categorical_crossentropy"),
         ("small", "adam", "sparse_categorical_crossentropy"),
         ("small", "sgd_momentum", "mean_squared_error"),
         ("small", "rmsprop_momentum", "categorical_crossentropy"),
         ("lenet5", "sgd", "categorical_crossentropy"),
         ("lenet5", "rmsprop", "categorical_crossentropy"),
         ("lenet5", "adam", "categorical_crossentropy"),
         ("gap", "adam", "mean_squared_error")]


@pytest.mark.parametrize("net,opt,loss", CASES)
def test_training_steps_match_keras(net, opt, loss):
    k, f, shape, classes = PAIRS[net]()
    kopt, fopt = optimizers(opt)
    k.compile(optimizer=kopt, loss=loss, jit_compile=False)
    f.compile(optimizer=fopt, loss=loss)
    f.set_weights(k.get_weights())
    for step in range(4):
        x, labels, onehot = data(shape, classes, n=16, seed=step + 1)
        y = labels if loss.startswith("sparse") else onehot
        kloss = float(k.train_on_batch(x, y))
        floss = f.train_on_batch(x, y)
        assert floss == pytest.approx(kloss, rel=1e-5, abs=1e-6), f"step {step}"
        # atol: 1% of an Adam step (lr 1e-3); Adam's first steps divide by sqrt(v), which
        # turns float32 rounding of near-zero gradients into visible differences.
        for i, (a, b) in enumerate(zip(f.get_weights(), k.get_weights())):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"weight {i} after step {step}")
    x, _, _ = data(shape, classes, n=8, seed=99)
    np.testing.assert_allclose(f.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_evaluate_matches_keras():
    k, f, shape, classes = small_pair()
    k.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"],
              jit_compile=False)
    f.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    f.set_weights(k.get_weights())
    x, _, onehot = data(shape, classes, n=50, seed=3)
    kl, ka = k.evaluate(x, onehot, batch_size=16, verbose=0)
    fl_, fa = f.evaluate(x, onehot, batch_size=16, verbose=0)
    assert fl_ == pytest.approx(kl, rel=1e-5)
    assert fa == pytest.approx(ka, abs=1e-7)


def test_initialisation_statistics_match_keras():
    """glorot_uniform with Keras's fans: the bound sqrt(6 / (fan_in + fan_out))."""
    fastconv.set_seed(0)
    conv = fl.Conv2D(64, (5, 3))
    conv.build((None, 8, 8, 32))
    kconv = KL.Conv2D(64, (5, 3))
    kconv.build((None, 8, 8, 32))
    kw, fw = np.asarray(kconv.kernel), conv.kernel
    assert fw.shape == kw.shape and fw.dtype == kw.dtype
    limit = np.sqrt(6.0 / (5 * 3 * 32 + 5 * 3 * 64))
    assert np.abs(fw).max() <= limit and np.abs(kw).max() <= limit
    assert np.abs(fw).max() > 0.99 * limit
    assert fw.std() == pytest.approx(kw.std(), rel=0.02)
    np.testing.assert_array_equal(conv.bias, np.zeros(64, np.float32))
