"""Length-prefixed ChaCha20-Poly1305 frames over a TCP stream (DESIGN §6).

Wire format of one frame: a 4-byte big-endian header (bit 31: "more frames of this message follow",
bits 0–30: ciphertext length including the 16-byte tag) followed by the ciphertext. The header is the
AEAD associated data, so a flipped length/flag bit fails authentication. Nonces are per-direction 96-bit
counters (4 zero bytes ‖ 64-bit little-endian counter); a replayed, dropped or reordered frame therefore
fails authentication too. The counter never wraps: the sender refuses to seal at `nonce_limit`.

`FrameProtocol` is an `asyncio.BufferedProtocol`: the kernel copies straight into our receive buffer
(large frames get a buffer of their own, so a 1 MiB frame is received with no extra copy) and the length
prefix is checked against `max_frame_bytes` before a single body byte is buffered. A message is delivered
as the plaintexts of its frames; the sender gives each long byte string frames of its own
(`plan_frames`), so it is encrypted straight from the message object and decoded without a copy
(`message_parts.encode_parts` / `decode_segments`).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import (
    PENALTY_FATAL,
    REASON_CONNECTION_LOST,
    REASON_DECRYPT_FAILED,
    REASON_FRAME_TOO_LARGE,
    REASON_FRAME_TOO_SMALL,
    REASON_HANDSHAKE_OVERFLOW,
    REASON_MESSAGE_TOO_LARGE,
    REASON_NONCE_EXHAUSTED,
    ConnectionClosed,
    ProtocolViolation,
)

HEADER_LEN = 4
TAG_LEN = 16
KEY_LEN = 32
FLAG_MORE = 0x8000_0000
LEN_MASK = 0x7FFF_FFFF
NONCE_LIMIT = 2**64 - 1  # counters stop here, so a (key, nonce) pair is never reused
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 + 4096  # a 1 MiB blob plus its envelope fits one frame
# Messages up to ~1 MiB travel as one frame: measured cheaper for the receiver than 256 KiB frames
# (no reassembly copy), and the sender writes each frame as soon as it is sealed.
DEFAULT_FRAME_CHUNK_BYTES = DEFAULT_MAX_FRAME_BYTES - TAG_LEN
RECV_BUFFER_BYTES = 64 * 1024  # small frames are parsed in place here
BIG_FRAME_BYTES = 16 * 1024  # larger frames are received into a dedicated (reused) buffer
RETAIN_BUFFER_BYTES = 2 * 1024 * 1024  # reusable buffers above this are dropped after use
# Frames one message may take: FRAMES_BASE + its size limit / FRAME_BYTES_PER_EXTRA. Empty frames cost a
# peer 20 bytes each and add nothing to the message's size, so without a cap a peer could grow our list
# of a message's frames without end. Our senders use far fewer (one per long string, one per 1 MiB).
FRAMES_BASE = 1024
FRAME_BYTES_PER_EXTRA = 1024
# While the rest of a large frame is in flight, ask the kernel not to wake us before this much of it has
# arrived (SO_RCVLOWAT, Linux): a 1 MiB frame then costs a handful of wake-ups instead of one per
# loopback segment, which also spares the sending side (its softirq does the waking).
RCVLOWAT_BYTES = 256 * 1024
_USE_RCVLOWAT = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVLOWAT")
_NONCE_PREFIX = b"\x00\x00\x00\x00"


def nonce_for(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "little")


class SendBuffer:
    """A reusable output buffer: frames are encrypted straight into it, then written in one call.

    Reuse avoids a fresh (page-faulting) allocation per large message; `take()` hands out a view that
    must be written before the next seal (asyncio transports copy what they cannot send at once).
    """

    __slots__ = ("buf", "used")

    def __init__(self, initial: int = 64 * 1024) -> None:
        self.buf = bytearray(initial)
        self.used = 0

    def reserve(self, n: int) -> memoryview:
        need = self.used + n
        if need > len(self.buf):
            grown = bytearray(max(need, 2 * len(self.buf)))
            memoryview(grown)[: self.used] = memoryview(self.buf)[: self.used]
            self.buf = grown
        return memoryview(self.buf)[self.used : need]

    def take(self) -> memoryview:
        view = memoryview(self.buf)[: self.used]
        self.used = 0
        if len(self.buf) > RETAIN_BUFFER_BYTES:
            self.buf = bytearray(64 * 1024)  # `view` keeps the old one alive until written
        return view


def plan_frames(parts: list[bytes], chunk: int, alone: int = BIG_FRAME_BYTES) -> list[bytes | memoryview]:
    """Frame plaintexts for one message given as parts (see `message_parts.encode_parts`): each part of at least
    `alone` bytes gets frames of its own, sealed straight from the part; runs of smaller parts are joined.
    No frame exceeds `chunk` bytes; the concatenation is the message."""
    frames: list[bytes | memoryview] = []
    run: list[bytes] = []

    def cut(data: bytes) -> None:
        if len(data) <= chunk:
            frames.append(data)
        else:
            view = memoryview(data)
            frames.extend(view[off : off + chunk] for off in range(0, len(data), chunk))

    for part in parts:
        if len(part) >= alone:
            if run:
                cut(b"".join(run))
                run = []
            cut(part)
        else:
            run.append(part)
    if run or not frames:
        cut(b"".join(run))
    return frames


class FrameSealer:
    """Encrypts outgoing messages into frames with an increasing counter nonce."""

    def __init__(
        self,
        key: bytes,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        nonce_limit: int = NONCE_LIMIT,
        chunk_bytes: int | None = None,
    ):
        if len(key) != KEY_LEN:
            raise ValueError("frame key must be 32 bytes")
        if not TAG_LEN < max_frame_bytes <= LEN_MASK:
            raise ValueError("bad max_frame_bytes")
        self._aead = ChaCha20Poly1305(key)
        limit = max_frame_bytes - TAG_LEN
        self.chunk = min(chunk_bytes, limit) if chunk_bytes else limit
        self.counter = 0
        self.nonce_limit = nonce_limit

    def _seal_into(self, out: memoryview, part: bytes | memoryview, more: bool) -> None:
        if self.counter >= self.nonce_limit:
            raise ConnectionClosed(REASON_NONCE_EXHAUSTED)
        ct_len = len(part) + TAG_LEN
        header = (ct_len | FLAG_MORE if more else ct_len).to_bytes(HEADER_LEN, "big")
        out[:HEADER_LEN] = header
        self._aead.encrypt_into(nonce_for(self.counter), part, header, out[HEADER_LEN:])
        self.counter += 1

    def seal_frame(self, part: bytes | memoryview, more: bool = False) -> bytearray:
        buf = bytearray(HEADER_LEN + len(part) + TAG_LEN)
        self._seal_into(memoryview(buf), part, more)
        return buf

    def seal_part_into(self, out: SendBuffer, part: bytes | memoryview, more: bool) -> None:
        """Append one frame (at most `chunk` bytes of a message) to `out`."""
        frame_len = HEADER_LEN + len(part) + TAG_LEN
        self._seal_into(out.reserve(frame_len), part, more)
        out.used += frame_len

class FrameOpener:
    """Decrypts incoming frames in counter order; any failure is fatal for the stream."""

    def __init__(self, key: bytes, nonce_limit: int = NONCE_LIMIT):
        if len(key) != KEY_LEN:
            raise ValueError("frame key must be 32 bytes")
        self._aead = ChaCha20Poly1305(key)
        self.counter = 0
        self.nonce_limit = nonce_limit

    def open_frame(self, header: bytes, ciphertext: bytes | bytearray | memoryview) -> bytes:
        if self.counter >= self.nonce_limit:
            raise ProtocolViolation(REASON_NONCE_EXHAUSTED, 0)
        try:
            plaintext = self._aead.decrypt(nonce_for(self.counter), ciphertext, header)
        except InvalidTag:
            raise ProtocolViolation(REASON_DECRYPT_FAILED, PENALTY_FATAL) from None
        self.counter += 1
        return plaintext


MessageCallback = Callable[[list[bytes]], None]  # one message: the plaintexts of its frames, in order
BrokenCallback = Callable[[ProtocolViolation | None, str], None]


class FrameProtocol(asyncio.BufferedProtocol):
    """Stream protocol with a raw mode (handshake bytes) and a frame mode (decrypted messages).

    Messages are delivered synchronously to `on_message`; a stream error or EOF goes to `on_broken`
    exactly once. Write flow control is exposed as `await drain()`.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, max_message_bytes: int = 64 << 20):
        self.max_frame_bytes = max_frame_bytes
        self.max_message_bytes = max_message_bytes
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._big_buf: bytearray | None = None  # reused across large frames
        self._big_view: memoryview | None = None  # set while receiving one large frame
        self._big_fill = 0
        self._big_header = b""
        self._sock: socket.socket | None = None  # for SO_RCVLOWAT; None where unsupported
        self._lowat = 1
        self._segments: list[bytes] = []  # plaintexts of the frames of a message still arriving
        self._msg_len = 0
        self._msg_limit = max_message_bytes
        # Optional: limit for a message given its first plaintext bytes (e.g. its type's size limit),
        # so an oversized multi-frame message is refused at its first frame, not after assembly.
        self.message_limit: Callable[[bytes], int] | None = None
        self._opener: FrameOpener | None = None
        self._on_message: MessageCallback | None = None
        self._on_broken: BrokenCallback | None = None
        self._raw_waiter: asyncio.Future[None] | None = None
        self._broken: tuple[ProtocolViolation | None, str] | None = None
        self._write_paused = False
        self._drain_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.bytes_received = 0
        self.lost = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if _USE_RCVLOWAT:
            self._sock = transport.get_extra_info("socket")

    def _set_lowat(self, n: int) -> None:
        if n == self._lowat or self._sock is None:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
            self._lowat = n
        except OSError:
            self._sock = None  # not supported here: keep the default wake-up behaviour

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big_view is not None:
            return self._big_view[self._big_fill :]
        if self._end == len(self._buf):
            self._compact()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        if self._broken is not None:
            return
        if self._big_view is not None:
            self._big_fill += nbytes
            remaining = len(self._big_view) - self._big_fill
            if remaining:
                self._set_lowat(min(remaining, RCVLOWAT_BYTES))
                return
            self._set_lowat(1)
            ciphertext, header = self._big_view, self._big_header
            self._big_view = None
            self._big_fill = 0
            delivered = self._open_and_deliver(header, ciphertext)
            if self._big_buf is not None and len(self._big_buf) > RETAIN_BUFFER_BYTES:
                self._big_buf = None
            if not delivered:
                return
        else:
            self._end += nbytes
        if self._opener is None:
            if self._end == len(self._buf) and self._start == 0:  # a handshake never needs this much
                self._break(
                    ProtocolViolation(REASON_HANDSHAKE_OVERFLOW, PENALTY_FATAL), REASON_HANDSHAKE_OVERFLOW
                )
            self._wake_raw()
        else:
            self._process_frames()

    def eof_received(self) -> bool:
        self._break(None, REASON_CONNECTION_LOST)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(None, REASON_CONNECTION_LOST)
        self._write_paused = False
        self._wake_drain(ConnectionClosed(REASON_CONNECTION_LOST))
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)

    # ------------------------------------------------------------------ raw mode (handshake)
    async def read_exactly(self, n: int) -> bytes:
        """Read n raw bytes (before frame mode is started)."""
        while self._end - self._start < n:
            if self._broken is not None:
                raise ConnectionClosed(self._broken[1])
            self._raw_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._raw_waiter
            finally:
                self._raw_waiter = None
        data = bytes(self._view[self._start : self._start + n])
        self._start += n
        return data

    def _wake_raw(self) -> None:
        if self._raw_waiter is not None and not self._raw_waiter.done():
            self._raw_waiter.set_result(None)

    # ------------------------------------------------------------------ frame mode
    def start_frames(
        self, opener: FrameOpener, on_message: MessageCallback, on_broken: BrokenCallback
    ) -> None:
        """Switch to frame mode; bytes already buffered are parsed as frames right away."""
        self._opener = opener
        self.set_callbacks(on_message, on_broken)
        if self._broken is None:
            self._process_frames()

    def set_callbacks(self, on_message: MessageCallback, on_broken: BrokenCallback) -> None:
        self._on_message = on_message
        self._on_broken = on_broken
        if self._broken is not None:
            on_broken(*self._broken)

    def _process_frames(self) -> None:
        buf, view = self._buf, self._view
        while self._broken is None:
            start = self._start
            avail = self._end - start
            if avail < HEADER_LEN:
                break
            header = bytes(buf[start : start + HEADER_LEN])
            ct_len = int.from_bytes(header, "big") & LEN_MASK
            if ct_len > self.max_frame_bytes:  # checked before any of the body is buffered
                self._break(
                    ProtocolViolation(
                        REASON_FRAME_TOO_LARGE, PENALTY_FATAL, f"{ct_len} > {self.max_frame_bytes}"
                    ),
                    REASON_FRAME_TOO_LARGE,
                )
                return
            if ct_len < TAG_LEN:
                self._break(ProtocolViolation(REASON_FRAME_TOO_SMALL, PENALTY_FATAL), REASON_FRAME_TOO_SMALL)
                return
            total = HEADER_LEN + ct_len
            if avail >= total:
                self._start = start + total
                if not self._open_and_deliver(header, view[start + HEADER_LEN : start + total]):
                    return
                continue
            if ct_len >= BIG_FRAME_BYTES:
                # Large frame: the kernel writes the rest of the body straight into a reused buffer.
                if self._big_buf is None or len(self._big_buf) < ct_len:
                    self._big_buf = bytearray(max(ct_len, BIG_FRAME_BYTES))
                self._big_view = memoryview(self._big_buf)[:ct_len]
                have = avail - HEADER_LEN
                self._big_view[:have] = view[start + HEADER_LEN : self._end]
                self._big_fill = have
                self._set_lowat(min(ct_len - have, RCVLOWAT_BYTES))
                self._big_header = header
                self._start = self._end = 0
                return
            if start + total > len(buf):
                self._compact()
            break
        if self._start == self._end:
            self._start = self._end = 0

    def _compact(self) -> None:
        n = self._end - self._start
        if n:
            self._buf[:n] = bytes(self._view[self._start : self._end])  # < BIG_FRAME_BYTES: cheap
        self._start, self._end = 0, n

    def _open_and_deliver(self, header: bytes, ciphertext: memoryview) -> bool:
        opener = self._opener
        assert opener is not None
        more = header[0] & 0x80
        try:
            plaintext = opener.open_frame(header, ciphertext)
            if not more and not self._segments:
                message = [plaintext]
            else:
                # A message of several frames is handed on as its frames' plaintexts: long byte strings
                # sent as frames of their own are then decoded without a copy (message_parts.decode_segments).
                if not self._segments and self.message_limit is not None:
                    self._msg_limit = min(self.max_message_bytes, self.message_limit(plaintext[:8]))
                frame_cap = FRAMES_BASE + self._msg_limit // FRAME_BYTES_PER_EXTRA
                self._segments.append(plaintext)
                self._msg_len += len(plaintext)
                if self._msg_len > self._msg_limit:
                    raise ProtocolViolation(REASON_MESSAGE_TOO_LARGE, PENALTY_FATAL, f"> {self._msg_limit}")
                if len(self._segments) > frame_cap:
                    raise ProtocolViolation(REASON_MESSAGE_TOO_LARGE, PENALTY_FATAL, f"> {frame_cap} frames")
                if more:
                    return True
                message, self._segments = self._segments, []
                self._msg_len = 0
                self._msg_limit = self.max_message_bytes
        except ProtocolViolation as exc:
            self._break(exc, exc.reason)
            return False
        if self._on_message is not None:
            self._on_message(message)
        return self._broken is None

    def _break(self, violation: ProtocolViolation | None, reason: str) -> None:
        if self._broken is not None:
            return
        self._broken = (violation, reason)
        if self.transport is not None and violation is not None:
            self.transport.pause_reading()
        self._wake_raw()
        if self._on_broken is not None:
            self._on_broken(violation, reason)

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed(REASON_CONNECTION_LOST)
        self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self) -> None:
        if self.transport is None or self.lost.done():
            raise ConnectionClosed(REASON_CONNECTION_LOST)
        if not self._write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drain(self, exc: Exception | None) -> None:
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
