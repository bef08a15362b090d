"""Running the plans: one driver per pass, the fused convolution + pooling forwards.

Each driver selects the plan of its call (cached), deals with what no algorithm needs
to see (empty arrays, a batch that reads only padding), applies the finite-weight rule
(algorithms/common.py) and runs the plan.  The weight comes in the call's layout.
"""
import time

import numpy as np

from ... import _arena, _ext
from ... import activations as _activations
from . import plan as _plan
from ... import tuning as _tuning
from .algorithms import IM2COL
from ..._layout import to_first, to_last
from .algorithms.common import (bias_total, finite, grad_bias, images_per_partial,
                                weight_oihw)
from .algorithms.via_last import twin_weight
from .plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, RELU6, select

__all__ = ["forward", "grad_input", "grad_weight", "forward_avg_pooled",
           "forward_max_pooled", "grad_weight_avg_tanh"]


def _tanh_if(y, tanh):
    """y, with tanh applied in place when asked (y is a new array of the kernels)."""
    return _activations._tanh_inplace(y) if tanh else y


def _verbose(driver):
    """driver, printing the FASTCONV_VERBOSE line of each top-level call."""
    def timed(*args, **kwargs):
        ran = []
        start = time.perf_counter()
        out = driver(*args, ran=ran, **kwargs)
        _plan.report(ran[0], time.perf_counter() - start)
        return out
    timed.__doc__ = driver.__doc__
    return timed if _plan.VERBOSE else driver


def _forward(g, x, weight, bias, dtype, relu=False, tanh=False, tile=None, finite_w=None,
             ran=None, forced=True, prepared=None):
    """y of geometry g (weight in g's layout), then ReLU (relu True; relu RELU6: ReLU6,
    in the output pass of the algorithms with ``relu6``, a clamp after the others') or
    tanh (tanh: fused into the wide and pixel-row kernels' output pass in float32, a
    separate in-place pass otherwise).  tile: the Winograd tile asked for (None: the plan's);
    finite_w: whether the weight is finite, when the caller knows; forced=False: the
    inner call of a rewrite, which force_conv_algorithm does not reach; prepared: a
    Prepared (prepared.py) whose values are made from weight, where the packed weight
    and its finiteness are kept between calls (inference)."""
    packed = prepared is not None
    plan = select(g, dtype, FORWARD, True, tile, forced, packed)
    alg = plan.algorithm
    if ran is not None:
        ran.append(plan)
    if alg.rewrites:
        d = plan.run_g
        return _forward(d, x.reshape(d.x_shape), weight.reshape(d.weight_shape), bias,
                        dtype, relu, tanh, forced=False,
                        prepared=prepared).reshape(g.y_shape)
    if alg.relayouts:   # (via_last: the channels_last twin on transposed copies)
        wl = twin_weight(plan, weight, prepared)
        yl = _forward(plan.last, to_last(x, arena=True), wl, bias, dtype, relu, tanh,
                      tile, finite_w, forced=False, prepared=prepared)
        return to_first(yl, _arena.empty(g.y_shape, dtype))
    bound = relu == RELU6 and not alg.relu6   # ReLU6 as a clamp after the ReLU
    if bound:
        relu = True
    if getattr(alg, "on_layout", False):
        return _bound6_if(alg.forward_layout(plan, x, weight, bias, relu, tanh), bound)
    w = weight_oihw(g, weight)
    y = _arena.empty(g.y_shape, dtype)
    if y.size == 0:
        return y
    if finite_w is None and (x.size == 0 or FORWARD in alg.shortcuts):
        finite_w = (finite(w) if prepared is None else
                    prepared.get("finite", lambda: finite(w)))
    if finite_w is False and FORWARD in alg.shortcuts:
        plan = select(g, dtype, FORWARD, False, tile, forced, packed)
        alg = plan.algorithm
        if ran is not None:
            ran[-1] = plan
    if x.size == 0:  # every window lies in the padding
        y[...] = 0 if bias is None else (bias if g.channels_last else bias[:, None, None])
        if finite_w is False:  # 0 * w over the window's taps (NaN where w is not finite)
            zw = (w * 0).reshape(g.c_out, -1).sum(axis=1)
            y += zw if g.channels_last else zw[:, None, None]
        return _bound6_if(np.maximum(y, 0), relu == RELU6 or bound) if relu else y
    packed = _packed(prepared, plan, w)
    if packed is None:
        fused = alg.forward(plan, x, w, bias, y, relu, tanh and dtype == np.float32)
    else:
        fused = alg.forward(plan, x, w, bias, y, relu, tanh and dtype == np.float32,
                            packed=packed)
    return _bound6_if(y if fused else _tanh_if(y, tanh), bound)


def _bound6_if(y, bound):
    """y clamped at 6 in place where bound (after a ReLU: ReLU6; -0.0 and NaN kept)."""
    if bound and y.size:
        if y.flags.c_contiguous:
            flat = y.reshape(-1)
            _ext.activations.clamp(flat, -np.inf, 6.0, flat)
        else:
            np.minimum(y, y.dtype.type(6), out=y)
    return y


