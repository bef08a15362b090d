"""Fusion as a model pass: the table of fusion patterns and the step compiler.

Layers know nothing of their neighbours.  A model hands its layers to ``compile_steps``
as the nodes of a graph, each knowing the nodes it feeds (a Sequential is a chain), and
runs the list of steps it gets back: a step is one layer, or a group of layers that a
pattern of ``PATTERNS`` runs as one pass.  A run (a, b, ...) fuses when each layer's
output goes to the next alone and each reads the one before alone, the pattern's layer
types and condition match, and the pass (inference or training) is one the pattern
serves.  A layer with an activity regularizer never fuses before another: the penalty
reads its output, which a fused pass may never write (the model computes it after the
layer's step).  The model compiles its steps once per pass kind and keeps them until
its layers change (add, pop, build, compile).

Each pattern is one entry: layer types, condition, fused forward, fused backward.  A
fused function returns None (forward) or UNFUSED (backward) where its kernels turn the
arrays down at run time (a dtype, a shape, a non-finite weight): the step then runs its
layers one by one, so fused and unfused steps give the same results, bit for bit (the
tests compare them against the same model with ``fusion=False``) -- except
conv_batch_norm(_relu), which folds the normalization into the kernel and bias and so
agrees to float32 rounding.

A pattern may also fix how its first layer runs in every pass (``first_tile``): a
Conv2D that the inference pass fuses with the 2x2 max pool after it runs its forward on
the fused kernel's Winograd tiles in every pass, so that predict and model(x) give the
same bits.  That rule holds with fusion off too (the off switch is a test oracle).
"""
import numpy as np

from . import conv as _conv
from . import pooling as _pool
from .ops.conv import expand_dw as _expand_dw, plan as _plan
from .layers.activation_layers import ReLU
from .layers.base import Layer
from .layers.conv import Conv2D
from .layers.conv_variants import DepthwiseConv2D
from .layers.merge import Add
from .layers.normalization import BatchNormalization
from .layers.pooling import AveragePooling2D, MaxPooling2D
from .layers.reshaping import ZeroPadding2D

__all__ = ["INFERENCE", "TRAINING", "PATTERNS", "Pattern", "Node", "chain",
           "compile_steps", "forward_algorithm"]

INFERENCE, TRAINING = "inference", "training"
#: the convolutions a ZeroPadding2D folds into (not first in their patterns: exact types)
_CONVS = (Conv2D, DepthwiseConv2D)
#: what a fused backward returns when its kernels do not apply (the layers' own run)
UNFUSED = object()


class Pattern:
    """One fusion: a run of layers of the classes ``layers`` (the first matched with
    its subclasses, the others exactly; a tuple of classes: any of them), fused in the
    passes ``modes`` where
    ``condition(*run, mode)`` holds (hyper-parameters only: the model decides once).

    forward(*run, x, training, tile) -> the last layer's output, or None (the layers
    run one by one); in training it leaves the layers' caches as their own forward
    calls would.  backward(*run, grad, first_input_grad) -> the first layer's input
    gradient (None when not asked), or UNFUSED.  first_tile() -> the Winograd tile
    the first layer runs on in every pass (None: any)."""

    __slots__ = ("name", "layers", "modes", "condition", "forward", "backward",
                 "first_tile")

    def __init__(self, name, layers, modes, condition, forward=None, backward=None,
                 first_tile=None):
        self.name, self.layers = name, tuple(layers)
        self.modes, self.condition = tuple(modes), condition
        self.forward, self.backward, self.first_tile = forward, backward, first_tile

    def matches(self, *run_and_mode):
        """Whether the layers (a, b[, c, ...]) fuse in mode: matches(a, b, mode)."""
        *run, mode = run_and_mode
        return (mode in self.modes and len(run) == len(self.layers) and
                isinstance(run[0], self.layers[0]) and
                all(type(layer) in (cls if isinstance(cls, tuple) else (cls,))
                    for layer, cls in zip(run[1:], self.layers[1:]))
                and self.condition(*run, mode))

    def __repr__(self):
        names = " + ".join("/".join(c.__name__ for c in cls) if isinstance(cls, tuple)
                           else cls.__name__ for cls in self.layers)
        return f"<Pattern {self.name!r}: {names} in {', '.join(self.modes)}>"


