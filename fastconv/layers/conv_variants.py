"""DepthwiseConv2D, SeparableConv2D and Conv2DTranspose: Keras 3's layers (arguments,
defaults, weight names, shapes and order) on fastconv's convolution.

- DepthwiseConv2D: kernel (kh, kw, C_in, depth_multiplier), bias (C_in * dm,); output
  channel c * dm + m is input channel c convolved with kernel[..., c, m].  It is a
  Conv2D with groups = C_in (the op's kernel is the layer's, reshaped), so it runs on
  the same engine and fusion patterns as Conv2D.
- SeparableConv2D: depthwise_kernel (kh, kw, C_in, dm), pointwise_kernel
  (1, 1, C_in * dm, filters), bias (filters,): the depthwise convolution (strides,
  padding, dilation) then a 1x1 convolution, then the bias.
- Conv2DTranspose: kernel (kh, kw, filters, C_in), bias (filters,); the output size is
  Keras 3's (keras.src.backend.common.backend_utils._get_output_shape_given_tf_padding)
  and the output is TensorFlow's conv_transpose: the input gradient
  (conv2d_grad_input) of the convolution of the output with padding 'same' or 'valid'.
"""
import numpy as np

from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .. import constraints as _constraints
from ..conv import (conv2d, conv2d_backward, conv2d_grad_bias, conv2d_grad_input,
                    conv2d_grad_weight, conv2d_output_shape)
from ..shapes import normalize_pair
from .base import Layer
from .common import check_layer_data_format, check_layer_padding, check_positive_int
from .conv import Conv2D

__all__ = ["DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"]


def _channels(layer, input_shape):
    channels = input_shape[-1] if layer.data_format == "channels_last" else input_shape[1]
    if channels is None:
        raise ValueError(f"layer {layer.name!r} needs a known number of input channels, "
                         f"got input shape {tuple(input_shape)}")
    return channels


def _depthwise_op_shape(kshape, last):
    """The conv2d op's weight shape of a depthwise kernel (kh, kw, C, dm)."""
    kh, kw, c, dm = kshape
    return (kh, kw, 1, c * dm) if last else (c * dm, 1, kh, kw)


def _depthwise_op(kernel, last):
    """A depthwise kernel (kh, kw, C, dm) as conv2d's grouped weight (groups = C)."""
    kh, kw, c, dm = kernel.shape
    flat = kernel.reshape(kh, kw, 1, c * dm)  # (a view: channel c * dm + m)
    return flat if last else np.ascontiguousarray(flat.transpose(3, 2, 0, 1))


def _depthwise_from_op(grad, kshape, last):
    """A gradient in conv2d's grouped layout back in the depthwise kernel's."""
    if not last:
        grad = grad.transpose(2, 3, 1, 0)
    return np.ascontiguousarray(grad).reshape(kshape)


def _output_shape(layer, shape, channels_out, op_weight_shape, groups):
    """(batch, ...) output shape of a convolution of layer's arguments."""
    layer._check_rank(shape, "input shape")
    known = tuple(1 if s is None else s for s in shape)
    try:
        out = conv2d_output_shape(known, op_weight_shape, stride=layer.strides,
                                  padding=layer.padding, dilation=layer.dilation_rate,
                                  groups=groups, data_format=layer.data_format)
    except ValueError as exc:
        raise ValueError(f"layer {layer.name!r} cannot be applied to input shape "
                         f"{shape}: {exc}") from None
    out = list(out)
    out[-1 if layer.data_format == "channels_last" else 1] = channels_out
    return (shape[0],) + tuple(out[1:])


