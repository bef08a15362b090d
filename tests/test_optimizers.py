"""Optimizers against Keras 3's update rules written out in float64 by hand."""
import math

import numpy as np
import pytest

from fastconv import optimizers as O


def run(opt, grads, w0):
    w = w0.copy()
    for g in grads:
        opt.apply([g], [w])
    return w


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    return rng.standard_normal(7), [rng.standard_normal(7) for _ in range(5)]


def test_sgd_plain_momentum_nesterov(case):
    w0, grads = case
    np.testing.assert_allclose(run(O.SGD(0.1), grads, w0), w0 - 0.1 * sum(grads))
    for nesterov in (False, True):
        w, m = w0.copy(), np.zeros(7)
        for g in grads:
            m = 0.9 * m - 0.05 * g
            w = w + (0.9 * m - 0.05 * g if nesterov else m)
        got = run(O.SGD(0.05, momentum=0.9, nesterov=nesterov), grads, w0)
        np.testing.assert_allclose(got, w, rtol=1e-13)


@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.5, False), (0.3, True)])
def test_rmsprop_epsilon_inside_sqrt(case, momentum, centered):
    w0, grads = case
    w, v, mom, avg = w0.copy(), np.zeros(7), np.zeros(7), np.zeros(7)
    for g in grads:
        v = 0.9 * v + 0.1 * g * g
        denom = v + 1e-7
        if centered:
            avg = 0.9 * avg + 0.1 * g
            denom = v - avg * avg + 1e-7
        inc = 0.001 * g / np.sqrt(denom)
        if momentum:
            mom = momentum * mom + inc
            w = w - mom
        else:
            w = w - inc
    got = run(O.RMSprop(momentum=momentum, centered=centered), grads, w0)
    np.testing.assert_allclose(got, w, rtol=1e-13)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_bias_corrected_step(case, amsgrad):
    w0, grads = case
    w, m, v, vhat = w0.copy(), np.zeros(7), np.zeros(7), np.zeros(7)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * 0.1
        v = v + (g * g - v) * (1 - 0.999)
        vhat = np.maximum(vhat, v)
        alpha = 0.002 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w = w - m * alpha / (np.sqrt(vhat if amsgrad else v) + 1e-7)
    got = run(O.Adam(0.002, amsgrad=amsgrad), grads, w0)
    np.testing.assert_allclose(got, w, rtol=1e-12)


def test_keras_defaults():
    sgd, rms, adam = O.SGD(), O.RMSprop(), O.Adam()
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov) == (0.01, 0.0, False)
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon) == (0.001, 0.9, 0.0,
                                                                       1e-7)
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9,
                                                                            0.999, 1e-7)


def test_float32_updates_stay_float32(case):
    w0, grads = case
    w = w0.astype(np.float32)
    O.Adam().apply([grads[0].astype(np.float32)], [w])
    assert w.dtype == np.float32


def test_schedules_evaluated_at_iterations(case):
    w0, grads = case
    sched = O.schedules.InverseTimeDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = O.SGD(sched)
    expected, w = w0.copy(), w0.copy()
    f = np.float32  # Keras's schedules compute in float32
    for t, g in enumerate(grads):
        lr = float(f(0.1) / (f(1) + f(0.5) * (f(t) / f(1))))
        assert opt.learning_rate == lr == pytest.approx(0.1 / (1 + 0.5 * t), rel=1e-7)
        opt.apply([g], [w])
        expected = expected - lr * g
    np.testing.assert_allclose(w, expected, rtol=1e-13)
    exp = O.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [exp(s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    clone = O.SGD.from_config(opt.get_config())
    assert isinstance(clone._learning_rate, O.InverseTimeDecay)


def test_state_round_trip_resumes_identically(case):
    w0, grads = case
    a = O.Adam()
    wa = run(a, grads[:3], w0)
    it, slots = a.get_state()
    b = O.Adam.from_config(a.get_config())
    wb = wa.copy()
    b.set_state(it, [s.copy() for s in slots], [wb])
    for g in grads[3:]:
        a.apply([g], [wa])
        b.apply([g], [wb])
    np.testing.assert_array_equal(wa, wb)


def test_errors():
    with pytest.raises(ValueError, match="learning_rate must be >= 0.0, got -1.0"):
        O.SGD(-1)
    with pytest.raises(ValueError, match=r"momentum must be <= 1.0, got 2.0"):
        O.SGD(momentum=2)
    with pytest.raises(ValueError, match="beta_1 must be < 1.0"):
        O.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match="unknown optimizer 'adadelta'"):
        O.get("adadelta")
    with pytest.raises(TypeError, match="unexpected keyword argument 'decay'"):
        O.RMSprop(decay=1e-6)
    opt = O.SGD()
    w = np.zeros(3)
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\) for a variable of "
                                         r"shape \(3,\)"):
        opt.apply([np.zeros(2)], [w])
    opt.apply([np.zeros(3)], [w])
    with pytest.raises(ValueError, match="was built for variables of shapes"):
        opt.apply([np.zeros(4)], [np.zeros(4)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1000, 200_001])  # one thread; all threads
