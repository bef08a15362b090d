"""Model.summary: the Keras-like table of a model's layers, with the algorithm each
Conv2D's forward runs and the passes fastconv/fusion.py fuses; for a functional model
(a graph), Keras's "Connected to" column: the tensors each layer reads, as
``layer[call][0]``."""
from . import fusion as _fusion
from .layers import Conv2D

__all__ = ["summary"]


def _readable_size(nbytes):
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024.0


def _algorithm(layer, tile):
    return _fusion.forward_algorithm(layer, tile) if isinstance(layer, Conv2D) else ""


def _graph_rows(model):
    """The rows of a functional model: every layer in Keras's order, with the
    tensors its calls read."""
    calls = {}
    for node in model._calls:
        calls.setdefault(node.layer, []).append(node)
    tiles = {step.layer: step.winograd_tile() for step in model._steps()}
    index = {}
    for layer in model._layers:
        for k, node in enumerate(n for n in layer._inbound_nodes
                                 if n in calls.get(layer, ()) or n.is_input):
            index[node] = k
    rows = [("Layer (type)", "Output Shape", "Param #", "Connected to",
             "Conv forward (batch 32)")]
    for layer in model._layers:
        nodes = calls.get(layer, [])
        reads = [f"{t.name}[{index[t.node]}][0]" for n in nodes for t in n.inputs]
        shape = layer.output_shape if nodes else (None,) + tuple(layer.shape)
        rows.append((f"{layer.name} ({type(layer).__name__})", str(shape),
                     f"{layer.count_params():,}", ", ".join(reads) or "-",
                     _algorithm(layer, tiles.get(layer))))
    return rows


def summary(model, line_length=None, print_fn=None):
    """Model.summary: print the table through ``print_fn`` (print)."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built yet: call build("
                         "input_shape), give the first layer input_shape=..., or "
                         "fit/call it on data first")
    graph = hasattr(model, "_calls")
    if graph:
        rows = _graph_rows(model)
    else:
        rows = [("Layer (type)", "Output Shape", "Param #", "Conv forward (batch 32)")]
        for step in model._steps():
            layer = step.layer
            rows.append((f"{layer.name} ({type(layer).__name__})",
                         str(layer.output_shape), f"{layer.count_params():,}",
                         _algorithm(layer, step.winograd_tile())))
    widths = [max(32, max(len(r[0]) for r in rows) + 3),
              max(24, max(len(r[1]) for r in rows) + 2),
              max(12, max(len(r[2]) for r in rows) + 1)] + \
        [max(len(r[k]) for r in rows) + 2 for k in range(3, len(rows[0]))]
    if line_length is not None:
        widths[0] = max(line_length - sum(widths[1:]), 20)
    total = sum(widths)
    lines = [f'Model: "{model.name}"', "_" * total]

    def fmt(row):
        name, shape, count, *rest = row
        text = f" {name:<{widths[0] - 1}}{shape:<{widths[1]}}{count:>{widths[2]}}"
        for width, cell in zip(widths[3:], rest):
            text += f"  {cell:<{width - 2}}"
        return text.rstrip()
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
                                 bool(model._layers) and model._fused_outputs())):
        fused = [f"{step.name}: {step.pattern.name}"
                 for step in model._steps(mode, logits) if step.pattern is not None]
        lines.append(f"Fused steps, {label}:" + ("" if fused else " none"))
        lines.extend(f"  {name}" for name in fused)
    lines.append("_" * total)
    out = print_fn or print
    for line in lines:
        out(line)
