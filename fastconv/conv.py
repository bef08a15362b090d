"""conv2d and its gradients: the public functions, and the entry points the layers and
the model's fusion call, over the conv engine in fastconv/ops/conv/ (validate -> plan ->
run; see its package docstring).  This module keeps the names the rest of fastconv
imports from here."""
from .ops.conv import (backward as _backward, conv2d, conv2d_act as _conv2d,
                       conv2d_backward, conv2d_grad_bias, conv2d_grad_input,
                       conv2d_grad_weight, conv2d_output_shape, explain_conv,
                       force_conv_algorithm, _ready_dtype)
from .ops.conv import plan as _plan
from . import tuning as _tuning
from .ops.conv.algorithms.winograd import tile_for as _winograd_tile_for
from .ops.conv.geometry import ConvGeometry as _Geometry, geometry as _geometry
from .ops.conv.run import (forward as _run_forward, forward_avg_pooled as _forward_avg_pooled,
                           forward_max_pooled as _forward_max_pooled,
                           grad_input as _grad_input, grad_weight as _grad_weight,
                           grad_weight_avg_tanh as _grad_weight_avg_tanh)

__all__ = ["conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape", "explain_conv",
           "force_conv_algorithm"]

# (Names kept for fastconv's own modules: see ops/conv.)
_KEPT = (_backward, _conv2d, _ready_dtype, _winograd_tile_for, _Geometry, _geometry,
         _forward_avg_pooled, _forward_max_pooled, _grad_input, _grad_weight,
         _grad_weight_avg_tanh)


def _conv_forward(g, x, weight, bias, dtype, relu=False, tanh=False, winograd_tile=None,
                  prepared=None):
    """conv2d's y for the checked geometry g and arrays (weight in g's layout), then
    ReLU or tanh (see ops.conv.conv2d_act); winograd_tile: the Winograd tile asked for;
    prepared: where the weight's packed forms are kept (ops/conv/prepared.py)."""
    return _run_forward(g, x, weight, bias, dtype, relu, tanh, winograd_tile,
                        prepared=prepared)


def _winograd_pool_tile():
    """The forward tile of a convolution whose 2x2 max pool may be fused: F(4x4), or
    F(2x2) where the tuning asks for it (the fused pool needs whole windows per tile)."""
    return 2 if _tuning.current().winograd_tile == 2 else 4


_PATHS = {"narrow": "narrow", "wide": "wide", "pixel": "pixel", "shifted": "other",
          "depthwise": "other", "im2col": "other", "pointwise": "other",
          "pointwise_blas": "other", "im2col_blas": "other"}


def _forward_path(g, dtype, finite=True):
    """The kernels the forward of g (a non-dense geometry; for a dense one, the kernels
    it would take as a convolution) runs on: "winograd", "narrow", "wide", "pixel" (the
    pixel-row tiles) or "other" (shifted or im2col); "other" alone when the weight is
    not finite."""
    plan = _plan.select(g, dtype, _plan.FORWARD, bool(finite))
    alg = plan.algorithm
    if alg.name in ("dense", "dense_1x1"):
        q = _plan.Query(g, dtype, _plan.FORWARD, bool(finite), None,
                        _plan._ext.conv2d.isa(), _tuning.current())
        alg = next(a for a in _plan.registry(_plan.FORWARD)[2:]
                   if a.supports(q) is None and a.declines(q) is None)
    return "winograd" if alg.name.startswith("winograd") else _PATHS[alg.name]