def test_rmsprop_compiled_step_equals_numpy_formula(dtype, size):
    """The compiled RMSprop update (no momentum, not centered) gives the NumPy
    formula's result bit for bit: v = v*rho + (g*g)*(1-rho); w -= g*lr / sqrt(v+eps)."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    opt = O.RMSprop(learning_rate=0.01, rho=0.8, epsilon=1e-6)
    w_ref, v_ref = w.copy(), np.zeros_like(w)
    t = dtype
    for _ in range(3):
        opt.apply([g], [w])
        v_ref *= t(0.8)
        sq = g * g
        sq *= t(1.0 - 0.8)
        v_ref += sq
        step = g * t(0.01)
        step /= np.sqrt(v_ref + t(1e-6))
        w_ref -= step
        g = g[::-1].copy()
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(opt.get_state()[1][0], v_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1000, 200_001])  # one thread; all threads
def test_adam_compiled_step_equals_numpy_formula(dtype, size):
    """The compiled Adam update (not amsgrad) gives the NumPy formula's result bit for
    bit: m += (g - m)(1 - b1); v += (g*g - v)(1 - b2); w -= m*alpha / (sqrt(v) + eps)
    with alpha = lr sqrt(1 - b2^t) / (1 - b1^t)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    opt = O.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6)
    w_ref, m_ref, v_ref = w.copy(), np.zeros_like(w), np.zeros_like(w)
    t = dtype
    for step in range(1, 4):
        opt.apply([g], [w])
        alpha = t(0.01) * np.sqrt(t(1) - np.power(t(0.95), t(step))) / (
            t(1) - np.power(t(0.8), t(step)))
        m_ref += (g - m_ref) * t(1.0 - 0.8)
        v_ref += (g * g - v_ref) * t(1.0 - 0.95)
        w_ref -= (m_ref * alpha) / (np.sqrt(v_ref) + t(1e-6))
        g = g[::-1].copy()
    np.testing.assert_array_equal(w, w_ref)
    state = opt.get_state()[1]
    np.testing.assert_array_equal(state[0], m_ref)
    np.testing.assert_array_equal(state[1], v_ref)


def _adam_formula(ws, gs, steps, lr=0.01, b1=0.8, b2=0.95, eps=1e-6):
    """The NumPy formula of test_adam_compiled_step_equals_numpy_formula, per array."""
    out = []
    for w, g in zip(ws, gs):
        t = w.dtype.type
        w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
        for step in range(1, steps + 1):
            alpha = t(lr) * np.sqrt(t(1) - np.power(t(b2), t(step))) / (
                t(1) - np.power(t(b1), t(step)))
            m += (g - m) * t(1.0 - b1)
            v += (g * g - v) * t(1.0 - b2)
            w -= (m * alpha) / (np.sqrt(v) + t(eps))
        out.append(w)
    return out


@pytest.mark.parametrize("kind", ["one-call", "non-contiguous", "mixed-dtypes",
                                  "gradient-dtype"])