class DepthwiseConv2D(Conv2D):
    """Depthwise 2-D convolution, Keras's arguments and defaults (module docstring).

    A Conv2D with groups = the input channels and filters = channels * depth_multiplier,
    both set when it is built."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier")
        # (checked under their own names; Conv2D keeps them as the kernel's)
        depthwise_initializer = _initializers.get(depthwise_initializer,
                                                  "depthwise_initializer")
        depthwise_regularizer = _regularizers.get(depthwise_regularizer,
                                                  "depthwise_regularizer")
        depthwise_constraint = _constraints.get(depthwise_constraint,
                                                "depthwise_constraint")
        super().__init__(
            1, kernel_size, strides=strides, padding=padding, data_format=data_format,
            dilation_rate=dilation_rate, groups=1, activation=activation,
            use_bias=use_bias, kernel_initializer=depthwise_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=depthwise_constraint,
            bias_constraint=bias_constraint, **kwargs)
        self.filters = None  # C_in * depth_multiplier, known once built

    @property
    def depthwise_initializer(self):
        return self.kernel_initializer

    @property
    def depthwise_regularizer(self):
        return self._regularizers.get("kernel")

    @property
    def depthwise_constraint(self):
        return self._constraints.get("kernel")

    def _build(self, input_shape):
        channels = _channels(self, input_shape)
        self.groups, self.filters = channels, channels * self.depth_multiplier
        self._axes = {-1 if self._last else 1: channels}
        self.add_weight("kernel", self.kernel_size + (channels, self.depth_multiplier),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        c = _channels(self, shape)
        op = _depthwise_op_shape(self.kernel_size + (c, self.depth_multiplier),
                                 self._last)
        return _output_shape(self, shape, c * self.depth_multiplier, op, c)

    def _op_kernel(self, kernel):
        return _depthwise_op(kernel, self._last)

    def _op_weight_shape(self, kshape):
        return _depthwise_op_shape(kshape, self._last)

    def _fusable_operands(self, x):
        if not self._last:
            return None
        kernel = self._op_kernel(self.kernel)
        bias = self.bias if self.use_bias else None
        ready = self._ready(x, kernel, bias)
        return None if ready is None else (ready[0], ready[1], kernel, bias)

    def _store_gradients(self, gw, gb):
        self._grads["kernel"] = _depthwise_from_op(gw, self.kernel.shape, self._last)
        if self.use_bias:
            self._grads["bias"] = gb

    def _weight_regularization_config(self):
        return {k.replace("kernel_", "depthwise_"): v
                for k, v in super()._weight_regularization_config().items()}

    def get_config(self):
        config = Layer.get_config(self)
        config.update(
            kernel_size=list(self.kernel_size), strides=list(self.strides),
            padding=self.padding, depth_multiplier=self.depth_multiplier,
            data_format=self.data_format, dilation_rate=list(self.dilation_rate),
            activation=self.activation, use_bias=self.use_bias,
            depthwise_initializer=_initializers.serialize_initializer(
                self.kernel_initializer),
            bias_initializer=_initializers.serialize_initializer(self.bias_initializer))
        config.update(self._weight_regularization_config())
        return config


class _ConvArgs(Layer):
    """The checked arguments shared by SeparableConv2D and Conv2DTranspose."""

    _ndim = 4
    _cache_attrs = ("_x",)
    _fresh_linear_output = True

    def _conv_args(self, kernel_size, strides, padding, data_format, dilation_rate,
                   activation, use_bias):
        self.kernel_size = normalize_pair(kernel_size, "kernel_size")
        self.strides = normalize_pair(strides, "strides")
        self.padding = check_layer_padding(padding)
        self.data_format = check_layer_data_format(data_format)
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate")
        self._set_activation(activation)
        self.use_bias = bool(use_bias)
        self._last = self.data_format == "channels_last"

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self._last
                else "(batch, channels, height, width)")

    def _set_regularization(self, regularizers, constraints):
        """{weight: argument} of regularizers and constraints, checked and kept (the
        arguments are named after the weight without "_kernel", as Keras's)."""
        def arg(weight, kind):
            return f"{weight.replace('_kernel', '')}_{kind}"
        regs = {k: _regularizers.get(v, arg(k, "regularizer"))
                for k, v in regularizers.items()}
        cons = {k: _constraints.get(v, arg(k, "constraint"))
                for k, v in constraints.items()}
        self._regularizers = {k: v for k, v in regs.items() if v is not None}
        self._constraints = {k: v for k, v in cons.items() if v is not None}

    def _add_bias(self, y, bias):
        y += bias if self._last else bias[:, None, None]
        return y

    def _base_config(self):
        config = Layer.get_config(self)
        config.update(kernel_size=list(self.kernel_size), strides=list(self.strides),
                      padding=self.padding, data_format=self.data_format,
                      dilation_rate=list(self.dilation_rate))
        return config


class SeparableConv2D(_ConvArgs):
    """Depthwise then pointwise convolution, Keras's arguments (module docstring)."""

    _cache_attrs = ("_x", "_mid")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), depth_multiplier=1,
                 activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int(filters, "filters")
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier")
        self._conv_args(kernel_size, strides, padding, data_format, dilation_rate,
                        activation, use_bias)
        self.depthwise_initializer = _initializers.get(depthwise_initializer,
                                                       "depthwise_initializer")
        self.pointwise_initializer = _initializers.get(pointwise_initializer,
                                                       "pointwise_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")
        self._set_regularization(
            {"depthwise_kernel": depthwise_regularizer,
             "pointwise_kernel": pointwise_regularizer, "bias": bias_regularizer},
            {"depthwise_kernel": depthwise_constraint,
             "pointwise_kernel": pointwise_constraint, "bias": bias_constraint})

    def _build(self, input_shape):
        c = _channels(self, input_shape)
        self._axes = {-1 if self._last else 1: c}
        self.add_weight("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier),
                        self.depthwise_initializer)
        self.add_weight("pointwise_kernel", (1, 1, c * self.depth_multiplier,
                                             self.filters), self.pointwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        c = _channels(self, shape)
        op = _depthwise_op_shape(self.kernel_size + (c, self.depth_multiplier),
                                 self._last)
        return _output_shape(self, shape, self.filters, op, c)

    def _ops(self):
        """(depthwise, pointwise) weights in the conv2d op's layout, groups."""
        dw = _depthwise_op(self.depthwise_kernel, self._last)
        pw = self.pointwise_kernel
        if not self._last:
            pw = np.ascontiguousarray(pw.transpose(3, 2, 0, 1))
        return dw, pw, self.depthwise_kernel.shape[2]

    def _linear_forward(self, x, training):
        dw, pw, groups = self._ops()
        mid = conv2d(x, dw, None, stride=self.strides, padding=self.padding,
                     dilation=self.dilation_rate, groups=groups,
                     data_format=self.data_format)
        y = conv2d(mid, pw, self.bias if self.use_bias else None,
                   data_format=self.data_format)
        self._x, self._mid = x, mid
        return y

    def _linear_backward(self, grad, need_input_grad):
        dw, pw, groups = self._ops()
        gmid, gpw, gb = conv2d_backward(grad, self._mid, pw, has_bias=self.use_bias,
                                        data_format=self.data_format)
        args = dict(stride=self.strides, padding=self.padding,
                    dilation=self.dilation_rate, groups=groups,
                    data_format=self.data_format)
        if need_input_grad:
            gx, gdw, _ = conv2d_backward(gmid, self._x, dw, has_bias=False, **args)
        else:
            gx, gdw = None, conv2d_grad_weight(gmid, self._x, dw.shape, **args)
        self._grads["depthwise_kernel"] = _depthwise_from_op(
            gdw, self.depthwise_kernel.shape, self._last)
        self._grads["pointwise_kernel"] = (gpw if self._last else np.ascontiguousarray(
            gpw.transpose(2, 3, 1, 0)))
        if self.use_bias:
            self._grads["bias"] = gb
        return gx

    def get_config(self):
        config = self._base_config()
        config.update(
            filters=self.filters, depth_multiplier=self.depth_multiplier,
            activation=self.activation, use_bias=self.use_bias,
            depthwise_initializer=_initializers.serialize_initializer(
                self.depthwise_initializer),
            pointwise_initializer=_initializers.serialize_initializer(
                self.pointwise_initializer),
            bias_initializer=_initializers.serialize_initializer(self.bias_initializer))
        for wname, reg in self._regularizers.items():
            key = wname.replace("_kernel", "")
            config[f"{key}_regularizer"] = _regularizers.serialize_regularizer(reg)
        for wname, con in self._constraints.items():
            key = wname.replace("_kernel", "")
            config[f"{key}_constraint"] = _constraints.serialize_constraint(con)
        return config


def transpose_output_length(n, kernel, stride, padding, output_padding, dilation):
    """Keras 3's output length of a transposed convolution along one axis
    (backend_utils._get_output_shape_given_tf_padding)."""
    k_eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(k_eff, stride) - k_eff if output_padding is None else output_padding
        return (n - 1) * stride + k_eff + extra
    if output_padding is None:
        return n * stride
    return (n - 1) * stride + k_eff % 2 + output_padding


class Conv2DTranspose(_ConvArgs):
    """Transposed 2-D convolution, Keras's arguments and kernel layout
    (kh, kw, filters, C_in) (module docstring)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1),
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int(filters, "filters")
        self._conv_args(kernel_size, strides, padding, data_format, dilation_rate,
                        activation, use_bias)
        if output_padding is not None:
            output_padding = normalize_pair(output_padding, "output_padding", minimum=0)
            if any(op >= s for op, s in zip(output_padding, self.strides)):
                raise ValueError(f"output_padding must be smaller than strides, got "
                                 f"output_padding={output_padding}, strides="
                                 f"{self.strides}")
        self.output_padding = output_padding
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides > 1 is not supported with dilation_rate > 1 (as "
                             f"Keras), got strides={self.strides}, dilation_rate="
                             f"{self.dilation_rate}")
        self.kernel_initializer = _initializers.get(kernel_initializer,
                                                    "kernel_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")
        self._set_weight_regularization(kernel_regularizer, bias_regularizer,
                                        kernel_constraint, bias_constraint)

    def _build(self, input_shape):
        c = _channels(self, input_shape)
        self._axes = {-1 if self._last else 1: c}
        self.add_weight("kernel", self.kernel_size + (self.filters, c),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def _op_kernel(self):
        """The kernel as the weight of the convolution this one transposes."""
        return (self.kernel if self._last
                else np.ascontiguousarray(self.kernel.transpose(3, 2, 0, 1)))

    def _conv(self):
        return dict(stride=self.strides, padding=self.padding,
                    dilation=self.dilation_rate, data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        c = _channels(self, shape)
        hw = shape[1:3] if self._last else shape[2:]
        ops = self.output_padding or (None, None)
        out_hw = tuple(None if n is None else
                       transpose_output_length(n, k, s, self.padding, op, d)
                       for n, k, s, op, d in zip(hw, self.kernel_size, self.strides, ops,
                                                 self.dilation_rate))
        out = ((shape[0],) + out_hw + (self.filters,) if self._last
               else (shape[0], self.filters) + out_hw)
        # The output must be an input of the convolution this one transposes whose
        # output has the input's size (TensorFlow refuses it otherwise).
        kshape = self.kernel_size + (self.filters, c)
        wshape = kshape if self._last else (c, self.filters) + self.kernel_size
        known = tuple(1 if s is None else s for s in out)
        back = conv2d_output_shape(known, wshape, **self._conv())
        back_hw = back[1:3] if self._last else back[2:]
        for n, b in zip(hw, back_hw):
            if n is not None and n != b:
                raise ValueError(
                    f"layer {self.name!r}: padding={self.padding!r} with output_padding="
                    f"{self.output_padding}, kernel_size={self.kernel_size}, strides="
                    f"{self.strides} gives an output {out} whose '{self.padding}' "
                    f"convolution is not the input shape {shape}")
        return out

    def _linear_forward(self, x, training):
        out = self.compute_output_shape(x.shape)
        y = conv2d_grad_input(x, self._op_kernel(), out, **self._conv())
        if self.use_bias:
            self._add_bias(y, self.bias)
        self._x = x
        return y

    def _linear_backward(self, grad, need_input_grad):
        kernel = self._op_kernel()
        gx = conv2d(grad, kernel, None, **self._conv()) if need_input_grad else None
        gw = conv2d_grad_weight(self._x, grad, kernel.shape, **self._conv())
        self._grads["kernel"] = (gw if self._last else
                                 np.ascontiguousarray(gw.transpose(2, 3, 1, 0)))
        if self.use_bias:
            self._grads["bias"] = conv2d_grad_bias(grad, data_format=self.data_format)
        return gx

    def get_config(self):
        config = self._base_config()
        config.update(
            filters=self.filters,
            output_padding=(None if self.output_padding is None
                            else list(self.output_padding)),
            activation=self.activation, use_bias=self.use_bias,
            kernel_initializer=_initializers.serialize_initializer(
                self.kernel_initializer),
            bias_initializer=_initializers.serialize_initializer(self.bias_initializer))
        config.update(self._weight_regularization_config())
        return config
