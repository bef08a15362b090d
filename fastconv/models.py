"""The Sequential model: Keras's API (compile, fit, evaluate, predict, summary, save) on
NumPy arrays, trained with explicit backward passes.

Sequential is the Model (fastconv/functional.py) whose graph is a chain: every method
of Model -- the passes, the training loop, weights, save -- runs it, over the chain's
nodes.  A training step runs every layer forward (training=True), the loss and its
gradient, every layer backward in reverse order (the first trainable layer does not
compute the gradient of its input, and layers before it do not run backward at all),
then one optimizer update of all trainable weights.  A softmax output trained with a
cross-entropy loss is fused: the loss is computed from the logits (stable) and the
backward pass starts from (p - y) / N, as Keras 3 does.

Passes run lists of steps, not layers: the model compiles its layers once per kind of
pass (fastconv/fusion.py), where a layer and the pooling after it may run as one pass.
The passes themselves -- the training step, the inference pass, the evaluate and predict
loops and their metrics -- are fastconv/_passes.py, summary's table fastconv/_summary.py
(the methods here delegate); the training loop (fit) is fastconv/training.py.

Saved models (``model.save(path)``, ``load_model(path)``): fastconv/saving.py.
"""
import numpy as np

from . import _graph
from . import callbacks as _callbacks
from . import fusion as _fusion
from ._serialization import deserialize, serialize
from ._validation import as_array
from .functional import Model
from .layers import LAYER_CLASSES, InputLayer, Layer
from .layers.base import check_shape
from .saving import ModelFileError, load_model

__all__ = ["Model", "Sequential", "load_model", "ModelFileError"]

#: fastconv.callbacks, also reachable here (as models._callbacks) as it always was
callbacks = _callbacks


class Sequential(Model):
    """A linear stack of layers (Keras's Sequential): a Model whose graph is the
    chain of its layers."""

    _config_class = "Sequential"
    _single_input = _single_output = True
    _outputs_dict = False

    def __init__(self, layers=None, name=None):
        self._init_model(name, "sequential")
        self._input_shape = None
        if layers is not None:
            if isinstance(layers, (Layer, _graph.KerasTensor)):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    # ------------------------------------------------------------------ structure
    @property
    def input_names(self):
        return ["input"]

    @property
    def output_names(self):
        return [self._layers[-1].name] if self._layers else ["output"]

    def add(self, layer):
        """Append a layer (an InputLayer / Input(...) may only come first)."""
        if isinstance(layer, _graph.KerasTensor):
            if layer.node is None or not layer.node.is_input:
                raise TypeError(f"Sequential.add takes layers or an Input(...) tensor, "
                                f"got the output of layer {layer.name!r}")
            layer = layer.node.layer
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

    def _graph_parts(self):
        """The chain: node i reads node i - 1 (node 0 the model's input), the last
        node is the output."""
        if not self._layers:
            raise ValueError(f"model {self.name!r} has no layers")
        nodes = _fusion.chain(self._layers)
        last = len(nodes) - 1
        nodes = [_fusion.Node(n.index, n.layer, n.inputs or (-1,),
                              n.consumers + ((-1,) if n.index == last else ()))
                 for n in nodes]
        return nodes, [last], 1

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
    def inputs(self):
        return []

    @property
    def outputs(self):
        return []

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

    def _check_x(self, x):
        return self._check_shapes(x.shape)

    # ------------------------------------------------------------------ data
    def _prepare_x(self, x, name="x"):
        arr = as_array(x, name)
        if arr.ndim < 1:
            raise ValueError(f"{name} must have a batch axis, got shape {arr.shape}")
        return arr

    def _prepare_y(self, y, yname="y"):
        return as_array(y, yname)

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
