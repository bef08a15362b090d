"""Training curves, confusion matrices and optimisation histories as PNG files (needs
matplotlib: ``pip install fastconv[plot]``)."""
import os

__all__ = ["MATPLOTLIB_HINT", "require_matplotlib", "plot_history", "plot_confusion_matrix",
           "plot_optimization_history"]

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


def plot_confusion_matrix(matrix, path, class_names=None, title=None):
    """Draw a confusion matrix (rows true classes, columns predicted, counts in the
    cells) to the PNG file ``path``; returns the path written."""
    import numpy as np
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"matrix must be a square (K, K) array, got shape {m.shape}")
    k = m.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names for {k} classes")
    path = os.fspath(path)
    plt = require_matplotlib()
    size = max(4.0, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size), constrained_layout=True)
    image = ax.imshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    top = m.max() if m.size else 0.0
    for i in range(k):
        for j in range(k):
            value = m[i, j]
            text = f"{value:.0f}" if float(value).is_integer() else f"{value:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if top and value > top / 2 else "black")
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_optimization_history(study, path, title=None, value_label="objective value"):
    """Draw an Optuna study's objective value per trial and the best value so far to
    the PNG file ``path`` (pruned and failed trials are left out); returns the path."""
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not trials:
        raise ValueError("the study has no completed trial to plot")
    path = os.fspath(path)
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator
    maximize = study.direction.name == "MAXIMIZE"
    numbers = [t.number + 1 for t in trials]
    values = [float(t.value) for t in trials]
    best, running = [], None
    for v in values:
        running = v if running is None else (max(running, v) if maximize
                                             else min(running, v))
        best.append(running)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(numbers, values, "o", label="trial")
    ax.step(numbers, best, "-", where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(value_label)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "optimisation history")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
