"""Canonical encodings cut into parts, so long byte strings cross the transport without copies.

A message carrying model weights or a batch of blocks is mostly a few long byte strings. The transport
moves each of them as a frame of its own (`frames.plan_frames`): the sender encrypts straight from the
object (no copy into an encoding buffer) and the receiver's decrypted frame *is* the decoded value (no
copy out of one, and no re-encoding of it for the canonical check). `encode_parts` / `decode_segments`
accept and produce exactly the bytes of `codec.encode` / `codec.decode`, only cut into pieces: the wire
format is the canonical encoding.
"""

from __future__ import annotations

import bisect
import itertools
import secrets
from collections.abc import Sequence
from typing import Any

import msgpack
from pocl.ledger.codec import DEFAULT_MAX_SIZE, CodecError, check_value, decode

ZERO_COPY_MIN_BYTES = 64 * 1024  # byte strings at least this long become a part of their own
_MARKER_LEN = 20  # 16 random bytes + a 4-byte index: a stand-in no input can be built to contain
_PLACEHOLDER_HEAD = b"\xc4" + bytes([_MARKER_LEN])  # bin8 header of a marker


def _bin_header(n: int) -> bytes:
    if n <= 0xFF:
        return b"\xc4" + n.to_bytes(1, "big")
    if n <= 0xFFFF:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _announced_bins(piece: bytes) -> list[tuple[int, int]]:
    """Every (length, header size) such that `piece` ends with the canonical header of a bin of at least
    256 bytes. Both forms can match at once (payload bytes `c6 00` before a bin16 header read as a bin32
    header), so the caller tries each against the segment boundaries."""
    out = []
    if len(piece) >= 5 and piece[-5] == 0xC6:
        n = int.from_bytes(piece[-4:], "big")
        if n > 0xFFFF:
            out.append((n, 5))
    if len(piece) >= 3 and piece[-3] == 0xC5:
        n = int.from_bytes(piece[-2:], "big")
        if n > 0xFF:
            out.append((n, 3))
    return out


def _swap_long(value: Any, min_len: int, longs: list[bytes], prefix: bytes) -> Any:
    """`value` with each bytes value of at least `min_len` bytes replaced by a marker (the replaced
    values are appended to `longs` in encoding order); lists are copied, never mutated."""
    if isinstance(value, bytes):
        if len(value) < min_len:
            return value
        longs.append(value)
        return prefix + (len(longs) - 1).to_bytes(4, "big")
    if isinstance(value, (list, tuple)):
        return [_swap_long(item, min_len, longs, prefix) for item in value]
    return value


def _put_back(values: list[Any], longs: dict[bytes, bytes]) -> int:
    """Replace markers in `values` (recursively, in place) by their long strings; how many were put."""
    count = 0
    for i, item in enumerate(values):
        if type(item) is bytes:
            if len(item) == _MARKER_LEN and item in longs:
                values[i] = longs[item]
                count += 1
        elif type(item) is list:
            count += _put_back(item, longs)
    return count


def encode_parts(value: Any, min_len: int = ZERO_COPY_MIN_BYTES) -> list[bytes]:
    """`codec.encode(value)` cut into parts: each bytes value of at least `min_len` bytes is a part of
    its own (the very object, not a copy), and the part before it ends with that value's header."""
    if min_len <= _MARKER_LEN + 2:
        raise ValueError("min_len too small")
    if not check_value(value, big=min_len):
        return [msgpack.packb(value, use_bin_type=True, strict_types=False)]  # what `encode` returns
    prefix = secrets.token_bytes(_MARKER_LEN - 4)
    longs: list[bytes] = []
    skeleton = msgpack.packb(_swap_long(value, min_len, longs, prefix), use_bin_type=True, strict_types=False)
    parts: list[bytes] = []
    pos = 0
    for i, long in enumerate(longs):
        at = skeleton.index(_PLACEHOLDER_HEAD + prefix + i.to_bytes(4, "big"), pos)
        parts.append(skeleton[pos:at] + _bin_header(len(long)))
        parts.append(long)
        pos = at + 2 + _MARKER_LEN
    if pos < len(skeleton):
        parts.append(skeleton[pos:])
    return parts


def decode_segments(segments: Sequence[bytes], max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """`codec.decode(b"".join(segments))`: the same value or the same rejection, but a bin whose payload
    is exactly one or more whole segments is taken as is (one segment: no copy) instead of being
    unpacked, re-encoded and compared."""
    if len(segments) == 1:
        return decode(segments[0], max_size)
    total = sum(len(seg) for seg in segments)
    if total > max_size:
        raise CodecError(f"encoding too large: {total} > {max_size} bytes")
    prefix = secrets.token_bytes(_MARKER_LEN - 4)
    ends = list(itertools.accumulate(len(seg) for seg in segments))  # ends[k]: bytes up to segment k
    pieces: list[bytes] = []
    longs: dict[bytes, bytes] = {}
    i = 0
    while i < len(segments):
        start = ends[i - 1] if i else 0
        for want, header_len in _announced_bins(pieces[-1]) if pieces else ():
            j = bisect.bisect_left(ends, start + want, lo=i)  # segments i..j end exactly `want` later?
            if j < len(ends) and ends[j] == start + want:
                marker = prefix + len(longs).to_bytes(4, "big")
                longs[marker] = segments[i] if j == i else b"".join(segments[i : j + 1])
                pieces[-1] = pieces[-1][:-header_len]
                pieces.append(_PLACEHOLDER_HEAD + marker)
                i = j + 1
                break
        else:  # no header before this segment announces a bin ending on a segment boundary
            pieces.append(segments[i])
            i += 1
    if longs:
        # The skeleton parses like the full encoding up to each placeholder; if every placeholder came
        # back as a value, each stood where a bin item starts, and with its canonical header that bin
        # is exactly the long string. Otherwise a "header" was really payload: decode the long way.
        try:
            holder = [decode(b"".join(pieces), max_size)]
        except CodecError:
            holder = None
        if holder is not None and _put_back(holder, longs) == len(longs):
            return holder[0]
    return decode(b"".join(segments), max_size)
