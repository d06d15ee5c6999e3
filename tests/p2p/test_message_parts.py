"""Long byte strings cut out of encodings (`encode_parts`) and taken back without copies
(`decode_segments`): the bytes and the accepted/rejected inputs must be exactly those of encode/decode."""

from __future__ import annotations

import itertools
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pocl.ledger import codec
from pocl.ledger.codec import CodecError, decode, encode
from pocl.p2p.message_parts import decode_segments, encode_parts

MIN = 300  # a small threshold so hypothesis finds long strings quickly (the default is 64 KiB)

leaves = st.one_of(
    st.integers(min_value=codec.MIN_INT, max_value=codec.MAX_INT),
    st.binary(max_size=40),
    st.binary(min_size=MIN - 20, max_size=MIN + 70_000).filter(lambda b: len(b) != MIN - 1),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)
values = st.recursive(leaves, lambda children: st.lists(children, max_size=5), max_leaves=12)


def longs_in(value: object) -> list[bytes]:
    if isinstance(value, bytes):
        return [value] if len(value) >= MIN else []
    if isinstance(value, list):
        return [x for item in value for x in longs_in(item)]
    return []


def random_cuts(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(n, len(data) - 1))) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def assert_judged_like_the_whole(segments: list[bytes]) -> None:
    """decode_segments accepts exactly what decode accepts of the concatenation, with the same value."""
    try:
        expected = decode(b"".join(segments))
    except CodecError:
        with pytest.raises(CodecError):
            decode_segments(segments)
    else:
        assert decode_segments(segments) == expected


@settings(max_examples=200, deadline=None)
@given(values)
def test_parts_concatenate_to_the_encoding_and_keep_long_strings_whole(value):
    parts = encode_parts(value, MIN)
    assert b"".join(parts) == encode(value)
    longs = longs_in(value)
    standalone = [p for p in parts if any(p is long for long in longs)]
    assert len(standalone) == len(longs)  # each long string is a part of its own: the object itself
    back = decode_segments(parts)
    assert back == value
    assert longs_in(back) == longs
    assert all(a is b for a, b in zip(longs_in(back), standalone))  # no copy on the way back


@settings(max_examples=200, deadline=None)
@given(values, st.integers(min_value=0, max_value=2**32))
def test_any_cut_decodes_like_the_whole(value, seed):
    data = encode(value)
    segments = random_cuts(data, random.Random(seed), random.Random(seed).randint(1, 6))
    assert decode_segments(segments) == decode(data) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=600), st.integers(min_value=0, max_value=2**32))
def test_garbage_is_rejected_or_accepted_exactly_like_decode(data, seed):
    rng = random.Random(seed)
    assert_judged_like_the_whole(random_cuts(data, rng, rng.randint(1, 5)))


def test_header_lookalike_inside_a_string_is_not_taken_for_a_header():
    # The first segment ends with bytes that read as "bin32 of 65536 bytes", and the next segment is
    # exactly 65536 bytes long, but those bytes are the payload of a 5-byte string: no substitution.
    fake_header = b"\xc6\x00\x01\x00\x00"
    value = [fake_header, b"y" * 65533]
    data = encode(value)
    head = data.index(fake_header) + len(fake_header)
    segments = [data[:head], data[head:]]
    assert len(segments[1]) == 65536
    assert decode_segments(segments) == value


def test_non_canonical_header_at_a_boundary_is_rejected():
    long = b"z" * 1000
    bin32 = msgpack.packb([long], use_bin_type=True).replace(b"\xc5\x03\xe8", b"\xc6\x00\x00\x03\xe8")
    with pytest.raises(CodecError):
        decode(bin32)
    with pytest.raises(CodecError):
        decode_segments([bin32[:6], bin32[6:]])


def test_long_string_over_several_segments_and_top_level_long_string():
    long = bytes(range(256)) * 1024
    data = encode([1, long, "tail"])
    at = data.index(long[:64])
    segments = [data[:at], data[at : at + 100_000], data[at + 100_000 : at + len(long)], data[at + len(long) :]]
    assert decode_segments(segments) == [1, long, "tail"]
    parts = encode_parts(long, MIN)
    assert len(parts) == 2 and parts[1] is long
    assert decode_segments(parts) is long


def test_long_text_and_size_limit():
    text = "é" * 40_000
    data = encode([text])
    assert decode_segments([data[:4], data[4:]]) == [text]
    parts = encode_parts([b"a" * 1000, b"b" * 1000], MIN)
    with pytest.raises(CodecError, match="too large"):
        decode_segments(parts, max_size=1500)
    with pytest.raises(ValueError):
        encode_parts([b"x"], 10)


@settings(max_examples=300, deadline=None)
@given(values, st.integers(min_value=0, max_value=2**32))
def test_mutated_parts_are_judged_like_the_whole(value, seed):
    # Cut where a sender would (long strings alone), then damage one byte: header, payload or framing.
    rng = random.Random(seed)
    parts = [bytearray(p) for p in encode_parts([value, value], MIN)]
    target = parts[rng.randrange(len(parts))]
    if target:
        target[rng.randrange(len(target))] ^= 1 << rng.randrange(8)
    assert_judged_like_the_whole([bytes(p) for p in parts])


def test_many_small_and_empty_segments_with_header_lookalikes():
    # Every item is a 300-byte string ending in bytes that read as the header of a 300-byte bin, and the
    # encoding is cut after each item and into empty pieces: lookups must stay right (and cheap).
    item = b"q" * 297 + b"\xc5\x01\x2c"
    value = [item] * 2000
    data = encode(value)
    cuts, pos = [], 3  # array16 header
    for _ in value:
        cuts += [data[pos : pos + 3], b"", data[pos + 3 : pos + 303]]
        pos += 303
    segments = [data[:3], *cuts]
    assert b"".join(segments) == data and len(segments) == 6001
    assert decode_segments(segments) == value
    longs = [b"L" * 70_000, b"M" * 300]
    parts = encode_parts([longs, [b"", 1]], 256)
    with_empties = [p for part in parts for p in (part, b"")]
    assert decode_segments(with_empties) == [longs, [b"", 1]]


@pytest.mark.parametrize("short", [b"\xc6\x00", b"\xc6\x00\x00", b"\xc5"])
def test_payload_that_looks_like_a_bin32_header_still_decodes_without_a_copy(short):
    """Found by hypothesis: a short bin ending in `c6 00` before a long bin's bin16 header made the tail
    read as a bin32 header too; only that reading was tried, so the long string was copied."""
    value = [short, b"\x00" * 320]
    parts = encode_parts(value, MIN)
    back = decode_segments(parts)
    assert back == value and back[1] is parts[-1]
