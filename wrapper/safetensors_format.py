"""The safetensors file format, written and read with numpy alone.

.venv (transformers 2.8.0) has no `safetensors` package, and current transformers prefers
`model.safetensors`. The format is small and documented: an 8-byte little-endian header
length N, N bytes of JSON (`{"__metadata__": {...}, name: {"dtype", "shape",
"data_offsets": [begin, end]}}`, offsets relative to the end of the header), then the raw
little-endian tensor bytes, packed in offset order without gaps.
"""
import collections
import json
import struct

import numpy as np

_DTYPES = collections.OrderedDict([
    ("F64", np.float64), ("F32", np.float32), ("F16", np.float16),
    ("I64", np.int64), ("I32", np.int32), ("I16", np.int16), ("I8", np.int8),
    ("U8", np.uint8), ("BOOL", np.bool_),
])
_CODES = {np.dtype(t): code for code, t in _DTYPES.items()}
_ALIGN = 8  # the reference library pads the header so the data starts 8-byte aligned


def save(tensors, path, metadata=None):
    """Writes an ordered mapping name -> numpy array as a safetensors file."""
    header = collections.OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, array in tensors.items():
        array = np.asarray(array)
        code = _CODES.get(array.dtype)
        if code is None:
            raise ValueError("safetensors: tensor %s has unsupported dtype %s"
                             % (name, array.dtype))
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(len(text) + 8) % _ALIGN)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def load(path):
    """(OrderedDict name -> numpy array, metadata dict); checks the layout as the library does."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("safetensors: %s is too short" % path)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length].decode("utf-8"))
    buffer = memoryview(raw)[8 + length:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors, end = collections.OrderedDict(), 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, stop = entry["data_offsets"]
        if begin != end:
            raise ValueError("safetensors: %s: tensor %s does not follow the previous one"
                             % (path, name))
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        if stop - begin != count * dtype.itemsize:
            raise ValueError("safetensors: %s: tensor %s has %d bytes for shape %s"
                             % (path, name, stop - begin, entry["shape"]))
        tensors[name] = np.frombuffer(buffer[begin:stop], dtype=dtype).reshape(entry["shape"])
        end = stop
    if end != len(buffer):
        raise ValueError("safetensors: %s has %d bytes after the last tensor"
                         % (path, len(buffer) - end))
    return collections.OrderedDict(sorted(tensors.items())), metadata
