"""Training curves as a PNG (needs matplotlib: ``pip install fastconv[plot]``)."""
import os

__all__ = ["MATPLOTLIB_HINT", "require_matplotlib", "plot_history"]

MATPLOTLIB_HINT = ("plotting needs matplotlib, an optional extra: "
                   "pip install 'fastconv[plot]' (or pip install matplotlib)")


def require_matplotlib():
    """Import matplotlib with a file-only backend, or raise ImportError saying how to
    install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MATPLOTLIB_HINT) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _history_dict(history):
    h = getattr(history, "history", history)
    if not isinstance(h, dict):
        raise TypeError(f"history must be a History or a dict of per-epoch lists, "
                        f"got {type(history).__name__}")
    return h


def plot_history(history, path, title=None, val_label="validation"):
    """Write the loss and accuracy curves of ``history`` to the PNG file ``path``.

    ``history`` is a :class:`History` (``model.fit``'s result) or its ``.history`` dict:
    per-epoch lists under "loss", "accuracy" and optionally "val_loss", "val_accuracy".
    ``val_label`` names the validation curves in the legend (e.g. "test"). Returns the
    path written.
    """
    h = _history_dict(history)
    if not h.get("loss"):
        raise ValueError(f"history has no 'loss' values to plot (keys: {sorted(h)})")
    path = os.fspath(path)
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, name, style in (("", "train", "o-"), ("val_", val_label, "s--")):
            values = h.get(prefix + key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, [float(v) for v in values], style, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
