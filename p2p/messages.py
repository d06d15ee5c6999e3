"""Typed, versioned P2P messages (DESIGN §6).

On the wire every message is the canonical msgpack array `[type_id, request_id, is_response, body]`
where `body` is the `Struct` registered for `type_id`. `request_id` 0 means a one-way message; a request
carries a non-zero id that its response (`is_response` true) echoes.

Type ids, names and owner protocols are in one table, `message_ids.py`. A `MessageRegistry` is an object,
not global state: each connection set-up gets one (usually `default_registry()` plus the caller's own
registrations).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import ClassVar

from pocl.ledger.codec import CodecError, Struct

from . import message_ids
from .errors import (
    PENALTY_MALFORMED,
    PENALTY_UNKNOWN_TYPE,
    REASON_MALFORMED,
    REASON_MESSAGE_TOO_LARGE,
    REASON_UNKNOWN_TYPE,
    ProtocolViolation,
)
from .message_ids import MAX_TYPE_ID, MessageId
from .message_parts import decode_segments, encode_parts

PROTOCOL_VERSION = 1

MAX_REQUEST_ID = 2**63 - 1

HASH_LEN = 32
NODE_ID_LEN = 32


@dataclasses.dataclass(frozen=True)
class Hello(Struct):
    """First message each side sends inside the encrypted channel."""

    protocol_version: int
    chain_id: str
    genesis_hash: bytes
    node_id: bytes
    best_height: int
    best_hash: bytes
    listen_addr: str
    agent: str

    BYTES_LEN: ClassVar[dict[str, int]] = {
        "genesis_hash": HASH_LEN,
        "node_id": NODE_ID_LEN,
        "best_hash": HASH_LEN,
    }
    MAX_LEN: ClassVar[dict[str, int]] = {"chain_id": 64, "listen_addr": 300, "agent": 128}


@dataclasses.dataclass(frozen=True)
class Ping(Struct):
    nonce: int


@dataclasses.dataclass(frozen=True)
class Pong(Struct):
    nonce: int


@dataclasses.dataclass(frozen=True)
class Disconnect(Struct):
    """Sent just before closing so the peer learns why (a REASON_* code)."""

    reason: str
    MAX_LEN: ClassVar[dict[str, int]] = {"reason": 128}


@dataclasses.dataclass(frozen=True)
class ErrorResponse(Struct):
    """Response to a request the peer could not serve (raised as RemoteError by `request`)."""

    code: str
    detail: str
    MAX_LEN: ClassVar[dict[str, int]] = {"code": 64, "detail": 512}


@dataclasses.dataclass
class Envelope:
    type_id: int
    request_id: int
    is_response: bool
    body: Struct


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    type_id: int
    name: str
    body_cls: type[Struct]
    max_bytes: int  # limit on the whole encoded envelope


def peek_type_id(raw: bytes) -> int:
    """Read the type id of an encoded envelope without decoding it, so size limits apply first."""
    if len(raw) < 2 or raw[0] != 0x94:  # fixarray of 4
        raise ProtocolViolation(REASON_MALFORMED, PENALTY_MALFORMED, "not an envelope")
    b = raw[1]
    if b < 0x80:
        return b
    if b == 0xCC and len(raw) >= 3:
        return raw[2]
    if b == 0xCD and len(raw) >= 4:
        return int.from_bytes(raw[2:4], "big")
    raise ProtocolViolation(REASON_MALFORMED, PENALTY_MALFORMED, "bad type id")


class MessageRegistry:
    """Maps type ids ⇄ body classes with a per-type size limit."""

    def __init__(self) -> None:
        self._by_id: dict[int, MessageSpec] = {}
        self._by_cls: dict[type[Struct], MessageSpec] = {}

    def register(self, message: MessageId, body_cls: type[Struct], max_bytes: int) -> None:
        """Carry `body_cls` as `message` (an entry of `message_ids`), at most `max_bytes` encoded."""
        type_id, name = message.type_id, message.name
        if not 1 <= type_id <= MAX_TYPE_ID:
            raise ValueError(f"type id out of range: {type_id}")
        if type_id in self._by_id:
            raise ValueError(f"type id {type_id} already registered as {self._by_id[type_id].name}")
        if body_cls in self._by_cls:
            raise ValueError(f"{body_cls.__name__} already registered")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        spec = MessageSpec(type_id, name, body_cls, max_bytes)
        self._by_id[type_id] = spec
        self._by_cls[body_cls] = spec

    def spec_for(self, body_cls: type[Struct]) -> MessageSpec:
        try:
            return self._by_cls[body_cls]
        except KeyError:
            raise KeyError(f"message class not registered: {body_cls.__name__}") from None

    def specs(self) -> Iterable[MessageSpec]:
        return self._by_id.values()

    @property
    def max_message_bytes(self) -> int:
        return max((s.max_bytes for s in self._by_id.values()), default=0)

    def limit_for(self, head: bytes) -> int:
        """Size limit of the message whose encoding starts with `head` (the largest if unknown, so
        that the decoder, not the frame layer, reports unknown or malformed messages)."""
        try:
            spec = self._by_id.get(peek_type_id(head))
        except ProtocolViolation:
            spec = None
        return spec.max_bytes if spec is not None else self.max_message_bytes

    def envelope(self, body: Struct, request_id: int = 0, is_response: bool = False) -> Envelope:
        return Envelope(self.spec_for(type(body)).type_id, request_id, is_response, body)

    def encode_parts(self, env: Envelope) -> list[bytes]:
        """The canonical encoding as `message_parts.encode_parts` cuts it (long byte strings stand alone, so the
        transport can encrypt them without a copy). A message over its own type's limit is a local
        bug, so it raises ValueError."""
        spec = self._by_id.get(env.type_id)
        if spec is None or not isinstance(env.body, spec.body_cls):
            raise ValueError(f"body {type(env.body).__name__} does not match type id {env.type_id}")
        parts = encode_parts([env.type_id, env.request_id, env.is_response, env.body.to_list()])
        size = sum(len(part) for part in parts)
        if size > spec.max_bytes:
            raise ValueError(f"{spec.name} message of {size} bytes exceeds its limit {spec.max_bytes}")
        return parts

    def encode(self, env: Envelope) -> bytes:
        return b"".join(self.encode_parts(env))

    def encode_body(self, body: Struct, request_id: int = 0, is_response: bool = False) -> bytes:
        return self.encode(self.envelope(body, request_id, is_response))

    def encode_body_parts(self, body: Struct, request_id: int = 0, is_response: bool = False) -> list[bytes]:
        return self.encode_parts(self.envelope(body, request_id, is_response))

    def decode(self, raw: bytes | Sequence[bytes]) -> Envelope:
        """Decode a peer's message, whole or as the plaintexts of its frames (see
        `message_parts.decode_segments`); any defect raises ProtocolViolation (never another exception)."""
        segments: Sequence[bytes] = (raw,) if isinstance(raw, bytes) else raw
        if len(segments) > 1 and len(segments[0]) < 4:  # too short to show the type id: rare, join
            segments = (b"".join(segments),)
        if not segments:
            raise ProtocolViolation(REASON_MALFORMED, PENALTY_MALFORMED, "empty message")
        type_id = peek_type_id(segments[0])
        spec = self._by_id.get(type_id)
        if spec is None:
            raise ProtocolViolation(REASON_UNKNOWN_TYPE, PENALTY_UNKNOWN_TYPE, f"type id {type_id}")
        size = sum(len(seg) for seg in segments)
        if size > spec.max_bytes:
            raise ProtocolViolation(
                REASON_MESSAGE_TOO_LARGE,
                PENALTY_MALFORMED,
                f"{spec.name}: {size} > {spec.max_bytes} bytes",
            )
        try:
            value = decode_segments(segments, max_size=spec.max_bytes)
            if not isinstance(value, list) or len(value) != 4:
                raise CodecError("envelope must be a 4-element array")
            _tid, request_id, is_response, body_list = value
            if isinstance(request_id, bool) or not isinstance(request_id, int):
                raise CodecError("request id must be an integer")
            if not 0 <= request_id <= MAX_REQUEST_ID:
                raise CodecError("request id out of range")
            if not isinstance(is_response, bool):
                raise CodecError("is_response must be a bool")
            if is_response and request_id == 0:
                raise CodecError("a response needs a request id")
            body = spec.body_cls.from_list(body_list)
        except (CodecError, ValueError, TypeError) as exc:
            raise ProtocolViolation(REASON_MALFORMED, PENALTY_MALFORMED, f"{spec.name}: {exc}") from None
        return Envelope(type_id, request_id, is_response, body)


def default_registry() -> MessageRegistry:
    """A NEW registry holding the transport's own messages; callers register theirs on top."""
    reg = MessageRegistry()
    reg.register(message_ids.HELLO, Hello, 1024)
    reg.register(message_ids.PING, Ping, 64)
    reg.register(message_ids.PONG, Pong, 64)
    reg.register(message_ids.DISCONNECT, Disconnect, 256)
    reg.register(message_ids.ERROR, ErrorResponse, 1024)
    return reg