# ------------------------------------------------------------------------ the patterns
def _conv_pool_ok(conv, pool, mode):
    """A 2x2/2 'valid' channels_last pool after a linear, ReLU or tanh Conv2D: what the
    wide and pixel-row kernels pool in their output pass."""
    return (pool.pool_size == (2, 2) and pool.strides == (2, 2) and
            pool.padding == "valid" and
            pool.data_format == conv.data_format == "channels_last" and
            conv.activation in ("linear", "relu", "tanh"))


def _conv_max_ok(conv, pool, mode):
    return conv.activation != "tanh" and _conv_pool_ok(conv, pool, mode)


def _tanh_avg_ok(layer, pool, mode):
    return layer.activation == "tanh"


def _conv_avg_forward(conv, pool, x, training, tile):
    """conv then its 2x2/2 average pool in one pass (conv._forward_avg_pooled); in
    training the kernels also write conv's output, which both backward passes read."""
    ops = conv._fusable_operands(x)
    if ops is None:
        return None
    g, dtype, kernel, bias = ops
    act = conv.activation
    out = _conv._forward_avg_pooled(g, x, kernel, bias, dtype, relu=act == "relu",
                                    tanh=act == "tanh", keep=training)
    if out is None or not training:
        return out
    y, pooled = out
    conv._cache_for_backward(x, y)
    pool._cache_for_backward(y)
    return pooled


def _conv_max_forward(conv, pool, x, training, tile):
    """conv then its 2x2/2 max pool in one pass, the full-size output never written
    (conv._forward_max_pooled; inference only: the backward passes need it)."""
    ops = conv._fusable_operands(x)
    if ops is None:
        return None
    g, dtype, kernel, bias = ops
    prepared = None if training else conv._prepared_for("kernel", conv.kernel)
    return _conv._forward_max_pooled(g, x, kernel, bias, dtype,
                                     conv.activation == "relu", tile, prepared)


def _avg_tanh_backward(layer, pool, grad, input_grad):
    """The gradients of a tanh layer and the average pool of its output in one pass
    (pooling._avg_backward_tanh), then layer's linear part.  Where layer is a Conv2D
    whose input gradient is not needed, its parameter gradients straight from the
    pool's output gradient (Conv2D._backward_from_avg_tanh), None returned."""
    if layer.activation != "tanh":
        return UNFUSED
    a = layer._activation_output()
    g = pool._grad_geometry(grad, a)
    if g is None:
        return UNFUSED
    if (not input_grad and isinstance(layer, Conv2D) and
            _pool._avg_tanh_fusable(g, grad, a) and layer._backward_from_avg_tanh(grad)):
        return None
    into = _pool._avg_backward_tanh(g, grad, a)
    if into is None:
        return UNFUSED
    return layer._linear_backward(into, input_grad)


def _conv_bn_ok(conv, bn, mode):
    """A linear Conv2D (a DepthwiseConv2D too) and a BatchNormalization of its output
    channels."""
    channel_axes = (3, -1) if conv.data_format == "channels_last" else (1, -3)
    return conv.activation == "linear" and bn.axis in channel_axes


def _folded(conv, bn):
    """(prepared, kernel, bias): conv's kernel and bias with bn's inference-mode
    normalization folded in (BatchNormalization.folded), kept in conv's Prepared
    while neither layer's weights (nor the epsilon) change (Conv2D._prepared_for)."""
    last = conv.data_format == "channels_last"
    bias = conv.bias if conv.use_bias else None
    prepared = conv._prepared_for(
        "batch_norm", conv.kernel, bias, bn.gamma if bn.scale else None,
        bn.beta if bn.center else None, bn.moving_mean, bn.moving_variance,
        np.float64(bn.epsilon))
    kernel, bias = prepared.get("folded", lambda: bn.folded(
        conv._op_kernel(conv.kernel), bias, 3 if last else 0))
    return prepared, kernel, bias


