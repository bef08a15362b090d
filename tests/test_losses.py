"""Losses: Keras's formulas (hand-computed), clipping, gradients by finite differences."""
import numpy as np
import pytest

from fastconv import losses
from fastconv.reference import numeric_gradient


def test_categorical_crossentropy_keras_example():
    # the example of Keras's docstring
    y = np.eye(3)
    p = np.array([[.9, .05, .05], [.05, .89, .06], [.05, .01, .94]])
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p),
                               [0.10536, 0.11653, 0.06188], atol=1e-5)
    assert losses.CategoricalCrossentropy()(y, p) == pytest.approx(
        np.mean([-np.log(.9), -np.log(.89), -np.log(.94)]))
    assert losses.CategoricalCrossentropy(reduction="sum")(y, p) == pytest.approx(
        -np.log(.9) - np.log(.89) - np.log(.94))


def test_probabilities_are_clipped_at_1e7():
    y = np.array([[0.0, 1.0]])
    p = np.array([[1.0, 0.0]])
    assert losses.CategoricalCrossentropy()(y, p) == pytest.approx(-np.log(1e-7))
    assert losses.SparseCategoricalCrossentropy()([1], p) == pytest.approx(
        -np.log(1e-7 / (1 - 1e-7 + 1e-7)))


def test_sparse_equals_categorical_on_normalised_probabilities():
    rng = np.random.default_rng(0)
    p = rng.random((5, 4)) + 0.1
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 5)
    a = losses.SparseCategoricalCrossentropy()(labels, p)
    b = losses.CategoricalCrossentropy()(np.eye(4)[labels], p)
    assert a == pytest.approx(b, rel=1e-12)
    assert losses.SparseCategoricalCrossentropy()(labels[:, None], p) == pytest.approx(a)


def test_mean_squared_error():
    y = np.array([[1.0, 2.0], [0.0, 0.0]])
    p = np.array([[1.0, 4.0], [1.0, -1.0]])
    np.testing.assert_allclose(losses.mean_squared_error(y, p), [2.0, 1.0])
    assert losses.get("mse")(y, p) == pytest.approx(1.5)


@pytest.mark.parametrize("loss", [
    losses.CategoricalCrossentropy(), losses.SparseCategoricalCrossentropy(),
    losses.CategoricalCrossentropy(from_logits=True),
    losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
    losses.MeanSquaredError()], ids=["cce", "scce", "cce_logits", "scce_logits_sum", "mse"])
def test_gradients_match_finite_differences(loss):
    rng = np.random.default_rng(1)
    p = rng.random((4, 3)) + 0.05
    labels = rng.integers(0, 3, 4)
    sparse = isinstance(loss, losses.SparseCategoricalCrossentropy)
    y = labels if sparse else np.eye(3)[labels]
    value, grad = loss.value_and_gradient(y, p)
    assert value == pytest.approx(loss(y, p))
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(y, p), p), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("cls,targets", [
    (losses.CategoricalCrossentropy, lambda lab: np.eye(4)[lab]),
    (losses.SparseCategoricalCrossentropy, lambda lab: lab)])
