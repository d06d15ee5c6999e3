"""Canonical weights: deterministic init, golden hash, byte round trip and strict decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pocl.ledger import codec
from pocl.ledger.arrays import array_to_plain
from pocl.ledger.codec import CodecError
from pocl.ml.model.registry import get_model, model_names
from pocl.ml.model.weights import (
    WeightsError,
    decode_weights,
    encode_weights,
    initial_weights,
    weight_shapes,
    weights_hash,
)

# Pinned: the genesis model of a cnn-digits chain with seed 0. If this changes, every existing chain's
# genesis model hash changes with it.
GOLDEN_DIGITS_SEED0 = "c43d679a7c185e0935903ea9d822b73f171c977e760db41d674a5f5fe001fe99"

DIGITS = get_model("cnn-digits")


def test_golden_hash_of_initial_digits_model() -> None:
    assert weights_hash(initial_weights(DIGITS, seed=0)).hex() == GOLDEN_DIGITS_SEED0


@pytest.mark.parametrize("name", model_names())
def test_initial_weights_layout_and_init(name: str) -> None:
    spec = get_model(name)
    w = initial_weights(spec, seed=7)
    assert [a.shape for a in w] == weight_shapes(spec)
    assert all(a.dtype == np.float32 for a in w)
    for p, a in zip(spec.params(), w):
        if p.role == "kernel":
            limit = math.sqrt(6.0 / (p.fan_in + p.fan_out))
            assert np.abs(a).max() <= limit
            assert np.abs(a).max() > 0.9 * limit  # actually spread over the range
            assert abs(float(a.mean())) < 0.1 * limit
        elif p.role in ("gamma", "moving_variance"):
            assert np.all(a == 1.0)
        else:
            assert np.all(a == 0.0)


def test_initial_weights_deterministic_and_seeded() -> None:
    a = initial_weights(DIGITS, seed=3)
    b = initial_weights(DIGITS, seed=3)
    c = initial_weights(DIGITS, seed=4)
    assert encode_weights(a) == encode_weights(b)
    assert weights_hash(a) != weights_hash(c)
    with pytest.raises(ValueError):
        initial_weights(DIGITS, seed=-1)


def test_round_trip_and_hash() -> None:
    w = initial_weights(get_model("pocl-cifar10"), seed=1)
    raw = encode_weights(w)
    back = decode_weights(get_model("pocl-cifar10"), raw)
    assert all(x.dtype == np.float32 and np.array_equal(x, y) for x, y in zip(back, w))
    assert encode_weights(back) == raw
    back[0][0, 0, 0, 0] += 1.0  # decoded arrays are writable copies
    assert weights_hash(back) != weights_hash(w)


def _raw_with(items: list) -> bytes:
    return codec.encode(items)


def test_decode_rejects_wrong_count_shape_dtype() -> None:
    w = initial_weights(DIGITS, seed=0)
    plain = [array_to_plain(a) for a in w]
    with pytest.raises(WeightsError, match="weight arrays"):
        decode_weights(DIGITS, _raw_with(plain[:-1]))
    swapped = [*plain]
    swapped[0], swapped[2] = swapped[2], swapped[0]
    with pytest.raises(WeightsError, match="shape"):
        decode_weights(DIGITS, _raw_with(swapped))
    as_f8 = [*plain]
    as_f8[1] = array_to_plain(w[1].astype(np.float64))
    with pytest.raises(WeightsError, match="dtype"):
        decode_weights(DIGITS, _raw_with(as_f8))
    with pytest.raises(WeightsError, match="shape"):
        decode_weights(get_model("cnn-mnist"), encode_weights(w))


def test_decode_rejects_shape_before_allocating() -> None:
    # A huge declared shape with tiny data must fail on the shape check, not on allocation.
    w = initial_weights(DIGITS, seed=0)
    plain = [array_to_plain(a) for a in w]
    plain[2] = ["f4", [10**9, 10**9], b"\x00" * 16]
    with pytest.raises(WeightsError, match="shape"):
        decode_weights(DIGITS, _raw_with(plain))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_rejects_non_finite(bad: float) -> None:
    w = initial_weights(DIGITS, seed=0)
    plain = [array_to_plain(a) for a in w]
    poisoned = w[4].copy()
    poisoned[3, 2] = bad
    plain[4] = ["f4", list(poisoned.shape), poisoned.astype("<f4").tobytes()]
    with pytest.raises(CodecError, match="NaN or infinity"):
        decode_weights(DIGITS, _raw_with(plain))
    with pytest.raises(WeightsError, match="NaN or infinity"):
        encode_weights([*w[:4], poisoned, *w[5:]])


def test_decode_rejects_truncation_trailing_and_garbage() -> None:
    raw = encode_weights(initial_weights(DIGITS, seed=0))
    for broken in (raw[:-1], raw[: len(raw) // 2], raw + b"\x00", b"", b"\xc1", raw[:10]):
        with pytest.raises(CodecError):
            decode_weights(DIGITS, broken)
    with pytest.raises(WeightsError, match="exceeds"):
        decode_weights(DIGITS, raw + b"\x00" * 4096)
    with pytest.raises(WeightsError):
        decode_weights(DIGITS, "not bytes")  # type: ignore[arg-type]
    short_data = [array_to_plain(a) for a in initial_weights(DIGITS, seed=0)]
    short_data[0] = ["f4", short_data[0][1], short_data[0][2][:-4]]
    with pytest.raises(WeightsError, match="bytes"):
        decode_weights(DIGITS, _raw_with(short_data))


def test_encode_requires_float32() -> None:
    w = initial_weights(DIGITS, seed=0)
    with pytest.raises(WeightsError, match="float32"):
        encode_weights([w[0].astype(np.float64), *w[1:]])
    with pytest.raises(WeightsError, match="numpy"):
        encode_weights([[1.0, 2.0]])  # type: ignore[list-item]


def test_decode_rejects_malformed_entries() -> None:
    w = initial_weights(DIGITS, seed=0)
    plain = [array_to_plain(a) for a in w]
    for bad_entry in (7, ["f4", [64]], ["f4", [True] * 1, b"\x00" * 4], ["f4", "64", b"\x00" * 256]):
        broken = [*plain]
        broken[7] = bad_entry
        with pytest.raises(WeightsError):
            decode_weights(DIGITS, _raw_with(broken))
    with pytest.raises(WeightsError):
        decode_weights(DIGITS, codec.encode(b"not a list"))
