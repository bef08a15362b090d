"""Keras 3's other activations and their gradients, on ndarrays (re-exported by
fastconv.activations, which registers them under Keras's names).

Each ``<name>_backward(grad_y, y, ...)`` takes the forward OUTPUT y, as everywhere in
fastconv.activations.  relu6, leaky_relu, elu, selu, softplus and hard_sigmoid have a
gradient that is a function of y.  gelu, silu and hard_silu do not (they are not
one-to-one), so their forward remembers its input for the output it returns, for as
long as that output lives (a table keyed by the output's identity, entries dropped by
a weak-reference callback): ``<name>_backward(grad_y, y)`` needs y to be an array that
forward returned; ``<name>_input_backward(grad_y, x)`` takes the input directly.

At the kinks the gradients are TensorFlow's: relu6 and hard_sigmoid pass nothing where
the output is at a bound, leaky_relu takes the slope at 0, elu/selu the negative branch
at 0 for elu and the positive one for selu.

gelu (``approximate=False``, Keras 3's default) is x * Phi(x) = x/2 * erfc(-x/sqrt 2)
(TensorFlow's form, which keeps the relative precision of the tiny negative tail).
NumPy has no erf; :func:`erf` and :func:`erfc` here are W. J. Cody's rational Chebyshev
approximations ("Rational Chebyshev approximations for the error function", Math.
Comp. 23 (1969) 631-638, the coefficients of Netlib SPECFUN's CALERF), within a few
units in the last place of float64 wherever erfc is a normal number (x < 26.5; beyond,
it underflows), as tests/test_more_activations.py measures against math.erf and
math.erfc; float32 inputs are computed in float64 and rounded.
"""
import math
import weakref

import numpy as np

from . import _arena, _ext
from ._validation import as_array, common_float_dtype

__all__ = ["relu6", "relu6_backward", "leaky_relu", "leaky_relu_backward", "elu",
           "elu_backward", "selu", "selu_backward", "softplus", "softplus_backward",
           "hard_sigmoid", "hard_sigmoid_backward", "silu", "silu_backward",
           "silu_input_backward", "gelu", "gelu_backward", "gelu_input_backward",
           "hard_silu", "hard_silu_backward", "hard_silu_input_backward", "erf", "erfc",
           "general_relu", "general_relu_input_backward", "SELU_ALPHA",
           "SELU_SCALE"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _float(x, name="x"):
    """x as a float array; a 0-d x as a 1-element array (as activations.relu gives)."""
    arr = as_array(x, name)
    return arr.astype(common_float_dtype({name: arr}), copy=False).reshape(
        arr.shape or (1,))


def _grad_pair(grad_y, y, yname="y"):
    gy, ya = as_array(grad_y, "grad_y"), as_array(y, yname)
    gy, ya = gy.reshape(gy.shape or (1,)), ya.reshape(ya.shape or (1,))
    dtype = common_float_dtype({"grad_y": gy, yname: ya})
    if gy.shape != ya.shape:
        raise ValueError(f"grad_y must have the shape of {yname} {ya.shape}, got "
                         f"{gy.shape}")
    return gy.astype(dtype, copy=False), ya.astype(dtype, copy=False)


def _number(value, name, minimum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float,
                                                                      np.number)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        rule = "finite" if minimum is None else f"finite and >= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


# ---- the inputs of gelu, silu and hard_silu, by the identity of their outputs --------

# id(y) -> (weakref to y, activation name, what its backward needs)
_inputs = {}


def _remember(y, name, x):
    key = id(y)

    def forget(ref, key=key):
        entry = _inputs.get(key)
        if entry is not None and entry[0] is ref:
            del _inputs[key]

    _inputs[key] = (weakref.ref(y, forget), name, x)
    return y


def _input_of(y, name):
    entry = _inputs.get(id(y))
    if entry is None or entry[0]() is not y or entry[1] != name:
        raise ValueError(f"{name}_backward(grad_y, y) needs y to be an array returned "
                         f"by {name}(x) (its gradient is a function of x, which {name} "
                         f"remembers for its output); got another array of shape "
                         f"{np.shape(y)}: use {name}_input_backward(grad_y, x)")
    return entry[2]


# ---- erf / erfc (Cody 1969) ----------------------------------------------------------

_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)


