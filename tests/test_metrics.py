"""Metric objects: hand-computed cases with sample weights, AUC against exact and
trapezoid computations, the model's aggregation (fit / evaluate / *_on_batch), and Keras 3
parity (skipped where keras is not importable)."""
import os

import numpy as np
import pytest

from fastconv import layers, metrics, models

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def test_mean_metric_weighted_and_reset():
    m = metrics.Mean()
    m.update_state([1, 3, 5, 7])
    assert m.result() == 4.0
    m.reset_state()
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert m.result() == 2.0
    m.reset_state()
    m.update_state(np.array([[1.0, 3.0], [5.0, 7.0]]), sample_weight=[1, 3])
    assert m.result() == pytest.approx((2 * 1 + 6 * 3) / 4)
    assert metrics.Mean().result() == 0.0


def test_accuracy_wrappers_with_weights():
    y = np.eye(3)[[0, 1, 2, 1]]
    p = np.array([[.8, .1, .1], [.5, .4, .1], [.1, .2, .7], [.2, .7, .1]])
    m = metrics.CategoricalAccuracy()
    m.update_state(y, p, sample_weight=[1, 2, 1, 0])
    assert m.result() == pytest.approx(2 / 4)
    s = metrics.SparseCategoricalAccuracy()
    s.update_state([0, 1, 2, 1], p)
    assert s.result() == 0.75
    b = metrics.BinaryAccuracy(threshold=0.3)
    b.update_state([[1], [0], [1]], [[0.4], [0.35], [0.1]], sample_weight=[1, 1, 2])
    assert b.result() == pytest.approx(1 / 4)


def test_top_k_accuracy_hand_computed_with_ties_and_weights():
    p = np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0.0], [0.3, 0.3, 0.4]])
    y = np.eye(3)[[2, 2, 1]]
    np.testing.assert_array_equal(metrics.top_k_categorical_accuracy(y, p, k=1), [0, 0, 0])
    # sample 3: the label's 0.3 ties the 2nd largest score -> in the top 2 (TensorFlow)
    np.testing.assert_array_equal(metrics.top_k_categorical_accuracy(y, p, k=2), [1, 0, 1])
    m = metrics.TopKCategoricalAccuracy(k=2)
    m.update_state(y, p, sample_weight=[1, 3, 0])
    assert m.result() == 0.25
    s = metrics.SparseTopKCategoricalAccuracy(k=2)
    s.update_state(np.array([[2], [2], [1]]), p)
    assert s.result() == pytest.approx(2 / 3)
    assert metrics.SparseTopKCategoricalAccuracy().get_config() == {
        "name": "sparse_top_k_categorical_accuracy", "k": 5}
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        metrics.TopKCategoricalAccuracy(k=0)


def test_precision_recall_hand_computed():
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.5, 0.2, 0.1, 0.6])
    w = np.array([1, 2, 1, 1, 1, 0.5])
    prec, rec = metrics.Precision(), metrics.Recall()
    for m in (prec, rec):
        m.update_state(y, p, sample_weight=w)
    # at 0.5 (strictly greater): predicted positive 0.9 (tp, w 1), 0.8 (fp, w 2),
    # 0.6 (fp, w .5); 0.5 is not > 0.5 -> fn with 0.2
    assert prec.result() == pytest.approx(1 / (1 + 2 + 0.5))
    assert rec.result() == pytest.approx(1 / 3)
    multi = metrics.Precision(thresholds=[0.0, 0.55, 0.85])
    multi.update_state(y, p)
    np.testing.assert_allclose(multi.result(), [3 / 6, 1 / 3, 1.0])
    empty = metrics.Precision(thresholds=0.95)
    empty.update_state(y, p)
    assert empty.result() == 0.0  # no predicted positives: 0, not nan
    prec.reset_state()
    assert prec.result() == 0.0


def test_precision_recall_top_k_and_class_id():
    y = np.array([[0, 1, 1, 0], [1, 0, 0, 1]])
    p = np.array([[0.1, 0.6, 0.2, 0.9], [0.8, 0.3, 0.5, 0.4]])
    top = metrics.Precision(top_k=2)
    top.update_state(y, p)
    # the top 2 of each row: (3, 1) -> one hit; (0, 2) -> one hit
    assert top.result() == 0.5
    rec = metrics.Recall(top_k=1)
    rec.update_state(y, p)
    assert rec.result() == pytest.approx(1 / 4)
    cls = metrics.Recall(class_id=2, thresholds=0.15)
    cls.update_state(y, p)
    assert cls.result() == 1.0
    cls = metrics.Precision(class_id=2, thresholds=0.15)
    cls.update_state(y, p)
    assert cls.result() == 0.5


