"""Reading an ONNX file as data: the protobuf, its tensors and their external data.

The file is parsed with ``onnx.load(path, load_external_data=False)``, so onnx reads
nothing but the file itself.  Every external data reference is then checked before
any of it is read: a relative location inside the model's folder (no absolute path,
no "..", no symbolic link out of the folder), a regular file, holding the bytes the
tensor declares.  A tensor's declared size is compared with the data the file really
holds before anything is allocated, so a tensor that claims 2^40 elements is an error,
not a 4 TiB allocation.
"""
import ntpath
import os
import stat

import numpy as np

__all__ = ["OnnxImportError", "read_model", "tensor_to_array", "MAX_TENSOR_BYTES"]

#: The largest tensor a file may hold (bytes); larger declarations are refused.
MAX_TENSOR_BYTES = 2 ** 33

# TensorProto data types -> (NumPy dtype, name of the typed field holding the values)
_TYPES = {
    1: (np.float32, "float_data"), 2: (np.uint8, "int32_data"),
    3: (np.int8, "int32_data"), 5: (np.int16, "int32_data"),
    6: (np.int32, "int32_data"), 7: (np.int64, "int64_data"),
    9: (np.bool_, "int32_data"), 10: (np.float16, "int32_data"),
    11: (np.float64, "double_data"), 12: (np.uint32, "uint64_data"),
    13: (np.uint64, "uint64_data"),
}


class OnnxImportError(ValueError):
    """An ONNX file fastconv cannot (or will not) turn into a model; the message names
    the file."""


def read_model(onnx, path):
    """The ModelProto of the file at path, its external data references checked (see
    the module docstring); OnnxImportError naming the file when it is not one."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no ONNX file at {path!r}")
    if not os.path.isfile(path):
        raise OnnxImportError(f"{path}: not a regular file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise OnnxImportError(f"{path}: not a readable ONNX model (truncated or corrupt "
                              f"protobuf: {type(exc).__name__}: {exc})") from None
    if not proto.HasField("graph") or not proto.graph.output:
        raise OnnxImportError(f"{path}: not an ONNX model (no graph with outputs; "
                              f"truncated or not an ONNX file?)")
    base = os.path.dirname(os.path.abspath(path))
    for tensor in _all_tensors(proto.graph):
        if tensor.data_location == 1:  # TensorProto.EXTERNAL
            _external_file(tensor, base, path)
    return proto


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices


def _external_info(tensor):
    info = {entry.key: entry.value for entry in tensor.external_data}
    return info.get("location", ""), info


def _external_file(tensor, base, path):
    """The real path of tensor's external data file, checked to be a regular file
    inside base (the model's folder)."""
    location, _ = _external_info(tensor)
    what = f"{path}: tensor {tensor.name!r}: external data location {location!r}"
    if not location:
        raise OnnxImportError(f"{what} is empty")
    parts = location.replace("\\", "/").split("/")
    if (os.path.isabs(location) or location.startswith(("/", "\\"))
            or ntpath.splitdrive(location)[0] or "\0" in location):
        raise OnnxImportError(f"{what} is absolute: external data must lie in the "
                              f"model's folder {base}")
    if ".." in parts:
        raise OnnxImportError(f"{what} leaves the model's folder {base} ('..')")
    real = os.path.realpath(os.path.join(base, *parts))
    real_base = os.path.realpath(base)
    if os.path.commonpath([real, real_base]) != real_base:
        raise OnnxImportError(f"{what} resolves to {real}, outside the model's folder "
                              f"{real_base} (a symbolic link?)")
    if not os.path.isfile(real):
        raise OnnxImportError(f"{what}: no regular file at {real}")
    return real


def _declared(tensor, path):
    """(dtype, shape, element count, bytes) the tensor declares, checked."""
    if tensor.data_type not in _TYPES:
        raise OnnxImportError(f"{path}: tensor {tensor.name!r} has data type "
                              f"{tensor.data_type}, which fastconv does not read")
    dtype = np.dtype(_TYPES[tensor.data_type][0])
    shape = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in shape):
        raise OnnxImportError(f"{path}: tensor {tensor.name!r} has negative dims {shape}")
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise OnnxImportError(f"{path}: tensor {tensor.name!r} declares shape {shape} "
                              f"({count} elements, {nbytes} bytes), over fastconv's "
                              f"limit of {MAX_TENSOR_BYTES} bytes per tensor")
    return dtype, shape, count, nbytes


def tensor_to_array(tensor, path):
    """A TensorProto as a new ndarray, its data checked against its declared shape
    before anything of that size is allocated."""
    dtype, shape, count, nbytes = _declared(tensor, path)
    name = f"{path}: tensor {tensor.name!r} of shape {shape}"
    if tensor.data_location == 1:
        base = os.path.dirname(os.path.abspath(path))
        raw = _read_external(tensor, base, path, nbytes)
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(
            shape)
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise OnnxImportError(f"{name} needs {nbytes} bytes of data, the file holds "
                                  f"{len(tensor.raw_data)}")
        return np.frombuffer(tensor.raw_data, dtype=dtype.newbyteorder("<")).astype(
            dtype).reshape(shape)
    field = _TYPES[tensor.data_type][1]
    values = getattr(tensor, field)
    if len(values) != count:
        raise OnnxImportError(f"{name} needs {count} values, the file holds "
                              f"{len(values)} ({field})")
    if tensor.data_type == 10:  # float16 stored as its bits in int32_data
        return np.array(values, dtype=np.uint16).view(np.float16).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def _read_external(tensor, base, path, nbytes):
    real = _external_file(tensor, base, path)
    location, info = _external_info(tensor)
    what = f"{path}: tensor {tensor.name!r}: external data {location!r}"
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else nbytes
    except ValueError:
        raise OnnxImportError(f"{what} has a non-integer offset or length") from None
    if offset < 0 or length != nbytes:
        raise OnnxImportError(f"{what}: offset {offset} and length {length} do not fit "
                              f"the tensor's {nbytes} bytes")
    with open(real, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OnnxImportError(f"{what}: not a regular file")
        if st.st_size < offset + nbytes:
            raise OnnxImportError(f"{what}: the file has {st.st_size} bytes, the tensor "
                                  f"needs {nbytes} from offset {offset}")
        f.seek(offset)
        buf = bytearray(nbytes)
        if f.readinto(buf) != nbytes:
            raise OnnxImportError(f"{what}: the file ended early")
        return buf
