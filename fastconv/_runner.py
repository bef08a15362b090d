"""The graph runner of a model: forward over the steps of a pass (fastconv/fusion.py) in
topological order, backward in reverse with the gradients of a tensor read by several
nodes summed, and the bookkeeping of shared layers.

A model's graph is a list of fastconv/fusion.py Nodes in topological order: node i
reads the sources ``node.inputs`` (a node index, or -(k + 1) for the model's input k)
and the model's outputs are the sources ``outputs``.  A Sequential is a chain.

Backward runs a node only where its gradient is needed (``needs``: the node or one
before it has trainable weights, or the inputs' gradients were asked for), and asks a
node for its input gradient only where one of its inputs needs it (``wants``).  A
layer called at several nodes (a shared layer) keeps one forward cache per node (its
``_cache_attrs`` and activation output, saved after each node's forward and put back
before that node's backward), and its parameter gradients are the sum over its nodes.
After a layer's last node has run backward (its gradients are final), each of
``hooks`` is called with the layer.
"""
from collections import Counter

from .layers.merge import sum_arrays

__all__ = ["Graph", "Plan"]


class Graph:
    """The nodes and outputs of a model's graph, and what follows from them."""

    def __init__(self, nodes, outputs, n_inputs):
        self.nodes, self.outputs, self.n_inputs = list(nodes), list(outputs), n_inputs
        counts = Counter(node.layer for node in self.nodes)
        self.shared = {layer for layer, c in counts.items() if c > 1}
        self.multi = [getattr(node.layer, "_multi_input", False) for node in self.nodes]
        #: the layers of the nodes, each once, in node order
        self.layers = list(dict.fromkeys(node.layer for node in self.nodes))
        self._needs = {}

    def needs(self, input_grads=False):
        """(needs, wants): per node, whether backward runs it and whether its input
        gradient is asked for; input_grads: the model inputs' gradients are wanted.
        Kept per set of trainable flags (the weights are fixed once built)."""
        layers = self.layers
        key = (input_grads,) + tuple(layer.trainable for layer in layers)
        cached = self._needs.get(key)
        if cached is not None:
            return cached
        trains = {layer: bool(layer.trainable_weights) for layer in layers}
        needs, wants = [], []
        for node in self.nodes:
            want = any(needs[s] if s >= 0 else input_grads for s in node.inputs)
            wants.append(want)
            needs.append(want or trains[node.layer])
        self._needs[key] = (needs, wants)
        return needs, wants

    def layers_before(self, sources):
        """The layers of the nodes that the sources (node indices; negative ones,
        model inputs, ignored) are computed from, themselves included."""
        todo = [s for s in sources if s >= 0]
        reached = set()
        while todo:
            i = todo.pop()
            if i not in reached:
                reached.add(i)
                todo.extend(s for s in self.nodes[i].inputs if s >= 0)
        return {self.nodes[i].layer for i in reached}