def _exact_roc_auc(y, s, w):
    """The area under the exact ROC curve of weighted scores (Mann-Whitney with ties
    counting 1/2)."""
    pos, neg = s[y == 1], s[y == 0]
    wp, wn = w[y == 1], w[y == 0]
    greater = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float((wp[:, None] * wn[None, :] * greater).sum() / (wp.sum() * wn.sum()))


def test_auc_roc_against_the_exact_area_and_the_trapezoid():
    rng = np.random.default_rng(0)
    y = (rng.random(400) > 0.6).astype(int)
    s = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    w = rng.uniform(0.2, 2, 400)
    auc = metrics.AUC()
    auc.update_state(y[:150], s[:150], sample_weight=w[:150])
    auc.update_state(y[150:], s[150:], sample_weight=w[150:])
    # within the resolution of 200 thresholds
    assert auc.result() == pytest.approx(_exact_roc_auc(y, s, w), abs=5e-3)
    # the trapezoid over the same thresholds, computed here from scratch
    t = np.array([-1e-7] + [(i + 1) / 199 for i in range(198)] + [1 + 1e-7])
    pred = s[None, :] > t[:, None]
    tpr = (pred * (y == 1) * w).sum(1) / (w * (y == 1)).sum()
    fpr = (pred * (y == 0) * w).sum(1) / (w * (y == 0)).sum()
    fpr, tpr = fpr[::-1], tpr[::-1]  # increasing
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert auc.result() == pytest.approx(trapezoid, rel=1e-12)
    np.testing.assert_allclose(auc.true_positives, (pred * (y == 1) * w).sum(1))


def test_auc_perfect_random_and_pr_curves():
    y = np.array([0, 0, 1, 1])
    auc = metrics.AUC()
    auc.update_state(y, [0.1, 0.4, 0.6, 0.9])
    assert auc.result() == pytest.approx(1.0)
    flat = metrics.AUC()
    flat.update_state(y, [0.5, 0.5, 0.5, 0.5])
    assert flat.result() == pytest.approx(0.5)
    pr = metrics.AUC(curve="PR", summation_method="majoring", num_thresholds=3)
    pr.update_state(y, [0.1, 0.4, 0.6, 0.9])
    # thresholds -eps, 0.5, 1+eps: (recall, precision) = (1, .5), (1, 1), (0, 0)
    assert pr.result() == pytest.approx(1.0)
    logits = metrics.AUC(from_logits=True)
    logits.update_state(y, [-3.0, -1.0, 1.0, 3.0])
    assert logits.result() == pytest.approx(1.0)
    assert metrics.AUC().result() == 0.0
    with pytest.raises(ValueError, match="curve must be one of"):
        metrics.AUC(curve="LIFT")


def test_auc_multi_label_is_the_mean_of_the_labels():
    rng = np.random.default_rng(1)
    y = (rng.random((60, 2)) > 0.5).astype(int)
    s = rng.random((60, 2))
    multi = metrics.AUC(multi_label=True)
    multi.update_state(y, s)
    each = []
    for j in range(2):
        a = metrics.AUC()
        a.update_state(y[:, j], s[:, j])
        each.append(a.result())
    assert multi.result() == pytest.approx(np.mean(each), rel=1e-12)


def test_confusion_matrix_hand_computed():
    cm = metrics.ConfusionMatrix()
    p = np.array([[.7, .2, .1], [.1, .8, .1], [.2, .2, .6], [.6, .3, .1]])
    cm.update_state([0, 1, 1, 2], p, sample_weight=[1, 2, 1, 0.5])
    # rows true, columns predicted (argmax 0, 1, 2, 0)
    np.testing.assert_array_equal(cm.result(), [[1, 0, 0], [0, 2, 1], [0.5, 0, 0]])
    cm.update_state(np.eye(3)[[2]], [[0, 0, 1.0]])
    assert cm.result()[2, 2] == 1
    binary = metrics.ConfusionMatrix(num_classes=2, threshold=0.3)
    binary.update_state([[1], [0], [0]], [[0.2], [0.4], [0.1]])
    np.testing.assert_array_equal(binary.result(), [[1, 1], [1, 0]])
    cm.reset_state()
    assert cm.result().shape == (0, 0)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 3\)"):
        m = metrics.ConfusionMatrix(num_classes=3)
        m.update_state([3], [[0.1, 0.2, 0.7]])


