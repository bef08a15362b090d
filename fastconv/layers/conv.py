"""Conv2D: Keras's 2-D convolution layer on top of fastconv.conv2d."""
import numpy as np

from .. import conv as _conv
from ..conv import (_conv2d, conv2d_backward, conv2d_grad_bias, conv2d_grad_weight,
                    conv2d_output_shape)
from .. import initializers as _initializers
from ..ops.conv.prepared import Prepared
from ..shapes import normalize_pair
from .base import Layer
from .common import check_layer_data_format, check_layer_padding, check_positive_int

__all__ = ["Conv2D"]

# The ranks _ready checks (conv._ready_dtype reads the first entry).
_RANKS = {"x": (4,), "weight": (4,), "bias": (1,), "grad_y": (4,)}


class Conv2D(Layer):
    """2-D convolution (cross-correlation) with Keras's arguments and defaults.

    The kernel has Keras's shape (kh, kw, C_in/groups, filters) whatever the data
    format, so Keras weights load as they are; the bias has shape (filters,).
    """
    _ndim = 4
    _cache_attrs = ("_x", "_x_padding")

    # _linear_forward's output is a new array (activations may overwrite it)
    _fresh_linear_output = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = normalize_pair(kernel_size, "kernel_size")
        self.strides = normalize_pair(strides, "strides")
        self.padding = check_layer_padding(padding)
        self.data_format = check_layer_data_format(data_format)
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate")
        self.groups = check_positive_int(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(f"filters must be divisible by groups, got filters="
                             f"{filters!r}, groups={groups!r}")
        self._set_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer,
                                                    "kernel_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")
        self._set_weight_regularization(kernel_regularizer, bias_regularizer,
                                        kernel_constraint, bias_constraint)
        self._last = self.data_format == "channels_last"
        self._geometry, self._geometry_key = None, None
        self._prepared = {}

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self._last
                else "(batch, channels, height, width)")

    def _op_args(self, padding=None):
        return dict(stride=self.strides,
                    padding=self.padding if padding is None else padding,
                    dilation=self.dilation_rate, groups=self.groups,
                    data_format=self.data_format)

    def _op_kernel(self, kernel):
        """The kernel in the conv2d op's layout for this data format."""
        if self._last:
            return kernel
        return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))

    def _build(self, input_shape):
        axis = -1 if self._last else 1
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(f"layer {self.name!r} needs a known number of input "
                             f"channels, got input shape {input_shape}")
        if channels % self.groups:
            raise ValueError(f"the input channels of layer {self.name!r} must be "
                             f"divisible by groups={self.groups}, got {channels} "
                             f"(input shape {input_shape})")
        self._axes = {axis: channels}
        self.add_weight("kernel", self.kernel_size + (channels // self.groups,
                                                      self.filters),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        channels = shape[-1] if self._last else shape[1]
        kshape = self.kernel_size + (channels // self.groups, self.filters)
        known = tuple(1 if s is None else s for s in shape)
        try:
            out = conv2d_output_shape(known, self._op_weight_shape(kshape),
                                      **self._op_args())
        except ValueError as exc:
            raise ValueError(f"layer {self.name!r} cannot be applied to input shape "
                             f"{shape}: {exc}") from None
        return (shape[0],) + tuple(out[1:])

    def _op_weight_shape(self, kshape):
        if self._last:
            return kshape
        kh, kw, cg, f = kshape
        return (f, cg, kh, kw)

    def _ready(self, x, kernel, bias, grad=None, padding=None):
        """(geometry, dtype) of this layer's convolution when the arrays are what the
        kernels take as they are (C-contiguous ndarrays of one float dtype, of the
        shapes the geometry asks for), else None and the checked ops run.  The geometry
        is checked once per input and kernel shape -- every call of a layer has the same
        ones -- where conv2d checks its arguments on every call, which costs a
        small-batch forward much of its time (docs/design/algorithms.md).  padding: an
        explicit ((top, bottom), (left, right)) in place of the layer's (a ZeroPadding2D
        folded into a 'valid' convolution: fastconv/fusion.py)."""
        arrays = {"x": x, "weight": kernel, "bias": bias, "grad_y": grad}
        dtype = _conv._ready_dtype(arrays, _RANKS)
        if dtype is None:
            return None
        key = (x.shape, kernel.shape, padding)
        if key != self._geometry_key:
            self._geometry = _conv._geometry(
                x.shape, kernel.shape, self.strides,
                self.padding if padding is None else padding, self.dilation_rate,
                self.groups, self.data_format)
            self._geometry_key = key
        g = self._geometry
        if ((bias is not None and bias.shape != (g.c_out,)) or
                (grad is not None and grad.shape != g.y_shape)):
            return None
        return g, dtype

    def _prepared_for(self, purpose, *arrays):
        """The Prepared (fastconv/ops/conv/prepared.py) of this layer's inference
        forwards by purpose -- "kernel": made from the kernel; "batch_norm": with a
        batch normalization folded in (fastconv/fusion.py) -- current for arrays, the
        weights its values are made from."""
        prepared = self._prepared.get(purpose)
        if prepared is None:
            prepared = self._prepared[purpose] = Prepared()
        return prepared.of(*arrays)

    def _forward(self, x, relu=False, tanh=False, winograd_tile=None, training=True,
                 padding=None):
        """conv2d of x, then ReLU (relu) or tanh (tanh) where the kernels fuse them, on
        Winograd tiles of side winograd_tile where it runs on them (None: those that
        suit the output).  In inference (not training) the kernel in the op's layout
        and the kernels' packing of it are kept between calls while the kernel keeps
        its bits.  padding: explicit padding in place of the layer's (_ready), kept
        with x for the backward."""
        self._x, self._x_padding = x, padding
        if training:
            prepared, kernel = None, self._op_kernel(self.kernel)
        else:
            prepared = self._prepared_for("kernel", self.kernel)
            kernel = prepared.get("op_kernel", lambda: self._op_kernel(self.kernel))
        bias = self.bias if self.use_bias else None
        ready = self._ready(x, kernel, bias, padding=padding)
        if ready is None:
            return _conv2d(x, kernel, bias, relu=relu, tanh=tanh,
                           winograd_tile=winograd_tile, **self._op_args(padding))
        return _conv._conv_forward(ready[0], x, kernel, bias, ready[1], relu, tanh,
                                   winograd_tile, prepared)

    def _linear_forward(self, x, training):
        return self._forward(x, training=training)

    def forward(self, x, training=False, winograd_tile=None):
        """The forward pass (see Layer.forward); winograd_tile: the Winograd tile side
        where the convolution runs on Winograd kernels (None: the one that suits its
        output).  A model whose inference pass fuses this layer with a 2x2 max pool
        passes the fused kernel's tile in every pass (fastconv/fusion.py), so that all
        of them give the same bits."""
        act = self._act_name
        if act not in ("relu", "tanh"):
            return self._activate(self._forward(x, winograd_tile=winograd_tile,
                                                training=training))
        # The activation fused into the convolution's output pass where the kernel has
        # it (the same values as the activation of conv2d's result).
        self._y = self._forward(x, act == "relu", act == "tanh", winograd_tile, training)
        return self._y

    # ------------------------------------------------ explicit entry points of fusion
    def _fusable_operands(self, x):
        """(geometry, dtype, kernel, bias or None) of this layer's convolution of x when
        the kernels take the arrays as they are, else None: what a fused kernel of the
        model's (fastconv/fusion.py) runs on.  Only for channels_last layers (the
        kernel is used in the op's layout as it is)."""
        bias = self.bias if self.use_bias else None
        ready = self._ready(x, self.kernel, bias)
        return None if ready is None else (ready[0], ready[1], self.kernel, bias)

    def _cache_for_backward(self, x, y):
        """Keep what backward reads after a fused forward computed y, this layer's
        output (activation included), from x, as forward would have."""
        self._x, self._x_padding = x, None
        self._y = y if self._act_name != "linear" else None

    def _linear_backward(self, grad, need_input_grad):
        # (on the padding the forward ran with: the layer's, or a folded ZeroPadding2D's)
        x, kernel, padding = self._x, self._op_kernel(self.kernel), self._x_padding
        ready = self._ready(x, kernel, None, grad, padding=padding)
        if ready is not None:
            gx, gw, gb = _conv._backward(ready[0], grad, x, kernel, ready[1],
                                         need_input_grad, True, with_bias=self.use_bias)
        elif need_input_grad:
            gx, gw, gb = conv2d_backward(grad, x, kernel, has_bias=self.use_bias,
                                         **self._op_args(padding))
        else:
            gx, gb = None, None
            gw = conv2d_grad_weight(grad, x, kernel.shape, **self._op_args(padding))
            if self.use_bias:
                gb = conv2d_grad_bias(grad, data_format=self.data_format)
        self._store_gradients(gw, gb)
        return gx

    def _store_gradients(self, gw, gb):
        """Keep the op's weight gradient (in the layer's kernel layout) and the bias's."""
        if not self._last:
            gw = np.ascontiguousarray(gw.transpose(2, 3, 1, 0))
        self._grads["kernel"] = gw
        if self.use_bias:
            self._grads["bias"] = gb

    def _backward_from_avg_tanh(self, grad_pooled):
        """This tanh layer's parameter gradients (no input gradient) from grad_pooled,
        the output gradient of a 2x2/2 average pool of its last output (the model's
        fused step has checked the pooling: fastconv/fusion.py), the gradient through
        both made in cache inside the weight gradient (conv._grad_weight_avg_tanh).
        Whether it applied (False: the layers' separate passes run instead)."""
        x, kernel = self._x, self._op_kernel(self.kernel)
        ready = self._ready(x, kernel, None)
        if ready is None or self._y is None:
            return False
        out = _conv._grad_weight_avg_tanh(ready[0], grad_pooled, x, self._y, ready[1],
                                          self.use_bias)
        if out is None:
            return False
        self._store_gradients(*out)
        return True

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=list(self.kernel_size),
            strides=list(self.strides), padding=self.padding,
            data_format=self.data_format, dilation_rate=list(self.dilation_rate),
            groups=self.groups, activation=self.activation, use_bias=self.use_bias,
            kernel_initializer=_initializers.serialize_initializer(
                self.kernel_initializer),
            bias_initializer=_initializers.serialize_initializer(self.bias_initializer))
        config.update(self._weight_regularization_config())
        return config

