"""Regularizers (fastconv/regularizers.py) and their use by layers and models: penalties
and gradients against the formulas and finite differences, a training step against a
hand-computed SGD update, evaluate's loss, fusion, saving, argument errors, and Keras 3
parity where keras is importable (run in the TensorFlow environment:
``PYTHONPATH=. /tmp/venv-tf/bin/python -m pytest -o addopts="" tests/test_regularizers.py``).
"""
import os

import numpy as np
import pytest

from fastconv import constraints as C
from fastconv import regularizers as R
from fastconv.layers import (Activation, AveragePooling2D, Conv2D, Dense, Dropout,
                             Flatten, Input, MaxPooling2D)
from fastconv.models import Sequential, load_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _numeric_gradient(f, w, eps=1e-6):
    g = np.zeros_like(w)
    it = np.nditer(w, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = w[i]
        w[i] = old + eps
        hi = f(w)
        w[i] = old - eps
        lo = f(w)
        w[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def _orthogonal_formula(w, factor, mode):
    x = w if mode == "rows" else w.T
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-7)
    p = u @ u.T
    n = x.shape[0]
    off = np.abs(p[~np.eye(n, dtype=bool)]).sum()
    return factor * 0.5 * off / (n * (n - 1) / 2)


# ------------------------------------------------------------------- the regularizers
def test_defaults_are_keras():
    assert R.L1().l1 == 0.01 and R.L2().l2 == 0.01
    assert R.L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert R.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    assert R.get("l1l2") == R.L1L2() == R.get("L1L2")  # Keras 3.15's get()
    assert R.OrthogonalRegularizer().get_config() == {"factor": 0.01, "mode": "rows"}
    assert R.L1(None).l1 == 0.01 and R.L1L2(None, 0.5).get_config() == {"l1": 0.0,
                                                                         "l2": 0.5}


def test_values_match_formulas():
    w = _rng().standard_normal((4, 3, 2, 5))
    assert R.L1(0.3)(w) == pytest.approx(0.3 * np.abs(w).sum(), rel=1e-12)
    assert R.L2(0.2).value(w) == pytest.approx(0.2 * (w ** 2).sum(), rel=1e-12)
    assert R.L1L2(0.3, 0.2)(w) == pytest.approx(0.3 * np.abs(w).sum()
                                                + 0.2 * (w ** 2).sum(), rel=1e-12)
    assert R.L1L2()(w) == 0.0
    m = _rng(1).standard_normal((6, 4))
    for mode in ("rows", "columns"):
        assert R.OrthogonalRegularizer(0.1, mode)(m) == pytest.approx(
            _orthogonal_formula(m, 0.1, mode), rel=1e-12)
    # Keras's docstring: L2(2.) of a 5x5 array of ones is 50
    assert R.L2(2.0)(np.ones((5, 5), np.float32)) == pytest.approx(50.0)


@pytest.mark.parametrize("reg", [R.L1(0.3), R.L2(0.2), R.L1L2(0.1, 0.4),
                                 R.OrthogonalRegularizer(0.5, "rows"),
                                 R.OrthogonalRegularizer(0.5, "columns")],
                         ids=repr)
def test_gradients_match_finite_differences(reg):
    w = _rng(2).standard_normal((5, 4))
    w[np.abs(w) < 0.05] = 0.3  # away from |w|'s kink
    g = reg.gradient(w)
    assert g.shape == w.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, _numeric_gradient(reg.value, w.copy()), rtol=1e-6,
                               atol=1e-9)


def test_l1_gradient_is_zero_at_zero_and_float32_kept():
    w = np.array([-2.0, 0.0, 3.0], np.float32)
    g = R.L1(0.5).gradient(w)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [-0.5, 0.0, 0.5])
    assert R.L2(0.5).gradient(w).dtype == np.float32


