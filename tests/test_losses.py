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