def _conv_bn_forward(conv, bn, x, training, tile, relu=False, padding=None):
    """conv with bn's inference-mode normalization folded into its kernel and bias
    (_folded), then ReLU where relu (in the kernels' output pass), the folded and
    packed kernels kept between calls; padding: explicit padding in place of the
    layer's (Conv2D._ready)."""
    if training:
        return None
    prepared, kernel, bias = _folded(conv, bn)
    ready = conv._ready(x, kernel, bias, padding=padding)
    if ready is None:
        return None
    return _conv._conv_forward(ready[0], x, kernel, bias, ready[1], relu,
                               winograd_tile=tile, prepared=prepared)


def _conv_bn_relu_ok(conv, bn, relu, mode):
    """conv_batch_norm's pair, then a plain ReLU or ReLU(6.0)."""
    return _conv_bn_ok(conv, bn, mode) and relu._kind in _BN_ACT


def _relu_code(relu):
    """The conv forward's relu argument for a plain ReLU or ReLU(6.0) layer (ReLU6 in
    the output pass of the kernels that have it, else a clamp after: ops/conv/run.py)."""
    return _plan.RELU6 if relu._kind == "relu6" else True


def _conv_bn_relu_forward(conv, bn, relu, x, training, tile):
    return _conv_bn_forward(conv, bn, x, training, tile, relu=_relu_code(relu))


def _pad_conv_ok(pad, conv, *rest_and_mode):
    """A ZeroPadding2D then a 'valid' convolution of the same data format (MobileNetV2's
    stride-2 blocks, ResNet-50's stem), the rest as conv_batch_norm(_relu) asks."""
    *rest, mode = rest_and_mode
    ok = _conv_bn_relu_ok if rest[1:] else _conv_bn_ok
    return (pad.data_format == conv.data_format and conv.padding == "valid" and
            ok(conv, *rest, mode))


def _pad_conv_bn_forward(pad, conv, bn, x, training, tile):
    """conv_batch_norm with the padding as the convolution's own: the padded copy of
    x is never made."""
    return _conv_bn_forward(conv, bn, x, training, tile, padding=pad.padding)


def _pad_conv_bn_relu_forward(pad, conv, bn, relu, x, training, tile):
    return _conv_bn_forward(conv, bn, x, training, tile, padding=pad.padding,
                            relu=_relu_code(relu))


def _expand_dw_ok(conv, bn1, relu1, dw, bn2, relu2, mode, pad=None):
    """A 1x1 Conv2D (stride 1, one group), batch normalization and ReLU(6), then a
    DepthwiseConv2D of one channel per channel, batch normalization and ReLU(6), all
    channels_last (MobileNet's expansion or pointwise layer and the depthwise layer
    after it); pad: a ZeroPadding2D between them, the depthwise convolution 'valid'."""
    last = "channels_last"
    return (type(conv) is Conv2D and conv.kernel_size == (1, 1) and
            conv.strides == (1, 1) and conv.dilation_rate == (1, 1) and
            conv.groups == 1 and conv.data_format == last and
            type(dw) is DepthwiseConv2D and dw.depth_multiplier == 1 and
            dw.data_format == last and
            (pad is None or (pad.data_format == last and dw.padding == "valid")) and
            _conv_bn_relu_ok(conv, bn1, relu1, mode) and
            _conv_bn_relu_ok(dw, bn2, relu2, mode))


def _expand_pad_dw_ok(conv, bn1, relu1, pad, dw, bn2, relu2, mode):
    return _expand_dw_ok(conv, bn1, relu1, dw, bn2, relu2, mode, pad)


