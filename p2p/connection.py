"""An established, authenticated and encrypted connection to one peer (DESIGN §6).

A `PeerConnection` (made by `dial.py` after the handshake and hello exchange) frames (`frames.py`) typed
messages (`messages.py`) with request/response ids, timeouts, ping/pong keepalive, an idle timeout and
write backpressure.

Incoming messages: responses and pings are handled inside the read callback (so a handler awaiting a
request on the same connection cannot deadlock on its own response); other messages queue for a single
dispatcher task that runs one-way handlers in arrival order and serves requests concurrently (bounded).
A peer's bad input never raises out of here: it becomes `on_misbehaviour(conn, reason, penalty)` and,
when the penalty reaches `close_penalty`, a close.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from pocl.ledger.codec import Struct

from . import message_ids
from .callbacks import call_back
from .errors import (
    PENALTY_UNEXPECTED_MESSAGE,
    PENALTY_UNEXPECTED_RESPONSE,
    REASON_CONNECTION_LOST,
    REASON_IDLE_TIMEOUT,
    REASON_NONCE_EXHAUSTED,
    REASON_UNEXPECTED_MESSAGE,
    REASON_UNEXPECTED_RESPONSE,
    ConnectionClosed,
    P2PError,
    ProtocolViolation,
    RemoteError,
    TooManyRequests,
)
from .frames import (
    DEFAULT_FRAME_CHUNK_BYTES,
    DEFAULT_MAX_FRAME_BYTES,
    NONCE_LIMIT,
    FrameProtocol,
    SendBuffer,
    plan_frames,
)
from .handshake import SecretChannel
from .messages import (
    Disconnect,
    Envelope,
    ErrorResponse,
    Hello,
    MessageRegistry,
    Ping,
    Pong,
)

log = logging.getLogger("pocl.p2p")

FLUSH_NOW_BYTES = 64 * 1024  # coalesce smaller writes until the end of this loop iteration

Handler = Callable[["PeerConnection", Struct], Awaitable[Struct | None]]
MisbehaviourCallback = Callable[["PeerConnection", str, int], Any]
CloseCallback = Callable[["PeerConnection", str], Any]


@dataclasses.dataclass(frozen=True)
class ConnectionConfig:
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    ping_interval_s: float = 15.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES  # largest frame accepted (ciphertext incl. tag)
    frame_chunk_bytes: int = DEFAULT_FRAME_CHUNK_BYTES  # large messages are sent in frames this big
    max_message_bytes: int = 64 * 1024 * 1024  # further capped by the registry's largest limit
    request_timeout_s: float = 30.0
    max_pending_requests: int = 256  # our outstanding requests on this connection
    max_concurrent_requests: int = 16  # the peer's requests we serve at once
    max_inbound_queue: int = 256  # decoded messages waiting for handlers before reading pauses
    send_buffer_bytes: int = 4 * 1024 * 1024  # write high-water mark: `send` waits above it
    close_penalty: int = 50  # a single violation with at least this penalty closes the connection
    close_grace_s: float = 2.0  # time to flush the Disconnect message before aborting
    nonce_limit: int = NONCE_LIMIT
    # Congestion control for connections to a loopback address (first one the kernel allows; empty:
    # keep the system default). See `use_unpaced_congestion_control`.
    loopback_congestion_control: tuple[str, ...] = ("cubic", "reno")


class PeerConnection:
    """One established connection; see module docstring for the threading of messages."""

    def __init__(
        self,
        proto: FrameProtocol,
        channel: SecretChannel,
        *,
        local_hello: Hello,
        remote_hello: Hello,
        outbound: bool,
        remote_addr: tuple[str, int],
        registry: MessageRegistry,
        handler: Handler,
        on_misbehaviour: MisbehaviourCallback | None,
        on_close: CloseCallback | None,
        config: ConnectionConfig,
    ) -> None:
        self.node_id = channel.remote_node_id
        self.local_hello = local_hello
        self.remote_hello = remote_hello
        self.outbound = outbound
        self.remote_addr = remote_addr
        self.registry = registry
        self.config = config
        self.closed = False
        self.close_reason: str | None = None
        self.remote_close_reason: str | None = None  # from the peer's Disconnect message
        self.rtt_s: float | None = None
        self.messages_sent = 0
        self.messages_received = 0
        self._proto = proto
        self._sealer = channel.sealer
        self._handler = handler
        self._on_misbehaviour = on_misbehaviour
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self.last_recv = self._loop.time()
        self._request_ids = itertools.count(1)
        self._last_request_id = 0
        self._pending: dict[int, asyncio.Future[Struct]] = {}
        self._inbound: collections.deque[Envelope] = collections.deque()
        self._inbound_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._out = SendBuffer()
        self._flush_handle: asyncio.Handle | None = None
        self._request_slots = asyncio.Semaphore(config.max_concurrent_requests)
        self._request_tasks: set[asyncio.Task[None]] = set()
        self._callback_tasks: set[asyncio.Future[Any]] = set()
        self._ping_nonce: int | None = None
        self._ping_sent_at = 0.0
        self._closed_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        assert proto.transport is not None
        proto.transport.set_write_buffer_limits(high=config.send_buffer_bytes)

    def __repr__(self) -> str:
        direction = "out" if self.outbound else "in"
        return f"PeerConnection({self.node_id.hex()[:12]} {direction} {self.remote_addr[0]}:{self.remote_addr[1]})"

    # ------------------------------------------------------------------ lifecycle
    def start(self, early: list[list[bytes]]) -> None:
        """Take over the stream: handle `early` (messages that arrived with the hello), then the rest."""
        for payload in early:
            self._on_payload(payload)
        self._proto.set_callbacks(self._on_payload, self._on_broken)
        if self.closed:
            return
        self._tasks.append(
            asyncio.create_task(self._dispatch_loop(), name=f"p2p-dispatch-{self.node_id.hex()[:8]}")
        )
        self._tasks.append(
            asyncio.create_task(self._keepalive_loop(), name=f"p2p-keepalive-{self.node_id.hex()[:8]}")
        )

    def close(self, reason: str, *, notify: bool = True) -> None:
        """Close (idempotent): tell the peer why (best effort), fail pending requests, call on_close once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        exc = ConnectionClosed(reason)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        current = asyncio.current_task()
        for task in [*self._tasks, *self._request_tasks]:
            if task is not current:
                task.cancel()
        transport = self._proto.transport
        if transport is not None and not transport.is_closing():
            if notify and self.remote_close_reason is None and reason != REASON_CONNECTION_LOST:
                try:
                    self._queue_payload(self.registry.encode_body_parts(Disconnect(reason[:128])))
                except (P2PError, ValueError):
                    pass
            self._flush()
            transport.close()
            self._loop.call_later(self.config.close_grace_s, transport.abort)
        else:
            self._out.used = 0
        self._tasks.append(asyncio.ensure_future(self._finish_close()))

    async def _finish_close(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._proto.lost), self.config.close_grace_s + 1.0)
        except (TimeoutError, asyncio.CancelledError):
            pass
        self._closed_event.set()
        call_back(self._on_close, self._callback_tasks, self, self.close_reason or REASON_CONNECTION_LOST)

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    # ------------------------------------------------------------------ sending
    def _queue_payload(self, parts: list[bytes]) -> None:
        """Encrypt one encoded message (as `encode_parts` cuts it) now, so nonces follow call order;
        write at once if large, else at the end of this loop iteration so that a burst of small
        messages leaves in one syscall."""
        sealer = self._sealer
        try:
            if len(parts) == 1 and len(parts[0]) <= sealer.chunk:
                sealer.seal_part_into(self._out, parts[0], False)
            else:
                # Seal and write frame by frame: each frame is still in cache when the kernel copies it,
                # and long byte strings are encrypted straight from the message object.
                frames = plan_frames(parts, sealer.chunk)
                last = len(frames) - 1
                for i, frame in enumerate(frames):
                    sealer.seal_part_into(self._out, frame, i < last)
                    if len(frame) >= FLUSH_NOW_BYTES:
                        self._flush()
        except ConnectionClosed:
            self.close(REASON_NONCE_EXHAUSTED, notify=False)
            raise
        self.messages_sent += 1
        if self._out.used >= FLUSH_NOW_BYTES:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._out.used:
            return
        try:
            self._proto.write(self._out.take())
        except ConnectionClosed:
            self.close(REASON_CONNECTION_LOST, notify=False)

    async def _drain(self) -> None:
        if self._proto.write_paused:
            try:
                await self._proto.drain()
            except ConnectionClosed:
                pass
        if self.closed:
            raise ConnectionClosed(self.close_reason or REASON_CONNECTION_LOST)

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionClosed(self.close_reason or REASON_CONNECTION_LOST)

    async def send(self, body: Struct) -> None:
        """Send a one-way message; waits while the send buffer is above its high-water mark."""
        self._check_open()
        self._queue_payload(self.registry.encode_body_parts(body))
        await self._drain()

    async def request(
        self, body: Struct, timeout: float | None = None, *, expect: type[Struct] | None = None
    ) -> Struct:
        """Send a request and wait for its response.

        Raises TimeoutError, RemoteError (peer answered ErrorResponse), ConnectionClosed, TooManyRequests,
        or ProtocolViolation (response of the wrong type when `expect` is given; also reported).
        """
        self._check_open()
        if len(self._pending) >= self.config.max_pending_requests:
            raise TooManyRequests(f"{len(self._pending)} requests pending")
        request_id = next(self._request_ids)
        self._last_request_id = request_id
        fut: asyncio.Future[Struct] = self._loop.create_future()
        self._pending[request_id] = fut
        try:
            self._queue_payload(self.registry.encode_body_parts(body, request_id))
            await self._drain()
            async with asyncio.timeout(self.config.request_timeout_s if timeout is None else timeout):
                result = await fut
        finally:
            self._pending.pop(request_id, None)
        if isinstance(result, ErrorResponse):
            raise RemoteError(result.code, result.detail)
        if expect is not None and not isinstance(result, expect):
            violation = ProtocolViolation(
                REASON_UNEXPECTED_RESPONSE, PENALTY_UNEXPECTED_RESPONSE, f"got {type(result).__name__}"
            )
            self._misbehaved(violation.reason, violation.penalty)
            raise violation
        return result

    async def ping(self, timeout: float | None = None) -> float:
        """Round-trip time of a Ping request, in seconds."""
        start = self._loop.time()
        await self.request(Ping(secrets.randbits(63)), timeout, expect=Pong)
        self.rtt_s = self._loop.time() - start
        return self.rtt_s

    # ------------------------------------------------------------------ receiving
    def _on_payload(self, payload: list[bytes]) -> None:
        if self.closed:
            return
        self.last_recv = self._loop.time()
        self.messages_received += 1
        try:
            env = self.registry.decode(payload)
        except ProtocolViolation as violation:
            self._misbehaved(violation.reason, violation.penalty)
            return
        if env.is_response:
            fut = self._pending.pop(env.request_id, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(env.body)
            elif env.request_id > self._last_request_id:  # never asked; late answers are fine
                self._misbehaved(REASON_UNEXPECTED_RESPONSE, PENALTY_UNEXPECTED_RESPONSE)
            return
        type_id = env.type_id
        if type_id == message_ids.PING.type_id:
            assert isinstance(env.body, Ping)
            if self._proto.write_paused:  # the peer is not reading: no unbounded pile of pongs
                return
            try:
                self._queue_payload(
                    self.registry.encode_body_parts(Pong(env.body.nonce), env.request_id, env.request_id != 0)
                )
            except P2PError:
                pass
            return
        if type_id == message_ids.PONG.type_id:
            assert isinstance(env.body, Pong)
            if self._ping_nonce is not None and env.body.nonce == self._ping_nonce:
                self.rtt_s = self._loop.time() - self._ping_sent_at
                self._ping_nonce = None
            return
        if type_id == message_ids.DISCONNECT.type_id:
            assert isinstance(env.body, Disconnect)
            self.remote_close_reason = env.body.reason
            self.close(env.body.reason, notify=False)
            return
        if type_id in (message_ids.HELLO.type_id, message_ids.ERROR.type_id):
            self._misbehaved(REASON_UNEXPECTED_MESSAGE, PENALTY_UNEXPECTED_MESSAGE)
            return
        self._inbound.append(env)
        if len(self._inbound) >= self.config.max_inbound_queue and not self._reading_paused:
            self._reading_paused = True
            if self._proto.transport is not None:
                self._proto.transport.pause_reading()
        if self._inbound_waiter is not None and not self._inbound_waiter.done():
            self._inbound_waiter.set_result(None)

    def _on_broken(self, violation: ProtocolViolation | None, reason: str) -> None:
        if violation is not None:
            self._misbehaved(violation.reason, violation.penalty)
        self.close(reason, notify=violation is not None)

    def _misbehaved(self, reason: str, penalty: int) -> None:
        log.info("%r misbehaved: %s (penalty %d)", self, reason, penalty)
        call_back(self._on_misbehaviour, self._callback_tasks, self, reason, penalty)
        if penalty >= self.config.close_penalty:
            self.close(reason)

    async def _dispatch_loop(self) -> None:
        low_water = self.config.max_inbound_queue // 2
        while not self.closed:
            if not self._inbound:
                self._inbound_waiter = self._loop.create_future()
                await self._inbound_waiter
                self._inbound_waiter = None
                continue
            env = self._inbound.popleft()
            if self._reading_paused and len(self._inbound) <= low_water:
                self._reading_paused = False
                if self._proto.transport is not None and not self.closed:
                    self._proto.transport.resume_reading()
            if env.request_id:
                await self._request_slots.acquire()
                task = asyncio.create_task(self._serve_request(env))
                self._request_tasks.add(task)
                task.add_done_callback(self._request_tasks.discard)
            else:
                await self._run_handler(env)

    async def _run_handler(self, env: Envelope) -> tuple[Struct | None, ErrorResponse | None]:
        try:
            result = self._handler(self, env.body)
            if inspect.isawaitable(result):
                result = await result
            return result, None
        except ProtocolViolation as violation:
            self._misbehaved(violation.reason, violation.penalty)
            return None, ErrorResponse("bad_request", violation.reason)
        except asyncio.CancelledError:
            raise
        except P2PError as exc:
            return None, ErrorResponse("p2p_error", str(exc)[:512])
        except Exception:
            log.exception("%r: handler failed on %s", self, type(env.body).__name__)
            return None, ErrorResponse("internal_error", "")

    async def _serve_request(self, env: Envelope) -> None:
        try:
            result, error = await self._run_handler(env)
            if self.closed:
                return
            if error is None and result is None:
                error = ErrorResponse("unhandled", type(env.body).__name__)
            response: Struct = error if error is not None else result  # type: ignore[assignment]
            try:
                payload = self.registry.encode_body_parts(response, env.request_id, True)
            except (ValueError, KeyError):
                log.exception("%r: cannot encode response %s", self, type(response).__name__)
                payload = self.registry.encode_body_parts(
                    ErrorResponse("internal_error", "bad response"), env.request_id, True
                )
            self._queue_payload(payload)
            await self._drain()
        except P2PError:
            pass
        finally:
            self._request_slots.release()

    async def _keepalive_loop(self) -> None:
        cfg = self.config
        next_ping = self._loop.time() + cfg.ping_interval_s
        while not self.closed:
            now = self._loop.time()
            idle_deadline = self.last_recv + cfg.idle_timeout_s
            if now >= idle_deadline:
                self.close(REASON_IDLE_TIMEOUT)
                return
            if now >= next_ping:
                self._ping_nonce = secrets.randbits(63)
                self._ping_sent_at = now
                try:
                    self._queue_payload(self.registry.encode_body_parts(Ping(self._ping_nonce)))
                except P2PError:
                    return
                next_ping = now + cfg.ping_interval_s
            await asyncio.sleep(max(0.0, min(idle_deadline, next_ping) - now))