class Plan:
    """The steps of one kind of pass over a graph, with what the runner needs: each
    step's input sources and the values it may drop after it (read by no later step
    and no output)."""

    def __init__(self, graph, steps):
        self.graph, self.steps = graph, steps
        nodes = graph.nodes
        self.sources = [nodes[step.indices[0]].inputs for step in steps]
        self.firsts = [step.indices[0] for step in steps]
        last_use = {}
        for k, srcs in enumerate(self.sources):
            for s in srcs:
                last_use[s] = k
        keep = set(graph.outputs)
        self.drops = [[] for _ in steps]
        for s, k in last_use.items():
            if s not in keep:
                self.drops[k].append(s)
        shared = graph.shared
        self.shared_steps = [[la for la in step.layers if la in shared] for step in steps]
        # each layer's gradients are final after its earliest step's backward
        first_step = {}
        for k, step in enumerate(steps):
            for layer in step.layers:
                first_step.setdefault(layer, k)
        self.final = [[] for _ in steps]
        for layer, k in first_step.items():
            self.final[k].append(layer)

    def forward(self, xs, training, activity=None):
        """The outputs (a list) of the model inputs xs (a list), and the saved caches
        of the shared layers ({step position: {layer: cache}}).  activity: a dict
        that gets {step position: (penalty, gradient)} of each step whose last layer
        has an activity regularizer (not where that step runs a linear part)."""
        values = {-(k + 1): x for k, x in enumerate(xs)}
        multi, caches = self.graph.multi, {}
        for k, step in enumerate(self.steps):
            srcs = self.sources[k]
            if multi[self.firsts[k]]:
                out = step.forward([values[s] for s in srcs], training)
            else:
                out = step.forward(values[srcs[0]], training)
            values[step.indices[-1]] = out
            for s in self.drops[k]:
                del values[s]
            if self.shared_steps[k]:
                caches[k] = {la: _save(la) for la in self.shared_steps[k]}
            if activity is not None:
                last = step.layers[-1]
                if last.activity_regularizer is not None and \
                        not getattr(step, "linear", False):
                    activity[k] = last._activity_penalty(out)
        return [values[s] for s in self.graph.outputs], caches

    def backward(self, out_grads, caches, needs, wants, hooks=(), activity=None,
                 release=False):
        """Backpropagate the outputs' gradients; returns the gradients of the model
        inputs (None where not wanted).  needs / wants: Graph.needs; activity: the
        forward's activity penalties, whose gradients join their steps' outputs';
        release: drop each step's layer caches once its backward has run (a training
        step, which backpropagates once: the saved activations go as the pass moves
        back, not at the next forward)."""
        acc = {}
        for s, g in zip(self.graph.outputs, out_grads):
            _accumulate(acc, s, g)
        nodes, multi = self.graph.nodes, self.graph.multi
        summed = {}  # shared layer -> its gradients summed over the nodes run so far
        for k in range(len(self.steps) - 1, -1, -1):
            step = self.steps[k]
            last = step.indices[-1]
            grad = acc.pop(last, None)
            if grad is not None and needs[last]:
                if activity is not None and k in activity:
                    grad = grad + activity[k][1]
                if k in caches:
                    for layer, cache in caches[k].items():
                        _restore(layer, cache)
                grad_in = step.backward(grad, wants)
                first = self.firsts[k]
                if wants[first]:
                    if multi[first]:
                        for s, g in zip(nodes[first].inputs, grad_in):
                            if g is not None and (s < 0 or needs[s]):
                                _accumulate(acc, s, g)
                    elif grad_in is not None:
                        _accumulate(acc, nodes[first].inputs[0], grad_in)
                for layer in self.shared_steps[k]:
                    _sum_gradients(summed, layer)
            if release:
                for layer in step.layers:
                    layer._clear_cache()
            for layer in self.final[k]:
                if layer in summed:
                    layer._grads = summed.pop(layer)
                if hooks and layer.trainable_weights:
                    for hook in hooks:
                        hook(layer)
        return [acc.get(-(j + 1)) for j in range(self.graph.n_inputs)]


def _accumulate(acc, source, grad):
    """acc[source] plus grad (a tensor's gradient from one more of its readers): a new
    array, never written in place -- a layer may hand the same gradient to several
    inputs (Add) -- summed on all threads where the compiled kernel takes the arrays."""
    prev = acc.get(source)
    if prev is None:
        acc[source] = grad
        return
    total = sum_arrays((prev, grad))
    acc[source] = prev + grad if total is None else total


def _save(layer):
    cache = {attr: getattr(layer, attr) for attr in layer._cache_attrs}
    cache["_y"] = layer._y
    return cache


def _restore(layer, cache):
    for attr, value in cache.items():
        setattr(layer, attr, value)


def _sum_gradients(summed, layer):
    grads = summed.get(layer)
    if grads is None:
        summed[layer] = {n: None if g is None else g.copy()
                         for n, g in layer._grads.items()}
        return
    for n, g in layer._grads.items():
        if g is None:
            continue
        if grads.get(n) is None:
            grads[n] = g.copy()
        else:
            grads[n] += g
