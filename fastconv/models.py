"""The Sequential model: Keras's API (compile, fit, evaluate, predict, summary, save) on
NumPy arrays, trained with explicit backward passes.

A training step runs every layer forward (training=True), the loss and its gradient,
every layer backward in reverse order (the first trainable layer does not compute the
gradient of its input, and layers before it do not run backward at all), then one
optimizer update of all trainable weights.  A softmax output trained with a
cross-entropy loss is fused: the loss is computed from the logits (stable) and the
backward pass starts from (p - y) / N, as Keras 3 does.

Passes run lists of steps, not layers: the model compiles its layers once per kind of
pass (fastconv/fusion.py), where a layer and the pooling after it may run as one pass.
The passes themselves -- the training step, the inference pass, the evaluate and predict
loops and their metrics -- are fastconv/_passes.py, summary's table fastconv/_summary.py
(the methods here delegate); the training loop (fit) is fastconv/training.py.

Saved models (``model.save(path)``, ``load_model(path)``): fastconv/saving.py.
"""
import threading

import numpy as np

from . import _passes
from . import _random
from . import _summary
from . import callbacks as _callbacks
from . import fusion as _fusion
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from . import saving as _saving
from . import training as _training
from . import utils as _utils
from ._arena import Arena as _Arena
from ._blas import _SerialBlas
from ._serialization import deserialize, serialize
from ._validation import as_array
from .layers import LAYER_CLASSES, InputLayer, Layer
from .layers.base import check_shape, unique_name
from .saving import ModelFileError, load_model

__all__ = ["Sequential", "load_model", "ModelFileError"]

_check_verbose = _training.check_verbose
_check_batch_size = _training.check_batch_size


