"""Numeric arrays on the wire as `[dtype, shape, raw bytes]` (DESIGN §3).

Sizes are checked against the declared dtype and shape before any allocation, and only a short
allow-list of little-endian dtypes is accepted: a peer can never make us unpickle or over-allocate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pocl.ledger.codec import CodecError

ALLOWED_DTYPES: dict[str, np.dtype] = {
    "f4": np.dtype("<f4"),
    "f8": np.dtype("<f8"),
    "i8": np.dtype("<i8"),
    "i4": np.dtype("<i4"),
    "u1": np.dtype("u1"),
    "u2": np.dtype("<u2"),
}
MAX_ARRAY_BYTES = 64 * 1024 * 1024
MAX_NDIM = 8


def _dtype_name(arr: np.ndarray) -> str:
    for name, dt in ALLOWED_DTYPES.items():
        if arr.dtype == dt or arr.dtype == dt.newbyteorder("="):
            return name
    raise CodecError(f"dtype not allowed on the wire: {arr.dtype}")


def array_to_plain(arr: np.ndarray) -> list[Any]:
    name = _dtype_name(arr)
    if arr.ndim > MAX_NDIM:
        raise CodecError("too many dimensions")
    data = np.ascontiguousarray(arr, dtype=ALLOWED_DTYPES[name]).tobytes()
    return [name, [int(d) for d in arr.shape], data]


def array_from_plain(value: Any, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    if not isinstance(value, list) or len(value) != 3:
        raise CodecError("array must be [dtype, shape, bytes]")
    name, shape, data = value
    if not isinstance(name, str) or name not in ALLOWED_DTYPES:
        raise CodecError(f"dtype not allowed: {name!r}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise CodecError("bad array shape")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise CodecError("array shape entries must be non-negative integers")
    if not isinstance(data, bytes):
        raise CodecError("array data must be bytes")
    dtype = ALLOWED_DTYPES[name]
    expected = math.prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise CodecError(f"array of {expected} bytes exceeds limit {max_bytes}")
    if len(data) != expected:
        raise CodecError(f"array data is {len(data)} bytes, shape needs {expected}")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise CodecError("array holds NaN or infinity")
    return arr
