"""Model: Keras's functional model (``Model(inputs, outputs)``) and the machinery every
model shares -- compile, fit, evaluate, predict, the *_on_batch methods, weights,
summary, save -- over a graph of layer calls (fastconv/_runner.py).  Sequential
(fastconv/models.py) is the Model whose graph is a chain.

    x = fastconv.Input((32, 32, 3))
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Add()([y, layers.Conv2D(16, 1)(x)])
    model = fastconv.Model(x, layers.Dense(10, activation="softmax")(
        layers.Flatten()(y)))

A shared layer (one layer called at several places) has one set of weights, whose
gradients are summed over its calls.  With several inputs or outputs, data are lists
(or dicts keyed by the input / output layers' names) of arrays, as in Keras; the loss
is one for all outputs or one per output (fastconv/_model_io.py).  The passes are
fastconv/_passes.py, the training loop fastconv/training.py, the table of summary()
fastconv/_summary.py, the config (Keras's functional config) fastconv/_graph_config.py.
"""
import threading

import numpy as np

from . import _graph
from . import _graph_config
from . import _model_io
from . import _passes
from . import _random
from . import _runner
from . import _summary
from . import fusion as _fusion
from . import metrics as _metrics
from . import optimizers as _optimizers
from . import saving as _saving
from . import training as _training
from . import utils as _utils
from ._validation import as_array
from .layers.base import unique_name

__all__ = ["Model"]


