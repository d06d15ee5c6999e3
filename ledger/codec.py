"""Strict canonical msgpack codec (DESIGN §3).

Every consensus object is a fixed-order msgpack array of integers, byte strings, text strings, booleans,
nil and nested arrays. Maps and floats are never allowed. Decoding re-encodes the result and compares
bytes, so an object has exactly one accepted encoding (minimal integer widths, no trailing bytes).

`Struct` subclasses (frozen dataclasses) map to arrays field by field; their annotations drive
type-checked decoding, so `SomeStruct.decode(raw)` either returns a well-typed object or raises
`CodecError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, TypeVar, get_args, get_origin

import msgpack

MAX_INT = 2**64 - 1
MIN_INT = -(2**63)
DEFAULT_MAX_SIZE = 64 * 1024 * 1024


class CodecError(ValueError):
    """Raised for any input that is not the canonical encoding of the expected object."""


def check_value(value: Any, depth: int = 0, big: int = 0) -> bool:
    """Raise CodecError unless `value` is encodable; True if it holds a bytes value of at least `big`
    bytes (only looked for when `big` > 0: the transport, which sends long strings as frames of their
    own, then needs one walk of a message, not two)."""
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
            if check_value(item, depth + 1, big):
                found = True
        return found
    if isinstance(value, float):
        raise CodecError("floats are not allowed in canonical encoding")
    if isinstance(value, dict):
        raise CodecError("maps are not allowed in canonical encoding")
    raise CodecError(f"type not encodable: {type(value).__name__}")


def encode(value: Any) -> bytes:
    """Encode a plain value (ints, bytes, str, bool, None, lists) canonically."""
    check_value(value)
    return msgpack.packb(value, use_bin_type=True, strict_types=False)


def _reject_map(_pairs: Any) -> Any:
    raise CodecError("maps are not allowed in canonical encoding")


_UNPACK_OPTS: dict[str, Any] = {
    "raw": False,
    "use_list": True,
    "strict_map_key": True,
    "object_pairs_hook": _reject_map,
    "max_map_len": 0,
    "max_ext_len": 0,
}


def unpack(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Parse msgpack with the canonical format's limits (no maps, no extensions, no trailing bytes);
    raise CodecError on anything else. The caller still checks value types and re-encodes."""
    if len(data) > max_size:
        raise CodecError(f"encoding too large: {len(data)} > {max_size} bytes")
    try:
        return msgpack.unpackb(data, **_UNPACK_OPTS, max_bin_len=max_size, max_str_len=max_size)
    except CodecError:
        raise
    except msgpack.ExtraData as exc:
        raise CodecError("trailing bytes after encoded object") from exc
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed msgpack: {exc}") from exc


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Decode canonical bytes into plain values; raise CodecError on anything non-canonical."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("expected bytes")
    data = bytes(data)
    value = unpack(data, max_size)
    check_value(value)
    if encode(value) != data:
        raise CodecError("non-canonical encoding")
    return value


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
