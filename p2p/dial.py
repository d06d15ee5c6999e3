"""Establishing connections: dial out, listen and accept in (DESIGN §6).

Both directions run the secret handshake (`handshake.py`) and the hello exchange (`hello_policy.py`)
on a `FrameProtocol` that owns the socket from its first byte, then hand back a `PeerConnection`.
Every failure raises `HandshakeError` (a `P2PError`) and closes the socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pocl.ledger.keys import PrivateKey

from .callbacks import call_back
from .connection import CloseCallback, ConnectionConfig, Handler, MisbehaviourCallback, PeerConnection
from .errors import (
    REASON_EXPECTED_HELLO,
    REASON_HANDSHAKE_TIMEOUT,
    REASON_NODE_ID,
    REASON_SELF,
    ConnectionClosed,
    HandshakeError,
    P2PError,
    ProtocolViolation,
)
from .frames import FrameProtocol
from .handshake import secret_handshake
from .hello_policy import check_hello
from .messages import Disconnect, Hello, MessageRegistry
from .socket_tuning import use_unpaced_congestion_control

log = logging.getLogger("pocl.p2p")

REASON_CONNECT_FAILED = "connect_failed"

InboundCallback = Callable[[FrameProtocol], Any]


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
    conn = PeerConnection(
        proto,
        channel,
        local_hello=local_hello,
        remote_hello=env.body,
        outbound=outbound,
        remote_addr=peer_address(proto),
        registry=registry,
        handler=handler,
        on_misbehaviour=on_misbehaviour,
        on_close=on_close,
        config=config,
    )
    early = list(channel.inbox.messages)
    channel.inbox.messages.clear()
    conn.start(early)
    return conn


def _frame_protocol(
    config: ConnectionConfig, registry: MessageRegistry, on_inbound: InboundCallback | None = None
) -> FrameProtocol:
    max_message = min(config.max_message_bytes, max(registry.max_message_bytes, 1))
    if on_inbound is None:
        proto = FrameProtocol(config.max_frame_bytes, max_message)
    else:
        proto = _InboundProtocol(config.max_frame_bytes, max_message, on_inbound)
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
        close_transport(proto)
        raise HandshakeError(REASON_HANDSHAKE_TIMEOUT) from None
    except BaseException:
        close_transport(proto)
        raise


def close_transport(proto: FrameProtocol) -> None:
    """Close a connection that never became a `PeerConnection` (aborted if it does not drain in 1 s)."""
    if proto.transport is not None and not proto.transport.is_closing():
        proto.transport.close()
        asyncio.get_running_loop().call_later(1.0, proto.transport.abort)


def peer_address(proto: FrameProtocol) -> tuple[str, int]:
    """The remote (host, port) of a connected protocol, ("?", 0) where the socket cannot tell."""
    peer = proto.transport.get_extra_info("peername") if proto.transport is not None else None
    return (str(peer[0]), int(peer[1])) if peer else ("?", 0)


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
            _sock_transport, proto = await loop.create_connection(
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


class _InboundProtocol(FrameProtocol):
    """A listener's `FrameProtocol`: reports each new connection, whose bytes it buffers from the start."""

    def __init__(self, max_frame_bytes: int, max_message_bytes: int, on_inbound: InboundCallback) -> None:
        super().__init__(max_frame_bytes, max_message_bytes)
        self._on_inbound = on_inbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._on_inbound(self)


async def listen(
    host: str,
    port: int,
    on_inbound: InboundCallback,
    *,
    registry: MessageRegistry,
    config: ConnectionConfig | None = None,
) -> asyncio.Server:
    """Listen on (host, port); `on_inbound(proto)` hears each new connection before any handshake (to
    apply limits and bans, then `accept` it or `close_transport` it). `registry` must be complete."""
    config = config or ConnectionConfig()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _frame_protocol(config, registry, on_inbound), host, port)


async def accept(
    proto: FrameProtocol,
    *,
    node_key: PrivateKey,
    local_hello: Hello,
    registry: MessageRegistry,
    handler: Handler,
    on_misbehaviour: MisbehaviourCallback | None = None,
    on_close: CloseCallback | None = None,
    config: ConnectionConfig | None = None,
) -> PeerConnection:
    """Handshake an inbound connection that `listen` reported; raises HandshakeError on failure."""
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
        config=config or ConnectionConfig(),
    )


async def serve(
    host: str,
    port: int,
    on_connection: Callable[[PeerConnection], Any],
    *,
    on_handshake_error: Callable[[tuple[str, int], HandshakeError], Any] | None = None,
    **kwargs: Any,
) -> asyncio.Server:
    """Listen and `accept` every inbound connection; `kwargs` are accept's keyword arguments.

    A convenience for tests and benchmarks; the network layer uses `listen` + `accept` itself to apply
    its own inbound limits and bans before the handshake.
    """
    callback_tasks: set[asyncio.Future[Any]] = set()

    async def handshake(proto: FrameProtocol) -> None:
        peer = peer_address(proto)
        try:
            conn = await accept(proto, **kwargs)
        except HandshakeError as exc:
            call_back(on_handshake_error, callback_tasks, peer, exc)
            return
        except Exception:
            log.exception("accept from %s failed", peer)
            if proto.transport is not None:
                proto.transport.abort()
            return
        call_back(on_connection, callback_tasks, conn)

    def on_inbound(proto: FrameProtocol) -> None:
        task = asyncio.ensure_future(handshake(proto))
        callback_tasks.add(task)
        task.add_done_callback(callback_tasks.discard)

    return await listen(host, port, on_inbound, registry=kwargs["registry"], config=kwargs.get("config"))