def test_get_accepts_keras_identifiers():
    assert R.get(None) is None
    reg = R.L2(0.3)
    assert R.get(reg) is reg
    assert R.get("l1") == R.L1() and R.get("L2") == R.L2() and R.get("l2") == R.L2()
    assert R.get("orthogonal_regularizer") == R.OrthogonalRegularizer()
    assert R.get({"class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}}) == \
        R.L1L2(0.1, 0.2)
    for r in (R.L1(0.2), R.L2(0.4), R.L1L2(0.1, 0.3), R.OrthogonalRegularizer(0.2, "columns")):
        assert R.get(R.serialize_regularizer(r)) == r


@pytest.mark.parametrize("bad, exc, match", [
    ("l3", ValueError, "unknown regularizer 'l3'"),
    (0.1, TypeError, "regularizer must be None, a name"),
    (lambda w: 0.0, TypeError, "regularizer must be None"),
    ({"class_name": "os.system", "config": {}}, ValueError, "unknown regularizer class"),
    ({"class_name": "L2", "config": {"l2": -1}}, ValueError, "l2 must be a finite"),
])
def test_get_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        R.get(bad)


@pytest.mark.parametrize("make, match", [
    (lambda: R.L1(-0.1), "l1 must be a finite non-negative float, got -0.1"),
    (lambda: R.L2(float("nan")), "l2 must be"),
    (lambda: R.L1L2(l2="0.1"), "l2 must be"),
    (lambda: R.L2(True), "l2 must be"),
    (lambda: R.OrthogonalRegularizer(mode="diagonal"), "mode must be 'rows' or"),
])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_orthogonal_needs_rank_2():
    with pytest.raises(ValueError, match=r"rank-2 weight.*\(3, 3, 2, 4\)"):
        R.OrthogonalRegularizer()(np.ones((3, 3, 2, 4)))


# ------------------------------------------------------------------- layers
@pytest.mark.parametrize("arg", ["kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer"])
def test_layer_argument_errors(arg):
    with pytest.raises(ValueError, match=f"unknown {arg} 'l5'"):
        Dense(3, **{arg: "l5"})
    with pytest.raises(TypeError, match=f"{arg} must be None"):
        Conv2D(2, 3, **{arg: 3})


def test_layer_losses_keras_docstring_example():
    # keras.regularizers.Regularizer's example: kernel 0.25 + activity 5.0
    layer = Dense(5, kernel_initializer="ones", kernel_regularizer=R.L1(0.01),
                  activity_regularizer=R.L2(0.01))
    layer(np.ones((5, 5), np.float32) * 2.0)
    assert sorted(layer.losses) == [pytest.approx(0.25), pytest.approx(5.0)]
    assert layer.kernel_regularizer == R.L1(0.01) and layer.bias_regularizer is None


def test_frozen_layer_has_no_weight_penalty():
    layer = Dense(2, kernel_initializer="ones", kernel_regularizer="l2")
    layer.build((None, 3))
    assert layer.losses == [pytest.approx(0.06)]
    layer.trainable = False
    assert layer.losses == []  # Keras: trainable weights only


@pytest.mark.parametrize("make", [
    lambda: Dense(3, kernel_regularizer=R.L1L2(0.1, 0.2), bias_regularizer="l1",
                  activity_regularizer="l2", kernel_constraint="non_neg",
                  bias_constraint=C.MaxNorm(3.0)),
    lambda: Conv2D(2, (3, 2), data_format="channels_first",
                   kernel_regularizer=R.OrthogonalRegularizer(0.3, "columns"),
                   kernel_constraint=C.MinMaxNorm(0.5, 2.0, 0.7, [0, 1, 2])),
    lambda: MaxPooling2D(2, activity_regularizer=R.L1(0.2)),
])
def test_layer_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    import json
    again = type(layer).from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    assert again.activity_regularizer == layer.activity_regularizer
    assert again._regularizers == layer._regularizers
    assert again._constraints == layer._constraints
    assert "regularizer" in repr(layer)


def test_config_without_regularizers_is_unchanged():
    config = Dense(3).get_config()
    assert not any("regularizer" in k or "constraint" in k for k in config)
    assert Dense.from_config(dict(config, kernel_regularizer=None,
                                  bias_constraint=None)).kernel_regularizer is None


# ------------------------------------------------------------------- training
def _dense_model(dtype="float64", **kwargs):
    model = Sequential([Input((3,)), Dense(2, dtype=dtype, **kwargs)])
    model.layers[0].set_weights([_rng(3).standard_normal((3, 2)),
                                 _rng(4).standard_normal(2)])
    return model


def test_training_step_equals_hand_computed_sgd():
    l2k, l1b, l2a, lr = 0.05, 0.02, 0.03, 0.1
    model = _dense_model(kernel_regularizer=R.L2(l2k), bias_regularizer=R.L1(l1b),
                         activity_regularizer=R.L2(l2a))
    model.compile(optimizer=_sgd(lr), loss="mse")
    x = _rng(5).standard_normal((4, 3))
    t = _rng(6).standard_normal((4, 2))
    w, b = model.layers[0].get_weights()
    y = x @ w + b
    n = x.shape[0]
    expected_loss = (np.mean((y - t) ** 2) + l2k * (w ** 2).sum() + l1b * np.abs(b).sum()
                     + l2a * (y ** 2).sum() / n)
    g = 2 * (y - t) / y.size + 2 * l2a * y / n
    gw = x.T @ g + 2 * l2k * w
    gb = g.sum(0) + l1b * np.sign(b)
    loss = model.train_on_batch(x, t)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    w1, b1 = model.layers[0].get_weights()
    np.testing.assert_allclose(w1, w - lr * gw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b1, b - lr * gb, rtol=1e-12, atol=1e-14)


def _sgd(lr):
    from fastconv import optimizers
    return optimizers.SGD(learning_rate=lr)


def test_frozen_layer_gets_no_penalty_but_activity_counts():
    model = _dense_model(kernel_regularizer=R.L2(0.5), activity_regularizer=R.L1(0.1))
    model.layers[0].trainable = False
    model.compile(optimizer=_sgd(0.1), loss="mse")
    x, t = _rng(7).standard_normal((4, 3)), _rng(8).standard_normal((4, 2))
    y = model.predict(x, verbose=0)
    expected = np.mean((y - t) ** 2) + 0.1 * np.abs(y).sum() / 4
    assert model.evaluate(x, t, verbose=0) == pytest.approx(expected, rel=1e-12)
    assert model.train_on_batch(x, t) == pytest.approx(expected, rel=1e-12)


def _softmax_net(dtype="float64", seed=0, **kwargs):
    from fastconv import set_seed
    set_seed(seed)
    return Sequential([
        Input((6, 5, 2)),
        Conv2D(3, (3, 2), activation="tanh", dtype=dtype,
               kernel_regularizer=R.L1L2(0.01, 0.02), activity_regularizer=R.L2(0.05),
               **kwargs),
        AveragePooling2D(2, dtype=dtype),
        Flatten(dtype=dtype),
        Dense(4, activation="softmax", dtype=dtype, bias_regularizer=R.L2(0.1),
              kernel_regularizer=R.OrthogonalRegularizer(0.2),
              activity_regularizer=R.L1(0.03)),
    ])


def test_regularized_loss_gradient_matches_finite_differences():
    """The whole model's gradient (weight, activity and fused-softmax output penalties)
    against finite differences of evaluate's loss, which includes the penalties."""
    model = _softmax_net()
    model.compile(optimizer=_sgd(1.0), loss="categorical_crossentropy")
    x = _rng(9).standard_normal((5, 6, 5, 2))
    t = np.eye(4)[_rng(10).integers(0, 4, 5)]
    before = [w.copy() for w in model.weights]
    model.layers[-1].bias[...] = _rng(11).standard_normal(4)  # (away from L1's kink)
    before = [w.copy() for w in model.weights]
    loss0 = model.evaluate(x, t, verbose=0, batch_size=5)
    assert model.train_on_batch(x, t) == pytest.approx(loss0, rel=1e-12)
    grads = [b - a for b, a in zip(before, model.weights)]  # SGD with lr 1
    model.set_weights(before)
    for w, g in zip(model.weights, grads):
        numeric = _numeric_gradient(
            lambda _: model.evaluate(x, t, verbose=0, batch_size=5), w)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8)


def test_activity_regularized_layer_is_not_fused_and_matches_unfused():
    model = _softmax_net(dtype="float32")
    names = [s.pattern.name for s in model._steps("training", True)
             if s.pattern is not None]
    assert "conv_avg_pool" not in names
    plain = _softmax_net(dtype="float32")
    plain.layers[0].activity_regularizer = None
    plain._compiled_steps = {}
    assert any(s.pattern is not None for s in plain._steps("training", False))
    oracle = _softmax_net(dtype="float32")
    oracle._fusion = False
    x = _rng(12).standard_normal((8, 6, 5, 2)).astype(np.float32)
    t = np.eye(4)[_rng(13).integers(0, 4, 8)]
    losses = []
    for m in (model, oracle):
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        losses.append([m.train_on_batch(x, t) for _ in range(3)])
    assert losses[0] == losses[1]
    for a, b in zip(model.weights, oracle.weights):
        np.testing.assert_array_equal(a, b)


def test_evaluate_includes_penalties_batchwise():
    model = _dense_model(kernel_regularizer=R.L2(0.1), activity_regularizer=R.L2(0.2))
    model.compile(optimizer=_sgd(0.1), loss="mse")
    x, t = _rng(14).standard_normal((5, 3)), _rng(15).standard_normal((5, 2))
    y = model.predict(x, verbose=0)
    pen_w = 0.1 * (model.layers[0].kernel ** 2).sum()
    batches = [(0, 2), (2, 4), (4, 5)]
    expected = sum((np.mean((y[a:b] - t[a:b]) ** 2) + pen_w
                    + 0.2 * (y[a:b] ** 2).sum() / (b - a)) * (b - a)
                   for a, b in batches) / 5
    assert model.evaluate(x, t, batch_size=2, verbose=0) == pytest.approx(expected,
                                                                          rel=1e-12)
    assert model.test_on_batch(x[:2], t[:2]) == pytest.approx(
        np.mean((y[:2] - t[:2]) ** 2) + pen_w + 0.2 * (y[:2] ** 2).sum() / 2, rel=1e-12)


def test_fit_logs_regularized_loss():
    model = _dense_model(kernel_regularizer=R.L2(1.0))
    model.compile(optimizer=_sgd(0.0), loss="mse")
    x, t = _rng(16).standard_normal((6, 3)), _rng(17).standard_normal((6, 2))
    expected = model.evaluate(x, t, verbose=0)
    history = model.fit(x, t, batch_size=3, epochs=1, verbose=0, shuffle=False)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-12)


