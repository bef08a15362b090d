"""Conv2D: Keras's 2-D convolution layer on top of fastconv.conv2d."""
import numpy as np

from ..conv import (_conv2d, conv2d, conv2d_backward, conv2d_grad_bias,
                     conv2d_grad_weight, conv2d_output_shape)
from .. import initializers as _initializers
from ..shapes import normalize_pair
from .base import Layer
from .common import check_layer_data_format, check_layer_padding, check_positive_int

__all__ = ["Conv2D"]


class Conv2D(Layer):
    """2-D convolution (cross-correlation) with Keras's arguments and defaults.

    The kernel has Keras's shape (kh, kw, C_in/groups, filters) whatever the data
    format, so Keras weights load as they are; the bias has shape (filters,).
    """
    _ndim = 4
    _cache_attrs = ("_x",)

    # _linear_forward's output is a new array (activations may overwrite it)
    _fresh_linear_output = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
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
        self._last = self.data_format == "channels_last"

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self._last
                else "(batch, channels, height, width)")

    def _op_args(self):
        return dict(stride=self.strides, padding=self.padding,
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

    def _linear_forward(self, x, training):
        self._x = x
        bias = self.bias if self.use_bias else None
        return conv2d(x, self._op_kernel(self.kernel), bias, **self._op_args())

    def forward(self, x, training=False):
        if self._act_name not in ("relu", "tanh"):
            return super().forward(x, training)
        # The activation fused into the convolution's output pass where the kernel has
        # it (the same values as the activation of conv2d's result).
        self._x = x
        bias = self.bias if self.use_bias else None
        self._y = _conv2d(x, self._op_kernel(self.kernel), bias,
                          relu=self._act_name == "relu", tanh=self._act_name == "tanh",
                          **self._op_args())
        return self._y

    def _linear_backward(self, grad, need_input_grad):
        x, kernel = self._x, self._op_kernel(self.kernel)
        if need_input_grad:
            gx, gw, gb = conv2d_backward(grad, x, kernel, has_bias=self.use_bias,
                                         **self._op_args())
        else:
            gx, gb = None, None
            gw = conv2d_grad_weight(grad, x, kernel.shape, **self._op_args())
            if self.use_bias:
                gb = conv2d_grad_bias(grad, data_format=self.data_format)
        if not self._last:
            gw = np.ascontiguousarray(gw.transpose(2, 3, 1, 0))
        self._grads["kernel"] = gw
        if self.use_bias:
            self._grads["bias"] = gb
        return gx

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
        return config

