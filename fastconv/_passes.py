"""The passes of a Sequential model over its steps (fastconv/fusion.py): the training
step (forward, loss, backward, one optimizer update; with regularizers or constraints,
their penalties and projections), the inference pass of predict and evaluate, and the
loops of evaluate and predict over batches, with the metrics they update.

Each function takes the model first; Sequential's methods of the same names (with a
leading underscore: ``_train_step``, ``_infer``, ``_evaluate_batches``, ...) delegate
here, and what these functions call on the model goes through its methods, so that a
method replaced on a model (a test's spy) is the one that runs.
"""
import numpy as np

from . import fusion as _fusion
from . import metrics as _metrics
from . import training as _training
from . import utils as _utils
from ._blas import _SerialBlas

__all__ = ["infer", "inference_penalty", "train_step", "train_step_regularized",
           "metric_fns", "update_metrics", "evaluate_batches", "predict",
           "predict_batches"]


def infer(model, x, logits=False, activity=None):
    """The forward pass of predict and evaluate (training False, every layer's cache
    cleared after, the result copied or reduced before the next pass) on the
    inference steps, where a layer and the pooling after it may run as one pass
    (fastconv/fusion.py: LeNet-5's C1 + S2 and C3 + S4), and the kernels' outputs
    reuse the arrays of the previous pass (fastconv/_arena.py).  With ``logits``
    the last layer stops before its activation (the fused loss).  With a list
    ``activity``, the activity penalties of the layers' outputs are appended to
    it."""
    steps = model._steps(_fusion.INFERENCE, logits)
    with model._pass_arena(), _SerialBlas():  # one BLAS region (fastconv/_blas.py)
        for step in steps:
            x = step.forward(x, False)
            if activity is not None:
                last = step.layers[-1]
                if last.activity_regularizer is not None and \
                        not getattr(step, "linear", False):
                    activity.append(last._activity_penalty(x)[0])
    return x


def inference_penalty(model, activity, pred, fused):
    """The regularization terms of an evaluation batch (Keras 3's test_step adds
    them to the loss as its train_step does): the weight penalties, the activity
    penalties _infer collected in ``activity``, and the output layer's on ``pred``
    where the loss was fused (its pass stopped at the logits)."""
    penalty = model._weight_penalty() + sum(activity)
    last = model._layers[-1]
    if fused and last.activity_regularizer is not None:
        penalty += last._activity_penalty(pred)[0]
    return penalty


def train_step(model, x, y, sample_weight=None):
    """Forward, loss, backward, update.  With regularizers (Keras 3's
    compute_loss): the loss is the compiled loss plus the weight penalties (of the
    weights before the update) plus each activity penalty (of the layer's output,
    divided by the batch size); the penalties' gradients are added to the weights'
    gradients and to the output gradients of the layers with activity
    regularizers; constraints are applied to the weights after the update
    (Keras: ``variable.assign(constraint(variable))``)."""
    if model._regularized():
        return model._train_step_regularized(x, y, sample_weight=sample_weight)
    fused = model._fused()
    steps = model._steps(_fusion.TRAINING, fused)
    out = x
    for step in steps:  # (a layer and the pooling after it may run as one pass)
        out = step.forward(out, True)
    if fused:
        loss, y_pred, grad = model.loss.from_logits_value_and_gradient(
            y, out, sample_weight=sample_weight)
    else:
        loss, grad = model.loss.value_and_gradient(y, out,
                                                   sample_weight=sample_weight)
        y_pred = out
    stop = model._first_trainable()
    grad = np.ascontiguousarray(grad, dtype=model.dtype)
    for step in reversed(steps):
        if step.indices[-1] < stop:
            break
        grad = step.backward(grad, stop)
    variables, grads = [], []
    for layer in model._layers:
        if layer.trainable:
            variables.extend(layer.trainable_weights)
            grads.extend(layer.trainable_gradients)
    if variables:
        model.optimizer.apply(grads, variables)
    return loss, y_pred