def _expand_dw_forward(conv, bn1, relu1, dw, bn2, relu2, x, training, tile, pad=None):
    """Both convolutions with their normalizations folded in and their activations,
    in one pass (ops/conv/expand_dw.py), the expanded tensor never written; where that
    pass does not run, the two as conv_batch_norm_relu runs each (None: the layers
    one by one)."""
    if training:
        return None
    padding = None if pad is None else pad.padding
    ready = conv._ready(x, conv.kernel, None)   # (the geometry: the folded kernel's)
    if ready is not None:
        ge, dtype = ready
        gd = _conv._geometry(ge.y_shape, dw._op_weight_shape(dw.kernel.shape),
                             dw.strides, dw.padding if pad is None else padding,
                             dw.dilation_rate, ge.c_out, dw.data_format)
        if _expand_dw.runs(ge, gd, dtype):   # (else each weight is folded once below)
            pe, ke, be = _folded(conv, bn1)
            pd, kd, bd = _folded(dw, bn2)
            y = _expand_dw.forward(ge, gd, x, ke, be, _relu_code(relu1), pe, kd, bd,
                                   _relu_code(relu2), pd, dtype)
            if y is not None:
                return y
    y = _conv_bn_relu_forward(conv, bn1, relu1, x, training, tile)
    if y is None:
        return None
    return _conv_bn_forward(dw, bn2, y, training, None, relu=_relu_code(relu2),
                            padding=padding)


def _expand_pad_dw_forward(conv, bn1, relu1, pad, dw, bn2, relu2, x, training, tile):
    return _expand_dw_forward(conv, bn1, relu1, dw, bn2, relu2, x, training, tile, pad)


def _pad_conv_alone_ok(pad, conv, mode):
    """A ZeroPadding2D then a linear 'valid' convolution of the same data format."""
    return (pad.data_format == conv.data_format and conv.padding == "valid" and
            conv.activation == "linear")


def _pad_conv_forward(pad, conv, x, training, tile):
    """The convolution of x with the padding as its own: it keeps x and that padding,
    not a padded copy, for its backward (which then runs on them alone)."""
    return conv._forward(x, winograd_tile=tile, training=training, padding=pad.padding)


def _pad_conv_backward(pad, conv, grad, input_grad):
    """The convolution's backward on the padded geometry: its input gradient is the
    gradient of the unpadded x (the crop ZeroPadding2D's backward would make)."""
    return conv._backward(grad, input_grad)


#: the activation codes of src/_batchnorm.pyx by ReLU kind
_BN_ACT = {"relu": 1, "relu6": 2}


def _bn_relu_ok(bn, relu, mode):
    """A BatchNormalization (not a subclass: the synchronized one runs its own
    statistics) then a plain ReLU or ReLU(6.0)."""
    return type(bn) is BatchNormalization and relu._kind in _BN_ACT


def _bn_relu_forward(bn, relu, x, training, tile):
    """The normalization and the activation in one pass (BatchNormalization._normalize);
    the ReLU keeps its output, which is all its backward reads, as its input too."""
    if x.dtype.char not in "fd" or bn.dtype != x.dtype:
        return None
    y = bn._normalize(x, training, _BN_ACT[relu._kind])
    relu._x = relu._out = y
    return y


def _add_relu_ok(add, relu, mode):
    """A residual block's sum then a plain ReLU."""
    return relu._kind == "relu"


def _add_relu_forward(add, relu, xs, training, tile):
    """The sum and the ReLU in one compiled pass (Add._forward_relu); the ReLU keeps
    its output as its input too, as its own forward does.  The backward is the
    layers' own: the ReLU's reads its output, the sum's the inputs' shapes."""
    y = add._forward_relu(xs)
    if y is not None:
        relu._x = relu._out = y
    return y


