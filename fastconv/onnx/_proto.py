"""The onnx package, imported on first use, and the pieces both directions share."""
import importlib

import numpy as np

__all__ = ["require_onnx", "OPSET_RANGE", "check_opset", "FLOAT_TYPES", "inverse", "BATCH"]

#: Stands for an unknown batch size in folded shape arithmetic (Shape of a runtime
#: tensor whose batch axis has no fixed size).
BATCH = 2 ** 31 - 1

#: The opsets export writes (and load is tested on).
OPSET_RANGE = (13, 21)

# ONNX TensorProto data types -> NumPy dtypes (the values of onnx.TensorProto.*).
FLOAT_TYPES = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}


def require_onnx():
    """The onnx module, or an ImportError that names the extra to install."""
    try:
        return importlib.import_module("onnx")
    except ImportError as exc:
        raise ImportError("fastconv.onnx needs the onnx package: pip install "
                          "\"fastconv[onnx]\" (or pip install onnx)") from exc


def check_opset(opset):
    low, high = OPSET_RANGE
    if isinstance(opset, (bool, np.bool_)) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int in [{low}, {high}], got {opset!r}")
    if not low <= opset <= high:
        raise ValueError(f"opset must be in [{low}, {high}], got {opset!r}")
    return int(opset)


def inverse(perm):
    """The inverse of a permutation (a tuple)."""
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)