def _packed(prepared, plan, w):
    """plan's packed form of w (Algorithm.pack) kept in prepared, None where there is
    no prepared or the algorithm reads w as it is.  Kept by algorithm, tile, ISA (the
    panels' widths are the ISA's) and the layout its kernels address: a channels_first
    layer's calls may run on its channels_last kernels too (the depthwise's small
    planes, via_last), whose packing differs (before the layout was in the key, a
    depthwise layer called on a small input and then on a large one read the small
    one's packing)."""
    if prepared is None:
        return None
    last = (plan.last or plan.g).channels_last
    return prepared.get((plan.algorithm.name, plan.tile, plan.isa, last),
                        lambda: plan.algorithm.pack(plan, w))


def _grad_input(g, grad_y, weight, dtype, ran=None, forced=True):
    """grad_x of geometry g (grad_y and x not empty; weight in g's layout)."""
    plan = select(g, dtype, GRAD_INPUT, True, None, forced)
    alg = plan.algorithm
    if ran is not None:
        ran.append(plan)
    if alg.rewrites:
        d = plan.run_g
        return _grad_input(d, grad_y.reshape(d.y_shape), weight.reshape(d.weight_shape),
                           dtype, forced=False).reshape(g.x_shape)
    if alg.relayouts:
        gyl = to_last(grad_y, arena=True)
        gx = _grad_input(plan.last, gyl, twin_weight(plan, weight), dtype, forced=False)
        return to_first(gx, _arena.empty(g.x_shape, dtype))
    if getattr(alg, "on_layout", False):
        return alg.grad_input_layout(plan, grad_y, weight)
    w = weight_oihw(g, weight)
    if GRAD_INPUT in alg.shortcuts:
        if not finite(w):  # (the gather's zeros times a NaN weight: the scatter)
            plan = select(g, dtype, GRAD_INPUT, False, None, forced)
            if ran is not None:
                ran[-1] = plan
            return plan.algorithm.grad_input(plan, grad_y, w)
        # (into x's shape, in the call's layout: a gather's forward on grad_y, g's
        # mirror, gives exactly that)
        return alg.grad_input(plan, grad_y, w, _arena.empty(g.x_shape, dtype))
    return alg.grad_input(plan, grad_y, w)


