"""The Layer base class: Keras's lifecycle on NumPy arrays, plus an explicit backward.

Lifecycle (as in Keras): ``__init__`` checks hyperparameters; ``build(input_shape)``
(called on first use) creates the weights; ``layer(x, training=False)`` runs the forward
pass.  fastconv adds ``backward(grad_y)``: it returns the gradient with respect to the
input of the last forward call and stores the parameter gradients (``layer.gradients``,
aligned with ``layer.weights``).

Every layer is an optional activation on top of a "linear part":

    z = self._linear_forward(x, training)      # convolution, pooling, matmul, ...
    y = activation(z)

The split lets a model fuse a softmax output with the cross-entropy loss (it calls the
linear part directly and differentiates the loss with respect to the logits), and keeps
the activation code in one place.  Forward passes keep references to what the backward
pass needs (the input, the activation output, pooling indices, the dropout mask); each
call replaces them, nothing accumulates.

Regularization (fastconv/regularizers.py, fastconv/constraints.py), as Keras: any layer
takes ``activity_regularizer`` (a penalty on its output, divided by the batch size);
layers with a kernel and a bias (Conv2D, Dense) take ``kernel_regularizer``,
``bias_regularizer``, ``kernel_constraint`` and ``bias_constraint``.  The layer gives
the penalties and their gradients (``losses``, ``_weight_penalty``,
``_regularized_gradients``, ``_activity_penalty``) and applies its constraints
(``_apply_constraints``); the model adds them to its loss and gradients and calls the
constraints after each optimizer update.

A layer knows nothing of the layers around it: running a layer and the next one as one
pass is the model's business (fastconv/fusion.py), which calls a few explicit methods
of the layers it fuses (e.g. Conv2D._cache_for_backward) and never has a layer read or
write another.
"""
import numbers
import re
from collections import Counter

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .. import _graph
from .._validation import as_array

__all__ = ["Layer", "InputLayer", "Input", "FLOATX", "unique_name", "clear_session"]

FLOATX = "float32"
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_ACTIVATIONS = tuple(_activations._ACTIVATIONS)
_name_counts = Counter()


def clear_session():
    """Reset the automatic layer and model names ("dense", "dense_1", ...)."""
    _name_counts.clear()


