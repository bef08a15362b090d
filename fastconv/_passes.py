"""The passes of a model over the steps of its graph (fastconv/fusion.py, run by
fastconv/_runner.py): model(x) and backward, the training step (forward, loss,
backward, one optimizer update; with regularizers or constraints, their penalties and
projections), the inference pass of predict and evaluate, and the loops of evaluate
and predict over batches, with the metrics they update.

Each function takes the model first; the model's methods of the same names (with a
leading underscore: ``_train_step``, ``_infer``, ``_evaluate_batches``, ...) delegate
here, and what these functions call on the model goes through its methods, so that a
method replaced on a model (a test's spy) is the one that runs.
"""
import numpy as np

from . import fusion as _fusion
from . import metrics as _metrics
from . import training as _training
from . import utils as _utils
from . import _contention, _model_io
from ._blas import _SerialBlas
from ._validation import as_array

__all__ = ["call", "backward", "infer", "inference_penalty", "train_step",
           "output_losses", "metric_fns", "update_metrics", "evaluate_batches",
           "predict", "predict_batches"]


def call(model, x, training):
    """model(x): the plain steps (every layer alone); keeps what backward reads."""
    plan = model._plan("plain")
    with _SerialBlas():  # one region for the pass (see fastconv/_blas.py)
        outs, caches = plan.forward(model._inputs_list(x), training)
    model._last_call = (plan, caches, [o.shape for o in outs])
    return outs


def backward(model, grad_y):
    """model.backward: the gradients of the inputs of the last model(x) call (a
    list), the parameter gradients left in the layers."""
    last = model._last_call
    if last is None:
        raise ValueError(f"model {model.name!r}: backward needs a forward pass first "
                         "(call the model on data)")
    plan, caches, shapes = last
    names = model.output_names
    if len(shapes) == 1 and not isinstance(grad_y, (list, tuple, dict)):
        grads = [grad_y]
    else:
        grads = _model_io.gather(grad_y, names, "grad_y")
    out = []
    for name, g, shape in zip(names, grads, shapes):
        g = as_array(g, "grad_y")
        if g.shape != shape:
            raise ValueError(f"grad_y of model {model.name!r} (output {name!r}) must have "
                             f"the shape {shape} of the last output, got {g.shape}")
        out.append(np.ascontiguousarray(g, dtype=model.dtype))
    wants = plan.graph.needs(input_grads=True)[1]
    needs = [True] * len(wants)
    with _SerialBlas():
        grads = plan.backward(out, caches, needs, wants)
    return [g if g is None else np.ascontiguousarray(g) for g in grads]


def infer(model, x, logits=False, activity=None):
    """The forward pass of predict and evaluate (training False, every layer's cache
    cleared after, the result copied or reduced before the next pass) on the
    inference steps, where a layer and the pooling after it may run as one pass
    (fastconv/fusion.py: LeNet-5's C1 + S2 and C3 + S4), and the kernels' outputs
    reuse the arrays of the previous pass (fastconv/_arena.py).  With ``logits``
    (True, or a flag per output) those outputs' layers stop before their activation
    (the fused loss).  With a list ``activity``, the activity penalties of the
    layers' outputs are appended to it.  Returns the outputs' list."""
    plan = model._plan(_fusion.INFERENCE, logits)
    penalties = None if activity is None else {}
    # one BLAS region (fastconv/_blas.py); one thread while the cores are taken
    with model._pass_arena(), _SerialBlas(), _contention.BatchThreads():
        outs, _ = plan.forward(model._inputs_list(x), False, penalties)
    if activity is not None:
        activity.extend(p[0] for _, p in sorted(penalties.items()))
    return outs


def inference_penalty(model, activity, preds, fused):
    """The regularization terms of an evaluation batch (Keras 3's test_step adds
    them to the loss as its train_step does): the weight penalties, the activity
    penalties _infer collected in ``activity``, and those of the output layers on
    ``preds`` where the loss was fused (their pass stopped at the logits)."""
    penalty = model._weight_penalty() + sum(activity)
    for layer, pred, f in zip(_output_layers(model), preds, fused):
        if f and layer.activity_regularizer is not None:
            penalty += layer._activity_penalty(pred)[0]
    return penalty


def _output_layers(model):
    graph = model._graph()
    return [graph.nodes[s].layer if s >= 0 else None for s in graph.outputs]


