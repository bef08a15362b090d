"""predict over a Dask array: one task per chunk of samples, on whatever scheduler
runs the graph (threads, a LocalCluster, a real cluster).

The model travels as the bytes of its file (fastconv/saving.py: no pickle of
objects), once: with a distributed Client they are scattered to every worker
(broadcast); otherwise they are the result of one task that every chunk's task depends
on, moved once to each worker that needs it.  A worker loads the model once per
thread (a model's passes keep per-layer caches) and keeps it while the bytes'
token is the same.

The chunks are re-cut so that each one except the last holds a multiple of
``batch_size`` samples: the batches a chunk's task runs are then exactly the
batches ``model.predict(x, batch_size)`` runs on the whole array, and the results are
the same bit for bit.
"""
import hashlib
import os
import tempfile
import threading

import numpy as np

__all__ = ["predict", "chunk_sizes"]

_local = threading.local()
_loads = [0]  # models loaded in this process (a test checks one per worker thread)


def _dask_array():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError("fastconv.distributed.predict needs dask: pip install "
                          f"'fastconv[dask]' ({exc})") from None
    return dask, da


def _model_bytes(model):
    from ..saving import save_model
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        save_model(model, path)
        with open(path, "rb") as f:
            return f.read()


def _load(data, token):
    """The model of ``data`` for this thread (loaded on first use)."""
    cached = getattr(_local, "model", None)
    if cached is not None and cached[0] == token:
        return cached[1]
    from ..saving import load_model
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        with open(path, "wb") as f:
            f.write(data)
        model = load_model(path, compile=False)
    _loads[0] += 1
    _local.model = (token, model)
    return model


def _identity(x):
    return x


def _predict_chunk(data, token, block, batch_size):
    model = _load(data, token)
    return model.predict(np.asarray(block), batch_size=batch_size, verbose=0)


def chunk_sizes(n, chunk, batch_size):
    """Chunk lengths along the samples: ``chunk`` rounded to a multiple of
    ``batch_size`` (at least one batch), the last one holding the rest."""
    step = max(batch_size, (chunk // batch_size) * batch_size)
    sizes = [step] * (n // step)
    if n % step:
        sizes.append(n % step)
    return tuple(sizes)


def predict(model, x, batch_size=32, client=None):
    """The model's outputs for the Dask array ``x`` (samples on axis 0), as a Dask
    array chunked along the samples (call ``.compute()`` or store it).

    Equal bit for bit to ``model.predict(x.compute(), batch_size=batch_size)``.
    ``client``: a ``distributed.Client`` to scatter the model to (default: the
    current client if there is one, else the model is one task of the graph).
    """
    dask, da = _dask_array()
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array, got {type(x).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if x.ndim < 2 or any(np.isnan(c) for c in x.shape):
        raise ValueError(f"x must have known dimensions, samples first, got shape "
                         f"{x.shape}")
    if not model.built:
        model.build((None,) + tuple(x.shape[1:]))
    out_shape = model._check_shapes((None,) + tuple(x.shape[1:]))
    n = int(x.shape[0])
    sizes = chunk_sizes(n, max(x.chunks[0]), int(batch_size))
    x = x.rechunk((sizes,) + tuple(-1 for _ in x.shape[1:]))
    data = _model_bytes(model)
    token = hashlib.sha256(data).hexdigest()
    if client is None:
        try:
            from distributed import get_client
            client = get_client()
        except (ImportError, ValueError):
            client = None
    if client is not None:
        shipped = client.scatter(data, broadcast=True, hash=True)
    else:
        shipped = dask.delayed(_identity, pure=True)(data)
    blocks = x.to_delayed().reshape(-1)
    parts = []
    for block, rows in zip(blocks, sizes):
        out = dask.delayed(_predict_chunk, pure=True)(shipped, token, block,
                                                      int(batch_size))
        parts.append(da.from_delayed(out, shape=(rows,) + tuple(out_shape[1:]),
                                     dtype=model.dtype))
    return da.concatenate(parts, axis=0)