def _grad_weight(g, grad_y, x, dtype, with_bias, ran=None, forced=True):
    """(grad_weight in g's weight layout, grad_bias or None).  A non-finite result is
    computed again on im2col, which takes no shortcut over zeros."""
    plan = select(g, dtype, GRAD_WEIGHT, True, None, forced)
    alg = plan.algorithm
    if ran is not None:
        ran.append(plan)
    # (empty shapes: no algorithm's kernels run)
    if g.n == 0 or g.oh * g.ow == 0 or g.c_out == 0:
        return np.zeros(g.weight_shape, dtype), (np.zeros(g.c_out, dtype) if with_bias
                                                 else None)
    if g.k_group == 0:   # no input channels: an empty weight, the bias's sums alone
        return np.zeros(g.weight_shape, dtype), (grad_bias(g, grad_y, dtype, plan.n_per)
                                                 if with_bias else None)
    if alg.rewrites:
        d = plan.run_g
        gw, _ = _grad_weight(d, grad_y.reshape(d.y_shape), x.reshape(d.x_shape), dtype,
                             False, forced=False)
        gw = gw.reshape(g.weight_shape)
        # The bias gradient's partial sums as conv2d_grad_bias groups them (g's images).
        gb = grad_bias(g, grad_y, dtype, plan.n_per) if with_bias else None
    elif alg.relayouts:
        gw, _ = _grad_weight(plan.last, to_last(grad_y, arena=True),
                             to_last(x, arena=True), dtype, False, forced=False)
        gw = np.ascontiguousarray(gw.transpose(3, 2, 0, 1))
        gb = grad_bias(g, grad_y, dtype, plan.n_per) if with_bias else None
    elif getattr(alg, "on_layout", False):
        gw, gb = alg.grad_weight_layout(plan, grad_y, x, with_bias)
    else:
        # The bias gradient's partial sums over the groups of n_per images that
        # conv2d_grad_bias makes (the same bits); the pixel-row and wide kernels take
        # each group's in the work item of its weight gradient, while in cache.
        bsum = np.zeros((-(-g.n // plan.n_per), g.c_out)) if with_bias else None
        if bsum is not None and not getattr(alg, "takes_bias_sums", False):
            _ext.conv2d.grad_bias(grad_y.reshape(-1), bsum.reshape(-1), g.c,
                                        plan.n_per)
        gw = alg.grad_weight(plan, grad_y, x, bsum)
        gb = bias_total(bsum, dtype)
    if not finite(gw):  # the kernels' zeros may have met a NaN or inf
        t = _tuning.current()
        gw = IM2COL.grad_weight(select_im2col(g, dtype, t), grad_y, x, None)
    return gw, gb


def select_im2col(g, dtype, t):
    """im2col's weight-gradient plan for g (the finite rule's fallback), unforced."""
    return IM2COL.plan(_plan.Query(g, dtype, GRAD_WEIGHT, True, None,
                                   _ext.conv2d.isa(), t))


forward = _verbose(_forward)
grad_input = _verbose(_grad_input)
grad_weight = _verbose(_grad_weight)


# -- fused convolution + 2x2/2 pooling (channels_last) --------------------------------
def _pool_plan(g, x, weight, dtype, tile=None):
    """g's forward plan where a 2x2/2 pool could be fused into it -- a pooled output of
    at least one pixel, a non-empty input, not a dense convolution, a finite weight --
    else None."""
    if g.oh >= 2 and g.ow >= 2 and not g.is_dense and x.size != 0 and finite(weight):
        return select(g, dtype, FORWARD, True, tile)
    return None


def forward_avg_pooled(g, x, weight, bias, dtype, relu=False, tanh=False, keep=False):
    """avg_pool2d(act(conv2d(x)), 2) -- 2x2 windows, stride 2, rows and columns past an
    even count dropped, act ReLU (relu), tanh (tanh) or none -- bit for bit, in the
    output pass of the wide or pixel-row kernels, each image pooled while in cache: the
    full-size output is never written.  With keep, (act(conv2d(x)), its pool): the pool
    taken from each pair of output rows as they are written (training, where the
    backward pass needs the activations).  None where g runs on neither (or tanh is
    asked in float64, which they do not fuse)."""
    plan = None if tanh and dtype != np.float32 else _pool_plan(g, x, weight, dtype)
    if plan is None or plan.name not in ("wide", "pixel"):
        return None
    pooled = _arena.empty((g.n, g.oh // 2, g.ow // 2, g.c_out), dtype)
    y = _arena.empty(g.y_shape, dtype) if keep else None
    out, yq = (pooled, None) if y is None else (y, pooled)
    w = weight_oihw(g, weight)
    if plan.name == "wide":
        plan.algorithm.forward(plan, x, w, bias, out, relu, tanh, pool=y is None, yq=yq)
    else:
        plan.algorithm.forward(plan, x, w, bias, out, relu, tanh, avg_pool=y is None,
                               yq=yq)
    return pooled if y is None else (y, pooled)


def forward_max_pooled(g, x, weight, bias, dtype, relu=False, winograd_tile=None,
                       prepared=None):
    """max_pool2d(act(conv2d(x)), 2) -- 2x2 windows, stride 2, rows and columns past an
    even count dropped, act ReLU (relu) or none -- bit for bit, the full-size output
    never written (inference only: the backward passes need it).  On Winograd each
    output tile holds whole pooling windows (an even tile), pooled as it is written; on
    the pixel-row kernels each image is pooled from a per-thread copy of its output
    while in cache.  None where g runs on neither.  prepared: as forward's."""
    plan = _pool_plan(g, x, weight, dtype, winograd_tile)
    if plan is None:
        return None
    if plan.name.startswith("winograd"):
        if plan.tile % 2:  # (F(5x5): no tile holds whole windows)
            return None
    elif plan.name != "pixel":
        return None
    pooled = _arena.empty((g.n, g.oh // 2, g.ow // 2, g.c_out), dtype)
    w = weight_oihw(g, weight)
    packed = _packed(prepared, plan, w)
    if plan.name == "pixel":
        plan.algorithm.forward(plan, x, w, bias, pooled, relu, False, max_pool=True,
                               packed=packed)
    else:
        plan.algorithm.forward(plan, x, w, bias, pooled, relu, False, pool=True,
                               packed=packed)
    return pooled


def grad_weight_avg_tanh(g, grad_pooled, x, a, dtype, with_bias):
    """(grad_weight, grad_bias or None) of a tanh convolution followed by a 2x2/2
    average pool, from the pool's output gradient grad_pooled and tanh's output a --
    the gradient with respect to the convolution's output made image by image inside
    the wide weight gradient's work items while in cache, never written whole: the
    same values as grad_weight on it.  None where g's weight gradient does not run on
    the wide kernels (the only one that takes it), the shapes do not suit, or the
    result is not finite (the layers' separate passes then apply the finite rule)."""
    if not (g.channels_last and g.oh >= 2 and g.ow >= 2 and g.n and
            a.shape == g.y_shape and grad_pooled.shape == (g.n, g.oh // 2, g.ow // 2,
                                                           g.c_out) and
            a.dtype == grad_pooled.dtype == dtype and a.flags.c_contiguous and
            grad_pooled.flags.c_contiguous and not g.is_dense):
        return None
    plan = select(g, dtype, GRAD_WEIGHT)
    if plan.name != "wide":
        return None
    bsum = np.zeros((-(-g.n // plan.n_per), g.c_out)) if with_bias else None
    gw = plan.algorithm.grad_weight(plan, None, x, bsum, grad_pooled, a)
    return (gw, bias_total(bsum, dtype)) if finite(gw) else None


def images_per_partial_of(g, dtype):
    """Images per partial bias (and weight) gradient of g, under the current tuning."""
    return images_per_partial(g, np.dtype(dtype).itemsize, _tuning.current())
