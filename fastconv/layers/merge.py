"""Merge layers (Keras's Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate): layers of several inputs, for functional models.

The protocol of a layer with several inputs (``_multi_input = True``): ``build`` and
``compute_output_shape`` take a list of shapes, ``forward`` a list of arrays (of the
layer's dtype, C-contiguous) and returns one array; ``_backward(grad, need_input_grad)``
returns the list of input gradients (None when not needed), one per input; they may be
one array (Add's), which is safe because no layer writes into the gradient it is
given.

Shapes follow Keras: the element-wise layers take inputs of one rank whose sizes agree
axis by axis, where a size 1 broadcasts (the gradient of a broadcast input is summed
over the broadcast axes); Concatenate's inputs agree on every axis but ``axis``.
"""
import abc
import functools
import numbers

import numpy as np

from .. import _arena, _ext
from .._validation import as_array
from .base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
           "Concatenate", "add", "subtract", "multiply", "average", "maximum",
           "minimum", "concatenate"]


def _stand_in(a):
    """An array of a's shape and dtype that holds no data (every element one zero; a
    read-only view, shared by every layer that asks for the same shape and dtype)."""
    return _stand_in_of(a.shape, a.dtype)


@functools.lru_cache(maxsize=256)
def _stand_in_of(shape, dtype):
    return np.broadcast_to(np.zeros((), dtype), shape)


def sum_arrays(xs, relu=False):
    """The sum of xs, left to right, then ReLU where relu, on the compiled kernel (all
    threads, one pass; the bits of NumPy's sum and of relu()) into an array of the pass
    arena (fastconv/_arena.py), where xs are two or more C-contiguous float arrays of
    one shape and dtype; else None.  (Add's forward; the model's backward summing the
    gradients of a tensor read by several layers.)"""
    first = xs[0]
    if (len(xs) < 2 or first.dtype.char not in "fd" or
            not all(type(x) is np.ndarray and x.shape == first.shape and
                    x.dtype == first.dtype and x.flags.c_contiguous for x in xs)):
        return None
    out = _arena.empty(first.shape, first.dtype)
    flat = out.reshape(-1)
    last = len(xs) - 1
    _ext.activations.add(first.reshape(-1), xs[1].reshape(-1), flat, relu and last == 1)
    for k in range(2, len(xs)):
        _ext.activations.add(flat, xs[k].reshape(-1), flat, relu and k == last)
    return out


def _shapes_text(shapes):
    return ", ".join(str(tuple(s)) for s in shapes)


