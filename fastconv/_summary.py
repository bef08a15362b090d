"""Sequential.summary: the Keras-like table of a model's layers, with the algorithm
each Conv2D's forward runs and the passes fastconv/fusion.py fuses."""
from . import fusion as _fusion
from .layers import Conv2D

__all__ = ["summary"]


def _readable_size(nbytes):
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024.0


def summary(model, line_length=None, print_fn=None):
    """Sequential.summary: print the table through ``print_fn`` (print)."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: call build("
                         "input_shape), give the first layer input_shape=..., or "
                         "fit/call it on data first")
    rows = [("Layer (type)", "Output Shape", "Param #", "Conv forward (batch 32)")]
    for step in model._steps():
        layer = step.layer
        algorithm = (_fusion.forward_algorithm(layer, step.winograd_tile())
                     if isinstance(layer, Conv2D) else "")
        rows.append((f"{layer.name} ({type(layer).__name__})",
                     str(layer.output_shape), f"{layer.count_params():,}", algorithm))
    widths = [max(32, max(len(r[0]) for r in rows) + 3),
              max(24, max(len(r[1]) for r in rows) + 2),
              max(12, max(len(r[2]) for r in rows) + 1),
              max(len(r[3]) for r in rows) + 2]
    if line_length is not None:
        widths[0] = max(line_length - sum(widths[1:]), 20)
    total = sum(widths)
    lines = [f'Model: "{model.name}"', "_" * total]

    def fmt(row):
        name, shape, count, algorithm = row
        return (f" {name:<{widths[0] - 1}}{shape:<{widths[1]}}{count:>{widths[2]}}"
                f"  {algorithm}").rstrip()
    lines.append(fmt(rows[0]))
    lines.append("=" * total)
    for i, row in enumerate(rows[1:]):
        lines.append(fmt(row))
        lines.append("_" * total if i < len(rows) - 2 else "=" * total)
    if len(rows) == 1:
        lines.append("=" * total)
    trainable = sum(w.size for w in model.trainable_weights)
    frozen = sum(w.size for w in model.non_trainable_weights)
    tbytes = sum(w.nbytes for w in model.trainable_weights)
    fbytes = sum(w.nbytes for w in model.non_trainable_weights)
    lines.append(f"Total params: {trainable + frozen:,} "
                 f"({_readable_size(tbytes + fbytes)})")
    lines.append(f"Trainable params: {trainable:,} ({_readable_size(tbytes)})")
    lines.append(f"Non-trainable params: {frozen:,} ({_readable_size(fbytes)})")
    for label, mode, logits in (("predict / evaluate", _fusion.INFERENCE, False),
                                ("training", _fusion.TRAINING,
                                 bool(model._layers) and model._fused())):
        fused = [f"{step.name}: {step.pattern.name}"
                 for step in model._steps(mode, logits) if step.pattern is not None]
        lines.append(f"Fused steps, {label}:" + ("" if fused else " none"))
        lines.extend(f"  {name}" for name in fused)
    lines.append("_" * total)
    out = print_fn or print
    for line in lines:
        out(line)
