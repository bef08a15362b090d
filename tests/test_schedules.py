"""Learning-rate schedules against their formulas written out in float64 by hand, at the
boundary steps and over 100 steps; Keras parity when keras is importable."""
import math
import os

import numpy as np
import pytest

from fastconv import optimizers as O
from fastconv import schedules as S
from fastconv._serialization import deserialize, serialize

STEPS = range(100)


def rates(schedule, steps=STEPS):
    return np.array([schedule(s) for s in steps])


def cosine_formula(step, lr, decay_steps, alpha=0.0, target=None, warmup=0):
    if target is None:
        s = min(step, decay_steps)
        return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)
    s = min(step, decay_steps + warmup)
    if s < warmup:
        return (target - lr) * s / warmup + lr
    s -= warmup
    return target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)


def polynomial_formula(step, lr, decay_steps, end, power, cycle):
    if cycle:
        decay_steps = decay_steps * (1 if step == 0 else math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (lr - end) * (1 - step / decay_steps) ** power + end


def one_cycle_formula(step, max_lr, total, pct=0.3, div=25.0, final_div=1e4):
    """PyTorch's OneCycleLR (cos, two phases) written out; past the end: last rate."""
    step = min(step, total - 1)
    lo = max_lr / div
    end1 = pct * total - 1
    if step <= end1:
        a, b, frac = lo, max_lr, step / end1
    else:
        a, b, frac = max_lr, lo / final_div, (step - end1) / (total - 1 - end1)
    return b + (a - b) / 2 * (math.cos(math.pi * frac) + 1)


def test_exponential_and_inverse_time_decay_formulas():
    np.testing.assert_allclose(rates(S.ExponentialDecay(0.1, 10, 0.5)),
                               [0.1 * 0.5 ** (s / 10) for s in STEPS], rtol=1e-6)
    np.testing.assert_allclose(rates(S.ExponentialDecay(0.1, 7, 0.9, staircase=True)),
                               [0.1 * 0.9 ** (s // 7) for s in STEPS], rtol=1e-6)
    np.testing.assert_allclose(rates(S.InverseTimeDecay(0.2, 5, 0.3, staircase=True)),
                               [0.2 / (1 + 0.3 * (s // 5)) for s in STEPS], rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay_formula_and_end(alpha):
    sched = S.CosineDecay(0.1, 60, alpha=alpha)
    np.testing.assert_allclose(rates(sched),
                               [cosine_formula(s, 0.1, 60, alpha) for s in STEPS],
                               rtol=1e-6, atol=1e-8)  # float32: 1 + cos(~pi) cancels
    assert sched(0) == pytest.approx(0.1, rel=1e-7)
    assert sched(30) == pytest.approx(0.1 * (0.5 + alpha / 2), rel=1e-6)
    assert sched(60) == sched(99) == pytest.approx(0.1 * alpha, abs=1e-9)


def test_cosine_decay_with_warmup_boundaries():
    sched = S.CosineDecay(0.0, 50, alpha=0.05, warmup_target=0.2, warmup_steps=20)
    np.testing.assert_allclose(
        rates(sched), [cosine_formula(s, 0.0, 50, 0.05, 0.2, 20) for s in STEPS],
        rtol=1e-6, atol=1e-8)
    assert sched(0) == 0.0
    assert sched(10) == pytest.approx(0.1, rel=1e-7)          # half-way up
    assert sched(19) == pytest.approx(0.2 * 19 / 20, rel=1e-7)  # last warmup step
    assert sched(20) == pytest.approx(0.2, rel=1e-7)           # warmup end: the target
    assert sched(45) == pytest.approx(0.2 * (0.95 * 0.5 + 0.05), rel=1e-6)
    assert sched(70) == sched(99) == pytest.approx(0.2 * 0.05, rel=1e-6)  # decay end
    # from a non-zero start, and zero warmup steps: straight into the decay from target
    up = S.CosineDecay(0.01, 10, warmup_target=0.1, warmup_steps=4)
    assert [up(s) for s in range(4)] == pytest.approx([0.01, 0.0325, 0.055, 0.0775])
    flat = S.CosineDecay(0.01, 10, warmup_target=0.1)
    assert flat(0) == pytest.approx(0.1, rel=1e-7)


def test_piecewise_constant_boundaries():
    sched = S.PiecewiseConstantDecay([10, 20, 50], [1.0, 0.5, 0.1, 0.01])
    expected = [1.0 if s <= 10 else 0.5 if s <= 20 else 0.1 if s <= 50 else 0.01
                for s in STEPS]
    np.testing.assert_allclose(rates(sched), expected, rtol=1e-7)
    assert [sched(s) for s in (10, 11, 20, 21, 50, 51)] == pytest.approx(
        [1.0, 0.5, 0.5, 0.1, 0.1, 0.01], rel=1e-7)
    assert S.PiecewiseConstantDecay([5.0], [0.3, 0.2]).boundaries == [5]


@pytest.mark.parametrize("power,cycle", [(1.0, False), (2.0, False), (0.5, True),
                                         (1.0, True)])
def test_polynomial_decay_formula(power, cycle):
    sched = S.PolynomialDecay(0.1, 30, end_learning_rate=0.001, power=power, cycle=cycle)
    np.testing.assert_allclose(
        rates(sched), [polynomial_formula(s, 0.1, 30, 0.001, power, cycle) for s in STEPS],
        rtol=1e-5, atol=1e-9)
    assert sched(0) == pytest.approx(0.1, rel=1e-7)
    assert sched(30) == pytest.approx(0.001, rel=1e-6)   # decay end
    if not cycle:
        assert sched(99) == sched(30)
    else:  # restarts: step 31 decays over 60 steps
        assert sched(31) == pytest.approx(polynomial_formula(31, 0.1, 30, 0.001, power,
                                                             True), rel=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"pct_start": 0.25, "div_factor": 10.0,
                                         "final_div_factor": 100.0}])
def test_one_cycle_is_pytorch_formula(kwargs):
    sched = S.OneCycle(0.1, 100, **kwargs)
    expected = [one_cycle_formula(s, 0.1, 100, **{
        {"pct_start": "pct", "div_factor": "div", "final_div_factor": "final_div"}[k]: v
        for k, v in kwargs.items()}) for s in STEPS]
    np.testing.assert_allclose(rates(sched), expected, rtol=1e-14)
    div = kwargs.get("div_factor", 25.0)
    assert sched(0) == pytest.approx(0.1 / div, rel=1e-14)
    peak = round(kwargs.get("pct_start", 0.3) * 100) - 1
    assert sched(peak) == pytest.approx(0.1, rel=1e-14)  # end of the warm phase
    assert sched(99) == pytest.approx(0.1 / div / kwargs.get("final_div_factor", 1e4),
                                      rel=1e-12)
    assert sched(150) == sched(99)
    assert max(rates(sched)) == sched(peak)


def test_one_cycle_degenerate_first_phase():
    sched = S.OneCycle(1.0, 10, pct_start=0.1)  # first phase: step 0 only
    assert sched(0) == 1.0
    assert S.OneCycle(1.0, 10, pct_start=0.0)(0) < 1.0


ALL = [S.ExponentialDecay(0.1, 10, 0.5, staircase=True), S.InverseTimeDecay(0.1, 1, 0.5),
       S.PolynomialDecay(0.1, 30, 0.001, 2.0, cycle=True),
       S.CosineDecay(0.0, 50, 0.05, warmup_target=0.2, warmup_steps=20),
       S.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), S.OneCycle(0.1, 100, 0.2)]


@pytest.mark.parametrize("sched", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip(sched):
    clone = deserialize(serialize(sched), S._SCHEDULES, "learning rate schedule")
    assert type(clone) is type(sched) and clone.get_config() == sched.get_config()
    np.testing.assert_array_equal(rates(clone), rates(sched))
    opt = O.get({"class_name": "SGD", "config": O.SGD(sched).get_config()})
    assert opt.learning_rate == sched(0)
    assert repr(sched).startswith(type(sched).__name__)


def test_reachable_from_optimizers():
    for name in ("ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay",
                 "PolynomialDecay", "OneCycle", "LearningRateSchedule"):
        assert getattr(O, name) is getattr(S, name) is getattr(O.schedules, name)


def test_errors():
    with pytest.raises(ValueError, match="decay_steps must be > 0.0, got 0.0"):
        S.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="decay_steps must be >= 1, got 0"):
        S.CosineDecay(0.1, 0)
    with pytest.raises(TypeError, match="decay_steps must be an integer, got 2.5"):
        S.CosineDecay(0.1, 2.5)
    with pytest.raises(ValueError, match="alpha must be <= 1.0, got 2.0"):
        S.CosineDecay(0.1, 10, alpha=2)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -1"):
        S.CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=-1)
    with pytest.raises(TypeError, match="warmup_target must be a finite number, got 'x'"):
        S.CosineDecay(0.1, 10, warmup_target="x")
    with pytest.raises(ValueError, match=r"values must be a list of one more element "
                                         r"than boundaries \(3\), got \[1.0, 0.5\]"):
        S.PiecewiseConstantDecay([10, 20], [1.0, 0.5])
    with pytest.raises(ValueError, match=r"strictly increasing, got \[20, 10\]"):
        S.PiecewiseConstantDecay([20, 10], [1.0, 0.5, 0.1])
    with pytest.raises(TypeError, match="non-empty list of steps, got 10"):
        S.PiecewiseConstantDecay(10, [1.0, 0.5])
    with pytest.raises(TypeError, match=r"boundaries\[0\] must be an integer, got 2.5"):
        S.PiecewiseConstantDecay([2.5], [1.0, 0.5])
    with pytest.raises(ValueError, match=r"values\[1\] must be >= 0.0, got -0.5"):
        S.PiecewiseConstantDecay([2], [1.0, -0.5])
    with pytest.raises(ValueError, match="end_learning_rate must be >= 0.0, got -1.0"):
        S.PolynomialDecay(0.1, 10, end_learning_rate=-1)
    with pytest.raises(ValueError, match="total_steps must be >= 1, got 0"):
        S.OneCycle(0.1, 0)
    with pytest.raises(ValueError, match="pct_start must be <= 1.0, got 1.5"):
        S.OneCycle(0.1, 10, pct_start=1.5)
    with pytest.raises(ValueError, match="div_factor must be > 0.0, got 0.0"):
        S.OneCycle(0.1, 10, div_factor=0)
    with pytest.raises(TypeError, match="name must be a string or None, got 3"):
        S.OneCycle(0.1, 10, name=3)


# --------------------------------------------------------------------------- Keras
def keras_schedules():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    K = keras.optimizers.schedules
    return [
        (K.ExponentialDecay(0.1, 10, 0.5), S.ExponentialDecay(0.1, 10, 0.5)),
        (K.ExponentialDecay(0.1, 7, 0.9, staircase=True),
         S.ExponentialDecay(0.1, 7, 0.9, staircase=True)),
        (K.InverseTimeDecay(0.2, 5, 0.3), S.InverseTimeDecay(0.2, 5, 0.3)),
        (K.CosineDecay(0.1, 60, alpha=0.1), S.CosineDecay(0.1, 60, alpha=0.1)),
        (K.CosineDecay(0.0, 50, alpha=0.05, warmup_target=0.2, warmup_steps=20),
         S.CosineDecay(0.0, 50, alpha=0.05, warmup_target=0.2, warmup_steps=20)),
        (K.CosineDecay(0.01, 30, warmup_target=0.1, warmup_steps=7),
         S.CosineDecay(0.01, 30, warmup_target=0.1, warmup_steps=7)),
        (K.PiecewiseConstantDecay([10, 20, 50], [1.0, 0.5, 0.1, 0.01]),
         S.PiecewiseConstantDecay([10, 20, 50], [1.0, 0.5, 0.1, 0.01])),
        (K.PolynomialDecay(0.1, 30, 0.001, power=2.0),
         S.PolynomialDecay(0.1, 30, 0.001, power=2.0)),
        (K.PolynomialDecay(0.1, 30, 0.001, power=0.5, cycle=True),
         S.PolynomialDecay(0.1, 30, 0.001, power=0.5, cycle=True)),
    ]


def test_rates_match_keras_over_100_steps():
    for k, f in keras_schedules():
        want = np.array([float(np.asarray(k(s))) for s in STEPS])
        got = rates(f)
        assert np.asarray(k(0)).dtype == np.float32
        # float32 pow/cos of two libraries may differ in the last bit
        np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-12,
                                   err_msg=type(f).__name__)
