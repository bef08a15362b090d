"""sample_weight and class_weight in fit, evaluate, train_on_batch and test_on_batch:
the weighted loss against a computation by hand, the gradient against duplicated
samples (integer weights), class weights as sample weights, weighted metrics, and,
where keras is importable, Keras 3's weights after three SGD steps."""
import os

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import optimizers
from fastconv.models import Sequential
from fastconv.utils import class_weight_to_sample_weights

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def dense_model(loss="sparse_categorical_crossentropy", activation="softmax", lr=0.1,
                dtype=None, metrics=("accuracy",), units=3):
    fastconv.set_seed(0)
    kwargs = {} if dtype is None else {"dtype": dtype}
    model = Sequential([L.Dense(5, activation="tanh", input_shape=(4,), **kwargs),
                        L.Dense(units, activation=activation, **kwargs)])
    model.compile(optimizers.SGD(learning_rate=lr), loss, metrics=list(metrics),
                  weighted_metrics=["accuracy"])
    return model


def data(n=12, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.rand(n, 4).astype(np.float32)
    y = rs.randint(0, 3, n)
    return x, y


def test_weighted_loss_by_hand():
    model = dense_model()
    x, y = data()
    w = np.random.RandomState(1).rand(12)
    p = model.predict(x, verbose=0).astype(np.float64)
    per = -np.log(p[np.arange(12), y])
    expected = (w * per).sum() / 12  # Keras: the weighted sum over the batch size
    logs = model.evaluate(x, y, sample_weight=w, batch_size=12, verbose=0,
                          return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    acc = (np.argmax(p, 1) == y).astype(float)
    # as Keras: compile(metrics=...) ignore the weights, weighted_metrics use them
    assert logs["accuracy"] == acc.mean()
    np.testing.assert_allclose(logs["weighted_accuracy"], (w * acc).sum() / w.sum(),
                               rtol=1e-12)
    # batches of 5, 5, 2: each batch's weighted mean, averaged by batch size
    logs = model.evaluate(x, y, sample_weight=w, batch_size=5, verbose=0,
                          return_dict=True)
    means = [(w[s] * per[s]).sum() / len(per[s]) for s in
             (slice(0, 5), slice(5, 10), slice(10, 12))]
    np.testing.assert_allclose(logs["loss"], (5 * means[0] + 5 * means[1]
                                              + 2 * means[2]) / 12, rtol=1e-5)
    assert model.test_on_batch(x, y, sample_weight=w, return_dict=True) == \
        model.evaluate(x, y, sample_weight=w, batch_size=12, verbose=0,
                       return_dict=True)


@pytest.mark.parametrize("loss,activation,targets", [
    ("sparse_categorical_crossentropy", "softmax", "sparse"),  # fused
    ("categorical_crossentropy", "softmax", "onehot"),  # fused
    ("mean_squared_error", "linear", "onehot"),  # not fused
    ("binary_crossentropy", "sigmoid", "onehot"),  # fused (sigmoid)
])
def test_gradient_equals_duplicated_samples(loss, activation, targets):
    """Integer weights w: the gradient of sum(w * l) / N is sum(w) / N times the
    gradient of the plain mean over the samples repeated w times."""
    x, labels = data()
    y = labels if targets == "sparse" else np.eye(3)[labels]
    w = np.array([0, 1, 2, 3, 1, 1, 2, 0, 1, 4, 1, 2])
    lr = 0.05
    weighted = dense_model(loss, activation, lr, "float64")
    start = weighted.get_weights()
    weighted.train_on_batch(x, y, sample_weight=w)
    dup = dense_model(loss, activation, lr * w.sum() / len(w), "float64")
    dup.train_on_batch(np.repeat(x, w, axis=0), np.repeat(y, w, axis=0))
    for s, a, b in zip(start, weighted.get_weights(), dup.get_weights()):
        np.testing.assert_allclose(a - s, b - s, rtol=1e-9, atol=1e-14)


def test_fit_with_sample_weight_equals_train_on_batch_loop():
    x, y = data(20)
    w = np.random.RandomState(2).rand(20).astype(np.float32)
    fitted = dense_model()
    fitted.fit(x, y, sample_weight=w, batch_size=6, epochs=2, shuffle=False, verbose=0)
    looped = dense_model()
    for _ in range(2):
        for lo in range(0, 20, 6):
            looped.train_on_batch(x[lo:lo + 6], y[lo:lo + 6],
                                  sample_weight=w[lo:lo + 6])
    for a, b in zip(fitted.get_weights(), looped.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_with_shuffle_weights_follow_their_samples():
    """With shuffle, a sample's weight moves with it: weights 0 on the half of the
    samples equal training on the other half only... up to the batch composition, so
    check the simplest case: all weights equal 1 gives the unweighted run."""
    x, y = data(20)
    plain = dense_model()
    plain.fit(x, y, batch_size=6, epochs=2, verbose=0)
    ones = dense_model()
    ones.fit(x, y, sample_weight=np.ones(20), batch_size=6, epochs=2, verbose=0)
    for a, b in zip(plain.get_weights(), ones.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("targets", ["sparse", "sparse_column", "onehot"])
def test_class_weight_is_sample_weight_of_the_labels(targets):
    x, labels = data(20)
    y = {"sparse": labels, "sparse_column": labels[:, None],
         "onehot": np.eye(3)[labels]}[targets]
    loss = "categorical_crossentropy" if targets == "onehot" else \
        "sparse_categorical_crossentropy"
    cw = {0: 0.5, 1: 2.0}  # class 2 missing: weight 1
    w = np.array([cw.get(int(c), 1.0) for c in labels], np.float32)
    np.testing.assert_array_equal(class_weight_to_sample_weights(y, cw), w)
    a, b = dense_model(loss), dense_model(loss)
    ha = a.fit(x, y, class_weight=cw, batch_size=6, epochs=2, verbose=0)
    hb = b.fit(x, y, sample_weight=w, batch_size=6, epochs=2, verbose=0)
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.train_on_batch(x, y, class_weight=cw) == b.train_on_batch(
        x, y, sample_weight=w)
    assert a.evaluate(x, y, class_weight=cw, verbose=0) == b.evaluate(
        x, y, sample_weight=w, verbose=0)


def test_weighted_metrics_survive_the_compile_config():
    model = dense_model()
    assert model._compile_config()["weighted_metrics"] == ["accuracy"]


def test_weight_errors():
    model = dense_model()
    x, y = data()
    with pytest.raises(ValueError, match="cannot use class_weight and sample_weight"):
        model.fit(x, y, sample_weight=np.ones(12), class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"one weight per sample of y: shape \(12,\)"):
        model.fit(x, y, sample_weight=np.ones(11), verbose=0)
    with pytest.raises(TypeError, match="class_weight must be a dict"):
        model.train_on_batch(x, y, class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="keys must be integer class indices"):
        model.evaluate(x, y, class_weight={"a": 1.0}, verbose=0)


def test_validation_split_splits_the_weights():
    x, y = data(20)
    w = np.random.RandomState(4).rand(20)
    a = dense_model()
    ha = a.fit(x, y, sample_weight=w, validation_split=0.25, batch_size=5, epochs=1,
               shuffle=False, verbose=0)
    b = dense_model()
    hb = b.fit(x[:15], y[:15], sample_weight=w[:15], batch_size=5, epochs=1,
               shuffle=False, verbose=0, validation_data=(x[15:], y[15:], w[15:]))
    assert ha.history == hb.history


# ------------------------------------------------------------------ Keras parity
def keras_pair(keras, loss, activation):
    fastconv.set_seed(0)
    ours = Sequential([L.Dense(5, activation="tanh", input_shape=(4,)),
                       L.Dense(3, activation=activation)])
    ours.compile(optimizers.SGD(learning_rate=0.1), loss, metrics=["accuracy"],
                 weighted_metrics=["accuracy"])
    theirs = keras.Sequential([keras.Input((4,)),
                               keras.layers.Dense(5, activation="tanh"),
                               keras.layers.Dense(3, activation=activation)])
    theirs.compile(keras.optimizers.SGD(learning_rate=0.1), loss, metrics=["accuracy"],
                   weighted_metrics=["accuracy"])
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("loss,targets,kind", [
    ("sparse_categorical_crossentropy", "sparse", "sample"),
    ("sparse_categorical_crossentropy", "sparse", "class"),
    ("categorical_crossentropy", "onehot", "class"),
    ("mean_squared_error", "onehot", "sample"),
])
def test_keras_parity_weighted_fit(loss, targets, kind):
    keras = pytest.importorskip("keras")
    activation = "linear" if loss == "mean_squared_error" else "softmax"
    x, labels = data(12)
    y = labels if targets == "sparse" else np.eye(3, dtype=np.float32)[labels]
    kwargs = ({"sample_weight": np.random.RandomState(5).rand(12).astype(np.float32)}
              if kind == "sample" else {"class_weight": {0: 0.3, 1: 2.5}})
    ours, theirs = keras_pair(keras, loss, activation)
    h = ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, **kwargs)
    hk = theirs.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, **kwargs)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h.history["loss"], hk.history["loss"], rtol=1e-5)
    assert set(h.history) == set(hk.history)
    for key in ("accuracy", "weighted_accuracy"):
        np.testing.assert_allclose(h.history[key], hk.history[key], rtol=1e-6)
    # evaluate with sample weights (Keras's evaluate has no class_weight)
    w = np.random.RandomState(6).rand(12).astype(np.float32)
    ev = ours.evaluate(x, y, sample_weight=w, batch_size=5, verbose=0,
                       return_dict=True)
    evk = theirs.evaluate(x, y, sample_weight=w, batch_size=5, verbose=0,
                          return_dict=True)
    np.testing.assert_allclose(ev["loss"], evk["loss"], rtol=1e-5)
    for key in ("accuracy", "weighted_accuracy"):
        np.testing.assert_allclose(ev[key], evk[key], rtol=1e-6)
    tb = ours.train_on_batch(x, y, return_dict=True, **kwargs)
    tbk = theirs.train_on_batch(x, y, return_dict=True, **kwargs)
    np.testing.assert_allclose(tb["loss"], tbk["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def regularized_model(dtype="float64", lr=0.05):
    from fastconv import regularizers as R
    fastconv.set_seed(0)
    model = Sequential([L.Dense(5, activation="tanh", input_shape=(4,), dtype=dtype,
                                kernel_regularizer=R.L2(0.01)),
                        L.Dense(3, activation="softmax", dtype=dtype)])
    model.compile(optimizers.SGD(learning_rate=lr), "sparse_categorical_crossentropy")
    return model


def test_regularized_model_takes_the_weights():
    """With a regularizer (the other training step): the weighted loss plus the
    penalty, and the gradient of both (duplicated samples: the loss part scales by
    sum(w) / N, the penalty part does not, so compare the loss part only)."""
    x, y = data()
    w = np.array([0, 1, 2, 3, 1, 1, 2, 0, 1, 4, 1, 2])
    reg = regularized_model()
    plain = dense_model(dtype="float64", metrics=())
    plain.set_weights(reg.get_weights())
    penalty = reg._weight_penalty()
    np.testing.assert_allclose(
        reg.evaluate(x, y, sample_weight=w, batch_size=12, verbose=0),
        plain.evaluate(x, y, sample_weight=w, batch_size=12, verbose=0,
                       return_dict=True)["loss"] + penalty,
        rtol=1e-12)
    # the step: weighted minus unweighted-with-zero-weights isolates the loss part
    a, b = regularized_model(), regularized_model()
    start = a.get_weights()
    a.train_on_batch(x, y, sample_weight=w)
    b.train_on_batch(x, y, sample_weight=np.zeros(12))
    dup, zero = regularized_model(lr=0.05 * w.sum() / 12), regularized_model()
    dup.train_on_batch(np.repeat(x, w, axis=0), np.repeat(y, w, axis=0))
    zero.train_on_batch(x, y, sample_weight=np.zeros(12))
    # loss part of the update: (a - b); of the duplicated run: (dup - zero), the
    # penalty's part of dup being scaled by sum(w) / N
    scale = w.sum() / 12
    for s, wa, wb, wd, wz in zip(start, a.get_weights(), b.get_weights(),
                                 dup.get_weights(), zero.get_weights()):
        loss_part = wa - wb
        dup_loss_part = (wd - s) - scale * (wz - s)
        np.testing.assert_allclose(loss_part, dup_loss_part, rtol=1e-9, atol=1e-14)
