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
    for t, g in enumerate(grads):
        assert opt.learning_rate == pytest.approx(0.1 / (1 + 0.5 * t))
        opt.apply([g], [w])
        expected = expected - 0.1 / (1 + 0.5 * t) * g
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
    with pytest.raises(ValueError, match="unknown optimizer 'nadam'"):
        O.get("nadam")
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