def unique_name(base):
    """``base``, then ``base_1``, ``base_2``, ... for this session (as Keras names)."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def _snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def check_dtype(dtype):
    """Return the np.dtype of a layer dtype argument (None -> float32)."""
    if dtype is None:
        return _DTYPES[FLOATX]
    try:
        key = np.dtype(dtype).name
    except TypeError:
        key = None
    if key not in _DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[key]


def check_activation(activation):
    """Return (name, forward, backward) for an activation argument (None -> linear)."""
    if activation is None:
        activation = "linear"
    if not isinstance(activation, str):
        raise TypeError(f"activation must be one of {_ACTIVATIONS} or None, got "
                        f"{activation!r}")
    name = activation.lower()
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: "
                         f"{', '.join(_ACTIVATIONS)} (or None)")
    forward, backward = _activations.get(name)
    return name, forward, backward


def check_shape(shape, name):
    """A shape argument as a tuple of positive ints (None allowed for unknown sizes)."""
    try:
        items = (shape,) if isinstance(shape, (numbers.Integral, str, bytes)) \
            else tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}") from None
    if any(s is not None and (isinstance(s, (bool, np.bool_))
                              or not isinstance(s, numbers.Integral)) for s in items):
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}")
    out = tuple(None if s is None else int(s) for s in items)
    if any(s is not None and s < 1 for s in out):
        raise ValueError(f"{name} must contain positive sizes, got {shape!r}")
    return out


class Layer:
    """Base class of fastconv layers (see the module docstring)."""

    #: rank of the input including the batch axis (None: any rank >= _min_ndim)
    _ndim = None
    _min_ndim = 1
    #: attributes holding forward-pass data for backward, cleared by _clear_cache
    _cache_attrs = ("_x",)
    #: whether _linear_forward returns a new array that nothing else refers to, which
    #: the activation may then overwrite (activations._INPLACE)
    _fresh_linear_output = False

    def __init__(self, *, name=None, trainable=True, dtype=None, input_shape=None,
                 activity_regularizer=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        self.name = name or unique_name(_snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        self.dtype = check_dtype(dtype)
        self._input_shape_arg = (None if input_shape is None
                                 else check_shape(input_shape, "input_shape"))
        self.activity_regularizer = _regularizers.get(activity_regularizer,
                                                      "activity_regularizer")
        # weight name -> Regularizer / Constraint (set by layers with weights)
        self._regularizers = {}
        self._constraints = {}
        self._activity_loss = None  # of the last __call__ (see losses)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._weight_names = []
        self._frozen_names = set()  # weights that never train (add_weight(trainable=))
        self._inbound_nodes = []  # the calls on symbolic tensors (fastconv/_graph.py)
        self._grads = {}
        self._axes = {}
        self._act_name, self._act_forward, self._act_backward = "linear", None, None
        self._act_inplace = None
        self._y = None
        self._clear_cache()

    # ----------------------------------------------------------------- activation
    def _set_activation(self, activation):
        name, forward, backward = check_activation(activation)
        self._act_name = name
        if name == "linear":
            self._act_forward = self._act_backward = None
        else:
            self._act_forward, self._act_backward = forward, backward
        self._act_inplace = (_activations._INPLACE.get(name)
                             if self._fresh_linear_output else None)

    @property
    def activation(self):
        """Name of the activation applied after the linear part ("linear" for none)."""
        return self._act_name

    # ----------------------------------------------------------------- weights
    def add_weight(self, name, shape, initializer, trainable=True):
        """Create a weight array ``self.<name>`` of this layer's dtype; a weight made
        with ``trainable=False`` (moving statistics) is never trained."""
        init = _initializers.get(initializer, f"{name}_initializer")
        value = np.ascontiguousarray(init(shape, self.dtype))
        setattr(self, name, value)
        self._weight_names.append(name)
        if not trainable:
            self._frozen_names.add(name)
        return value

    @property
    def weights(self):
        """The weight arrays (live, in Keras's order), e.g. [kernel, bias]."""
        return [getattr(self, n) for n in self._weight_names]

    def _trainable_names(self):
        if not self.trainable:
            return []
        return [n for n in self._weight_names if n not in self._frozen_names]

    @property
    def trainable_weights(self):
        """The weights an optimizer updates (none while ``trainable`` is False)."""
        return [getattr(self, n) for n in self._trainable_names()]

    @property
    def non_trainable_weights(self):
        names = set(self._trainable_names())
        return [getattr(self, n) for n in self._weight_names if n not in names]

    @property
    def trainable_gradients(self):
        """The gradients of ``trainable_weights`` (of the last backward pass)."""
        return [self._grads.get(n) for n in self._trainable_names()]

    @property
    def gradients(self):
        """Parameter gradients of the last backward pass, aligned with ``weights``."""
        return [self._grads.get(n) for n in self._weight_names]

    def get_weights(self):
        """Copies of the weights, in Keras's order and shapes."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Copy ``weights`` (Keras's order and shapes) into this layer's arrays."""
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet: call it on data or "
                             "build(input_shape) before set_weights")
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"layer {self.name!r} expects {len(own)} weight arrays "
                             f"({', '.join(self._weight_names) or 'none'}), got "
                             f"{len(weights)}")
        arrays = []
        for wname, target, value in zip(self._weight_names, own, weights):
            arr = as_array(value, f"{self.name}.{wname}")
            if arr.shape != target.shape:
                raise ValueError(f"weight {wname!r} of layer {self.name!r} must have "
                                 f"shape {target.shape}, got {arr.shape}")
            arrays.append(arr)
        for target, arr in zip(own, arrays):
            np.copyto(target, arr, casting="unsafe")

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    # ----------------------------------------------------------------- regularization
    def _set_weight_regularization(self, kernel_regularizer=None, bias_regularizer=None,
                                   kernel_constraint=None, bias_constraint=None):
        """Check and keep the Keras arguments of a layer with a kernel and a bias."""
        regs = {"kernel": _regularizers.get(kernel_regularizer, "kernel_regularizer"),
                "bias": _regularizers.get(bias_regularizer, "bias_regularizer")}
        cons = {"kernel": _constraints.get(kernel_constraint, "kernel_constraint"),
                "bias": _constraints.get(bias_constraint, "bias_constraint")}
        self._regularizers = {k: v for k, v in regs.items() if v is not None}
        self._constraints = {k: v for k, v in cons.items() if v is not None}

    def _weight_regularization_config(self):
        """The config entries of the arguments of _set_weight_regularization (only
        those given)."""
        config = {}
        for wname, reg in self._regularizers.items():
            config[f"{wname}_regularizer"] = _regularizers.serialize_regularizer(reg)
        for wname, con in self._constraints.items():
            config[f"{wname}_constraint"] = _constraints.serialize_constraint(con)
        return config

    @property
    def kernel_regularizer(self):
        return self._regularizers.get("kernel")

    @property
    def bias_regularizer(self):
        return self._regularizers.get("bias")

    @property
    def kernel_constraint(self):
        return self._constraints.get("kernel")

    @property
    def bias_constraint(self):
        return self._constraints.get("bias")

    def _regularized_weights(self):
        """[(weight name, array, regularizer)] of the weights that are penalized: those
        with a regularizer, while the layer trains (Keras penalizes trainable weights
        only)."""
        if not self.trainable or not self._regularizers:
            return []
        return [(n, getattr(self, n), self._regularizers[n])
                for n in self._weight_names if n in self._regularizers]

    def _weight_penalty(self):
        """The sum of the weight penalties (0.0 without any)."""
        return float(sum(reg.value(w) for _, w, reg in self._regularized_weights()))

    def _regularized_gradients(self):
        """``trainable_gradients`` with each penalized weight's penalty gradient added
        (new arrays for those; the stored gradients are left as backward made
        them)."""
        names = self._trainable_names()
        grads = [self._grads.get(n) for n in names]
        if not self._regularizers:
            return grads
        out = []
        for wname, g in zip(names, grads):
            reg = self._regularizers.get(wname)
            if reg is not None and g is not None:
                w = getattr(self, wname)
                g = g + reg.gradient(w).astype(g.dtype, copy=False)
            out.append(g)
        return out

    def _apply_constraints(self):
        """Project the constrained weights in place (after an optimizer update)."""
        for wname, con in self._constraints.items():
            if wname in self._weight_names:
                w = getattr(self, wname)
                np.copyto(w, con(w), casting="unsafe")

    def _activity_penalty(self, y):
        """activity_regularizer(y) / batch size (Keras's divide_no_nan) and its
        gradient with respect to y; (0.0, None) without an activity regularizer."""
        reg = self.activity_regularizer
        if reg is None:
            return 0.0, None
        n = y.shape[0] if y.ndim else 1
        if n == 0:
            return 0.0, np.zeros_like(y)
        value = reg.value(y) / n
        grad = reg.gradient(y)
        grad = (grad / grad.dtype.type(n)).astype(y.dtype, copy=False)
        return value, grad

    @property
    def losses(self):
        """Keras's ``layer.losses``: the activity penalty of the last call
        ``layer(x)`` (if any) and the penalty of each regularized weight, as floats."""
        out = [] if self._activity_loss is None else [self._activity_loss]
        out += [reg.value(w) for _, w, reg in self._regularized_weights()]
        return out

    # ----------------------------------------------------------------- shapes
    def _check_rank(self, shape, what):
        ndim = len(shape)
        if self._ndim is not None and ndim != self._ndim:
            raise ValueError(f"{what} of layer {self.name!r} ({type(self).__name__}) must "
                             f"have rank {self._ndim} {self._rank_desc()}, got shape "
                             f"{tuple(shape)}")
        if ndim < self._min_ndim:
            raise ValueError(f"{what} of layer {self.name!r} ({type(self).__name__}) must "
                             f"have rank >= {self._min_ndim}, got shape {tuple(shape)}")

    def _rank_desc(self):
        return "(batch axis first)"

    def _check_input_shape(self, shape, what="input"):
        self._check_rank(shape, what)
        for axis, size in self._axes.items():
            if shape[axis] != size:
                raise ValueError(
                    f"{what} of layer {self.name!r} ({type(self).__name__}) must have "
                    f"size {size} on axis {axis} (it was built for input shape "
                    f"{self.input_shape}), got shape {tuple(shape)}")

    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape`` (batch axis included)."""
        shape = tuple(None if s is None else int(s) for s in input_shape)
        self._check_rank(shape, "input shape")
        if any(s is not None and s < 1 for s in shape[1:]):
            raise ValueError(f"input shape of layer {self.name!r} must have positive "
                             f"sizes, got {shape}")
        if self.built:
            self._check_input_shape(shape, "input shape")
        else:
            self._weight_names = []
            self._build(shape)
        output_shape = self.compute_output_shape(shape)
        self.input_shape = (None,) + shape[1:]
        self.output_shape = (None,) + tuple(output_shape[1:])
        self.built = True

    def _build(self, input_shape):
        """Subclasses create weights and input axis constraints here."""

    def compute_output_shape(self, input_shape):
        """Output shape (batch axis included) for inputs of ``input_shape``."""
        return tuple(input_shape)

    # ----------------------------------------------------------------- passes
    def __call__(self, x, training=False):
        """Forward pass on an array (built on first use from its shape); on symbolic
        tensors (fastconv.Input), the symbolic output of a functional model's graph."""
        if _graph.is_symbolic(x):
            return _graph.call_symbolic(self, x)
        arr = as_array(x, "x")
        if not self.built:
            self.build(arr.shape)
        else:
            self._check_input_shape(arr.shape)
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        y = self.forward(arr, training=bool(training))
        if self.activity_regularizer is not None:
            self._activity_loss = self._activity_penalty(y)[0]
        return y

    def forward(self, x, training=False):
        """Forward pass without checks: x is a C-contiguous array of the layer dtype."""
        return self._activate(self._linear_forward(x, training))

    def _activate(self, z):
        """The activation of z, the linear part's output (kept for backward)."""
        if self._act_forward is None:
            return z
        y = (self._act_inplace or self._act_forward)(z)
        self._y = y
        return y

    def _activation_output(self):
        """The activation's output of the last forward call (None for "linear", or
        before any call): what a model's fused gradient through the activation reads
        (fastconv/fusion.py)."""
        return self._y

    def backward(self, grad_y):
        """Gradient with respect to the input of the last forward call.

        Also stores the parameter gradients (``self.gradients``).
        """
        if self._x is None:
            raise ValueError(f"layer {self.name!r}: backward needs a forward pass first "
                             "(call the layer on data)")
        grad = as_array(grad_y, "grad_y")
        expected = self._last_output_shape()
        if grad.shape != expected:
            raise ValueError(f"grad_y of layer {self.name!r} must have the shape "
                             f"{expected} of the last output, got {grad.shape}")
        grad = np.ascontiguousarray(grad, dtype=self.dtype)
        return self._backward(grad, True)

    @property
    def output(self):
        """The symbolic output of this layer's call in a functional graph (Keras's
        ``layer.output``; a layer called several times has one per call)."""
        return self._only_node("output").output

    @property
    def input(self):
        """The symbolic input(s) of this layer's call (Keras's ``layer.input``)."""
        node = self._only_node("input")
        return list(node.inputs) if node.as_list else node.inputs[0]

    def _only_node(self, what):
        if len(self._inbound_nodes) != 1:
            raise ValueError(f"layer {self.name!r} has {len(self._inbound_nodes)} "
                             f"calls on symbolic tensors, so no single {what}")
        return self._inbound_nodes[0]

    def _last_output_shape(self):
        if self._y is not None:
            return self._y.shape
        return self.compute_output_shape(self._x.shape)

    def _backward(self, grad, need_input_grad=True):
        """Backward without checks; skip the input gradient when it is not needed."""
        if self._act_backward is not None:
            grad = self._act_backward(grad, self._y)
        return self._linear_backward(grad, need_input_grad)

    def _linear_forward(self, x, training):
        """Subclasses: the part before the activation; keep what backward needs."""
        self._x = x
        return x

    def _linear_backward(self, grad, need_input_grad):
        """Subclasses: gradient through the linear part; store parameter gradients."""
        return grad

    def _clear_cache(self):
        for attr in self._cache_attrs:
            setattr(self, attr, None)
        self._y = None

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  "dtype": self.dtype.name}
        if self._input_shape_arg is not None:
            config["input_shape"] = list(self._input_shape_arg)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = _regularizers.serialize_regularizer(
                self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        config = self.get_config()
        name = config.pop("name")
        if config.get("trainable"):
            config.pop("trainable")
        if config.get("dtype") == FLOATX:
            config.pop("dtype")
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"<{type(self).__name__} {name!r}{': ' + args if args else ''}>"


class InputLayer(Layer):
    """The input of a model: declares the shape of one sample (no weights, no
    computation).  ``layer.output`` is its symbolic tensor (what ``Input`` returns)."""

    def __init__(self, shape=None, batch_size=None, name=None, dtype=None,
                 batch_shape=None, **kwargs):
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if kwargs.get("sparse") is False:  # (Keras 3's config; dense inputs only)
            del kwargs["sparse"]
        if batch_shape is not None:  # Keras 3's config: (batch, *shape)
            if shape is not None:
                raise ValueError(f"give shape or batch_shape to InputLayer, not both; "
                                 f"got shape={shape!r}, batch_shape={batch_shape!r}")
            batch_shape = check_shape(batch_shape, "batch_shape")
            if len(batch_shape) < 2:
                raise ValueError(f"batch_shape must include the batch axis and one "
                                 f"sample's axes, got {batch_shape!r}")
            shape, batch_size = batch_shape[1:], batch_shape[0]
        if shape is None:
            raise ValueError("InputLayer needs shape=(...) (the shape of one sample)")
        shape = check_shape(shape, "shape")
        super().__init__(name=name, dtype=dtype, input_shape=shape, **kwargs)
        if batch_size is not None:
            batch_size = check_shape((batch_size,), "batch_size")[0]
        self.batch_size = batch_size
        self.shape = shape
        self.built = True
        self.input_shape = self.output_shape = (None,) + shape
        _graph.SymNode(self, (), False, (batch_size,) + shape, self.dtype)

    def get_config(self):
        return {"shape": list(self.shape), "batch_size": self.batch_size,
                "name": self.name, "dtype": self.dtype.name}


def Input(shape=None, batch_size=None, name=None, dtype=None):
    """Keras's ``Input(shape=...)``: the symbolic input tensor of a functional model
    (``fastconv.Model(inputs, outputs)``), also the first entry of a Sequential."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name,
                      dtype=dtype).output
