"""Length-prefixed ChaCha20-Poly1305 frames over a TCP stream (DESIGN §6).

Wire format of one frame: a 4-byte big-endian header (bit 31: "more frames of this message follow",
bits 0–30: ciphertext length including the 16-byte tag) followed by the ciphertext. The header is the
AEAD associated data, so a flipped length/flag bit fails authentication. Nonces are per-direction 96-bit
counters (4 zero bytes ‖ 64-bit little-endian counter); a replayed, dropped or reordered frame therefore
fails authentication too. The counter never wraps: the sender refuses to seal at `nonce_limit`.

`FrameProtocol` is an `asyncio.BufferedProtocol`: the kernel copies straight into our receive buffer
(large frames get a buffer of their own, so a 1 MiB frame is received with no extra copy) and the length
prefix is checked against `max_frame_bytes` before a single body byte is buffered.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import (
    PENALTY_FATAL,
    REASON_CONNECTION_LOST,
    REASON_DECRYPT_FAILED,
    REASON_FRAME_TOO_LARGE,
    REASON_FRAME_TOO_SMALL,
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
DEFAULT_MAX_FRAME_BYTES = 2 * 1024 * 1024
RECV_BUFFER_BYTES = 256 * 1024
# Large messages are sealed in chunks that fit the receive buffer, so each frame is decrypted while the
# bytes the kernel just copied are still in cache (1 MiB frames decrypt ~2x slower, cold).
SEND_CHUNK_BYTES = RECV_BUFFER_BYTES - HEADER_LEN - TAG_LEN
_NONCE_PREFIX = b"\x00\x00\x00\x00"
REASON_RAW_OVERFLOW = "handshake_overflow"


def nonce_for(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "little")


class FrameSealer:
    """Encrypts outgoing messages into frames with an increasing counter nonce."""

    def __init__(self, key: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, nonce_limit: int = NONCE_LIMIT):
        if len(key) != KEY_LEN:
            raise ValueError("frame key must be 32 bytes")
        if not TAG_LEN < max_frame_bytes <= LEN_MASK:
            raise ValueError("bad max_frame_bytes")
        self._aead = ChaCha20Poly1305(key)
        self._chunk = min(max_frame_bytes - TAG_LEN, SEND_CHUNK_BYTES)
        self.counter = 0
        self.nonce_limit = nonce_limit

    def seal_frame(self, part: bytes | memoryview, more: bool = False) -> bytearray:
        if self.counter >= self.nonce_limit:
            raise ConnectionClosed(REASON_NONCE_EXHAUSTED)
        ct_len = len(part) + TAG_LEN
        buf = bytearray(HEADER_LEN + ct_len)
        header = (ct_len | FLAG_MORE if more else ct_len).to_bytes(HEADER_LEN, "big")
        buf[:HEADER_LEN] = header
        self._aead.encrypt_into(nonce_for(self.counter), part, header, memoryview(buf)[HEADER_LEN:])
        self.counter += 1
        return buf

    def seal_message(self, payload: bytes) -> list[bytearray]:
        """One message → one or more frames (the last has the `more` flag clear)."""
        n = len(payload)
        if n <= self._chunk:
            return [self.seal_frame(payload)]
        view = memoryview(payload)
        frames = []
        for off in range(0, n, self._chunk):
            end = min(off + self._chunk, n)
            frames.append(self.seal_frame(view[off:end], more=end < n))
        return frames


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


MessageCallback = Callable[[bytes], None]
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
        self._big: bytearray | None = None
        self._big_view: memoryview | None = None
        self._big_fill = 0
        self._big_header = b""
        self._parts: list[bytes] = []
        self._parts_len = 0
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
            if self._big_fill < len(self._big_view):
                return
            big, header = self._big, self._big_header
            self._big = self._big_view = None
            self._big_fill = 0
            assert big is not None
            if not self._open_and_deliver(header, big):
                return
        else:
            self._end += nbytes
        if self._opener is None:
            if self._end == len(self._buf) and self._start == 0:  # a handshake never needs this much
                self._break(ProtocolViolation(REASON_RAW_OVERFLOW, PENALTY_FATAL), REASON_RAW_OVERFLOW)
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
    def start_frames(self, opener: FrameOpener, on_message: MessageCallback, on_broken: BrokenCallback) -> None:
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
            word = int.from_bytes(header, "big")
            ct_len = word & LEN_MASK
            if ct_len > self.max_frame_bytes:
                self._break(
                    ProtocolViolation(REASON_FRAME_TOO_LARGE, PENALTY_FATAL, f"{ct_len} > {self.max_frame_bytes}"),
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
            if total > len(buf):
                # Large frame: give it its own buffer so the kernel writes the body straight into it.
                self._big = bytearray(ct_len)
                self._big_view = memoryview(self._big)
                have = avail - HEADER_LEN
                self._big_view[:have] = view[start + HEADER_LEN : self._end]
                self._big_fill = have
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
            self._buf[:n] = bytes(self._view[self._start : self._end])
        self._start, self._end = 0, n

    def _open_and_deliver(self, header: bytes, ciphertext: bytes | bytearray | memoryview) -> bool:
        assert self._opener is not None
        try:
            plaintext = self._opener.open_frame(header, ciphertext)
        except ProtocolViolation as exc:
            self._break(exc, exc.reason)
            return False
        more = header[0] & 0x80
        if more or self._parts:
            self._parts_len += len(plaintext)
            if self._parts_len > self.max_message_bytes:
                self._break(
                    ProtocolViolation(REASON_MESSAGE_TOO_LARGE, PENALTY_FATAL, f"> {self.max_message_bytes}"),
                    REASON_MESSAGE_TOO_LARGE,
                )
                return False
            self._parts.append(plaintext)
            if more:
                return True
            plaintext = b"".join(self._parts)
            self._parts.clear()
            self._parts_len = 0
        if self._on_message is not None:
            self._on_message(plaintext)
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

    def writelines(self, frames: list[bytearray]) -> None:
        """Write frames; small ones are coalesced into one buffer (one syscall), large ones go as is."""
        if len(frames) == 1:
            self.write(frames[0])
            return
        small: list[bytearray] = []
        small_len = 0
        for frame in frames:
            if len(frame) >= 65536:
                if small:
                    self.write(b"".join(small))
                    small, small_len = [], 0
                self.write(frame)
            else:
                small.append(frame)
                small_len += len(frame)
        if small:
            self.write(b"".join(small) if len(small) > 1 else small[0])

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