def _bn_relu_backward(bn, relu, grad, input_grad):
    """The gradient through the activation taken inside the normalization's two
    backward passes (after a training forward; the layers' own run otherwise)."""
    y = relu._out
    if (bn._stats is None or not bn._stats[0] or y is None or grad.dtype != y.dtype or
            grad.shape != y.shape or y.dtype.char not in "fd"):
        return UNFUSED
    return bn._normalize_backward(grad, input_grad, y, _BN_ACT[relu._kind])


def _pool_tile():
    return _conv._winograd_pool_tile()


#: The patterns, tried in this order on each pair.
PATTERNS = (
    # LeNet-5's C1 + S2 and C3 + S4: the pooled maps written in the convolution's
    # output pass; with tanh, both gradients in one pass (and C1's weight gradient).
    Pattern("conv_avg_pool", (Conv2D, AveragePooling2D), (INFERENCE, TRAINING),
            _conv_pool_ok, forward=_conv_avg_forward, backward=_avg_tanh_backward),
    # The CIFAR-10 network's conv + max pool pairs, in inference.
    Pattern("conv_max_pool", (Conv2D, MaxPooling2D), (INFERENCE,), _conv_max_ok,
            forward=_conv_max_forward, first_tile=_pool_tile),
    # MobileNet's 1x1 expansion (or pointwise) layer and the depthwise layer after it,
    # each with its batch normalization and ReLU(6), in inference: one pass, the
    # expanded tensor kept in cache (where it is large: ops/conv/expand_dw.py).
    Pattern("expand_depthwise",
            (Conv2D, BatchNormalization, ReLU, DepthwiseConv2D, BatchNormalization, ReLU),
            (INFERENCE,), _expand_dw_ok, forward=_expand_dw_forward),
    Pattern("expand_pad_depthwise",
            (Conv2D, BatchNormalization, ReLU, ZeroPadding2D, DepthwiseConv2D,
             BatchNormalization, ReLU),
            (INFERENCE,), _expand_pad_dw_ok, forward=_expand_pad_dw_forward),
    # A convolution, a batch normalization and a ReLU (ResNet, MobileNet) in
    # inference: one convolution with the normalization folded into its kernel and
    # bias and the ReLU in its output pass (ReLU6: then clipped in place).
    Pattern("conv_batch_norm_relu", (Conv2D, BatchNormalization, ReLU), (INFERENCE,),
            _conv_bn_relu_ok, forward=_conv_bn_relu_forward),
    # A convolution then a batch normalization alone: the fold.
    Pattern("conv_batch_norm", (Conv2D, BatchNormalization), (INFERENCE,), _conv_bn_ok,
            forward=_conv_bn_forward),
    # The same after a ZeroPadding2D, which becomes the convolution's padding
    # (MobileNetV2's stride-2 depthwise convolutions; Keras's ResNet-50 stem).
    Pattern("pad_conv_batch_norm_relu",
            (ZeroPadding2D, _CONVS, BatchNormalization, ReLU), (INFERENCE,),
            _pad_conv_ok, forward=_pad_conv_bn_relu_forward),
    Pattern("pad_conv_batch_norm", (ZeroPadding2D, _CONVS, BatchNormalization),
            (INFERENCE,), _pad_conv_ok, forward=_pad_conv_bn_forward),
    # And a ZeroPadding2D before a linear convolution in any pass: in training the
    # convolution keeps the unpadded input for its backward, not a second, padded copy.
    Pattern("pad_conv", (ZeroPadding2D, _CONVS), (INFERENCE, TRAINING),
            _pad_conv_alone_ok, forward=_pad_conv_forward, backward=_pad_conv_backward),
    # ResNet's and MobileNetV2's BatchNormalization + ReLU (or ReLU6) where the
    # normalization is not folded into a convolution: one pass forward, two backward.
    Pattern("batch_norm_relu", (BatchNormalization, ReLU), (INFERENCE, TRAINING),
            _bn_relu_ok, forward=_bn_relu_forward, backward=_bn_relu_backward),
    # ResNet's residual sum and the ReLU after it: one pass, both passes (a fused
    # forward; the layers' own backward).
    Pattern("add_relu", (Add, ReLU), (INFERENCE, TRAINING), _add_relu_ok,
            forward=_add_relu_forward),
    # Any tanh layer before an average pool (where the forward does not fuse): the
    # gradient through both in one pass.
    Pattern("tanh_avg_pool_grad", (Layer, AveragePooling2D), (TRAINING,), _tanh_avg_ok,
            backward=_avg_tanh_backward),
)