def output_losses(model, y, outs, fused, sample_weight, need_gradient=True):
    """(loss, predictions, [gradient per output]) of the outputs ``outs`` (logits
    where ``fused``) against ``y``: one output as the loss gives it, several summed
    with their loss_weights (an output without a loss gets no gradient)."""
    if not model._multi_output():
        loss, out, weight = model._output_losses[0], outs[0], model._loss_weights[0]
        if fused[0]:
            value, pred, grad = loss.from_logits_value_and_gradient(
                y, out, need_gradient=need_gradient, sample_weight=sample_weight)
        elif need_gradient:
            value, grad = loss.value_and_gradient(y, out, sample_weight=sample_weight)
            pred = out
        else:
            value, pred, grad = loss(y, out, sample_weight=sample_weight), out, None
        if weight != 1.0:
            value = float(value) * weight
            grad = None if grad is None else grad * grad.dtype.type(weight)
        return value, pred, [grad]
    total, preds, grads = 0.0, [], []
    for loss, weight, yk, out, f in zip(model._output_losses, model._loss_weights,
                                        y.arrays, outs, fused):
        grad = None
        if loss is None:
            pred = out
        elif f:
            value, pred, grad = loss.from_logits_value_and_gradient(
                yk, out, need_gradient=need_gradient, sample_weight=sample_weight)
            total += weight * float(value)
        elif need_gradient:
            value, grad = loss.value_and_gradient(yk, out, sample_weight=sample_weight)
            pred = out
            total += weight * float(value)
        else:
            pred = out
            total += weight * float(loss(yk, out, sample_weight=sample_weight))
        if grad is not None and weight != 1.0:
            grad = grad * grad.dtype.type(weight)
        preds.append(pred)
        grads.append(grad)
    return total, preds, grads


def train_step(model, x, y, sample_weight=None):
    """_train_step on one thread while other processes hold the cores
    (fastconv/_contention.py)."""
    with _contention.BatchThreads():
        return _train_step(model, x, y, sample_weight)


def _train_step(model, x, y, sample_weight=None):
    """Forward, loss, backward, update.  With regularizers (Keras 3's
    compute_loss): the loss is the compiled loss plus the weight penalties (of the
    weights before the update) plus each activity penalty (of the layer's output,
    divided by the batch size); the penalties' gradients are added to the weights'
    gradients and to the output gradients of the layers with activity
    regularizers; constraints are applied to the weights after the update
    (Keras: ``variable.assign(constraint(variable))``).  A layer with an activity
    regularizer ends its step (fastconv/fusion.py fuses no pair whose first layer
    has one), so its output is a step's output here.  The gradient hooks
    (model._gradient_hooks) see each layer as soon as its gradients are final."""
    regularized = model._regularized()
    fused = model._fused_outputs()
    plan = model._plan(_fusion.TRAINING, fused)
    penalty = model._weight_penalty() if regularized else 0.0
    activity = {} if regularized else None
    outs, caches = plan.forward(model._inputs_list(x), True, activity)
    loss, y_pred, grads = output_losses(model, y, outs, fused, sample_weight)
    preds = [y_pred] if not model._multi_output() else y_pred
    if regularized:
        penalty += sum(p[0] for p in activity.values())
        for k, (layer, f) in enumerate(zip(_output_layers(model), fused)):
            if f and layer.activity_regularizer is not None and grads[k] is not None:
                # the output's penalty, through the activation to the logits
                value, g = layer._activity_penalty(preds[k])
                penalty += value
                grads[k] = grads[k] + layer._act_backward(
                    np.ascontiguousarray(g, dtype=model.dtype), preds[k])
    grads = [None if g is None else np.ascontiguousarray(g, dtype=model.dtype)
             for g in grads]
    needs, wants = plan.graph.needs()
    plan.backward(grads, caches, needs, wants, model._gradient_hooks, activity,
                  release=True)
    del caches
    variables, gradients = [], []
    trained = model._trained_layers()
    for layer in trained:
        variables.extend(layer.trainable_weights)
        gradients.extend(layer._regularized_gradients() if regularized
                         else layer.trainable_gradients)
    if variables:
        model.optimizer.apply(gradients, variables)
        if regularized:
            for layer in trained:
                layer._apply_constraints()
    if regularized:
        return float(loss) + penalty, y_pred
    return loss, y_pred