def test_dropout_activity_regularizer_reads_the_dropped_output():
    from fastconv import set_seed
    set_seed(3)
    class SeenDropout(Dropout):
        """Keeps the mask of its last forward (the step drops the layers' caches)."""
        def forward(self, x, training=False):
            y = super().forward(x, training)
            self.seen = self._mask
            return y

    model = Sequential([Input((4,)), Dense(3, kernel_initializer="ones", dtype="float64"),
                        SeenDropout(0.5, seed=1, activity_regularizer=R.L1(1.0))])
    model.compile(optimizer=_sgd(0.0), loss="mse")
    x, t = np.ones((2, 4)), np.zeros((2, 3))
    loss = model.train_on_batch(x, t)
    y = model.layers[1].seen * 4.0
    assert loss == pytest.approx(np.mean(y ** 2) + np.abs(y).sum() / 2, rel=1e-12)


def test_unregularized_training_is_unchanged():
    """The regularized step with zero penalties gives the plain step's results, bit for
    bit (and a model without regularizers takes the plain step)."""
    x = _rng(18).standard_normal((8, 6, 5, 2)).astype(np.float32)
    t = np.eye(4)[_rng(19).integers(0, 4, 8)]
    out = []
    for reg in (None, R.L1L2(0.0, 0.0)):
        from fastconv import set_seed
        set_seed(5)
        m = Sequential([Input((6, 5, 2)), Conv2D(3, 3, activation="relu"),
                        MaxPooling2D(2), Flatten(),
                        Dense(4, activation="softmax", kernel_regularizer=reg)])
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        assert m._regularized() == (reg is not None)
        out.append(([m.train_on_batch(x, t) for _ in range(2)], m.get_weights()))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-6)
    for a, b in zip(out[0][1], out[1][1]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------- saving
def test_save_load_round_trip(tmp_path):
    model = _softmax_net(dtype="float32", kernel_constraint=C.MaxNorm(1.5, [0, 1, 2]))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = _rng(20).standard_normal((6, 6, 5, 2)).astype(np.float32)
    t = np.eye(4)[_rng(21).integers(0, 4, 6)]
    model.train_on_batch(x, t)
    path = tmp_path / "reg.npz"
    model.save(path)
    again = load_model(path)
    assert again.get_config() == model.get_config()
    assert again.layers[0].kernel_constraint == C.MaxNorm(1.5, [0, 1, 2])
    assert again.layers[-1].kernel_regularizer == R.OrthogonalRegularizer(0.2)
    assert again.evaluate(x, t, verbose=0) == model.evaluate(x, t, verbose=0)
    assert again.train_on_batch(x, t) == model.train_on_batch(x, t)
    for a, b in zip(again.weights, model.weights):
        np.testing.assert_array_equal(a, b)


def test_load_refuses_unknown_regularizer_class(tmp_path):
    import json
    import zipfile
    model = _dense_model(dtype="float32", kernel_regularizer=R.L2(0.1))
    path = tmp_path / "m.npz"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(np.load(path)["config"].item())
    doc["model"]["config"]["layers"][0]["config"]["kernel_regularizer"] = {
        "class_name": "eval", "config": {}}
    import io
    buf = io.BytesIO()
    np.save(buf, np.array(json.dumps(doc)))
    members["config.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    from fastconv.models import ModelFileError
    with pytest.raises(ModelFileError, match="unknown kernel_regularizer class 'eval'"):
        load_model(path)


# ------------------------------------------------------------------- Keras 3 parity
def _keras():
    return pytest.importorskip("keras")


def _pair(keras, dtype="float32"):
    KL = keras.layers
    kr = keras.regularizers
    kc = keras.constraints
    shape = (7, 6, 2)
    k = keras.Sequential([
        keras.Input(shape),
        KL.Conv2D(3, (3, 2), activation="relu", kernel_regularizer=kr.L2(0.02),
                  bias_regularizer=kr.L1(0.01), activity_regularizer=kr.L1L2(0.001, 0.002),
                  kernel_constraint=kc.MaxNorm(0.6, axis=[0, 1, 2])),
        KL.MaxPooling2D(2),
        KL.Flatten(),
        KL.Dense(5, activation="softmax", kernel_regularizer=kr.L1L2(0.01, 0.03),
                 activity_regularizer=kr.L2(0.01), kernel_constraint=kc.MaxNorm(0.8),
                 bias_constraint=kc.NonNeg()),
    ])
    f = Sequential([
        Input(shape),
        Conv2D(3, (3, 2), activation="relu", kernel_regularizer=R.L2(0.02),
               bias_regularizer=R.L1(0.01), activity_regularizer=R.L1L2(0.001, 0.002),
               kernel_constraint=C.MaxNorm(0.6, axis=[0, 1, 2])),
        MaxPooling2D(2),
        Flatten(),
        Dense(5, activation="softmax", kernel_regularizer=R.L1L2(0.01, 0.03),
              activity_regularizer=R.L2(0.01), kernel_constraint=C.MaxNorm(0.8),
              bias_constraint=C.NonNeg()),
    ])
    rng = _rng(30)
    weights = [w.astype(np.float32) for w in
               (0.3 * rng.standard_normal((3, 2, 2, 3)), 0.1 * rng.standard_normal(3),
                0.3 * rng.standard_normal((12, 5)), 0.1 * rng.standard_normal(5))]
    k.set_weights(weights)
    f.set_weights(weights)
    x = rng.standard_normal((8,) + shape).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]
    return k, f, x, y


def test_keras_parity_regularized_loss_value():
    keras = _keras()
    k, f, x, y = _pair(keras)
    for m in (k, f):
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
    ke = k.evaluate(x, y, batch_size=8, verbose=0)
    fe = f.evaluate(x, y, batch_size=8, verbose=0)
    assert fe == pytest.approx(ke, rel=1e-5)
    assert f.evaluate(x, y, batch_size=3, verbose=0) == pytest.approx(
        k.evaluate(x, y, batch_size=3, verbose=0), rel=1e-5)
    kl = float(np.asarray(k.train_on_batch(x, y)))
    fl = f.train_on_batch(x, y)
    assert fl == pytest.approx(kl, rel=1e-5)


def test_keras_parity_three_sgd_steps_l2_maxnorm():
    keras = _keras()
    k, f, x, y = _pair(keras)
    k.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    f.compile(optimizer=_sgd(0.5), loss="categorical_crossentropy")
    for step in range(3):
        kl = float(np.asarray(k.train_on_batch(x, y)))
        fl = f.train_on_batch(x, y)
        assert fl == pytest.approx(kl, rel=1e-5), step
    kw = k.get_weights()
    for a, b in zip(f.get_weights(), kw):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the constraints held
    assert np.linalg.norm(kw[0].reshape(-1, 3), axis=0).max() <= 0.6 + 1e-6
    assert np.linalg.norm(f.get_weights()[2], axis=0).max() <= 0.8 + 1e-6
    assert f.get_weights()[3].min() >= 0


def test_keras_parity_regularizer_values():
    keras = _keras()
    w = _rng(31).standard_normal((6, 4)).astype(np.float32)
    for ours, theirs in ((R.L1(0.3), keras.regularizers.L1(0.3)),
                         (R.L2(0.2), keras.regularizers.L2(0.2)),
                         (R.get("l1l2"), keras.regularizers.get("l1l2")),
                         (R.get("l1_l2"), keras.regularizers.L1L2(0.01, 0.01)),
                         (R.OrthogonalRegularizer(0.4, "rows"),
                          keras.regularizers.OrthogonalRegularizer(0.4, "rows")),
                         (R.OrthogonalRegularizer(0.4, "columns"),
                          keras.regularizers.OrthogonalRegularizer(0.4, "columns"))):
        # (a tensor: Keras's NumPy branch of normalize fails for mode="columns")
        value = theirs(keras.ops.convert_to_tensor(w))
        assert ours(w) == pytest.approx(float(np.asarray(value)), rel=1e-5)
        assert ours.get_config() == pytest.approx(theirs.get_config()) \
            if "mode" not in ours.get_config() else \
            ours.get_config()["mode"] == theirs.get_config()["mode"]


def test_keras_parity_orthogonal_gradient():
    keras = _keras()
    import tensorflow as tf
    w = _rng(32).standard_normal((5, 3)).astype(np.float32)
    for mode in ("rows", "columns"):
        v = tf.Variable(w)
        with tf.GradientTape() as tape:
            loss = keras.regularizers.OrthogonalRegularizer(0.3, mode)(v)
        np.testing.assert_allclose(R.OrthogonalRegularizer(0.3, mode).gradient(w),
                                   tape.gradient(loss, v).numpy(), rtol=1e-4, atol=1e-6)


def test_keras_parity_activation_softmax_layer_activity():
    """An Activation("softmax") layer with an activity regularizer after a linear
    Dense (the loss is not fused with it: Keras's arrangement too)."""
    keras = _keras()
    KL = keras.layers
    k = keras.Sequential([keras.Input((4,)), KL.Dense(3),
                          KL.Activation("softmax",
                                        activity_regularizer=keras.regularizers.L2(0.5))])
    f = Sequential([Input((4,)), Dense(3),
                    Activation("softmax", activity_regularizer=R.L2(0.5))])
    w = [_rng(33).standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32)]
    k.set_weights(w)
    f.set_weights(w)
    x = _rng(34).standard_normal((6, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    k.compile(optimizer=keras.optimizers.SGD(0.3), loss="categorical_crossentropy")
    f.compile(optimizer=_sgd(0.3), loss="categorical_crossentropy")
    for _ in range(2):
        assert f.train_on_batch(x, y) == pytest.approx(
            float(np.asarray(k.train_on_batch(x, y))), rel=1e-5)
    for a, b in zip(f.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