class _Merge(Layer, metaclass=abc.ABCMeta):
    """Base of the merge layers (see the module docstring)."""

    _multi_input = True
    _cache_attrs = ("_x",)
    _min_inputs = 1
    _max_inputs = None

    def _check_list(self, shapes):
        if not isinstance(shapes, (list, tuple)) or not shapes or not all(
                isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) must be "
                             f"called on a list of inputs, got {shapes!r:.120}")
        n = len(shapes)
        if n < self._min_inputs or (self._max_inputs is not None
                                    and n > self._max_inputs):
            want = (f"exactly {self._min_inputs}" if self._min_inputs == self._max_inputs
                    else f"at least {self._min_inputs}")
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) takes {want} "
                             f"inputs, got {n} (shapes {_shapes_text(shapes)})")
        shapes = [tuple(None if d is None else int(d) for d in s) for s in shapes]
        batches = {s[0] for s in shapes if s and s[0] is not None}
        if len(batches) > 1:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) cannot merge "
                             f"inputs of different batch sizes: {_shapes_text(shapes)}")
        return shapes

    def build(self, input_shape):
        shapes = self._check_list(input_shape)
        output_shape = self.compute_output_shape(shapes)
        if self.built and [tuple(s[1:]) for s in shapes] != self._built_shapes:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) was built for "
                             f"inputs {_shapes_text((None,) + s for s in self._built_shapes)}"
                             f", got {_shapes_text(shapes)}")
        self._built_shapes = [tuple(s[1:]) for s in shapes]
        self.input_shape = [(None,) + s[1:] for s in shapes]
        self.output_shape = (None,) + tuple(output_shape[1:])
        self.built = True

    def __call__(self, x, training=False):
        from .. import _graph
        if _graph.is_symbolic(x):
            return _graph.call_symbolic(self, x)
        if not isinstance(x, (list, tuple)):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) must be "
                             f"called on a list of arrays, got {type(x).__name__}")
        arrays = [as_array(a, f"x[{k}]") for k, a in enumerate(x)]
        shapes = [a.shape for a in arrays]
        if not self.built:
            self.build(shapes)
        else:
            self._check_list(shapes)
            if [s[1:] for s in shapes] != self._built_shapes:
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) was "
                                 f"built for inputs "
                                 f"{_shapes_text((None,) + s for s in self._built_shapes)}"
                                 f", got {_shapes_text(shapes)}")
            self.compute_output_shape(shapes)
        arrays = [np.ascontiguousarray(a, dtype=self.dtype) for a in arrays]
        y = self.forward(arrays, training=bool(training))
        if self.activity_regularizer is not None:
            self._activity_loss = self._activity_penalty(y)[0]
        return y

    #: whether backward reads the inputs' values (else only their shapes and dtypes:
    #: the layer keeps zero-stride stand-ins, not the arrays, which in a residual
    #: network are the largest activations, held until the step's backward)
    _reads_inputs = True

    def forward(self, x, training=False):
        xs = list(x)
        self._x = xs if self._reads_inputs else [_stand_in(a) for a in xs]
        self._y = None
        return self._merge(xs)

    def backward(self, grad_y):
        """The gradients with respect to each input of the last forward call."""
        if self._x is None:
            raise ValueError(f"layer {self.name!r}: backward needs a forward pass first "
                             "(call the layer on data)")
        grad = as_array(grad_y, "grad_y")
        expected = self._out_shape
        if grad.shape != expected:
            raise ValueError(f"grad_y of layer {self.name!r} must have the shape "
                             f"{expected} of the last output, got {grad.shape}")
        return self._backward(np.ascontiguousarray(grad, dtype=self.dtype), True)

    def _backward(self, grad, need_input_grad=True):
        if not need_input_grad:
            return [None] * len(self._x)
        return self._merge_grads(grad)

    def _last_output_shape(self):
        return self._out_shape

    @abc.abstractmethod
    def _merge(self, xs):
        """The output of the arrays xs."""

    @abc.abstractmethod
    def _merge_grads(self, grad):
        """The gradients of the inputs of the last forward, from the output's."""


class _ElementWise(_Merge):
    """Element-wise merges: equal ranks, sizes that agree or broadcast from 1."""

    def compute_output_shape(self, input_shape):
        shapes = self._check_list(input_shape)
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs inputs "
                             f"of one rank, got shapes {_shapes_text(shapes)}")
        out = list(shapes[0])
        for s in shapes[1:]:
            for axis in range(1, len(s)):
                a, b = out[axis], s[axis]
                if a is None or b is None:
                    out[axis] = None
                elif a == 1:
                    out[axis] = b
                elif b != 1 and a != b:
                    raise ValueError(
                        f"layer {self.name!r} ({type(self).__name__}) got inputs of "
                        f"incompatible shapes {_shapes_text(shapes)} (axis {axis}: "
                        f"{a} vs {b})")
        return tuple(out)

    @property
    def _out_shape(self):
        return np.broadcast_shapes(*(a.shape for a in self._x))

    @staticmethod
    def _reduce(grad, shape):
        """grad summed over the axes where an input of ``shape`` was broadcast."""
        if grad.shape == tuple(shape):
            return grad
        axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, shape)) if s == 1
                     and g != 1)
        return np.ascontiguousarray(grad.sum(axis=axes, keepdims=True))

    def _grads_like(self, grad, parts):
        return [self._reduce(g, x.shape) for g, x in zip(parts, self._x)]


class Add(_ElementWise):
    """The sum of its inputs (Keras's Add)."""
    _reads_inputs = False

    def _merge(self, xs):
        out = self._sum(xs)
        if out is not None:
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out if len(xs) > 1 else out.copy()

    def _sum(self, xs, relu=False):
        return sum_arrays(xs, relu)

    def _forward_relu(self, xs):
        """relu(the sum of xs) in one pass, the layer's backward cache left as forward
        leaves it (fastconv/fusion.py, add_relu); None where _sum does not apply."""
        xs = list(xs)
        y = self._sum(xs, relu=True)
        if y is not None:
            self._x, self._y = [_stand_in(a) for a in xs], None
        return y

    def _merge_grads(self, grad):
        # one array for every input: layers only read the gradient they are given
        return self._grads_like(grad, [grad] * len(self._x))