def train_step_regularized(model, x, y, sample_weight=None):
    """_train_step of a model with regularizers or constraints.  A layer with an
    activity regularizer ends its step (fastconv/fusion.py fuses no pair whose
    first layer has one), so its output is a step's output here."""
    fused = model._fused()
    steps = model._steps(_fusion.TRAINING, fused)
    penalty = model._weight_penalty()
    activity_grads = {}  # step position -> gradient of its output's penalty
    out = x
    for k, step in enumerate(steps):
        out = step.forward(out, True)
        last = step.layers[-1]
        if last.activity_regularizer is not None and not getattr(step, "linear",
                                                                  False):
            value, activity_grads[k] = last._activity_penalty(out)
            penalty += value
    if fused:
        loss, y_pred, grad = model.loss.from_logits_value_and_gradient(
            y, out, sample_weight=sample_weight)
        last = model._layers[-1]
        if last.activity_regularizer is not None:
            # the output's penalty, through the activation to the logits
            value, g = last._activity_penalty(y_pred)
            penalty += value
            grad = grad + last._act_backward(
                np.ascontiguousarray(g, dtype=model.dtype), y_pred)
    else:
        loss, grad = model.loss.value_and_gradient(y, out,
                                                   sample_weight=sample_weight)
        y_pred = out
    stop = model._first_trainable()
    grad = np.ascontiguousarray(grad, dtype=model.dtype)
    for k in range(len(steps) - 1, -1, -1):
        step = steps[k]
        if step.indices[-1] < stop:
            break
        if k in activity_grads:
            grad = grad + activity_grads[k]
        grad = step.backward(grad, stop)
    variables, grads = [], []
    trainable = [layer for layer in model._layers if layer.trainable]
    for layer in trainable:
        variables.extend(layer.trainable_weights)
        grads.extend(layer._regularized_gradients())
    if variables:
        model.optimizer.apply(grads, variables)
        for layer in trainable:
            layer._apply_constraints()
    return float(loss) + penalty, y_pred


def metric_fns(model, y, y_pred_shape):
    """The metric objects for targets like ``y`` and outputs of ``y_pred_shape``
    (made once per kind of targets: "accuracy" depends on it), reset."""
    key = (y.ndim, y.shape[-1] if y.ndim else None, tuple(y_pred_shape[1:]))
    metrics, made_for = model._metric_objects
    if made_for != key:
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
        metrics = model._metric_fns(data.y, model._check_shapes(data.x.shape))
    fused = model._fused()
    regularized = model._regularized()
    count = 0
    with data.epoch(None) as batches:
        for xb, yb, wb in batches:
            if not arrays:
                xb, yb, wb = _training.prepare_batch(model, xb, yb, wb, method, where)
                out_shape = model._check_shapes(xb.shape)
                if metrics is None:
                    metrics = model._metric_fns(yb, out_shape)
            xb = model._cast(xb)
            activity = [] if regularized else None
            if fused:  # the loss from the logits, as in a training step
                value, pred, _ = model.loss.from_logits_value_and_gradient(
                    yb, model._infer(xb, logits=True, activity=activity),
                    need_gradient=False, sample_weight=wb)
            else:
                pred = model._infer(xb, activity=activity)
                value = model.loss(yb, pred, sample_weight=wb)
            if regularized:
                value = float(value) + model._inference_penalty(activity, pred, fused)
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
    """Sequential.predict: the outputs for arrays ``x``, ``batch_size`` samples at a
    time, or for the batches of a generator or Sequence (predict_batches)."""
    verbose = _training.check_verbose(verbose)
    batch_size = _training.check_batch_size(batch_size)
    steps = _utils.check_steps(steps, "steps")
    data = _utils.adapter(x, batch_size=batch_size, steps=steps)
    if data is not None:
        return model._predict_batches(data, verbose)
    x = model._prepare_x(x)
    out_shape = model._check_shapes(x.shape)
    n = x.shape[0]
    if steps is not None:
        n = min(n, steps * batch_size)
    out = np.empty((n,) + tuple(out_shape[1:]), dtype=model.dtype)
    for start in range(0, n, batch_size):
        out[start:start + batch_size] = model._infer(
            model._cast(x[start:start + batch_size]))
    model._clear_caches()
    if verbose:
        steps = -(-n // batch_size)
        print(f"{steps}/{steps}")
    return out


def predict_batches(model, data, verbose):
    """The outputs for the x of every batch of an adapter (fastconv/utils.py)."""
    outs = []
    with data.epoch(None) as batches:
        for xb, _, _ in batches:
            xb = model._prepare_x(xb)
            model._check_shapes(xb.shape)
            outs.append(model._infer(model._cast(xb)).copy())
    model._clear_caches()
    if not outs:
        raise ValueError("predict(): x gave no batches")
    if verbose:
        print(f"{len(outs)}/{len(outs)}")
    return np.concatenate(outs)