# ------------------------------------------------------------------------ the graph
class Node:
    """A layer of a model's graph: index (a topological order), the indices of the
    nodes it reads (inputs; -(k + 1) for the model's input k) and of those that read
    it (consumers; -(k + 1) where it is the model's output k)."""

    __slots__ = ("index", "layer", "inputs", "consumers")

    def __init__(self, index, layer, inputs=(), consumers=()):
        self.index, self.layer = index, layer
        self.inputs, self.consumers = tuple(inputs), tuple(consumers)


def chain(layers):
    """The nodes of a Sequential model: each layer reads the one before."""
    last = len(layers) - 1
    return [Node(i, layer, () if i == 0 else (i - 1,), () if i == last else (i + 1,))
            for i, layer in enumerate(layers)]


# ------------------------------------------------------------------------ the steps
class LayerStep:
    """One layer run alone.  linear: only its linear part (the output layer of a fused
    softmax + cross-entropy loss)."""

    __slots__ = ("layer", "indices", "pattern", "_tile", "linear")

    def __init__(self, node, tile=None, linear=False):
        self.layer, self.indices = node.layer, (node.index,)
        self.pattern, self._tile, self.linear = None, tile, linear

    @property
    def layers(self):
        return (self.layer,)

    @property
    def name(self):
        return self.layer.name + (" (linear part)" if self.linear else "")

    def winograd_tile(self):
        """The Winograd tile the layer runs on (None: the one that suits it)."""
        return None if self._tile is None else self._tile()

    def forward(self, x, training):
        layer = self.layer
        if self.linear:
            return layer._linear_forward(x, training)
        if self._tile is not None:
            return layer.forward(x, training, winograd_tile=self._tile())
        return layer.forward(x, training)

    def backward(self, grad, wants):
        """The input gradient (None where not wanted: ``wants`` is a list of bools by
        node index, or the index of the first node that trains, which wants none and
        nor does any before it); stores the parameter gradients."""
        want = _wanted(wants, self.indices[0])
        if self.linear:
            return self.layer._linear_backward(grad, want)
        return self.layer._backward(grad, want)


class FusedStep:
    """A run of layers (two or more, each reading the one before) that pattern runs
    as one pass where its kernels apply."""

    __slots__ = ("layers", "indices", "pattern", "_tile")

    def __init__(self, pattern, run, tile=None):
        self.pattern, self.layers = pattern, tuple(node.layer for node in run)
        self.indices, self._tile = tuple(node.index for node in run), tile

    @property
    def name(self):
        return " + ".join(layer.name for layer in self.layers) + " (fused)"

    def winograd_tile(self):
        return None if self._tile is None else self._tile()

    def forward(self, x, training):
        tile = None if self._tile is None else self._tile()
        fused = self.pattern.forward
        if fused is not None:
            y = fused(*self.layers, x, training, tile)
            if y is not None:
                return y
        first, rest = self.layers[0], self.layers[1:]
        y = first.forward(x, training) if tile is None else first.forward(
            x, training, winograd_tile=tile)
        for layer in rest:
            y = layer.forward(y, training)
        return y

    def backward(self, grad, wants):
        """The first layer's input gradient (see LayerStep.backward); the layers
        before one whose input gradient is not wanted do not run (they do not train)."""
        layers, indices = self.layers, self.indices
        fused = self.pattern.backward
        if fused is not None and all(_wanted(wants, i) for i in indices[1:]):
            out = fused(*layers, grad, _wanted(wants, indices[0]))
            if out is not UNFUSED:
                return out
        for layer, index in zip(layers[::-1], indices[::-1]):
            want = _wanted(wants, index)
            grad = layer._backward(grad, want)
            if not want:
                return None
        return grad