def test_adam_on_many_variables_equals_the_formula_per_variable(kind):
    """All variables in one compiled call (shapes of every rank, an empty one), and the
    cases that call falls back from (a strided variable, variables or a gradient of
    another dtype): each variable gets the formula's result, bit for bit -- an array
    updated before the fallback would be updated twice and differ."""
    rng = np.random.default_rng(6)
    shapes = [(3, 4), (0,), (7,), (2, 3, 2, 5)]
    ws = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if kind == "non-contiguous":
        ws[3] = np.asfortranarray(ws[3])
    elif kind == "mixed-dtypes":
        ws[2], gs[2] = ws[2].astype(np.float64), gs[2].astype(np.float64)
    want = _adam_formula(ws, gs, 3)
    if kind == "gradient-dtype":  # converted to the variable's dtype by apply
        gs[0] = gs[0].astype(np.float64)
    opt = O.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6)
    for _ in range(3):
        opt.apply(gs, ws)
    for got, expected in zip(ws, want):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- issue 26
def adam_ref(w, m, v, g, t, lr=0.002, b1=0.9, b2=0.999, eps=1e-7):
    m = m + (g - m) * (1 - b1)
    v = v + (g * g - v) * (1 - b2)
    w = w - m * (lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)) / (np.sqrt(v) + eps)
    return w, m, v


def reference(kind, w0, grads):
    """Keras's update of each optimizer, re-derived in float64 (lr 0.002 throughout)."""
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    acc, u_prod, b1, b2, eps, lr = np.full_like(w0, 0.1), 1.0, 0.9, 0.999, 1e-7, 0.002
    for t, g in enumerate(grads, start=1):
        if kind == "adamw":
            w = w - w * 0.004 * lr
            w, m, v = adam_ref(w, m, v, g, t)
        elif kind == "adamax":
            m = m + (g - m) * (1 - b1)
            v = np.maximum(b2 * v, np.abs(g))
            w = w - lr * m / ((1 - b1 ** t) * (v + eps))
        elif kind == "nadam":
            mu_t = b1 * (1 - 0.5 * 0.96 ** t)
            mu_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
            u_prod *= mu_t
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            m_hat = mu_next * m / (1 - u_prod * mu_next) + (1 - mu_t) * g / (1 - u_prod)
            w = w - m_hat * lr / (np.sqrt(v / (1 - b2 ** t)) + eps)
        elif kind == "adagrad":
            acc = acc + g * g
            w = w - lr * g / np.sqrt(acc + eps)
    return w


NEW = {"adamw": lambda: O.AdamW(0.002), "adamax": lambda: O.Adamax(0.002),
       "nadam": lambda: O.Nadam(0.002), "adagrad": lambda: O.Adagrad(0.002)}


@pytest.mark.parametrize("kind", sorted(NEW))
def test_new_optimizers_equal_keras_update_in_float64(case, kind):
    w0, grads = case
    np.testing.assert_allclose(run(NEW[kind](), grads, w0), reference(kind, w0, grads),
                               rtol=1e-12)
    w32 = run(NEW[kind](), [g.astype(np.float32) for g in grads], w0.astype(np.float32))
    assert w32.dtype == np.float32
    np.testing.assert_allclose(w32, reference(kind, w0, grads), rtol=1e-5, atol=1e-6)


def test_weight_decay_before_the_update(case):
    w0, grads = case
    w = w0.copy()
    for g in grads:
        w = w - w * 0.1 * 0.05
        w = w - 0.05 * g
    np.testing.assert_allclose(run(O.SGD(0.05, weight_decay=0.1), grads, w0), w,
                               rtol=1e-13)
    # AdamW == Adam with weight_decay; the decay uses the scheduled rate of the step
    sched = O.ExponentialDecay(0.002, 2, 0.5)
    a = run(O.AdamW(sched, weight_decay=0.3), grads, w0)
    b = run(O.Adam(sched, weight_decay=0.3), grads, w0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(O.Adam(sched), grads, w0))


def clip_norm_ref(g, c):
    return g * c / max(np.linalg.norm(g), c)


@pytest.mark.parametrize("clip", ["clipnorm", "clipvalue", "global_clipnorm"])
@pytest.mark.parametrize("limit", [0.3, 100.0])  # clipping; no-op
def test_gradient_clipping(clip, limit):
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    gs = [rng.standard_normal((3, 4)), 3 * rng.standard_normal(5)]
    if clip == "clipnorm":
        want = [clip_norm_ref(g, limit) for g in gs]
    elif clip == "clipvalue":
        want = [np.clip(g, -limit, limit) for g in gs]
    else:
        total = math.sqrt(sum(float(np.sum(g * g)) for g in gs))
        want = [g * limit / max(total, limit) for g in gs]
    got = [w.copy() for w in ws]
    originals = [g.copy() for g in gs]
    O.SGD(0.5, **{clip: limit}).apply(gs, got)
    for w, g, a in zip(ws, want, got):
        np.testing.assert_allclose(a, w - 0.5 * g, rtol=1e-13)
    for g, orig in zip(gs, originals):  # the caller's gradients are left alone
        np.testing.assert_array_equal(g, orig)
    if limit == 100.0 and clip != "clipvalue":
        np.testing.assert_allclose(got[1], ws[1] - 0.5 * gs[1], rtol=1e-15)