def _poly(t, lead, coefs):
    """(((lead t + c0) t + c1) ... ) t + c_last, by Horner's rule in place."""
    out = t * lead
    for c in coefs[:-1]:
        out += c
        out *= t
    out += coefs[-1]
    return out


def _erf_small(y):
    """erf(y) for |y| <= 0.5 (Cody's first interval)."""
    z = y * y
    num = _poly(z, _A[4], _A[:4])
    num /= _poly(z, 1.0, _B)
    num *= y
    return num


def _erfc_mid(y):
    """erfc(y) exp(y**2) for 0.5 <= y <= 4 (Cody's second interval)."""
    num = _poly(y, _C[8], _C[:8])
    num /= _poly(y, 1.0, _D)
    return num


def _erfc_far(y):
    """erfc(y) exp(y**2) for y > 4 (Cody's third interval)."""
    z = 1.0 / (y * y)
    r = _poly(z, _P[5], _P[:5])
    r /= _poly(z, 1.0, _Q)
    r *= z
    np.subtract(_SQRPI, r, out=r)
    r /= y
    return r


def _erfc_large(y):
    """erfc(y) for y >= 0.5 (or NaN): each interval's rational function on its own
    entries, times exp(-y**2)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore",
                     under="ignore"):
        mid = y <= 4.0
        if mid.all():
            r = _erfc_mid(y)
        else:
            r = np.empty_like(y)
            r[mid] = _erfc_mid(y[mid])
            far = ~mid
            r[far] = _erfc_far(y[far])
        # exp(-y*y) as exp(-ys*ys) * exp(-(y - ys)(y + ys)), ys = y rounded down to
        # 1/16: exact squares, so no error from rounding y*y (Cody's device).
        ys = np.trunc(y * 16.0)
        ys /= -16.0                     # -ys
        d = np.add(y, ys)               # y - ys
        d *= ys - y                     # -(y - ys)(y + ys)
        np.exp(d, out=d)
        r *= d
        ys *= ys
        np.negative(ys, out=ys)
        np.exp(ys, out=ys)
        r *= ys
    if not np.isfinite(y).all():
        r = np.where(np.isinf(y), 0.0, np.where(np.isnan(y), y, r))
    return r


def _erf_pieces(x, inner_fn, tail_fn):
    """inner_fn(v, erf v) where |v| <= 0.5 and tail_fn(v, erfc |v|) elsewhere, for v
    = x in float64: each interval computed on its own entries only."""
    v = _float(x).astype(np.float64, copy=False)
    a = np.abs(v)
    small = a <= 0.5
    if small.all():
        return inner_fn(v, _erf_small(v))
    if not small.any():
        return tail_fn(v, _erfc_large(a))
    out = np.empty(v.shape)
    out[small] = inner_fn(v[small], _erf_small(v[small]))
    big = ~small
    out[big] = tail_fn(v[big], _erfc_large(a[big]))
    return out


def erfc(x):
    """The complementary error function 1 - erf(x), to float64 precision (relative
    precision kept in the right tail, where erfc is tiny)."""
    out = _erf_pieces(x, lambda v, e: 1.0 - e,
                      lambda v, t: np.where(v < 0, 2.0 - t, t))
    return out.astype(_float(x).dtype, copy=False)


def erf(x):
    """The error function, to float64 precision."""
    out = _erf_pieces(x, lambda v, e: e, lambda v, t: np.copysign(1.0 - t, v))
    return out.astype(_float(x).dtype, copy=False)


# ---- piecewise linear: relu6, leaky_relu, hard_sigmoid --------------------------------
#
# The selections are products with 0/1 masks (exact: the kept value times 1 plus 0),
# several times faster than np.where, which branches on every element.

def _factor(mask, where_true, where_false, dtype):
    """An array of where_true where mask is set and where_false elsewhere, exactly:
    mask * where_true + ~mask * where_false."""
    out = np.multiply(mask, dtype.type(where_true), dtype=dtype)
    out += np.multiply(~mask, dtype.type(where_false), dtype=dtype)
    return out


def relu6(x):
    """min(max(x, 0), 6) (NaN and -0.0 kept, as TensorFlow's), compiled on all threads
    (src/_activations.pyx clamp)."""
    x = np.ascontiguousarray(_float(x))
    out = np.empty(x.shape, x.dtype)
    if out.size:
        _ext.activations.clamp(x.reshape(-1), 0.0, 6.0, out.reshape(-1))
    return out


def _relu6_inplace(z):
    """relu6(z) written over z, a float array nothing else refers to (a layer's fresh
    output; see activations._INPLACE): the same values without a new array."""
    if z.ndim == 0 or not z.flags.writeable or not z.flags.c_contiguous:
        return relu6(z)
    flat = z.reshape(-1)
    _ext.activations.clamp(flat, 0.0, 6.0, flat)
    return z


def relu6_backward(grad_y, y):
    """grad_y where 0 < y < 6, 0 elsewhere (a select: a NaN or inf in grad_y outside the
    band does not leak), compiled on all threads."""
    gy, y = _grad_pair(grad_y, y)
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    out = _arena.empty(y.shape, y.dtype)
    if out.size:
        _ext.activations.band_backward(gy.reshape(-1), y.reshape(-1), 0.0, 6.0,
                                       out.reshape(-1))
    return out


def leaky_relu(x, negative_slope=0.2):
    """x for x > 0, negative_slope * x otherwise (Keras's default slope 0.2)."""
    slope = _number(negative_slope, "negative_slope", 0.0)
    x = _float(x)
    scaled = x * x.dtype.type(slope)
    # max(x, slope x) for slopes up to 1, min(x, slope x) above
    return (np.maximum if slope <= 1 else np.minimum)(x, scaled, out=scaled)


def leaky_relu_backward(grad_y, y, negative_slope=0.2):
    """grad_y where y > 0, negative_slope * grad_y elsewhere."""
    slope = _number(negative_slope, "negative_slope", 0.0)
    gy, y = _grad_pair(grad_y, y)
    out = _factor(np.greater(y, 0), 1.0, slope, gy.dtype)
    out *= gy
    return out


def hard_sigmoid(x):
    """relu6(x + 3) / 6 (Keras 3's definition)."""
    x = _float(x)
    out = np.add(x, x.dtype.type(3))
    np.clip(out, 0, 6, out=out)
    out /= x.dtype.type(6)
    return out


def _hard_sigmoid_inplace(z):
    """hard_sigmoid(z) written over z (as _relu6_inplace)."""
    if z.ndim == 0 or not z.flags.writeable:
        return hard_sigmoid(z)
    z += z.dtype.type(3)
    np.clip(z, 0, 6, out=z)
    z /= z.dtype.type(6)
    return z


def hard_sigmoid_backward(grad_y, y):
    """grad_y / 6 where 0 < y < 1, 0 elsewhere."""
    gy, y = _grad_pair(grad_y, y)
    mask = np.greater(y, 0)
    mask &= np.less(y, 1)
    out = np.divide(gy, gy.dtype.type(6))
    out *= mask
    return out


# ---- exponential: elu, selu, softplus -------------------------------------------------

def elu(x, alpha=1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (as max(x, 0) + alpha *
    expm1(min(x, 0)): the same numbers)."""
    alpha = _number(alpha, "alpha", 0.0)
    x = _float(x)
    out = np.expm1(np.minimum(x, 0))
    out *= x.dtype.type(alpha)
    out += np.maximum(x, 0)
    return out


def elu_backward(grad_y, y, alpha=1.0):
    """grad_y for y > 0, grad_y * (y + alpha) (= alpha exp(x)) otherwise."""
    alpha = _number(alpha, "alpha", 0.0)
    gy, y = _grad_pair(grad_y, y)
    mask = np.greater(y, 0)
    out = np.add(y, y.dtype.type(alpha))
    out *= ~mask
    out += mask
    out *= gy
    return out


def selu(x):
    """SELU_SCALE * elu(x, SELU_ALPHA) (Klambauer et al., 2017)."""
    x = _float(x)
    t = x.dtype.type
    out = np.expm1(np.minimum(x, 0))
    out *= t(SELU_SCALE * SELU_ALPHA)
    out += np.maximum(x, 0) * t(SELU_SCALE)
    return out


def selu_backward(grad_y, y):
    """grad_y * SELU_SCALE for y >= 0, grad_y * (y + SELU_SCALE * SELU_ALPHA) below."""
    gy, y = _grad_pair(grad_y, y)
    t = y.dtype.type
    below = np.less(y, 0)
    out = np.add(y, t(SELU_SCALE * SELU_ALPHA))
    out *= below
    out += _factor(below, 0.0, SELU_SCALE, y.dtype)
    out *= gy
    return out


def softplus(x):
    """log(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|)): no overflow, and full
    precision in the left tail."""
    x = _float(x)
    out = np.abs(x)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(x, 0)
    return out


def softplus_backward(grad_y, y):
    """grad_y * sigmoid(x), with sigmoid(x) = 1 - exp(-y) = -expm1(-y)."""
    gy, y = _grad_pair(grad_y, y)
    return gy * -np.expm1(-y)


# ---- not one-to-one: silu, gelu, hard_silu (backward needs x) -------------------------

def silu(x):
    """x * sigmoid(x) = x / (1 + exp(-x)) (Keras's silu, alias swish); exp(-x)
    overflowing to inf gives the right limit, -0."""
    x = _float(x)
    with np.errstate(over="ignore", invalid="ignore"):
        den = np.exp(np.negative(x))
        den += 1
        y = np.divide(x, den, out=den)
    return _remember(y, "silu", x)


def silu_input_backward(grad_y, x):
    """grad_y * s * (1 + x (1 - s)), s = sigmoid(x) = 1 / (1 + e), 1 - s = e s with e =
    exp(-x) (no cancellation; 1 where e overflows)."""
    gy, x = _grad_pair(grad_y, x, "x")
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(np.negative(x))
        s = np.add(e, 1)
        np.reciprocal(s, out=s)
        e *= s
        np.fmin(e, 1, out=e)
        e *= x
        e += 1
        e *= s
        e *= gy
    return e


def silu_backward(grad_y, y):
    """silu's gradient; y must be an output of :func:`silu` (see the module doc)."""
    return silu_input_backward(grad_y, _input_of(y, "silu"))


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_C = math.sqrt(2.0 / math.pi)


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _gelu_gate(v, approximate):
    """Phi(v) (or the tanh form's 0.5 (1 + tanh(...))) for float64 v; with
    approximate, the tanh itself as well (its derivative needs it)."""
    if approximate:
        t = np.tanh(_TANH_C * (v + 0.044715 * v ** 3))
        return 0.5 * (1.0 + t), t
    return 0.5 * erfc(-v * _SQRT_HALF), None


def _gelu_slope(v, gate, t):
    """d gelu / dx from float64 v and its gate (see _gelu_gate)."""
    if t is None:
        return gate + v * _INV_SQRT_2PI * np.exp(-0.5 * v * v)
    return gate + 0.5 * v * (1.0 - t * t) * _TANH_C * (1.0 + 3 * 0.044715 * v * v)


def gelu(x, approximate=False):
    """x * Phi(x), Phi the standard normal CDF (approximate=False, Keras 3's default),
    or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3))) with approximate=True.  The
    gate (Phi or the tanh form) is kept for the gradient in x's dtype."""
    approximate = _check_flag(approximate, "approximate")
    x = _float(x)
    v = x.astype(np.float64, copy=False)
    gate, t = _gelu_gate(v, approximate)
    y = (v * gate).astype(x.dtype, copy=False)
    keep = [a if a is None else a.astype(x.dtype, copy=False) for a in (gate, t)]
    return _remember(y, "gelu", (x, keep[0], keep[1]))


def gelu_input_backward(grad_y, x, approximate=False):
    """grad_y * (Phi(x) + x phi(x)), or the derivative of the tanh form."""
    approximate = _check_flag(approximate, "approximate")
    gy, x = _grad_pair(grad_y, x, "x")
    v = x.astype(np.float64, copy=False)
    return gy * _gelu_slope(v, *_gelu_gate(v, approximate)).astype(x.dtype, copy=False)


def gelu_backward(grad_y, y):
    """gelu's gradient; y must be an output of :func:`gelu` (see the module doc)."""
    x, gate, t = _input_of(y, "gelu")
    gy, _ = _grad_pair(grad_y, y)
    v = x.astype(np.float64, copy=False)
    slope = _gelu_slope(v, gate.astype(np.float64, copy=False),
                        None if t is None else t.astype(np.float64, copy=False))
    return gy * slope.astype(x.dtype, copy=False)


def hard_silu(x):
    """x * hard_sigmoid(x) (Keras's hard_silu, alias hard_swish)."""
    x = _float(x)
    return _remember(x * hard_sigmoid(x), "hard_silu", x)


def hard_silu_input_backward(grad_y, x):
    """grad_y * (hard_sigmoid(x) + x / 6 on -3 < x < 3)."""
    gy, x = _grad_pair(grad_y, x, "x")
    d = hard_sigmoid(x)
    inside = np.greater(x, -3)
    inside &= np.less(x, 3)
    d += np.multiply(x / x.dtype.type(6), inside)
    return gy * d


def hard_silu_backward(grad_y, y):
    """hard_silu's gradient; y must be an output of :func:`hard_silu`."""
    return hard_silu_input_backward(grad_y, _input_of(y, "hard_silu"))


# ---- Keras's relu with all its arguments (the ReLU layer) -----------------------------

def _relu_args(negative_slope, max_value, threshold):
    slope = _number(negative_slope, "negative_slope", 0.0)
    top = None if max_value is None else _number(max_value, "max_value", 0.0)
    return slope, top, _number(threshold, "threshold", 0.0)


def general_relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's ``activations.relu(x, negative_slope, max_value, threshold)``:
    min(x, max_value) for x > threshold, negative_slope * (x - threshold) below, 0 at
    x == threshold (x itself, not x - threshold, above the threshold, as Keras)."""
    slope, top, thr = _relu_args(negative_slope, max_value, threshold)
    x = _float(x)
    t = x.dtype.type
    y = np.where(x > t(thr), x, t(0))
    if top is not None:
        np.minimum(y, t(top), out=y)
    if slope:
        y += np.minimum(x - t(thr), t(0)) * t(slope)
    return y


def general_relu_input_backward(grad_y, x, negative_slope=0.0, max_value=None,
                                threshold=0.0):
    """Gradient of :func:`general_relu` from its input x: 1 on threshold < x <=
    max_value, negative_slope below the threshold, 0 elsewhere, with Keras/
    TensorFlow's choices at the kinks (the leaky branch at x == 0 when there is no
    max_value or threshold; 0 at x == 6 for ReLU6)."""
    slope, top, thr = _relu_args(negative_slope, max_value, threshold)
    gy, x = _grad_pair(grad_y, x, "x")
    t = x.dtype.type
    d = (x > t(thr)).astype(x.dtype)
    if top is not None:
        # Keras clips with clip_by_value (the gradient passes at max_value), except
        # ReLU6 without a threshold, which runs TensorFlow's relu6 (it does not)
        d *= (x < t(top)) if (top == 6.0 and thr == 0) else (x <= t(top))
    if slope:
        below = (x <= t(thr)) if (top is None and thr == 0) else (x < t(thr))
        d += below * t(slope)
    return gy * d
