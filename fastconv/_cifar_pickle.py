"""CIFAR-10's batch files are pickles: this reads them with an unpickler that admits
only what those files hold (dicts, lists, bytes, ints and plain uint8 NumPy arrays), so a
hostile file cannot run code (``datasets.load_cifar10``)."""
import io
import math
import pickle

import numpy as np

__all__ = ["unpickle_batch"]


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something a CIFAR-10 batch never holds."""


class _NDArrayToken:
    """Stands in for ``numpy.ndarray`` inside a pickle: only ``_reconstruct`` accepts it."""

    def __call__(self, *args, **kwargs):
        raise _Refused("calling numpy.ndarray is not allowed here")

    def __repr__(self):
        return "<numpy.ndarray token>"


_NDARRAY = _NDArrayToken()


class _UInt8Token:
    """Stands in for ``numpy.dtype('u1')``; its pickled state may only describe uint8."""

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5 or any(
                v is not None for v in state[2:5]):
            raise _Refused(f"only plain uint8 dtypes are allowed, got "
                                         f"state {state!r:.80}")


class _ArrayBuilder:
    """Receives the pickled state of an ndarray and builds a uint8 array from raw bytes
    (numpy's own __setstate__ never sees untrusted state)."""

    array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed ndarray state")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _UInt8Token):
            raise _Refused("only uint8 arrays are allowed")
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        self.array = _array_from_bytes(raw, shape, "F" if fortran else "C")


def _array_from_bytes(raw, shape, order):
    if not isinstance(raw, (bytes, bytearray, pickle.PickleBuffer)):
        raise _Refused(f"array data must be bytes, got {type(raw).__name__}")
    if not (isinstance(shape, tuple) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise _Refused(f"array shape must be a tuple of ints, got {shape!r:.80}")
    raw = bytes(raw)
    if len(raw) != math.prod(shape):  # Python ints: no wrap-around on hostile shapes
        raise _Refused(f"array data holds {len(raw)} bytes, shape {shape} "
                       f"needs {math.prod(shape)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape, order=order).copy()


def _safe_encode(obj, encoding="utf-8"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(
            f"_codecs.encode is only allowed as (str, 'latin1'), got "
            f"({type(obj).__name__}, {encoding!r:.40})")
    return obj.encode("latin1")


def _safe_dtype(spec, align=False, copy=False):
    if spec not in ("u1", b"u1", "|u1", b"|u1", "uint8", b"uint8"):
        raise _Refused(f"only uint8 arrays are allowed, got dtype {spec!r:.40}")
    return _UInt8Token()


def _safe_reconstruct(subtype, shape, typecode):
    if subtype is not _NDARRAY:
        raise _Refused(f"only plain numpy arrays are allowed, got "
                                     f"{subtype!r:.60}")
    return _ArrayBuilder()


def _safe_frombuffer(buf, dtype, shape, order):
    # numpy's reduction for pickle protocol 5
    if not isinstance(dtype, _UInt8Token):
        raise _Refused("only uint8 arrays are allowed")
    return _array_from_bytes(buf, shape, "F" if order == "F" else "C")


def _finish(obj):
    return obj.array if isinstance(obj, _ArrayBuilder) else obj


_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _safe_encode,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits dicts, lists, tuples, str/bytes, numbers and plain uint8 ndarrays only."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(
                f"forbidden global {module}.{name} (CIFAR-10 batches hold only dicts, "
                f"lists, bytes, ints and uint8 arrays)") from None

    def persistent_load(self, pid):
        raise _Refused("persistent ids are not allowed")


def unpickle_batch(blob, where):
    try:
        obj = _RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except _Refused as exc:
        raise ValueError(f"{where}: refused to load pickle: {exc}") from None
    except Exception as exc:  # truncated or garbage pickle streams raise many types
        raise ValueError(f"{where}: not a valid CIFAR-10 batch pickle "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a dict, the pickle holds a "
                         f"{type(obj).__name__}")
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): _finish(v)
             for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{where}: missing key {key!r} "
                             f"(keys: {sorted(map(str, batch))})")
    labels, data = batch["labels"], batch["data"]
    if not isinstance(labels, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10 for v in labels):
        raise ValueError(f"{where}: 'labels' must be a list of ints in [0, 9]")
    n = len(labels)
    if isinstance(data, (bytes, bytearray)):
        if len(data) != n * 3072:
            raise ValueError(f"{where}: 'data' holds {len(data)} bytes, {n} labels need "
                             f"{n * 3072}")
        data = np.frombuffer(bytes(data), dtype=np.uint8).reshape(n, 3072)
    elif isinstance(data, np.ndarray):
        if type(data) is not np.ndarray or data.dtype != np.uint8 or data.dtype.fields:
            raise ValueError(f"{where}: 'data' must be a uint8 array, got {data.dtype}")
        if data.shape != (n, 3072):
            raise ValueError(f"{where}: 'data' has shape {data.shape}, expected "
                             f"({n}, 3072) for {n} labels")
    else:
        raise ValueError(f"{where}: 'data' must be a uint8 array or bytes, got "
                         f"{type(data).__name__}")
    # rows hold the R, G, B planes of a 32x32 image: (N, 3, 32, 32) -> (N, 32, 32, 3)
    x = np.ascontiguousarray(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, np.asarray(labels, dtype=np.uint8).reshape(n, 1)