def test_resolve_names_and_objects():
    assert isinstance(metrics.resolve("acc", (4,), (4, 3)), metrics.Accuracy)
    for name, cls in (("precision", metrics.Precision), ("recall", metrics.Recall),
                      ("auc", metrics.AUC), ("confusion_matrix", metrics.ConfusionMatrix),
                      ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy)):
        assert isinstance(metrics.resolve(name, (4, 3), (4, 3)), cls)
    m = metrics.AUC(curve="PR")
    assert metrics.resolve(m, (4,), (4, 1)) is m
    assert metrics.get({"class_name": "AUC", "config": m.get_config()}).curve == "PR"
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        metrics.check_metrics(["f1"])
    with pytest.raises(TypeError, match="metrics must be names"):
        metrics.check_metrics([len])


def _model(n_out=3, activation="softmax"):
    model = models.Sequential([layers.Input((4,)),
                               layers.Dense(n_out, activation=activation,
                                            dtype="float64")])
    return model


def test_model_logs_every_scalar_metric_and_keeps_the_matrix_in_its_object():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 4))
    labels = rng.integers(0, 3, 40)
    y = np.eye(3)[labels]
    model = _model()
    cm = metrics.ConfusionMatrix()
    model.compile("sgd", "categorical_crossentropy",
                  metrics=["accuracy", "top_k_categorical_accuracy", "precision",
                           "recall", "auc", cm, metrics.TopKCategoricalAccuracy(k=2)])
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.25)
    assert set(hist.history) == {
        "loss", "accuracy", "top_k_categorical_accuracy", "precision", "recall", "auc",
        "top_k_categorical_accuracy_1",
        *("val_" + k for k in ("loss", "accuracy", "top_k_categorical_accuracy",
                               "precision", "recall", "auc",
                               "top_k_categorical_accuracy_1"))}
    logs = model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    assert logs["accuracy"] == pytest.approx(np.mean(p.argmax(1) == labels))
    assert logs["top_k_categorical_accuracy"] == 1.0  # k=5 >= 3 classes
    ranks = (p > p[np.arange(40), labels][:, None]).sum(1)
    assert logs["top_k_categorical_accuracy_1"] == pytest.approx(np.mean(ranks < 2))
    predicted = p > 0.5
    assert logs["precision"] == pytest.approx(
        (predicted & (y == 1)).sum() / max(predicted.sum(), 1))
    assert logs["recall"] == pytest.approx((predicted & (y == 1)).sum() / 40)
    assert cm in model.metrics
    expected = np.zeros((3, 3))
    np.add.at(expected, (labels, p.argmax(1)), 1)
    np.testing.assert_array_equal(cm.result(), expected)
    assert "confusion_matrix" not in logs
    on_batch = model.test_on_batch(x[:10], y[:10], return_dict=True)
    assert on_batch["accuracy"] == pytest.approx(np.mean(p[:10].argmax(1) == labels[:10]))
    train = model.train_on_batch(x[:10], y[:10], return_dict=True)
    assert train["accuracy"] == pytest.approx(on_batch["accuracy"])