@pytest.mark.parametrize("clip", ["clipnorm", "global_clipnorm"])
def test_clipping_zero_gradients_stays_finite(clip):
    w = np.ones(4, np.float32)
    with np.errstate(all="raise"):
        O.Adam(**{clip: 1.0}).apply([np.zeros(4, np.float32)], [w])
    np.testing.assert_array_equal(w, np.ones(4, np.float32))


def test_global_clipnorm_with_a_non_finite_norm_gives_nan_like_keras():
    w = np.ones(2)
    O.SGD(0.1, global_clipnorm=1.0).apply([np.array([np.inf, 1.0])], [w])
    assert np.isnan(w).all()


def test_new_optimizer_errors_and_defaults():
    with pytest.raises(ValueError, match=r"only one of clipnorm, clipvalue and "
                                         r"global_clipnorm.*clipnorm=1.0, clipvalue=2"):
        O.Adam(clipnorm=1.0, clipvalue=2)
    with pytest.raises(ValueError, match="clipnorm must be > 0.0, got 0.0"):
        O.SGD(clipnorm=0)
    with pytest.raises(TypeError, match="global_clipnorm must be a finite number, got 'x'"):
        O.SGD(global_clipnorm="x")
    with pytest.raises(ValueError, match="weight_decay must be >= 0.0, got -0.1"):
        O.RMSprop(weight_decay=-0.1)
    with pytest.raises(ValueError, match="weight_decay must be a number for AdamW, got "
                                         "None"):
        O.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="initial_accumulator_value must be >= 0.0, got "
                                         "-1.0"):
        O.Adagrad(initial_accumulator_value=-1)
    with pytest.raises(ValueError, match="beta_1 must be < 1.0, got 1.0"):
        O.Adamax(beta_1=1)
    with pytest.raises(ValueError, match="beta_2 must be < 1.0, got 1.0"):
        O.Nadam(beta_2=1.0)
    with pytest.raises(TypeError, match="name must be a string or None, got 5"):
        O.Nadam(name=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'clip_norm'"):
        O.Nadam(clip_norm=1.0)
    assert O.AdamW().weight_decay == 0.004 and O.Adagrad().initial_accumulator_value == 0.1
    for name in ("adamw", "adamax", "nadam", "adagrad", "AdamW"):
        assert type(O.get(name)).__name__.lower() == name.lower()


@pytest.mark.parametrize("opt", [
    O.AdamW(O.CosineDecay(0.0, 10, warmup_target=0.01, warmup_steps=2), clipnorm=1.0),
    O.Adamax(O.OneCycle(0.01, 8), global_clipnorm=0.5, weight_decay=0.01),
    O.Nadam(O.PiecewiseConstantDecay([2], [0.01, 0.001]), clipvalue=0.1),
    O.Adagrad(O.PolynomialDecay(0.1, 5, power=2.0), initial_accumulator_value=0.5),
    O.SGD(0.01, momentum=0.9, nesterov=True, weight_decay=0.01, clipnorm=2.0)],
    ids=lambda o: type(o).__name__)
def test_model_save_load_mid_training_resumes_identically(tmp_path, opt):
    import fastconv
    from fastconv import layers as fl
    from fastconv.models import Sequential
    from fastconv.saving import load_model

    def fresh():
        fastconv.set_seed(0)
        model = Sequential([fl.Input((6,)), fl.Dense(5, activation="tanh"), fl.Dense(3)])
        model.compile(O.get({"class_name": type(opt).__name__,
                             "config": opt.get_config()}), "mse")
        return model

    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((8, 6)).astype(np.float32),
                rng.standard_normal((8, 3)).astype(np.float32)) for _ in range(6)]
    straight, first = fresh(), fresh()
    for x, y in batches:
        straight.train_on_batch(x, y)
    for x, y in batches[:3]:
        first.train_on_batch(x, y)
    first.save(tmp_path / "mid.npz")
    resumed = load_model(tmp_path / "mid.npz")
    assert type(resumed.optimizer) is type(opt) and resumed.optimizer.iterations == 3
    assert resumed.optimizer.get_config() == opt.get_config()
    for x, y in batches[3:]:
        resumed.train_on_batch(x, y)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nadam_state_restored_into_a_fresh_optimizer(case):
    w0, grads = case
    a = O.Nadam(0.01)
    wa = run(a, grads[:2], w0)
    b = O.Nadam.from_config(a.get_config())
    wb = wa.copy()
    b.set_state(*a.get_state()[:1], [s.copy() for s in a.get_state()[1]], [wb])
    for g in grads[2:]:
        a.apply([g], [wa])
        b.apply([g], [wb])
    np.testing.assert_array_equal(wa, wb)


