"""An authenticated, encrypted connection to one peer (DESIGN §6).

`dial` / `accept` run the secret handshake (`handshake.py`) and the hello exchange, then hand back a
`PeerConnection` that frames (`frames.py`) typed messages (`messages.py`) with request/response ids,
timeouts, ping/pong keepalive, an idle timeout and write backpressure.

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
import ipaddress
import itertools
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey

from .errors import (
    PENALTY_UNEXPECTED_MESSAGE,
    PENALTY_UNEXPECTED_RESPONSE,
    REASON_BAD_HANDSHAKE,
    REASON_BAD_HELLO,
    REASON_CHAIN_ID,
    REASON_CONNECTION_LOST,
    REASON_EXPECTED_HELLO,
    REASON_GENESIS,
    REASON_HANDSHAKE_TIMEOUT,
    REASON_IDLE_TIMEOUT,
    REASON_NODE_ID,
    REASON_NONCE_EXHAUSTED,
    REASON_PROTOCOL_VERSION,
    REASON_SELF,
    REASON_UNEXPECTED_MESSAGE,
    REASON_UNEXPECTED_RESPONSE,
    ConnectionClosed,
    HandshakeError,
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
from .handshake import SecretChannel, secret_handshake
from .messages import (
    TYPE_DISCONNECT,
    TYPE_ERROR,
    TYPE_HELLO,
    TYPE_PING,
    TYPE_PONG,
    Disconnect,
    Envelope,
    ErrorResponse,
    Hello,
    MessageRegistry,
    Ping,
    Pong,
)

log = logging.getLogger("pocl.p2p")

REASON_CONNECT_FAILED = "connect_failed"
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


def congestion_control_of(sock: Any) -> str | None:
    """The TCP congestion control algorithm of a socket (Linux), or None where it cannot be read."""
    if not hasattr(socket, "TCP_CONGESTION"):
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    except (OSError, UnicodeDecodeError):
        return None


def use_unpaced_congestion_control(sock: Any, algorithms: tuple[str, ...]) -> str | None:
    """On a loopback connection, replace a pacing congestion control (BBR, the default on many hosts)
    with the first of `algorithms` the kernel allows; returns the one set, or None.

    Pacing spreads packets out for a bottleneck link; on loopback (a devnet or cluster on one machine)
    there is none, and BBR's pacing timers cost the sender about as much CPU as encrypting the data
    (docs/benchmarks/p2p.md). Best effort: any failure keeps the default.
    """
    if not algorithms or sock is None:
        return None
    try:
        if not ipaddress.ip_address(sock.getpeername()[0]).is_loopback:
            return None
    except (OSError, ValueError, IndexError):
        return None
    current = congestion_control_of(sock)
    if current is None:
        return None
    if current in algorithms:
        return current
    for name in algorithms:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
            return name
        except OSError:
            continue
    return None


def check_hello(local: Hello, remote: Hello, remote_node_id: bytes) -> str | None:
    """The REASON_* code for a peer we must not talk to, or None."""
    if remote.protocol_version != local.protocol_version:
        return REASON_PROTOCOL_VERSION
    if remote.chain_id != local.chain_id:
        return REASON_CHAIN_ID
    if remote.genesis_hash != local.genesis_hash:
        return REASON_GENESIS
    if remote.node_id != remote_node_id:
        return REASON_BAD_HELLO
    return None


def _call_back(fn: Callable[..., Any] | None, tasks: set[asyncio.Future[Any]], *args: Any) -> None:
    """Run a user callback without letting it break the transport; if it is async, run it as a task
    held in `tasks` (the event loop keeps only weak references to tasks)."""
    if fn is None:
        return
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(_log_task_error)
    except Exception:
        log.exception("p2p callback %r failed", fn)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("p2p callback task failed", exc_info=task.exception())


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
        keepalive: Any = None,
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
        self._keep = keepalive  # e.g. the StreamWriter whose __del__ would otherwise close our transport
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
    def _start(self, early: list[list[bytes]]) -> None:
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
        _call_back(self._on_close, self._callback_tasks, self, self.close_reason or REASON_CONNECTION_LOST)

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
        if type_id == TYPE_PING:
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
        if type_id == TYPE_PONG:
            assert isinstance(env.body, Pong)
            if self._ping_nonce is not None and env.body.nonce == self._ping_nonce:
                self.rtt_s = self._loop.time() - self._ping_sent_at
                self._ping_nonce = None
            return
        if type_id == TYPE_DISCONNECT:
            assert isinstance(env.body, Disconnect)
            self.remote_close_reason = env.body.reason
            self.close(env.body.reason, notify=False)
            return
        if type_id in (TYPE_HELLO, TYPE_ERROR):
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
        _call_back(self._on_misbehaviour, self._callback_tasks, self, reason, penalty)
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


# ---------------------------------------------------------------------- establishing


async def _establish(
    proto: FrameProtocol,
    *,
    node_key: PrivateKey,
    local_hello: Hello,
    registry: MessageRegistry,
    handler: Handler,
    on_misbehaviour: MisbehaviourCallback | None,
    on_close: CloseCallback | None,
    expected_node_id: bytes | None,
    outbound: bool,
    config: ConnectionConfig,
    keepalive: Any = None,
) -> PeerConnection:
    if local_hello.node_id != node_key.pubkey:
        raise ValueError("local_hello.node_id must be node_key.pubkey")
    channel = await secret_handshake(
        proto,
        node_key,
        max_frame_bytes=config.max_frame_bytes,
        nonce_limit=config.nonce_limit,
        chunk_bytes=config.frame_chunk_bytes,
    )

    def refuse(reason: str, detail: str = "") -> HandshakeError:
        try:
            proto.write(channel.sealer.seal_frame(registry.encode_body(Disconnect(reason))))
        except P2PError:
            pass
        return HandshakeError(reason, detail)

    if expected_node_id is not None and channel.remote_node_id != expected_node_id:
        raise refuse(REASON_NODE_ID, f"expected {expected_node_id.hex()}, got {channel.remote_node_id.hex()}")
    if channel.remote_node_id == node_key.pubkey:
        raise refuse(REASON_SELF)
    proto.write(channel.sealer.seal_frame(registry.encode_body(local_hello)))
    try:
        raw = await channel.inbox.get()
    except ConnectionClosed as exc:
        raise HandshakeError(exc.reason, "waiting for hello") from None
    try:
        env = registry.decode(raw)
    except ProtocolViolation as violation:
        raise refuse(REASON_EXPECTED_HELLO, violation.reason) from None
    if isinstance(env.body, Disconnect):
        raise HandshakeError(env.body.reason, "refused by peer", remote=True)
    if not isinstance(env.body, Hello) or env.request_id != 0:
        raise refuse(REASON_EXPECTED_HELLO, type(env.body).__name__)
    reason = check_hello(local_hello, env.body, channel.remote_node_id)
    if reason is not None:
        raise refuse(reason)
    assert proto.transport is not None
    peer = proto.transport.get_extra_info("peername") or ("?", 0)
    conn = PeerConnection(
        proto,
        channel,
        local_hello=local_hello,
        remote_hello=env.body,
        outbound=outbound,
        remote_addr=(str(peer[0]), int(peer[1])),
        registry=registry,
        handler=handler,
        on_misbehaviour=on_misbehaviour,
        on_close=on_close,
        config=config,
        keepalive=keepalive,
    )
    early = list(channel.inbox.messages)
    channel.inbox.messages.clear()
    conn._start(early)
    return conn


def _frame_protocol(config: ConnectionConfig, registry: MessageRegistry) -> FrameProtocol:
    max_message = min(config.max_message_bytes, max(registry.max_message_bytes, 1))
    proto = FrameProtocol(config.max_frame_bytes, max_message)
    proto.message_limit = registry.limit_for
    return proto


async def _establish_or_close(proto: FrameProtocol, **kwargs: Any) -> PeerConnection:
    config: ConnectionConfig = kwargs["config"]
    if proto.transport is not None:
        use_unpaced_congestion_control(proto.transport.get_extra_info("socket"), config.loopback_congestion_control)
    try:
        async with asyncio.timeout(config.handshake_timeout_s):
            return await _establish(proto, **kwargs)
    except TimeoutError:
        _close_transport(proto)
        raise HandshakeError(REASON_HANDSHAKE_TIMEOUT) from None
    except BaseException:
        _close_transport(proto)
        raise


def _close_transport(proto: FrameProtocol) -> None:
    if proto.transport is not None and not proto.transport.is_closing():
        proto.transport.close()
        asyncio.get_running_loop().call_later(1.0, proto.transport.abort)


async def dial(
    host: str,
    port: int,
    *,
    node_key: PrivateKey,
    local_hello: Hello,
    registry: MessageRegistry,
    handler: Handler,
    on_misbehaviour: MisbehaviourCallback | None = None,
    on_close: CloseCallback | None = None,
    expected_node_id: bytes | None = None,
    config: ConnectionConfig | None = None,
) -> PeerConnection:
    """Connect, handshake and exchange hellos. Every failure raises HandshakeError (a P2PError)."""
    config = config or ConnectionConfig()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(config.handshake_timeout_s):
            _transport, proto = await loop.create_connection(
                lambda: _frame_protocol(config, registry), host, port
            )
    except TimeoutError:
        raise HandshakeError(REASON_HANDSHAKE_TIMEOUT, "connect") from None
    except OSError as exc:
        raise HandshakeError(REASON_CONNECT_FAILED, str(exc)) from None
    return await _establish_or_close(
        proto,
        node_key=node_key,
        local_hello=local_hello,
        registry=registry,
        handler=handler,
        on_misbehaviour=on_misbehaviour,
        on_close=on_close,
        expected_node_id=expected_node_id,
        outbound=True,
        config=config,
    )


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_key: PrivateKey,
    local_hello: Hello,
    registry: MessageRegistry,
    handler: Handler,
    on_misbehaviour: MisbehaviourCallback | None = None,
    on_close: CloseCallback | None = None,
    config: ConnectionConfig | None = None,
) -> PeerConnection:
    """Handshake an inbound stream from `asyncio.start_server`; raises HandshakeError on failure.

    The transport is taken over from the stream objects (so frames are received without the
    StreamReader's copies); bytes the StreamReader already buffered are replayed first.
    """
    config = config or ConnectionConfig()
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    proto = _frame_protocol(config, registry)
    buffered = getattr(reader, "_buffer", None)
    leftover = bytes(buffered) if buffered else b""
    if buffered:
        buffered.clear()
    proto.connection_made(transport)
    transport.set_protocol(proto)
    transport.resume_reading()
    if transport.is_closing():
        proto.connection_lost(None)
    else:
        view = memoryview(leftover)
        while view:
            buf = proto.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            proto.buffer_updated(n)
            view = view[n:]
        if reader.at_eof():
            proto.eof_received()
    return await _establish_or_close(
        proto,
        node_key=node_key,
        local_hello=local_hello,
        registry=registry,
        handler=handler,
        on_misbehaviour=on_misbehaviour,
        on_close=on_close,
        expected_node_id=None,
        outbound=False,
        config=config,
        keepalive=writer,
    )


async def serve(
    host: str,
    port: int,
    on_connection: Callable[[PeerConnection], Any],
    *,
    on_handshake_error: Callable[[tuple[str, int], HandshakeError], Any] | None = None,
    **kwargs: Any,
) -> asyncio.Server:
    """Listen and `accept` every inbound stream; `kwargs` are accept's keyword arguments.

    A convenience for tests and benchmarks; the network layer may use `asyncio.start_server` + `accept`
    itself to apply its own inbound limits and bans before the handshake.
    """

    callback_tasks: set[asyncio.Future[Any]] = set()

    async def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            conn = await accept(reader, writer, **kwargs)
        except HandshakeError as exc:
            _call_back(on_handshake_error, callback_tasks, (str(peer[0]), int(peer[1])), exc)
            return
        except Exception:
            log.exception("accept from %s failed", peer)
            writer.transport.abort()
            return
        _call_back(on_connection, callback_tasks, conn)

    return await asyncio.start_server(on_stream, host, port)


__all__ = [
    "REASON_BAD_HANDSHAKE",
    "ConnectionConfig",
    "Handler",
    "PeerConnection",
    "accept",
    "check_hello",
    "congestion_control_of",
    "dial",
    "serve",
    "use_unpaced_congestion_control",
]