def test_fit_metrics_equal_the_per_sample_means_of_the_former_loop():
    """The accuracy and loss logged by fit are the batch-size-weighted means, bit for
    bit what the former loop (per-sample sums over samples seen) computed."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((21, 4))
    labels = rng.integers(0, 3, 21)
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["acc"])
    seen = []

    class Spy(models._callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs)

    preds, losses_ = [], []
    original = model._train_batch

    def spy(xb, yb):
        loss, pred = original(xb, yb)
        preds.append((yb.copy(), pred.copy()))
        losses_.append((loss, len(yb)))
        return loss, pred
    model._train_batch = spy
    model.fit(x, labels, batch_size=8, epochs=1, verbose=0, callbacks=[Spy()],
              shuffle=False)
    total_acc, total_loss, count = 0.0, 0.0, 0
    for (yb, pred), (loss, nb), logs in zip(preds, losses_, seen):
        total_acc += float(np.sum(metrics.sparse_categorical_accuracy(yb, pred)))
        total_loss += float(loss) * nb
        count += nb
        assert logs["acc"] == total_acc / count
        assert logs["loss"] == total_loss / count


def test_saving_keeps_metric_names(tmp_path):
    model = _model()
    model.compile("sgd", "categorical_crossentropy",
                  metrics=["accuracy", metrics.AUC(), metrics.Precision()])
    model.save(tmp_path / "m.npz")
    loaded = models.load_model(tmp_path / "m.npz")
    assert loaded._metric_names == ["accuracy", "auc", "precision"]
    model.compile("sgd", "categorical_crossentropy", metrics=[metrics.AUC(curve="PR")])
    with pytest.raises(ValueError, match="cannot save metric"):
        model.save(tmp_path / "n.npz")


# ---------------------------------------------------------------------------------------
# Keras 3 parity

def _parity_data():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 4, 64)
    y = np.eye(4)[labels].astype(np.float32)
    p = rng.random((64, 4)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    w = rng.uniform(0, 2, 64).astype(np.float32)
    yb = (rng.random((64, 1)) > 0.4).astype(np.float32)
    pb = np.clip(0.3 * yb + 0.7 * rng.random((64, 1)), 0, 1).astype(np.float32)
    return labels, y, p, w, yb, pb


PARITY = [  # id, fastconv factory, keras factory name and kwargs, binary data?
    ("categorical_accuracy", metrics.CategoricalAccuracy, "CategoricalAccuracy", {}, False),
    ("top_k", lambda: metrics.TopKCategoricalAccuracy(k=2), "TopKCategoricalAccuracy",
     {"k": 2}, False),
    ("sparse_top_k", lambda: metrics.SparseTopKCategoricalAccuracy(k=2),
     "SparseTopKCategoricalAccuracy", {"k": 2}, False),
    ("precision", metrics.Precision, "Precision", {}, True),
    ("recall", metrics.Recall, "Recall", {}, True),
    ("precision_multi", lambda: metrics.Precision(thresholds=[0.2, 0.5, 0.7]), "Precision",
     {"thresholds": [0.2, 0.5, 0.7]}, True),
    ("precision_top_k", lambda: metrics.Precision(top_k=2), "Precision", {"top_k": 2},
     False),
    ("recall_class_id", lambda: metrics.Recall(class_id=1), "Recall", {"class_id": 1},
     False),
    ("auc", metrics.AUC, "AUC", {}, True),
    ("auc_categorical", metrics.AUC, "AUC", {}, False),
    ("auc_pr", lambda: metrics.AUC(curve="PR"), "AUC", {"curve": "PR"}, True),
    ("auc_minoring", lambda: metrics.AUC(summation_method="minoring", num_thresholds=50),
     "AUC", {"summation_method": "minoring", "num_thresholds": 50}, True),
]


@pytest.mark.parametrize("name,ours,kname,kwargs,binary", PARITY,
                         ids=[c[0] for c in PARITY])
def test_keras_parity(name, ours, kname, kwargs, binary):
    keras = pytest.importorskip("keras")
    labels, y, p, w, yb, pb = _parity_data()
    if binary:
        y, p = yb, pb
    elif name == "sparse_top_k":
        y = labels
    ours, theirs = ours(), getattr(keras.metrics, kname)(**kwargs)
    for lo, hi in ((0, 30), (30, 64)):
        ours.update_state(y[lo:hi], p[lo:hi], sample_weight=w[lo:hi])
        theirs.update_state(y[lo:hi], p[lo:hi], sample_weight=w[lo:hi])
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-5,
                               atol=1e-6)


def test_keras_parity_confusion_matrix():
    pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    labels, y, p, w, _, _ = _parity_data()
    cm = metrics.ConfusionMatrix()
    cm.update_state(labels, p, sample_weight=w)
    expected = tf.math.confusion_matrix(labels, p.argmax(1), num_classes=4, weights=w,
                                        dtype=tf.float32)
    np.testing.assert_allclose(cm.result(), expected.numpy(), rtol=1e-6)