class Sequential:
    """A linear stack of layers (Keras's Sequential)."""

    def __init__(self, layers=None, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        self.name = name or unique_name("sequential")
        self._layers = []
        # each thread's arena (see _pass_arena); released with the thread
        self._arenas = threading.local()
        self._input_shape = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self._metric_names = []
        self._weighted_metric_names = []  # compile(weighted_metrics=...)
        # the metric objects of _metric_fns and the shapes they were made for
        self._metric_objects = ([], None)
        self.history = None
        self.stop_training = False
        self._rng = _random.make_generator()
        self._checked = None  # (input sample shape, layer count) -> output shape
        # the steps of each kind of pass (see _steps), compiled when first run
        self._compiled_steps = {}
        # False: every layer runs alone (the oracle of the fusion tests)
        self._fusion = True
        if layers is not None:
            if isinstance(layers, (Layer, InputLayer)):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    # ------------------------------------------------------------------ structure
    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Append a layer (an InputLayer / Input(...) may only come first)."""
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("an InputLayer can only be the first entry of a "
                                 "Sequential model")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastconv layer, got {layer!r}")
        if any(layer.name == other.name for other in self._layers):
            raise ValueError(f"all layers of a Sequential model need unique names; "
                             f"{layer.name!r} is already used")
        if not self._layers and self._input_shape is None \
                and layer._input_shape_arg is not None:
            self._input_shape = layer._input_shape_arg
        self._layers.append(layer)
        self._compiled_steps = {}
        if self.built:
            prev = self._layers[-2].output_shape if len(self._layers) > 1 \
                else (None,) + tuple(self._input_shape)
            layer.build(prev)
        elif self._input_shape is not None:
            self.build((None,) + tuple(self._input_shape))

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("pop() on a Sequential model without layers")
        self._checked = None
        self._compiled_steps = {}
        return self._layers.pop()

    def _steps(self, mode="plain", logits=False):
        """The steps a pass runs (fastconv/fusion.py), compiled once per kind of pass
        until the layers change: mode "inference" (predict, evaluate) or "training"
        (a training step) fuses what the pattern table fuses in that pass; "plain"
        (model(x), backward) runs each layer alone.  logits: the last layer runs its
        linear part only (the fused softmax + cross-entropy loss)."""
        key = (mode, logits, self._fusion)
        steps = self._compiled_steps.get(key)
        if steps is None:
            nodes = _fusion.chain(self._layers)
            steps = _fusion.compile_steps(
                nodes, _fusion.TRAINING if mode == "plain" else mode,
                fuse=self._fusion and mode != "plain",
                linear=len(nodes) - 1 if logits else None)
            self._compiled_steps[key] = steps
        return steps

    def build(self, input_shape=None):
        """Build every layer for inputs of ``input_shape`` (batch axis included)."""
        if input_shape is None:
            if self._input_shape is None:
                raise ValueError("build() needs input_shape=(None, ...) (or give the "
                                 "first layer input_shape=..., or start with Input())")
            input_shape = (None,) + tuple(self._input_shape)
        shape = tuple(None if s is None else int(s) for s in input_shape)
        if len(shape) < 2:
            raise ValueError(f"input_shape must include the batch axis, e.g. (None, 32, "
                             f"32, 3), got {input_shape!r}")
        for layer in self._layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self._input_shape = tuple(input_shape[1:])
        self.built = True
        self._compiled_steps = {}

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None,) + tuple(self._input_shape)

    @property
    def output_shape(self):
        if not self.built or not self._layers:
            return None
        return self._layers[-1].output_shape

    @property
    def dtype(self):
        return self._layers[0].dtype if self._layers else np.dtype(np.float32)

    def _check_shapes(self, x_shape):
        """Check a whole input shape through every layer (clear errors, once per call)."""
        if not self._layers:
            raise ValueError(f"model {self.name!r} has no layers")
        key = (tuple(x_shape[1:]), len(self._layers))
        if self._checked is not None and self._checked[0] == key:
            return self._checked[1]
        if not self.built:
            self.build((None,) + tuple(x_shape[1:]))
        shape = (None,) + tuple(x_shape[1:])
        for layer in self._layers:
            layer._check_input_shape(shape)
            shape = layer.compute_output_shape(shape)
        self._checked = (key, shape)
        return shape

    # ------------------------------------------------------------------ weights
    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    def get_weights(self):
        """Copies of all weights, in Keras's order (layer by layer, kernel then bias)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Load a list like Keras's ``model.get_weights()``."""
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built: call build(input_shape) "
                             "or run it on data before set_weights")
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"model {self.name!r} has {expected} weight arrays, got "
                             f"{len(weights)}")
        start = 0
        for layer in self._layers:
            k = len(layer.weights)
            layer.set_weights(weights[start:start + k])
            start += k

    def count_params(self):
        return int(sum(layer.count_params() for layer in self._layers))

    # ------------------------------------------------------------------ summary
    def summary(self, line_length=None, print_fn=None):
        """Print a Keras-like table -- layer (type), output shape, parameter count, and
        the algorithm each Conv2D's forward runs on at batch 32 (explain_conv's name)
        -- then the layers that predict / evaluate and a training step run as one fused
        pass (fastconv/fusion.py).  (The table: fastconv/_summary.py.)"""
        _summary.summary(self, line_length, print_fn)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None,
                weighted_metrics=None):
        """Set the optimizer (name or object), loss (name or object) and metrics.

        As Keras: ``metrics`` ignore sample and class weights, ``weighted_metrics``
        are weighted by them (a name in both lists logs as ``weighted_<name>``)."""
        self.optimizer = _optimizers.get(optimizer)
        self.loss = None if loss is None else _losses.get(loss)
        self._metric_names = _metrics.check_metrics(metrics)
        self._weighted_metric_names = _metrics.check_metrics(weighted_metrics)
        self._metric_objects = ([], None)
        self.compiled = True
        self._compiled_steps = {}

    def _assert_compiled(self, method):
        if not self.compiled:
            raise ValueError(f"you must call compile() before calling {method}()")
        if self.loss is None:
            raise ValueError(f"{method}() needs a loss: call compile(optimizer, loss=...)")

    def _fused(self):
        """Whether the loss comes from the output layer's linear part: a softmax output
        with a categorical cross-entropy, a sigmoid one with binary cross-entropy."""
        return self.loss.fuses_with(getattr(self._layers[-1], "activation", None))

    # ------------------------------------------------------------------ data
    def _prepare_x(self, x, name="x"):
        arr = as_array(x, name)
        if arr.ndim < 1:
            raise ValueError(f"{name} must have a batch axis, got shape {arr.shape}")
        return arr

    def _prepare_xy(self, x, y, xname="x", yname="y"):
        x = self._prepare_x(x, xname)
        if y is None:
            raise ValueError(f"{yname} is required (targets for {xname})")
        y = as_array(y, yname)
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{xname} and {yname} must have the same number of samples, "
                             f"got {xname} with {x.shape[0]} and {yname} with "
                             f"{y.shape[0] if y.ndim else 'no batch axis'} "
                             f"(shapes {x.shape} and {y.shape})")
        return x, y

    @staticmethod
    def _check_samples(x, method, name="x"):
        if x.shape[0] == 0:
            raise ValueError(f"{method}() needs at least one sample, got {name} of shape "
                             f"{x.shape}")

    def _cast(self, x):
        return np.ascontiguousarray(x, dtype=self.dtype)

    # ------------------------------------------------------------------ passes
    def _forward(self, x, training):
        with _SerialBlas():  # one region for the pass (see fastconv/_blas.py)
            for step in self._steps():
                x = step.forward(x, training)
        return x

    def _infer(self, x, logits=False, activity=None):
        """The forward pass of predict and evaluate, on the inference steps
        (fastconv/_passes.py)."""
        return _passes.infer(self, x, logits, activity)

    def _inference_penalty(self, activity, pred, fused):
        """The regularization terms of an evaluation batch (fastconv/_passes.py)."""
        return _passes.inference_penalty(self, activity, pred, fused)

    def __call__(self, x, training=False):
        """Forward pass of a batch (checked)."""
        x = self._prepare_x(x)
        self._check_shapes(x.shape)
        return self._forward(self._cast(x), bool(training))

    def backward(self, grad_y):
        """Backpropagate ``grad_y`` (d something / d output of the last call) through
        every layer: returns the gradient with respect to the model input and leaves
        each layer's parameter gradients in ``layer.gradients``."""
        if not self._layers or self._layers[-1]._x is None:
            raise ValueError(f"model {self.name!r}: backward needs a forward pass first "
                             "(call the model on data)")
        grad = self._layers[-1].backward(grad_y)
        for layer in reversed(self._layers[:-1]):
            grad = layer._backward(grad, True)
        return grad

    def _first_trainable(self):
        for i, layer in enumerate(self._layers):
            if layer.trainable and layer.weights:
                return i
        return len(self._layers)

    def _train_batch(self, x, y, sample_weight=None):
        """One step on prepared arrays; returns (loss, y_pred).  The kernels' outputs
        reuse the arrays of the previous step or pass (fastconv/_arena.py): the layers'
        caches of the last step are replaced before they are read, input gradients are
        consumed within the step, and the parameter gradients never come from it."""
        with self._pass_arena(), _SerialBlas():  # one BLAS region (fastconv/_blas.py)
            return self._train_step(x, y, sample_weight=sample_weight)

    def _pass_arena(self):
        """This thread's arena of the model: the arrays of its last pass in this
        thread, for the next one (passes in other threads have their own, freed when
        their thread ends)."""
        arena = getattr(self._arenas, "arena", None)
        if arena is None:
            arena = self._arenas.arena = _Arena()
        return arena

    def _regularized(self):
        """Whether any layer has a regularizer or a constraint (else the training
        step and evaluate run exactly as without this feature)."""
        return any(getattr(layer, "activity_regularizer", None) is not None
                   or getattr(layer, "_regularizers", None)
                   or getattr(layer, "_constraints", None) for layer in self._layers)

    def _weight_penalty(self):
        """The sum of the weight penalties of the trainable layers (Keras's
        regularization losses), a float."""
        return float(sum(layer._weight_penalty() for layer in self._layers))

    def _train_step(self, x, y, sample_weight=None):
        """Forward, loss, backward, update (fastconv/_passes.py)."""
        return _passes.train_step(self, x, y, sample_weight=sample_weight)

    def _train_step_regularized(self, x, y, sample_weight=None):
        """_train_step with regularizers or constraints (fastconv/_passes.py)."""
        return _passes.train_step_regularized(self, x, y, sample_weight=sample_weight)

    @property
    def metrics(self):
        """The metric objects of compile(metrics=...) as the last fit / evaluate /
        *_on_batch made them (names resolved for their targets), holding that run's
        state: a confusion matrix is read here (``model.metrics[i].result()``)."""
        return list(self._metric_objects[0])

    def _metric_fns(self, y, y_pred_shape):
        """The metric objects for targets like ``y``, reset (fastconv/_passes.py)."""
        return _passes.metric_fns(self, y, y_pred_shape)

    _update_metrics = staticmethod(_passes.update_metrics)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One training step; returns the loss (and metrics, as Keras: [loss, ...]).
        ``sample_weight`` (one weight per sample) or ``class_weight`` ({class:
        weight}) weight the loss (Keras's weighted mean) and the metrics."""
        self._assert_compiled("train_on_batch")
        x, y = self._prepare_xy(x, y)
        self._check_samples(x, "train_on_batch")
        w = _utils.weights_for(y, sample_weight, class_weight)
        out_shape = self._check_shapes(x.shape)
        if w is None:
            loss, y_pred = self._train_batch(self._cast(x), y)
        else:
            loss, y_pred = self._train_batch(self._cast(x), y, sample_weight=w)
        metrics = self._metric_fns(y, out_shape)
        self._update_metrics(metrics, y, y_pred, w)
        return self._logs_result(_metrics.scalar_results(metrics, {"loss": loss}),
                                 return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False,
                      class_weight=None):
        """Loss (and metrics) of one batch, no update (``class_weight``: not in
        Keras's test_on_batch, accepted as in train_on_batch)."""
        self._assert_compiled("test_on_batch")
        x, y = self._prepare_xy(x, y)
        self._check_samples(x, "test_on_batch")
        w = _utils.weights_for(y, sample_weight, class_weight)
        out_shape = self._check_shapes(x.shape)
        logs = self._evaluate_arrays(x, y, x.shape[0], out_shape, w)
        return self._logs_result(logs, return_dict)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(len(x), 1), verbose=0)

    def _logs_result(self, logs, return_dict):
        if return_dict:
            return logs
        if len(logs) == 1:
            return logs["loss"]
        return list(logs.values())

    def _evaluate_arrays(self, x, y, batch_size, out_shape, sample_weight=None):
        del out_shape  # (checked by the caller; _evaluate_batches reads the cache)
        return self._evaluate_batches(
            _utils.ArrayAdapter(x, y, sample_weight, batch_size), "x")

    def _evaluate_batches(self, data, where, method="evaluate"):
        """Loss and metrics over the batches of an adapter (fastconv/_passes.py)."""
        return _passes.evaluate_batches(self, data, where, method)

    def _clear_caches(self):
        for layer in self._layers:
            layer._clear_cache()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto",
                 sample_weight=None, steps=None, return_dict=False, class_weight=None):
        """Loss (and metrics) over a data set: a float, or [loss, accuracy, ...].

        ``x``: an array (with targets ``y``), a generator or a ``fastconv.utils.
        Sequence`` of (x, y[, sample_weight]) batches (``steps`` of them, or all).
        ``sample_weight`` / ``class_weight`` (not in Keras's evaluate) as in fit."""
        self._assert_compiled("evaluate")
        verbose = _check_verbose(verbose)
        batch_size = _check_batch_size(batch_size)
        steps = _utils.check_steps(steps, "steps")
        data = _utils.adapter(x, y, sample_weight, class_weight, batch_size,
                              steps=steps)
        if data is None:
            x, y = self._prepare_xy(x, y)
            self._check_samples(x, "evaluate")
            w = _utils.weights_for(y, sample_weight, class_weight)
            self._check_shapes(x.shape)
            data = _utils.ArrayAdapter(x, y, w, batch_size, steps=steps)
        logs = self._evaluate_batches(data, "x")
        if verbose:
            n = data.num_batches
            print(f"{n}/{n}{_callbacks._format_logs(logs)}" if n is not None
                  else _callbacks._format_logs(logs).lstrip(" -"))
        return self._logs_result(logs, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        """Model outputs for ``x``, computed ``batch_size`` samples at a time; ``x``
        may be a generator or a Sequence (of x, (x,), (x, y) or (x, y, w) batches:
        only x is used), read for ``steps`` batches or to its end."""
        return _passes.predict(self, x, batch_size, verbose, steps)

    def _predict_batches(self, data, verbose):
        return _passes.predict_batches(self, data, verbose)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto",
            callbacks=None, validation_split=0.0, validation_data=None, shuffle=True,
            class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None):
        """Train for ``epochs`` passes over (x, y); returns a History.

        Keras's semantics: ``validation_split`` takes the last fraction of the samples
        (before shuffling); the training set is reshuffled every epoch when ``shuffle``;
        logged "loss" is the mean of the batch losses weighted by batch size.

        ``x`` may be a generator or a ``fastconv.utils.Sequence`` of (x, y[,
        sample_weight]) batches (``steps_per_epoch`` of them per epoch, or all), and
        ``validation_data`` too (``validation_steps``): fastconv/utils.py says how.
        ``sample_weight`` (one weight per sample) or ``class_weight`` ({class:
        weight}) weight each sample's loss (Keras's weighted mean: the weighted sum
        over the batch size) and the metrics.  Callbacks follow Keras 3: one logs
        dict per epoch shared by all of them, History last, ``stop_training``
        checked after every batch.  (The loop: fastconv/training.py.)
        """
        return _training.fit(self, x, y, batch_size, epochs, verbose, callbacks,
                             validation_split, validation_data, shuffle, initial_epoch,
                             class_weight, sample_weight, steps_per_epoch,
                             validation_steps)

    # ------------------------------------------------------------------ config / io
    def get_config(self):
        return {"name": self.name,
                "input_shape": None if self._input_shape is None
                else list(self._input_shape),
                "layers": [serialize(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError(f"a Sequential config needs a 'layers' list, got {config!r}")
        model = cls(name=config.get("name"))
        shape = config.get("input_shape")
        layers = [deserialize(c, LAYER_CLASSES, "layer") for c in config["layers"]]
        if shape is not None:
            model._input_shape = check_shape(shape, "input_shape")
        for layer in layers:
            model.add(layer)
        if shape is not None and not model.built and model._layers:
            model.build((None,) + tuple(model._input_shape))
        return model

    def _compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": serialize(self.optimizer),
                "loss": None if self.loss is None else serialize(self.loss),
                "metrics": _metrics.names_for_saving(self._metric_names),
                **({"weighted_metrics": _metrics.names_for_saving(
                    self._weighted_metric_names)} if self._weighted_metric_names
                   else {})}

    def save(self, filepath):
        """Write architecture, weights, optimizer state and generator states to one
        file (fastconv/saving.py: the format, written atomically)."""
        _saving.save_model(self, filepath)

    def save_weights(self, filepath):
        """Write the weights only to one ``.npz`` file (fastconv/saving.py)."""
        _saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        """Load weights written by save_weights (or a model file's) into this built
        model; every array is checked first (fastconv/saving.py)."""
        _saving.load_weights(self, filepath)

    def __repr__(self):
        return (f"<Sequential {self.name!r}: {len(self._layers)} layers, "
                f"{self.count_params() if self.built else '?'} params>")