# --------------------------------------------------------------------------- Keras
KERAS_CASES = {
    "adamw": dict(cls="AdamW", learning_rate=0.01, weight_decay=0.05),
    "adamax": dict(cls="Adamax", learning_rate=0.01),
    "nadam": dict(cls="Nadam", learning_rate=0.01),
    "adagrad": dict(cls="Adagrad", learning_rate=0.05),
    "sgd_nesterov_wd": dict(cls="SGD", learning_rate=0.05, momentum=0.9, nesterov=True,
                            weight_decay=0.01),
    "adam_clipnorm": dict(cls="Adam", learning_rate=0.01, clipnorm=0.1),
    "rmsprop_global_clipnorm": dict(cls="RMSprop", learning_rate=0.01,
                                    global_clipnorm=0.1),
    "sgd_clipvalue": dict(cls="SGD", learning_rate=0.1, clipvalue=0.01),
    "adam_cosine_warmup": dict(cls="Adam", schedule=("CosineDecay", (0.0, 4), dict(
        warmup_target=0.01, warmup_steps=2))),
    "nadam_piecewise": dict(cls="Nadam", schedule=("PiecewiseConstantDecay",
                                                   ([1, 3], [0.01, 0.005, 0.001]), {})),
    "adamax_polynomial": dict(cls="Adamax", schedule=("PolynomialDecay", (0.02, 3),
                                                      dict(power=2.0))),
}


@pytest.mark.parametrize("case_name", sorted(KERAS_CASES))
def test_weights_after_5_steps_match_keras(case_name):
    """The same model, weights and batches: Keras 3 and fastconv weights after each of
    5 training steps (needs a Keras backend that trains, e.g. tensorflow)."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() == "numpy":
        pytest.skip("the numpy backend of Keras cannot train")
    from fastconv import layers as fl
    from fastconv.models import Sequential

    spec = dict(KERAS_CASES[case_name])
    cls = spec.pop("cls")
    if "schedule" in spec:
        name, args, kwargs = spec.pop("schedule")
        spec["learning_rate"] = getattr(keras.optimizers.schedules, name)(*args, **kwargs)
        fast_lr = getattr(O, name)(*args, **kwargs)
    else:
        fast_lr = spec["learning_rate"]
    kopt = getattr(keras.optimizers, cls)(**spec)
    fopt = getattr(O, cls)(**dict(spec, learning_rate=fast_lr))
    KL = keras.layers
    k = keras.Sequential([keras.Input((8, 8, 2)), KL.Conv2D(3, 3, activation="relu"),
                          KL.Flatten(), KL.Dense(4, activation="softmax")])
    f = Sequential([fl.Input((8, 8, 2)), fl.Conv2D(3, 3, activation="relu"),
                    fl.Flatten(), fl.Dense(4, activation="softmax")])
    k.compile(optimizer=kopt, loss="categorical_crossentropy", jit_compile=False)
    f.compile(optimizer=fopt, loss="categorical_crossentropy")
    f.set_weights(k.get_weights())
    rng = np.random.default_rng(7)
    for step in range(5):
        x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
        k.train_on_batch(x, y)
        f.train_on_batch(x, y)
        for i, (a, b) in enumerate(zip(f.get_weights(), k.get_weights())):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"weight {i} after step {step + 1}")
    assert fopt.iterations == int(np.asarray(kopt.iterations)) == 5