def metric_fns(model, y, y_pred_shape):
    """The metric objects for targets like ``y`` and outputs of ``y_pred_shape``
    (made once per kind of targets: "accuracy" depends on it), reset.  With
    several outputs: each output's loss tracker and metrics (fastconv/_model_io.py)."""
    if isinstance(y, _model_io.Multi):
        key = tuple((a.ndim, a.shape[-1] if a.ndim else None, tuple(s[1:]))
                    for a, s in zip(y.arrays, y_pred_shape))
    else:
        key = (y.ndim, y.shape[-1] if y.ndim else None, tuple(y_pred_shape[1:]))
    metrics, made_for = model._metric_objects
    if made_for != key and isinstance(y, _model_io.Multi):
        metrics = _model_io.output_metrics(model, y, y_pred_shape)
        model._metric_objects = (metrics, key)
    elif made_for != key:
        metrics = _metrics.compile_metrics(model._metric_names, y.shape, y_pred_shape)
        weighted = _metrics.compile_metrics(model._weighted_metric_names, y.shape,
                                            y_pred_shape)
        names = {m.name for m in metrics}
        for metric in weighted:
            if metric.name in names:
                metric.name = f"weighted_{metric.name}"
            metric._fastconv_weighted = True
        metrics = metrics + weighted
        model._metric_objects = (metrics, key)
    for metric in metrics:
        metric.reset_state()
    return metrics


def update_metrics(metrics, y, y_pred, sample_weight):
    """Update the metrics with a batch; only the weighted_metrics get the sample
    weights (Keras 3's CompileMetrics)."""
    for metric in metrics:
        metric.update_state(
            y, y_pred, sample_weight=sample_weight
            if getattr(metric, "_fastconv_weighted", False) else None)


def evaluate_batches(model, data, where, method="evaluate"):
    """Loss and metrics over the batches of an adapter (fastconv/utils.py):
    the loss is the mean of the batches' (weighted) losses weighted by batch
    size, as Keras's loss tracker; the metrics get the sample weights."""
    loss_mean = _metrics.Mean(name="loss")
    arrays = isinstance(data, _utils.ArrayAdapter)
    metrics = None
    if arrays:
        metrics = model._metric_fns(data.y, model._check_x(data.x))
    fused = model._fused_outputs()
    logits = fused if any(fused) else False
    regularized = model._regularized()
    count = 0
    with data.epoch(None) as batches:
        for xb, yb, wb in batches:
            if not arrays:
                xb, yb, wb = _training.prepare_batch(model, xb, yb, wb, method, where)
                out_shape = model._check_x(xb)
                if metrics is None:
                    metrics = model._metric_fns(yb, out_shape)
            xb = model._cast(xb)
            activity = [] if regularized else None
            # (fused outputs: the loss from the logits, as in a training step)
            outs = model._infer(xb, logits=logits, activity=activity)
            value, pred, _ = output_losses(model, yb, outs, fused, wb,
                                           need_gradient=False)
            if regularized:
                preds = pred if model._multi_output() else [pred]
                value = float(value) + model._inference_penalty(activity, preds, fused)
            loss_mean.update_state(value, sample_weight=xb.shape[0])
            model._update_metrics(metrics, yb, pred, wb)
            count += 1
    model._clear_caches()
    if count == 0:
        raise ValueError(f"{method}(): {where} gave no batches (a generator already "
                         f"read to its end? give steps / validation_steps to read "
                         f"a fixed number of batches from it each time)")
    return _metrics.scalar_results(metrics, {"loss": loss_mean.result()})


def predict(model, x, batch_size=None, verbose="auto", steps=None):
    """Model.predict: the outputs for arrays ``x``, ``batch_size`` samples at a
    time, or for the batches of a generator or Sequence (predict_batches)."""
    verbose = _training.check_verbose(verbose)
    batch_size = _training.check_batch_size(batch_size)
    steps = _utils.check_steps(steps, "steps")
    data = _utils.adapter(x, batch_size=batch_size, steps=steps)
    if data is not None:
        return model._predict_batches(data, verbose)
    x = model._prepare_x(x)
    out_shape = model._check_x(x)
    shapes = [out_shape] if len(model.output_names) == 1 else out_shape
    n = x.shape[0]
    if steps is not None:
        n = min(n, steps * batch_size)
    outs = [np.empty((n,) + tuple(s[1:]), dtype=model.dtype) for s in shapes]
    for start in range(0, n, batch_size):
        for out, y in zip(outs, model._infer(model._cast(x[start:start + batch_size]))):
            out[start:start + batch_size] = y
    model._clear_caches()
    if verbose:
        steps = -(-n // batch_size)
        print(f"{steps}/{steps}")
    return model._structure(outs)


def predict_batches(model, data, verbose):
    """The outputs for the x of every batch of an adapter (fastconv/utils.py)."""
    outs = []
    with data.epoch(None) as batches:
        for xb, _, _ in batches:
            xb = model._prepare_x(xb)
            model._check_x(xb)
            outs.append([y.copy() for y in model._infer(model._cast(xb))])
    model._clear_caches()
    if not outs:
        raise ValueError("predict(): x gave no batches")
    if verbose:
        print(f"{len(outs)}/{len(outs)}")
    return model._structure([np.concatenate(ys) for ys in zip(*outs)])
