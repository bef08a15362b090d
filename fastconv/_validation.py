"""Input checking shared by every public op: arrays, dtypes, layouts.

The dtype policy (documented in the README and tested in tests/test_validation.py):

- float32 and float64 are kept as given; every array of one call must share the same
  floating dtype, otherwise a TypeError names the arguments (no silent up- or down-cast,
  as in PyTorch).
- bool and integer arrays are converted to the floating dtype of the call's other
  arrays, or to float64 when no argument is floating (NumPy's rule for true division).
- float16, complex, object and any other dtype raise a TypeError saying what to cast to.
"""
import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
DATA_FORMATS = ("channels_first", "channels_last")


def as_array(value, name):
    """np.asarray with a clear TypeError for things that are not numeric arrays."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}: "
                        f"{exc}") from None
    kind = arr.dtype.kind
    if kind not in "biuf" or (kind == "f" and arr.dtype not in _FLOATS):
        raise TypeError(f"{name} must be float32 or float64 (bool and integer arrays are "
                        f"converted), got dtype {arr.dtype}; cast it with "
                        f"{name}.astype(np.float32)")
    return arr


def common_float_dtype(arrays):
    """The floating dtype a call computes in, per the policy above.

    ``arrays`` maps argument names to arrays that passed :func:`as_array` (None skipped).
    """
    floats = {name: a.dtype for name, a in arrays.items()
              if a is not None and a.dtype.kind == "f"}
    kinds = set(floats.values())
    if len(kinds) > 1:
        listed = ", ".join(f"{n} is {d}" for n, d in floats.items())
        raise TypeError(f"all floating arguments must share one dtype, got {listed}; "
                        "cast them to float32 or float64 first")
    return kinds.pop() if kinds else np.dtype(np.float64)


def prepare(value, name, ndim, dtype):
    """Return a C-contiguous array of ``dtype`` (copied only when needed)."""
    arr = value if isinstance(value, np.ndarray) else as_array(value, name)
    check_ndim(arr, name, ndim)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_ndim(arr, name, ndim, what=None):
    if arr.ndim != ndim:
        what = what or f"a {ndim}-D array"
        raise ValueError(f"{name} must be {what}, got an array of shape {arr.shape}")


def check_data_format(data_format):
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last', "
                         f"got {data_format!r}")
    return data_format


def check_int(value, name, minimum=1):
    """Return ``value`` as an int >= minimum, or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)