def test_fused_softmax_path(cls, targets):
    """From logits: the loss of softmax probabilities, gradient (p - y) / N, finite for
    logits of magnitude 1e4."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    y = targets(labels)
    value, probs, grad = cls().from_logits_value_and_gradient(y, z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, p, rtol=1e-12)
    assert value == pytest.approx(cls()(y, p), rel=1e-9)
    np.testing.assert_allclose(grad, (p - np.eye(4)[labels]) / 5, rtol=1e-12)
    big, _, g = cls().from_logits_value_and_gradient(y, z * 1e4)
    assert np.isfinite(big) and np.isfinite(g).all()


def test_shape_errors():
    with pytest.raises(ValueError, match=r"y_true must have the shape \(2, 3\) of y_pred, "
                                         r"got \(2,\).*sparse_categorical_crossentropy"):
        losses.CategoricalCrossentropy()(np.array([0, 1]), np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values in "
                                         r"\[0, 3\]"):
        losses.SparseCategoricalCrossentropy()([0, 3], np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="one integer label per sample"):
        losses.SparseCategoricalCrossentropy()(np.zeros((2, 3)), np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.MeanSquaredError(reduction="mean_of_squares")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get("hinge")


# ---------------------------------------------------------------------------------------
# Every loss against an independent float64 formula, with sample weights and both
# reductions; gradients by finite differences; the fused (from logits) paths.

EPS = 1e-7
RNG = np.random.default_rng(7)
N, K = 5, 4


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _cce_ref(y, p, from_logits=False, ls=0.0):
    y = y * (1 - ls) + ls / y.shape[-1]
    if from_logits:
        q = _softmax(p)
    else:
        q = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return -(y * np.log(q)).sum(axis=-1)


def _scce_ref(labels, p, from_logits=False, ls=0.0):
    y = np.eye(p.shape[-1])[labels] * (1 - ls) + ls / p.shape[-1]
    if from_logits:
        logq = np.log(_softmax(p))
    else:  # Keras: clip, log, softmax cross-entropy of the logs
        pc = np.clip(p, EPS, 1 - EPS)
        logq = np.log(pc / pc.sum(axis=-1, keepdims=True))
    return -(y * logq).sum(axis=-1)


def _bce_ref(y, p, from_logits=False, ls=0.0):
    y = y * (1 - ls) + 0.5 * ls
    q = _sigmoid(p) if from_logits else np.clip(p, EPS, 1 - EPS)
    return np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)), axis=-1)


def _huber_ref(y, p, delta=1.0):
    e = np.abs(p - y)
    return np.mean(np.where(e <= delta, 0.5 * e ** 2, delta * e - 0.5 * delta ** 2), -1)


def _mae_ref(y, p):
    return np.mean(np.abs(p - y), axis=-1)


def _mse_ref(y, p):
    return np.mean((p - y) ** 2, axis=-1)


def _case(kind):
    """(y_true, y_pred) of a kind of loss input, float64, away from kinks and clips."""
    labels = RNG.integers(0, K, N)
    if kind == "probs":
        p = RNG.random((N, K)) + 0.05
        return np.eye(K)[labels], p / p.sum(axis=1, keepdims=True)
    if kind == "sparse_probs":
        p = RNG.random((N, K)) + 0.05
        return labels, p / p.sum(axis=1, keepdims=True)
    if kind == "logits":
        return np.eye(K)[labels], RNG.standard_normal((N, K)) * 2
    if kind == "sparse_logits":
        return labels, RNG.standard_normal((N, K)) * 2
    if kind == "binary_probs":
        return (RNG.random((N, 3)) > 0.5).astype(float), RNG.uniform(0.05, 0.95, (N, 3))
    if kind == "binary_logits":
        return (RNG.random((N, 3)) > 0.5).astype(float), RNG.standard_normal((N, 3)) * 3
    y = RNG.standard_normal((N, 3))
    offsets = RNG.choice([-1, 1], (N, 3)) * RNG.uniform(0.1, 2.5, (N, 3))
    offsets[np.abs(np.abs(offsets) - 1.0) < 0.05] += 0.2  # away from Huber's kink
    return y, y + offsets


CASES = [  # id, loss, kind of input, reference per-sample function
    ("cce", losses.CategoricalCrossentropy(), "probs", _cce_ref),
    ("cce_ls", losses.CategoricalCrossentropy(label_smoothing=0.2), "probs",
     lambda y, p: _cce_ref(y, p, ls=0.2)),
    ("cce_logits_ls", losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
     "logits", lambda y, p: _cce_ref(y, p, True, 0.1)),
    ("scce", losses.SparseCategoricalCrossentropy(), "sparse_probs", _scce_ref),
    ("scce_ls", losses.SparseCategoricalCrossentropy(label_smoothing=0.3), "sparse_probs",
     lambda y, p: _scce_ref(y, p, ls=0.3)),
    ("scce_logits", losses.SparseCategoricalCrossentropy(from_logits=True),
     "sparse_logits", lambda y, p: _scce_ref(y, p, True)),
    ("scce_logits_ls", losses.SparseCategoricalCrossentropy(True, 0.2), "sparse_logits",
     lambda y, p: _scce_ref(y, p, True, 0.2)),
    ("bce", losses.BinaryCrossentropy(), "binary_probs", _bce_ref),
    ("bce_ls", losses.BinaryCrossentropy(label_smoothing=0.2), "binary_probs",
     lambda y, p: _bce_ref(y, p, ls=0.2)),
    ("bce_logits", losses.BinaryCrossentropy(from_logits=True), "binary_logits",
     lambda y, p: _bce_ref(y, p, True)),
    ("bce_logits_ls", losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
     "binary_logits", lambda y, p: _bce_ref(y, p, True, 0.1)),
    ("huber", losses.Huber(), "regression", _huber_ref),
    ("huber_delta", losses.Huber(delta=0.5), "regression",
     lambda y, p: _huber_ref(y, p, 0.5)),
    ("mae", losses.MeanAbsoluteError(), "regression", _mae_ref),
    ("mse", losses.MeanSquaredError(), "regression", _mse_ref),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,loss,kind,ref", CASES, ids=IDS)
def test_loss_matches_the_float64_formula_with_sample_weights(name, loss, kind, ref):
    y, p = _case(kind)
    per = ref(y, p)
    np.testing.assert_allclose(loss.per_sample(y, p), per, rtol=1e-12, atol=1e-14)
    assert loss(y, p) == pytest.approx(per.mean(), rel=1e-12)
    w = RNG.uniform(0, 2, N)
    # Keras's weighted "sum_over_batch_size": sum(w * loss) / number of losses
    assert loss(y, p, sample_weight=w) == pytest.approx((w * per).sum() / N, rel=1e-12)
    assert loss(y, p, sample_weight=w[:, None]) == pytest.approx((w * per).sum() / N,
                                                                 rel=1e-12)
    summed = type(loss).from_config(dict(loss.get_config(), reduction="sum"))
    assert summed(y, p, sample_weight=w) == pytest.approx((w * per).sum(), rel=1e-12)
    assert summed(y, p, sample_weight=2.0) == pytest.approx(2 * per.sum(), rel=1e-12)


@pytest.mark.parametrize("name,loss,kind,ref", CASES, ids=IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_loss_gradients_match_finite_differences(name, loss, kind, ref, weighted):
    y, p = _case(kind)
    w = RNG.uniform(0.1, 2, N) if weighted else None
    value, grad = loss.value_and_gradient(y, p, sample_weight=w)
    assert value == pytest.approx(loss(y, p, sample_weight=w), rel=1e-14)
    np.testing.assert_allclose(
        grad, numeric_gradient(lambda: loss(y, p, sample_weight=w), p),
        rtol=1e-6, atol=1e-9)


def test_clipped_binary_probabilities_have_zero_gradient():
    y = np.array([[1.0, 0.0, 1.0]])
    p = np.array([[0.0, 1.0, 0.5]])
    value, grad = losses.BinaryCrossentropy().value_and_gradient(y, p)
    assert value == pytest.approx((-2 * np.log(EPS) - np.log(0.5)) / 3)
    np.testing.assert_allclose(grad, [[0, 0, -2 / 3]])


def test_binary_crossentropy_from_logits_is_finite_for_large_logits():
    z = np.array([[-1e4, 1e4, 30.0, -30.0]])
    y = np.array([[0.0, 1.0, 0.0, 1.0]])
    value = losses.BinaryCrossentropy(from_logits=True)(y, z)
    assert value == pytest.approx((30 + np.log1p(np.exp(-30))) * 2 / 4)


@pytest.mark.parametrize("cls,targets", [
    (losses.CategoricalCrossentropy, lambda lab: np.eye(4)[lab]),
    (losses.SparseCategoricalCrossentropy, lambda lab: lab)], ids=["cce", "scce"])
def test_fused_softmax_path_applies_label_smoothing(cls, targets):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    y = targets(labels)
    ls = 0.2
    value, probs, grad = cls(label_smoothing=ls).from_logits_value_and_gradient(y, z)
    smoothed = np.eye(4)[labels] * (1 - ls) + ls / 4
    assert value == pytest.approx(_cce_ref(smoothed, z, from_logits=True).mean(),
                                  rel=1e-12)
    assert value == pytest.approx(cls(from_logits=True, label_smoothing=ls)(y, z),
                                  rel=1e-12)
    np.testing.assert_allclose(grad, (_softmax(z) - smoothed) / 6, rtol=1e-12)
    # with weights: the general path, the same weighted mean as the loss from logits
    w = rng.uniform(0, 2, 6)
    wv, _, wg = cls(label_smoothing=ls).from_logits_value_and_gradient(y, z,
                                                                       sample_weight=w)
    assert wv == pytest.approx(cls(True, ls)(y, z, sample_weight=w), rel=1e-12)
    np.testing.assert_allclose(wg, (_softmax(z) - smoothed) * w[:, None] / 6, rtol=1e-12)


def test_fused_softmax_path_without_smoothing_is_unchanged():
    """label_smoothing=0 takes exactly the former path (bit for bit)."""
    from fastconv import activations
    rng = np.random.default_rng(4)
    z = rng.standard_normal((8, 5)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]
    value, probs, grad = losses.CategoricalCrossentropy().from_logits_value_and_gradient(
        y, z)
    ref, ref_probs = activations.softmax_cross_entropy(z, y)
    assert value == ref
    np.testing.assert_array_equal(probs, ref_probs)
    np.testing.assert_array_equal(grad,
                                  activations.softmax_cross_entropy_backward(ref_probs, y))


@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_fused_sigmoid_path(ls):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, 2)) * 3
    y = (rng.random((6, 2)) > 0.5).astype(float)
    loss = losses.BinaryCrossentropy(label_smoothing=ls)
    value, probs, grad = loss.from_logits_value_and_gradient(y, z)
    np.testing.assert_allclose(probs, _sigmoid(z), rtol=1e-12)
    assert value == pytest.approx(_bce_ref(y, z, True, ls).mean(), rel=1e-12)
    assert value == pytest.approx(loss(y, _sigmoid(z)), rel=1e-9)
    target = y * (1 - ls) + 0.5 * ls
    np.testing.assert_allclose(grad, (_sigmoid(z) - target) / z.size, rtol=1e-12)
    assert loss.fuses_with("sigmoid") and not loss.fuses_with("softmax")
    assert not losses.BinaryCrossentropy(from_logits=True).fuses_with("sigmoid")
    assert losses.CategoricalCrossentropy().fuses_with("softmax")


def test_model_with_sigmoid_output_and_binary_crossentropy_takes_the_logits():
    from fastconv import layers, models
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 3))
    y = (x[:, :1] + x[:, 1:2] > 0).astype(np.float64)
    model = models.Sequential([layers.Input((3,)), layers.Dense(1, activation="sigmoid",
                                                                 dtype="float64")])
    model.compile("sgd", losses.BinaryCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"])
    assert model._fused()
    w0 = model.get_weights()
    loss = model.train_on_batch(x, y)[0]
    p = _sigmoid(x @ w0[0] + w0[1])
    assert loss == pytest.approx(_bce_ref(y, p, ls=0.1).mean(), rel=1e-7)
    # the update is the gradient (sigmoid(z) - y_smoothed) / N through the Dense layer
    g = (p - (y * 0.9 + 0.05)) / 16
    lr = model.optimizer.learning_rate
    np.testing.assert_allclose(model.get_weights()[0], w0[0] - lr * x.T @ g, rtol=1e-6)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = _sigmoid(x @ model.get_weights()[0] + model.get_weights()[1])
    assert logs["loss"] == pytest.approx(_bce_ref(y, p, ls=0.1).mean(), rel=1e-7)


def test_new_loss_errors_and_names():
    with pytest.raises(ValueError, match=r"label_smoothing must be a float in \[0, 1\], "
                                         r"got 1.5"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="delta must be a positive float, got 0"):
        losses.Huber(delta=0)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not match "
                                         r"the per-sample losses of shape \(2,\)"):
        losses.MeanAbsoluteError()(np.zeros((2, 2)), np.ones((2, 2)), sample_weight=[1, 2, 3])
    for name, cls in (("binary_crossentropy", losses.BinaryCrossentropy),
                      ("mae", losses.MeanAbsoluteError), ("huber", losses.Huber),
                      ("mean_absolute_error", losses.MeanAbsoluteError)):
        assert isinstance(losses.get(name), cls)
    config = losses.BinaryCrossentropy(True, 0.1).get_config()
    assert config == {"reduction": "sum_over_batch_size", "name": "binary_crossentropy",
                      "from_logits": True, "label_smoothing": 0.1}
    assert losses.get({"class_name": "Huber", "config": {"delta": 2.0}}).delta == 2.0


# ---------------------------------------------------------------------------------------
# Keras 3 parity (skipped where keras is not importable)

def _keras_losses(keras):
    KLo = keras.losses
    return {
        "cce": KLo.CategoricalCrossentropy(), "cce_ls": KLo.CategoricalCrossentropy(
            label_smoothing=0.2),
        "cce_logits_ls": KLo.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        "scce": KLo.SparseCategoricalCrossentropy(),
        "scce_logits": KLo.SparseCategoricalCrossentropy(from_logits=True),
        "bce": KLo.BinaryCrossentropy(), "bce_ls": KLo.BinaryCrossentropy(
            label_smoothing=0.2),
        "bce_logits": KLo.BinaryCrossentropy(from_logits=True),
        "bce_logits_ls": KLo.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
        "huber": KLo.Huber(), "huber_delta": KLo.Huber(delta=0.5),
        "mae": KLo.MeanAbsoluteError(), "mse": KLo.MeanSquaredError()}


@pytest.mark.parametrize("name,loss,kind,ref", CASES, ids=IDS)
def test_keras_parity(name, loss, kind, ref):
    keras = pytest.importorskip("keras")
    y, p = _case(kind)
    w = RNG.uniform(0, 2, N)
    ours = losses.get(dict(class_name=type(loss).__name__, config=loss.get_config()))
    if name in ("scce_ls", "scce_logits_ls"):
        # Keras's sparse loss has no label smoothing: the categorical loss of one-hot
        # targets is the oracle
        k = keras.losses.CategoricalCrossentropy(from_logits=loss.from_logits,
                                                 label_smoothing=loss.label_smoothing)
        y_k = np.eye(K)[y]
    else:
        k, y_k = _keras_losses(keras)[name], y
    for reduction in ("sum_over_batch_size", "sum"):
        k.reduction = reduction
        ours.reduction = reduction
        for weights in (None, w):
            expected = float(k(y_k.astype(np.float32), p.astype(np.float32),
                               sample_weight=weights))
            assert ours(y, p, sample_weight=weights) == pytest.approx(
                expected, rel=2e-5, abs=1e-6), (reduction, weights)