class Model:
    """A model over a graph of layers: ``Model(inputs, outputs, name=None)`` with
    ``inputs`` and ``outputs`` KerasTensors (one, a list, or a dict of outputs)."""

    #: the class name of the model's config in a saved file (Keras's)
    _config_class = "Functional"

    def __init__(self, inputs, outputs, name=None):
        self._init_model(name, "functional")
        ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if isinstance(inputs, dict):
            raise TypeError("inputs must be a KerasTensor or a list of them (inputs are "
                            "named by their Input(name=...))")
        self._outputs_dict = isinstance(outputs, dict)
        if self._outputs_dict:
            out_keys = list(outputs)
            outs = [outputs[k] for k in out_keys]
        else:
            outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if not ins or not outs:
            raise ValueError(f"a Model needs at least one input and one output, got "
                             f"inputs={inputs!r:.100}, outputs={outputs!r:.100}")
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple, dict))
        layers, calls = _graph.map_graph(ins, outs)
        dtypes = {la.dtype for la in layers if type(la).__name__ != "InputLayer"}
        if len(dtypes) > 1:
            raise ValueError(f"the layers of a model must share one dtype, got "
                             f"{sorted(d.name for d in dtypes)}")
        self._inputs, self._outputs = ins, outs
        self._layers = layers
        self._calls = calls
        self._dtype = dtypes.pop() if dtypes else ins[0].dtype
        self.input_names = [t.name for t in ins]
        self.output_names = (out_keys if self._outputs_dict
                             else [t.name for t in outs])
        self.built = True

    def _init_model(self, name, default):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        self.name = name or unique_name(default)
        self._layers = []
        # each thread's arena (see _pass_arena); released with the thread
        self._arenas = threading.local()
        self.built = False
        self.optimizer = None
        self.loss = None
        self._output_losses, self._loss_weights = [], []
        self.compiled = False
        self._metric_names = []
        self._weighted_metric_names = []  # compile(weighted_metrics=...)
        # the metric objects of _metric_fns and the shapes they were made for
        self._metric_objects = ([], None)
        self.history = None
        self.stop_training = False
        self._rng = _random.make_generator()
        self._checked = None  # (input sample shapes, structure) -> output shape(s)
        # the steps of each kind of pass (see _steps), compiled when first run
        self._compiled_steps = {}
        # False: every layer runs alone (the oracle of the fusion tests)
        self._fusion = True
        #: called with each layer whose parameter gradients are final in a training
        #: step's backward (e.g. to start reducing them across processes)
        self._gradient_hooks = []
        self._last_call = None  # (plan, caches, output shapes) of model(x)

    # ------------------------------------------------------------------ structure
    @property
    def layers(self):
        return list(self._layers)

    @property
    def inputs(self):
        return list(self._inputs)

    @property
    def outputs(self):
        return list(self._outputs)

    @property
    def input(self):
        """The input tensor (a list with several inputs), as Keras's model.input."""
        return self._inputs[0] if self._single_input else list(self._inputs)

    @property
    def output(self):
        """The output tensor (a list with several outputs), as Keras's model.output."""
        return self._outputs[0] if self._single_output else list(self._outputs)

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at ``index`` in ``layers``)."""
        if index is not None:
            if name is not None:
                raise ValueError("give get_layer a name or an index, not both")
            if not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"index {index!r} is out of range: model "
                                 f"{self.name!r} has {len(self._layers)} layers")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in model {self.name!r}; its layers: "
                         f"{', '.join(la.name for la in self._layers)}")

    def _graph_parts(self):
        """(fusion Nodes, output sources, number of inputs) of the graph."""
        nodes, outs = _graph.runner_nodes(self._calls, self._inputs, self._outputs)
        return nodes, outs, len(self._inputs)

    def _graph(self):
        graph = self._compiled_steps.get("graph")
        if graph is None:
            graph = self._compiled_steps["graph"] = _runner.Graph(*self._graph_parts())
        return graph

    def _linear_nodes(self, logits):
        outs = self._graph().outputs
        flags = (logits,) * len(outs) if isinstance(logits, bool) else logits
        return tuple(s for s, f in zip(outs, flags) if f and s >= 0)

    def _steps(self, mode="plain", logits=False):
        """The steps a pass runs (fastconv/fusion.py), compiled once per kind of pass
        until the model changes: mode "inference" (predict, evaluate) or "training"
        fuses what the pattern table fuses in that pass; "plain" (model(x),
        backward) runs each layer alone.  logits (True, or a flag per output): the
        output layers run their linear part only (the fused softmax + cross-entropy
        loss)."""
        return self._plan(mode, logits).steps

    def _plan(self, mode="plain", logits=False):
        key = (mode, logits, self._fusion)
        plan = self._compiled_steps.get(key)
        if plan is None:
            graph = self._graph()
            steps = _fusion.compile_steps(
                graph.nodes, _fusion.TRAINING if mode == "plain" else mode,
                fuse=self._fusion and mode != "plain",
                linear=self._linear_nodes(logits))
            plan = self._compiled_steps[key] = _runner.Plan(graph, steps)
        return plan

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self._outputs]
        return shapes[0] if self._single_output else shapes

    @property
    def dtype(self):
        return self._dtype

    def _check_x(self, x):
        """Check the input arrays x (an array or a Multi) against the inputs; returns
        the output shape (a list of them with several outputs)."""
        return _model_io.check_inputs(self, x)

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
        """Copies of all weights, in Keras's order (layer by layer, each layer's
        weights in its order: kernel then bias, ...)."""
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
            if k:
                layer.set_weights(weights[start:start + k])
            start += k

    def count_params(self):
        return int(sum(layer.count_params() for layer in self._layers))

    # ------------------------------------------------------------------ summary
    def summary(self, line_length=None, print_fn=None):
        """Print a Keras-like table -- layer (type), output shape, parameter count,
        the layers each one reads ("Connected to", for graphs), and the algorithm each
        Conv2D's forward runs on at batch 32 (explain_conv's name) -- then the layers
        that predict / evaluate and a training step run as one fused pass
        (fastconv/fusion.py).  (The table: fastconv/_summary.py.)"""
        _summary.summary(self, line_length, print_fn)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None,
                weighted_metrics=None, loss_weights=None):
        """Set the optimizer (name or object), loss (name or object; with several
        outputs one for all, a list or a dict by output name) and metrics (with
        several outputs: a list of lists, or a dict).

        As Keras: ``metrics`` ignore sample and class weights, ``weighted_metrics``
        are weighted by them (a name in both lists logs as ``weighted_<name>``)."""
        optimizer = _optimizers.get(optimizer)
        _model_io.compile_outputs(self, loss, loss_weights, metrics, weighted_metrics)
        self.optimizer = optimizer
        self._metric_objects = ([], None)
        self.compiled = True
        self._compiled_steps = {}

    def _trained_layers(self):
        """The layers whose weights the optimizer updates, in the model's order: those
        with trainable weights on a path to an output that has a loss."""
        graph = self._graph()
        key = ("trained", tuple(loss is None for loss in self._output_losses),
               tuple(layer.trainable for layer in graph.layers))
        layers = self._compiled_steps.get(key)
        if layers is None:
            used = graph.layers_before([s for s, loss in zip(graph.outputs,
                                                            self._output_losses)
                                        if loss is not None])
            layers = self._compiled_steps[key] = [
                layer for layer in self._layers
                if layer in used and layer.trainable_weights]
        return layers

    def _multi_output(self):
        return len(self._output_losses) > 1

    def _assert_compiled(self, method):
        if not self.compiled:
            raise ValueError(f"you must call compile() before calling {method}()")
        if all(loss is None for loss in self._output_losses):
            raise ValueError(f"{method}() needs a loss: call compile(optimizer, loss=...)")

    def _fused(self):
        """Whether the loss comes from the output layer's linear part: a softmax output
        with a categorical cross-entropy, a sigmoid one with binary cross-entropy
        (models of one output; _fused_outputs for any)."""
        return any(self._fused_outputs())

    def _fused_outputs(self):
        """Per output, whether its loss is computed from its layer's linear part (its
        layer's output read by nothing else)."""
        key = ("fused", tuple(id(loss) for loss in self._output_losses))
        flags = self._compiled_steps.get(key)
        if flags is None:
            graph = self._graph()
            flags = []
            for k, (s, loss) in enumerate(zip(graph.outputs, self._output_losses)):
                node = graph.nodes[s] if s >= 0 else None
                flags.append(node is not None and loss is not None and
                             tuple(node.consumers) == (-(k + 1),) and
                             loss.fuses_with(getattr(node.layer, "activation", None)))
            flags = self._compiled_steps[key] = tuple(flags)
        return flags

    # ------------------------------------------------------------------ data
    def _prepare_x(self, x, name="x"):
        if len(self._inputs) == 1 and not isinstance(x, (list, tuple, dict)):
            arr = _model_io.gather(x, self.input_names, name)[0]
            return arr
        arrays = _model_io.gather(x, self.input_names, name)
        return arrays[0] if len(arrays) == 1 else _model_io.Multi(arrays)

    def _prepare_y(self, y, yname="y"):
        names = self.output_names
        if len(names) == 1:
            if isinstance(y, dict):
                return _model_io.gather(y, names, yname)[0]
            return as_array(y, yname)
        return _model_io.Multi(_model_io.gather(y, names, yname))

    def _prepare_xy(self, x, y, xname="x", yname="y"):
        x = self._prepare_x(x, xname)
        if y is None:
            raise ValueError(f"{yname} is required (targets for {xname})")
        y = self._prepare_y(y, yname)
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
        if isinstance(x, _model_io.Multi):
            return _model_io.Multi(np.ascontiguousarray(a, dtype=self.dtype)
                                   for a in x.arrays)
        return np.ascontiguousarray(x, dtype=self.dtype)

    @staticmethod
    def _inputs_list(x):
        return list(x.arrays) if isinstance(x, _model_io.Multi) else [x]

    def _structure(self, outs):
        """The outputs of a pass as the user gave them: one array, a list or a dict."""
        if self._single_output:
            return outs[0]
        if self._outputs_dict:
            return dict(zip(self.output_names, outs))
        return list(outs)

    # ------------------------------------------------------------------ passes
    def _infer(self, x, logits=False, activity=None):
        """The forward pass of predict and evaluate, on the inference steps
        (fastconv/_passes.py)."""
        return _passes.infer(self, x, logits, activity)

    def _inference_penalty(self, activity, pred, fused):
        """The regularization terms of an evaluation batch (fastconv/_passes.py)."""
        return _passes.inference_penalty(self, activity, pred, fused)

    def __call__(self, x, training=False):
        """Forward pass of a batch (checked); arrays as the model's outputs are.  On
        symbolic tensors, the model's calls are repeated on them (its layers join
        the calling graph, their weights shared: fastconv/_graph.py, inline)."""
        if _graph.is_symbolic(x):
            return self._structure(_graph.inline(self, x))
        x = self._prepare_x(x)
        self._check_x(x)
        return self._structure(_passes.call(self, self._cast(x), bool(training)))

    def backward(self, grad_y):
        """Backpropagate ``grad_y`` (d something / d output of the last call; a list
        or dict with several outputs) through every layer: returns the gradient with
        respect to the model input (a list with several inputs) and leaves each
        layer's parameter gradients in ``layer.gradients``."""
        grads = _passes.backward(self, grad_y)
        return grads[0] if len(grads) == 1 else grads

    def _train_batch(self, x, y, sample_weight=None):
        """One step on prepared arrays; returns (loss, y_pred).  The kernels' outputs
        reuse the arrays of the previous step or pass (fastconv/_arena.py): the layers'
        caches of the last step are replaced before they are read, input gradients are
        consumed within the step, and the parameter gradients never come from it."""
        from ._blas import _SerialBlas
        with self._pass_arena(), _SerialBlas():  # one BLAS region (fastconv/_blas.py)
            return self._train_step(x, y, sample_weight=sample_weight)

    def _pass_arena(self):
        """This thread's arena of the model: the arrays of its last pass in this
        thread, for the next one (passes in other threads have their own, freed when
        their thread ends)."""
        arena = getattr(self._arenas, "arena", None)
        if arena is None:
            from ._arena import Arena
            arena = self._arenas.arena = Arena()
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
        out_shape = self._check_x(x)
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
        self._check_x(x)
        logs = self._evaluate_batches(
            _utils.ArrayAdapter(x, y, w, x.shape[0]), "x")
        return self._logs_result(logs, return_dict)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(len(self._inputs_list(
            self._prepare_x(x))[0]), 1), verbose=0)

    def _logs_result(self, logs, return_dict):
        if return_dict:
            return logs
        if len(logs) == 1:
            return logs["loss"]
        return list(logs.values())

    def _evaluate_batches(self, data, where, method="evaluate"):
        """Loss and metrics over the batches of an adapter (fastconv/_passes.py)."""
        return _passes.evaluate_batches(self, data, where, method)

    def _clear_caches(self):
        for layer in self._layers:
            layer._clear_cache()
        self._last_call = None

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto",
                 sample_weight=None, steps=None, return_dict=False, class_weight=None):
        """Loss (and metrics) over a data set: a float, or [loss, accuracy, ...].

        ``x``: an array (with targets ``y``), a generator or a ``fastconv.utils.
        Sequence`` of (x, y[, sample_weight]) batches (``steps`` of them, or all).
        ``sample_weight`` / ``class_weight`` (not in Keras's evaluate) as in fit."""
        self._assert_compiled("evaluate")
        verbose = _training.check_verbose(verbose)
        batch_size = _training.check_batch_size(batch_size)
        steps = _utils.check_steps(steps, "steps")
        data = _utils.adapter(x, y, sample_weight, class_weight, batch_size,
                              steps=steps)
        if data is None:
            x, y = self._prepare_xy(x, y)
            self._check_samples(x, "evaluate")
            w = _utils.weights_for(y, sample_weight, class_weight)
            self._check_x(x)
            data = _utils.ArrayAdapter(x, y, w, batch_size, steps=steps)
        logs = self._evaluate_batches(data, "x")
        if verbose:
            from . import callbacks as _callbacks
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
        """Keras's functional config: layers (each with its inbound_nodes),
        input_layers, output_layers (fastconv/_graph_config.py)."""
        return _graph_config.get_config(self)

    @classmethod
    def from_config(cls, config, make_layer=None):
        """The model of a functional config (get_config's, or Keras's with
        ``make_layer``: config entry of a layer -> fastconv layer)."""
        return _graph_config.from_config(cls, config, make_layer)

    def _compile_config(self):
        """compile()'s arguments for a saved file (fastconv/_model_io.py)."""
        return _model_io.compile_config(self)

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
        return (f"<{type(self).__name__} {self.name!r}: {len(self._layers)} layers, "
                f"{self.count_params() if self.built else '?'} params>")