class Subtract(_ElementWise):
    """inputs[0] - inputs[1] (Keras's Subtract: exactly two inputs)."""
    _reads_inputs = False
    _min_inputs = _max_inputs = 2

    def _merge(self, xs):
        return xs[0] - xs[1]

    def _merge_grads(self, grad):
        return self._grads_like(grad, [grad, -grad])


class Multiply(_ElementWise):
    """The element-wise product of its inputs (Keras's Multiply)."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out if len(xs) > 1 else out.copy()

    def _merge_grads(self, grad):
        parts = []
        for i in range(len(self._x)):
            g = grad
            for j, x in enumerate(self._x):
                if j != i:
                    g = g * x
            parts.append(g if g is not grad else grad.copy())
        return self._grads_like(grad, parts)


class Average(_ElementWise):
    """The mean of its inputs (Keras's Average: the sum, then divided by the count)."""
    _reads_inputs = False

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / out.dtype.type(len(xs))

    def _merge_grads(self, grad):
        g = grad / grad.dtype.type(len(self._x))
        return self._grads_like(grad, [g] * len(self._x))


class _Extremum(_ElementWise):
    """Maximum / Minimum: folded left to right as Keras; the gradient goes where
    TensorFlow sends it (ties to the running result, the earlier inputs)."""

    def _merge(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = self._op(out, x)
        return out if len(xs) > 1 else out.copy()

    def _merge_grads(self, grad):
        running = [self._x[0]]
        for x in self._x[1:-1]:
            running.append(self._op(running[-1], x))
        parts = [None] * len(self._x)
        g = grad
        zero = grad.dtype.type(0)
        for i in range(len(self._x) - 1, 0, -1):
            keep = self._keeps(running[i - 1], self._x[i])
            parts[i] = np.where(keep, zero, g)
            g = np.where(keep, g, zero)
        parts[0] = g if g is not grad else grad.copy()
        return self._grads_like(grad, parts)


class Maximum(_Extremum):
    """The element-wise maximum of its inputs (Keras's Maximum)."""
    _op = staticmethod(np.maximum)
    _keeps = staticmethod(np.greater_equal)


class Minimum(_Extremum):
    """The element-wise minimum of its inputs (Keras's Minimum)."""
    _op = staticmethod(np.minimum)
    _keeps = staticmethod(np.less_equal)


class Concatenate(_Merge):
    """Its inputs joined along ``axis`` (Keras's Concatenate, axis=-1)."""
    _reads_inputs = False

    def __init__(self, axis=-1, **kwargs):
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an int, got {axis!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        shapes = self._check_list(input_shape)
        rank = len(shapes[0])
        axis = self.axis + rank if self.axis < 0 else self.axis
        if any(len(s) != rank for s in shapes) or not 1 <= axis < rank:
            raise ValueError(f"layer {self.name!r} (Concatenate, axis={self.axis}) needs "
                             f"inputs of one rank with a non-batch axis {self.axis}, got "
                             f"shapes {_shapes_text(shapes)}")
        out = list(shapes[0])
        for s in shapes[1:]:
            for i in range(1, rank):
                if i == axis:
                    continue
                if out[i] is not None and s[i] is not None and out[i] != s[i]:
                    raise ValueError(
                        f"layer {self.name!r} (Concatenate, axis={self.axis}) needs "
                        f"inputs that match on every axis but the concatenation axis, "
                        f"got shapes {_shapes_text(shapes)}")
                if out[i] is None:
                    out[i] = s[i]
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    @property
    def _out_shape(self):
        shape = list(self._x[0].shape)
        shape[self.axis] = sum(x.shape[self.axis] for x in self._x)
        return tuple(shape)

    def _merge(self, xs):
        return np.concatenate(xs, axis=self.axis)

    def _merge_grads(self, grad):
        bounds = np.cumsum([x.shape[self.axis] for x in self._x])[:-1]
        return [np.ascontiguousarray(g) for g in np.split(grad, bounds, axis=self.axis)]

    def get_config(self):
        return dict(super().get_config(), axis=self.axis)


def _function(cls):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"Keras's ``{merge.__name__}(inputs, **kwargs)``: ``{cls.__name__}" \
                    f"(**kwargs)(inputs)``."
    return merge


add = _function(Add)
subtract = _function(Subtract)
multiply = _function(Multiply)
average = _function(Average)
maximum = _function(Maximum)
minimum = _function(Minimum)
concatenate = _function(Concatenate)
