"""Strict canonical msgpack codec (DESIGN §3).

Every consensus object is a fixed-order msgpack array of integers, byte strings, text strings, booleans,
nil and nested arrays. Maps and floats are never allowed. Decoding re-encodes the result and compares
bytes, so an object has exactly one accepted encoding (minimal integer widths, no trailing bytes).

`Struct` subclasses (frozen dataclasses) map to arrays field by field; their annotations drive
type-checked decoding, so `decode_struct(Tx, raw)` either returns a well-typed object or raises
`CodecError`.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import secrets
import types
import typing
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar, get_args, get_origin

import msgpack

MAX_INT = 2**64 - 1
MIN_INT = -(2**63)
DEFAULT_MAX_SIZE = 64 * 1024 * 1024


class CodecError(ValueError):
    """Raised for any input that is not the canonical encoding of the expected object."""


def _check_value(value: Any, depth: int = 0, big: int = 0) -> bool:
    """Raise CodecError unless `value` is encodable; True if it holds a bytes value of at least `big`
    bytes (only looked for when `big` > 0)."""
    if depth > 32:
        raise CodecError("nesting too deep")
    if isinstance(value, bytes):
        return 0 < big <= len(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return False
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise CodecError(f"integer out of range: {value}")
        return False
    if isinstance(value, (list, tuple)):
        found = False
        for item in value:
            if _check_value(item, depth + 1, big):
                found = True
        return found
    if isinstance(value, float):
        raise CodecError("floats are not allowed in canonical encoding")
    if isinstance(value, dict):
        raise CodecError("maps are not allowed in canonical encoding")
    raise CodecError(f"type not encodable: {type(value).__name__}")


def encode(value: Any) -> bytes:
    """Encode a plain value (ints, bytes, str, bool, None, lists) canonically."""
    _check_value(value)
    return msgpack.packb(value, use_bin_type=True, strict_types=False)


def _reject_map(_pairs: Any) -> Any:
    raise CodecError("maps are not allowed in canonical encoding")


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Decode canonical bytes into plain values; raise CodecError on anything non-canonical."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise CodecError(f"encoding too large: {len(data)} > {max_size} bytes")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_reject_map,
            max_bin_len=max_size,
            max_str_len=max_size,
            max_array_len=max_size,
            max_map_len=0,
            max_ext_len=0,
        )
    except CodecError:
        raise
    except msgpack.ExtraData as exc:
        raise CodecError("trailing bytes after encoded object") from exc
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed msgpack: {exc}") from exc
    _check_value(value)
    if encode(value) != data:
        raise CodecError("non-canonical encoding")
    return value


# --------------------------------------------------------------------------- long byte strings, no copies
#
# A message carrying model weights or a batch of blocks is mostly a few long byte strings. The transport
# moves each of them as a frame of its own: the sender encrypts straight from the object (no copy into an
# encoding buffer) and the receiver's decrypted frame *is* the decoded value (no copy out of one, and no
# re-encoding of it for the canonical check). `encode_parts` / `decode_segments` accept and produce
# exactly the bytes of `encode` / `decode`, only cut into pieces.

ZERO_COPY_MIN_BYTES = 64 * 1024  # byte strings at least this long become a part of their own
_MARKER_LEN = 20  # 16 random bytes + a 4-byte index: a stand-in no input can be built to contain
_PLACEHOLDER_HEAD = b"\xc4" + bytes([_MARKER_LEN])  # bin8 header of a marker


def _bin_header(n: int) -> bytes:
    if n <= 0xFF:
        return b"\xc4" + n.to_bytes(1, "big")
    if n <= 0xFFFF:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _announced_bin(piece: bytes) -> tuple[int, int] | None:
    """(length, header size) if `piece` ends with the canonical header of a bin of at least 256 bytes."""
    if len(piece) >= 5 and piece[-5] == 0xC6:
        n = int.from_bytes(piece[-4:], "big")
        if n > 0xFFFF:
            return n, 5
    if len(piece) >= 3 and piece[-3] == 0xC5:
        n = int.from_bytes(piece[-2:], "big")
        if n > 0xFF:
            return n, 3
    return None


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
    """`encode(value)` cut into parts: each bytes value of at least `min_len` bytes is a part of its own
    (the very object, not a copy), and the part before it ends with that value's header."""
    if min_len <= _MARKER_LEN + 2:
        raise ValueError("min_len too small")
    if not _check_value(value, big=min_len):
        return [msgpack.packb(value, use_bin_type=True, strict_types=False)]
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
    """`decode(b"".join(segments))`: the same value or the same rejection, but a bin whose payload is
    exactly one or more whole segments is taken as is (one segment: no copy) instead of being
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
        announced = _announced_bin(pieces[-1]) if pieces else None
        if announced is not None:
            want, header_len = announced
            start = ends[i - 1] if i else 0
            j = bisect.bisect_left(ends, start + want, lo=i)  # segments i..j end exactly `want` later?
            if j < len(ends) and ends[j] == start + want:
                marker = prefix + len(longs).to_bytes(4, "big")
                longs[marker] = segments[i] if j == i else b"".join(segments[i : j + 1])
                pieces[-1] = pieces[-1][:-header_len]
                pieces.append(_PLACEHOLDER_HEAD + marker)
                i = j + 1
                continue
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


# --------------------------------------------------------------------------- structs

S = TypeVar("S", bound="Struct")


@dataclasses.dataclass(frozen=True)
class Struct:
    """Base for consensus objects: a frozen dataclass encoded as a fixed-order array.

    Supported field annotations: int, bool, bytes, str, None unions (`T | None`), `list[T]`,
    `tuple[T, ...]` and nested Struct subclasses. Subclasses may set `BYTES_LEN` to pin the length of
    bytes fields (e.g. `{"pubkey": 32}`) and `MAX_LEN` to bound list/bytes/str lengths.
    """

    BYTES_LEN: ClassVar[dict[str, int]] = {}
    MAX_LEN: ClassVar[dict[str, int]] = {}

    def to_list(self) -> list[Any]:
        return [_to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)]

    def encode(self) -> bytes:
        return encode(self.to_list())

    @classmethod
    def from_list(cls: type[S], value: Any) -> S:
        hints = _hints(cls)
        fields = dataclasses.fields(cls)
        if not isinstance(value, list):
            raise CodecError(f"{cls.__name__}: expected array, got {type(value).__name__}")
        if len(value) != len(fields):
            raise CodecError(f"{cls.__name__}: expected {len(fields)} fields, got {len(value)}")
        kwargs = {}
        for f, item in zip(fields, value):
            where = f"{cls.__name__}.{f.name}"
            converted = _from_plain(hints[f.name], item, where)
            if (f.name in cls.BYTES_LEN and isinstance(converted, bytes)
                    and len(converted) != cls.BYTES_LEN[f.name]):
                raise CodecError(f"{where}: expected {cls.BYTES_LEN[f.name]} bytes, got {len(converted)}")
            if f.name in cls.MAX_LEN and converted is not None and len(converted) > cls.MAX_LEN[f.name]:
                raise CodecError(f"{where}: length {len(converted)} exceeds {cls.MAX_LEN[f.name]}")
            kwargs[f.name] = converted
        return cls(**kwargs)

    @classmethod
    def decode(cls: type[S], data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> S:
        return cls.from_list(decode(data, max_size=max_size))


_HINT_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINT_CACHE.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINT_CACHE[cls] = hints
    return hints


def _to_plain(value: Any) -> Any:
    if isinstance(value, Struct):
        return value.to_list()
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) != 1:
            raise CodecError(f"{where}: unsupported union annotation")
        return _from_plain(non_none[0], value, where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected array")
        (item_hint, *_rest) = get_args(hint)
        items = [_from_plain(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if not isinstance(value, bool):
            raise CodecError(f"{where}: expected bool")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError(f"{where}: expected integer")
        return value
    if hint is bytes:
        if not isinstance(value, bytes):
            raise CodecError(f"{where}: expected bytes")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected string")
        return value
    if isinstance(hint, type) and issubclass(hint, Struct):
        return hint.from_list(value)
    if hint is Any:
        return value
    raise CodecError(f"{where}: unsupported annotation {hint!r}")


def encode_struct(obj: Struct) -> bytes:
    return obj.encode()


def decode_struct(cls: type[S], data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> S:
    return cls.decode(data, max_size=max_size)