def _wanted(wants, index):
    """Whether node index's input gradient is wanted (see LayerStep.backward)."""
    if isinstance(wants, int):
        return index > wants
    return wants[index]


def _first_tiles(nodes):
    """{node index: tile function} of the first layers that a pattern pins to a tile
    (decided on the inference pass's fusions, for every pass)."""
    return {run[0].index: p.first_tile for p, run in _groups(nodes, INFERENCE, ())
            if p.first_tile is not None}


def _indices(linear):
    if linear is None:
        return frozenset()
    if isinstance(linear, int):
        return frozenset((linear,))
    return frozenset(linear)


def _run_from(nodes, a, length, taken, linear):
    """The run of length nodes from a, each the only reader of the one before and
    reading it alone (none a model output before the last, none with an activity
    regularizer before the last, none taken, none after a run linear), or None."""
    run = [a]
    while len(run) < length:
        prev = run[-1]
        if len(prev.consumers) != 1 or prev.consumers[0] < 0:
            return None  # (a negative consumer: prev's output is a model output)
        if getattr(prev.layer, "activity_regularizer", None) is not None:
            return None  # its output is read by its penalty too: the model needs it
        nxt = nodes[prev.consumers[0]]
        if nxt.inputs != (prev.index,) or nxt.index in taken or nxt.index in linear:
            return None
        run.append(nxt)
    return run


def _groups(nodes, mode, linear):
    """(pattern, run of nodes) for each run that fuses in mode, the first pattern in
    table order that matches at each node winning (see _run_from).  A first layer of
    several inputs (a merge) gets the list of them, as the runner passes it."""
    taken, out = set(), []
    for a in nodes:
        if a.index in taken:
            continue
        for pattern in PATTERNS:
            run = _run_from(nodes, a, len(pattern.layers), taken, linear)
            if run is not None and pattern.matches(*(n.layer for n in run), mode):
                out.append((pattern, run))
                taken.update(n.index for n in run)
                break
    return out


def compile_steps(nodes, mode, fuse=True, linear=None):
    """The steps of a pass over nodes (Node list in topological order) for mode
    (INFERENCE or TRAINING): runs of nodes fused by the first pattern that matches
    (none when not fuse); the node of index linear (or the nodes of a collection of
    indices) runs its linear part only."""
    linear = _indices(linear)
    tiles = _first_tiles(nodes)
    first = {run[0].index: (p, run) for p, run in _groups(nodes, mode, linear)} \
        if fuse else {}
    steps, skip = [], set()
    for node in nodes:
        if node.index in skip:
            continue
        if node.index in first:
            pattern, run = first[node.index]
            steps.append(FusedStep(pattern, run, tiles.get(node.index)))
            skip.update(n.index for n in run[1:])
        else:
            steps.append(LayerStep(node, tiles.get(node.index), node.index in linear))
    return steps


def forward_algorithm(conv, winograd_tile=None, batch=32):
    """The conv engine's algorithm (fastconv/ops/conv/plan.py: its name, as
    explain_conv gives it) for a built Conv2D's forward on a batch of its inputs, on
    Winograd tiles of side winograd_tile where asked (what a model passes the layer):
    what a model's summary shows."""
    shape = (batch,) + tuple(conv.input_shape[1:])
    if None in shape:
        return "?"
    g = _conv._geometry(shape, conv._op_weight_shape(conv.kernel.shape), conv.strides,
                        conv.padding, conv.dilation_rate, conv.groups, conv.data_format)
    return _plan.select(g, conv.dtype, _plan.FORWARD, True, winograd_tile).name
