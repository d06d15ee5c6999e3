"""Canonical model weights: deterministic initialisation, wire bytes and hash (DESIGN §3, §5.2).

Weights are a list of float32 arrays in Keras' `model.get_weights()` order (see `ModelSpec.params`).
Their canonical bytes are the codec encoding of `[[dtype, shape, raw little-endian bytes], ...]`, and
`weights_hash` is the tagged SHA-256 of those bytes: that hash is what miners commit to and what state
records as the global model.

The genesis model must be bit-identical on every machine and every numpy version, so `initial_weights`
draws raw 64-bit words straight from PCG64 (a fixed algorithm, seeded through numpy's stable SeedSequence)
and turns them into uniforms with exact arithmetic, instead of relying on `Generator.uniform`, whose
stream numpy does not promise to keep.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pocl.ledger import codec
from pocl.ledger.arrays import array_from_plain, array_to_plain
from pocl.ledger.codec import CodecError
from pocl.ledger.hashing import TAG_WEIGHTS, tagged_hash
from pocl.ml.model.registry import ModelSpec

WEIGHT_DTYPE = np.dtype("<f4")
WEIGHT_DTYPE_NAME = "f4"
# Per-array framing overhead in the encoding (dtype string, shape ints, bin header) is far below this.
_FRAMING_SLACK_PER_ARRAY = 64


class WeightsError(CodecError):
    """Weights that are not a valid canonical model for the spec (wrong count, shape, dtype, non-finite)."""


def weight_shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    return [p.shape for p in spec.params()]


def _uniform_pm1(bitgen: np.random.PCG64, n: int) -> np.ndarray:
    """n float64 values uniform in [-1, 1), computed exactly from raw PCG64 words."""
    raw = bitgen.random_raw(n)
    u = (raw >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)  # exact: 53-bit / 2**53
    return u * 2.0 - 1.0  # exact in float64


def initial_weights(spec: ModelSpec, seed: int) -> list[np.ndarray]:
    """Deterministic Glorot-uniform kernels, zero biases, BN gamma=1/beta=0/mean=0/var=1 (float32)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError("seed must be a non-negative integer")
    bitgen = np.random.PCG64(seed)
    out: list[np.ndarray] = []
    for p in spec.params():
        n = math.prod(p.shape)
        if p.role == "kernel":
            limit = math.sqrt(6.0 / (p.fan_in + p.fan_out))
            arr = (_uniform_pm1(bitgen, n) * limit).astype(WEIGHT_DTYPE).reshape(p.shape)
        elif p.role in ("gamma", "moving_variance"):
            arr = np.ones(p.shape, dtype=WEIGHT_DTYPE)
        else:  # bias, beta, moving_mean
            arr = np.zeros(p.shape, dtype=WEIGHT_DTYPE)
        out.append(arr)
    return out


def _check_array(i: int, arr: Any) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise WeightsError(f"weight {i}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != WEIGHT_DTYPE and arr.dtype != WEIGHT_DTYPE.newbyteorder("="):
        raise WeightsError(f"weight {i}: dtype must be float32, got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise WeightsError(f"weight {i}: holds NaN or infinity")
    return arr


def encode_weights(weights: list[np.ndarray]) -> bytes:
    """Canonical bytes of a weight list (float32 little-endian, shapes as given)."""
    plain = [array_to_plain(_check_array(i, w)) for i, w in enumerate(weights)]
    return codec.encode(plain)


def weights_hash(weights: list[np.ndarray]) -> bytes:
    return tagged_hash(TAG_WEIGHTS, encode_weights(weights))


def encoded_size_limit(spec: ModelSpec) -> int:
    """An upper bound on the canonical encoding's size for `spec` (reject bigger inputs unread)."""
    shapes = weight_shapes(spec)
    return sum(math.prod(s) * WEIGHT_DTYPE.itemsize for s in shapes) + _FRAMING_SLACK_PER_ARRAY * (
        len(shapes) + 1
    )


def decode_weights(spec: ModelSpec, raw: bytes) -> list[np.ndarray]:
    """Parse canonical weight bytes for `spec`; raise WeightsError/CodecError on anything else.

    Sizes are bounded by the spec before decoding and every array's dtype and shape is compared with the
    spec before its array is built, so a peer cannot make us allocate more than the model's size.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise WeightsError("weights must be bytes")
    limit = encoded_size_limit(spec)
    if len(raw) > limit:
        raise WeightsError(f"weights encoding of {len(raw)} bytes exceeds {limit} for {spec.name}")
    value = codec.decode(bytes(raw), max_size=limit)
    shapes = weight_shapes(spec)
    if not isinstance(value, list) or len(value) != len(shapes):
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise WeightsError(f"{spec.name} has {len(shapes)} weight arrays, got {got}")
    out: list[np.ndarray] = []
    for i, (item, shape) in enumerate(zip(value, shapes)):
        if not isinstance(item, list) or len(item) != 3:
            raise WeightsError(f"weight {i}: expected [dtype, shape, bytes]")
        if item[0] != WEIGHT_DTYPE_NAME:
            raise WeightsError(f"weight {i}: dtype must be {WEIGHT_DTYPE_NAME!r}, got {item[0]!r}")
        if item[1] != list(shape):
            raise WeightsError(f"weight {i}: shape {item[1]!r} != expected {list(shape)}")
        try:
            arr = array_from_plain(item, max_bytes=math.prod(shape) * WEIGHT_DTYPE.itemsize)
        except WeightsError:
            raise
        except CodecError as exc:
            raise WeightsError(f"weight {i}: {exc}") from exc
        out.append(arr.copy())  # writable, independent of the input buffer
    return out


def check_weights(spec: ModelSpec, weights: list[np.ndarray]) -> None:
    """Raise WeightsError unless `weights` is a finite float32 list with exactly the spec's shapes."""
    shapes = weight_shapes(spec)
    if len(weights) != len(shapes):
        raise WeightsError(f"{spec.name} has {len(shapes)} weight arrays, got {len(weights)}")
    for i, (w, shape) in enumerate(zip(weights, shapes)):
        _check_array(i, w)
        if w.shape != shape:
            raise WeightsError(f"weight {i}: shape {w.shape} != expected {shape}")
