"""The peer manager: listens, dials, admits or refuses connections, dispatches messages (DESIGN §6).

`Host` owns every live `PeerConnection` and enforces the connection policy the transport knows nothing
about: inbound/outbound limits, no connection to ourselves, at most one connection per node id, refusal
of banned peers right after the handshake, misbehaviour scoring, and redialling persistent peers with
exponential backoff. Upper layers (gossip, peer exchange, block sync, the node's reactors) register
their message types (entries of `message_ids`) with a handler each; `p2p/` never imports node code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey

from . import dial
from .addrbook import (
    AddressBook,
    AddressError,
    PeerAddr,
    is_loopback_host,
    is_unspecified_host,
    parse_hostport,
    parse_peer_addr,
)
from .bans import BanList
from .connection import ConnectionConfig, PeerConnection
from .errors import (
    REASON_CHAIN_ID,
    REASON_CONNECTION_LOST,
    REASON_GENESIS,
    REASON_NODE_ID,
    REASON_PROTOCOL_VERSION,
    REASON_SELF,
    REASON_SHUTDOWN,
    HandshakeError,
    P2PError,
)
from .frames import FrameProtocol
from .message_ids import MessageId
from .messages import PROTOCOL_VERSION, Hello, MessageRegistry, default_registry

log = logging.getLogger(__name__)

AGENT = "pocl/0.1"
ZERO_HASH = bytes(32)

REASON_BANNED = "banned"
REASON_DUPLICATE = "duplicate_connection"
REASON_TOO_MANY_PEERS = "too_many_peers"
REASON_REMOTE_REFUSED = "remote_refused"

# Handshake failures that are a configuration mismatch or a dropped line, not an attack: scored lightly.
BENIGN_HANDSHAKE_REASONS = frozenset(
    {
        REASON_PROTOCOL_VERSION,
        REASON_CHAIN_ID,
        REASON_GENESIS,
        REASON_CONNECTION_LOST,
        REASON_SHUTDOWN,
        REASON_REMOTE_REFUSED,
    }
)

Handler = Callable[[PeerConnection, Any], Awaitable[Struct | None] | Struct | None]
PeerCallback = Callable[["PeerInfo"], Awaitable[None] | None]


@dataclasses.dataclass
class HostConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0 = any free port (tests)
    external_host: str | None = None  # host advertised in hello when listening on 0.0.0.0
    external_port: int | None = None  # port advertised when a NAT or relay forwards another one (else ours)
    max_inbound: int = 40
    max_outbound: int = 10
    persistent_peers: tuple[str, ...] = ()  # "node_id_hex@host:port", always kept connected
    dial_timeout: float = 10.0
    reconnect_base: float = 1.0  # persistent-peer redial backoff: base * 2**attempt, capped
    reconnect_max: float = 60.0
    stable_after: float = 30.0  # a connection that lived this long resets the persistent backoff
    handshake_failure_penalty: float = 25.0  # per failed inbound handshake, scored on the IP
    benign_handshake_penalty: float = 5.0
    ban_threshold: float = 200.0  # two broken streams, four malformed messages, ten invalid gossip messages
    ban_half_life: float = 120.0
    ban_base: float = 60.0
    send_queue_size: int = 4096  # per-peer queue of one-way messages; full => drop (gossip is best effort)
    persist_interval_s: float = 30.0  # how often a changed address book / ban list is written out
    agent: str = AGENT
    transport: ConnectionConfig = dataclasses.field(default_factory=ConnectionConfig)


@dataclasses.dataclass
class PeerInfo:
    """A connected peer, as reported to callbacks and by `Host.peers()`."""

    node_id: bytes
    conn: PeerConnection
    outbound: bool
    persistent: bool
    remote_ip: str
    connected_at: float
    hello: Hello
    dial_addr: PeerAddr | None  # the address we dialled (outbound) or the one it advertised (inbound)
    queue: asyncio.Queue[Struct] = dataclasses.field(repr=False, default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = dataclasses.field(repr=False, default=None)
    dropped: int = 0  # one-way messages dropped because the peer could not keep up


class Host:
    """One node's P2P endpoint. Create, `register` message types, then `await start()`."""

    def __init__(
        self,
        node_key: PrivateKey,
        *,
        chain_id: str,
        genesis_hash: bytes,
        config: HostConfig | None = None,
        chain_tip: Callable[[], tuple[int, bytes]] | None = None,
        addrbook: AddressBook | None = None,
        bans: BanList | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or HostConfig()
        self.node_key = node_key
        self.node_id = node_key.pubkey
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self._chain_tip = chain_tip or (lambda: (0, ZERO_HASH))
        self.addrbook = addrbook if addrbook is not None else AddressBook(self_id=self.node_id)
        if self.addrbook.self_id is None:
            self.addrbook.self_id = self.node_id
        self.bans = bans if bans is not None else BanList(  # (an empty BanList is falsy)
            threshold=self.config.ban_threshold,
            half_life=self.config.ban_half_life,
            ban_base=self.config.ban_base,
        )
        self._rng = rng or random.Random()
        self.registry: MessageRegistry = default_registry()
        self._handlers: dict[type[Struct], Handler] = {}
        self._peers: dict[bytes, PeerInfo] = {}
        self._dialing: set[bytes] = set()
        self._inbound_pending = 0
        self._persistent: dict[bytes, PeerAddr] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._persistent_tasks: dict[bytes, asyncio.Task[None]] = {}
        self._connect_cbs: list[PeerCallback] = []
        self._disconnect_cbs: list[PeerCallback] = []
        self._server: asyncio.AbstractServer | None = None
        self._running = False
        self.listen_port = 0
        for text in self.config.persistent_peers:
            addr = parse_peer_addr(text)
            self._persistent[addr.node_id] = addr

    # ------------------------------------------------------------------ registration and events

    def register(
        self, message: MessageId, body_cls: type[Struct], max_bytes: int, handler: Handler | None = None
    ) -> None:
        """Add a message type (see `message_ids`); `handler(conn, body)` may return a Struct, the response
        to a request."""
        self.registry.register(message, body_cls, max_bytes)
        if handler is not None:
            self._handlers[body_cls] = handler

    def on_connect(self, callback: PeerCallback) -> None:
        self._connect_cbs.append(callback)

    def on_disconnect(self, callback: PeerCallback) -> None:
        self._disconnect_cbs.append(callback)

    def spawn(self, coro: Awaitable[Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run a background task owned by the host: cancelled by `stop()`, failures logged."""
        task = asyncio.ensure_future(coro)
        if name:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("p2p task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._running

    @property
    def listen_addr(self) -> PeerAddr:
        """The address other nodes should dial to reach us."""
        return PeerAddr(self.node_id, self._advertised_host(), self.config.external_port or self.listen_port)

    def _advertised_host(self) -> str:
        if self.config.external_host:
            return self.config.external_host
        if is_unspecified_host(self.config.listen_host):
            return "127.0.0.1"
        return self.config.listen_host

    async def start(self) -> None:
        if self._running:
            return
        self._server = await dial.listen(
            self.config.listen_host,
            self.config.listen_port,
            self._on_inbound,
            registry=self.registry,
            config=self.config.transport,
        )
        self.listen_port = self._server.sockets[0].getsockname()[1]
        self._running = True
        log.info("p2p listening on %s (node %s)", self.listen_addr.hostport, self.node_id.hex()[:12])
        for addr in self._persistent.values():
            self._start_persistent(addr)
        self.spawn(self._persist_loop(), "p2p-persist")

    async def _persist_loop(self) -> None:
        """Write out what changed now and then, so a killed node loses at most this interval of it."""
        while True:
            await asyncio.sleep(self.config.persist_interval_s)
            self.persist()

    def persist(self) -> None:
        """Save the address book and the ban list if they changed (I/O errors are logged, not raised)."""
        for what, save in (("address book", self.addrbook.save), ("ban list", self.bans.save)):
            try:
                save()
            except OSError as exc:
                log.warning("could not save %s: %s", what, exc)

    async def stop(self) -> None:
        """Close the listener and every connection; cancel background tasks; save address book and bans."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks) + list(self._persistent_tasks.values())
        for task in tasks:
            task.cancel()
        peers = list(self._peers.values())
        for peer in peers:
            self._close(peer, REASON_SHUTDOWN)
        closing = [asyncio.wait_for(peer.conn.wait_closed(), 5) for peer in peers]
        await asyncio.gather(*closing, *tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._persistent_tasks.clear()
        self.persist()

    # ------------------------------------------------------------------ queries

    def peers(self) -> list[PeerInfo]:
        return [p for p in self._peers.values() if not p.conn.closed]

    def peer(self, node_id: bytes) -> PeerInfo | None:
        peer = self._peers.get(node_id)
        return peer if peer is not None and not peer.conn.closed else None

    def is_connected(self, node_id: bytes) -> bool:
        return self.peer(node_id) is not None

    def count(self, *, outbound: bool) -> int:
        return sum(1 for p in self.peers() if p.outbound == outbound)

    @property
    def outbound_slots(self) -> int:
        """Free outbound slots (persistent peers included in the count)."""
        return max(0, self.config.max_outbound - self.count(outbound=True) - len(self._dialing))

    # ------------------------------------------------------------------ sending

    def send_to(self, node_id: bytes, body: Struct) -> bool:
        """Queue a one-way message to one peer; False if not connected or its queue is full."""
        peer = self.peer(node_id)
        if peer is None:
            return False
        try:
            peer.queue.put_nowait(body)
        except asyncio.QueueFull:
            peer.dropped += 1
            if peer.dropped in (1, 100) or peer.dropped % 10_000 == 0:
                log.warning("peer %s too slow: dropped %d messages", node_id.hex()[:12], peer.dropped)
            return False
        return True

    def broadcast(self, body: Struct, exclude: bytes | None = None) -> int:
        """Queue a one-way message to every peer except `exclude`; returns how many got it queued."""
        return sum(self.send_to(nid, body) for nid in list(self._peers) if nid != exclude)

    async def request(self, node_id: bytes, body: Struct, timeout: float) -> Struct:
        """Send a request and wait for its response; raises P2PError / TimeoutError."""
        peer = self.peer(node_id)
        if peer is None:
            raise P2PError(f"not connected to {node_id.hex()[:12]}")
        return await peer.conn.request(body, timeout)

    async def _sender(self, peer: PeerInfo) -> None:
        """Drain one peer's queue in order, so a slow peer delays only itself."""
        conn = peer.conn
        while not conn.closed:
            body = await peer.queue.get()
            try:
                await conn.send(body)
            except (P2PError, OSError):
                return
            except ValueError:  # our own message over its size limit: a bug, but not this peer's fault
                log.exception("cannot send %s", type(body).__name__)

    # ------------------------------------------------------------------ misbehaviour

    def punish(self, node_id: bytes, penalty: float, reason: str) -> bool:
        """Score a peer's offence; disconnect it if that bans it. Returns True if banned."""
        already = self.bans.is_banned(node_id)
        banned = self.bans.punish(node_id, penalty, reason)
        if banned and not already:
            log.warning("banning peer %s: %s", node_id.hex()[:12], reason)
        elif not banned:
            log.log(
                logging.INFO if penalty >= 1 else logging.DEBUG,
                "peer %s misbehaved (%s, +%s)",
                node_id.hex()[:12],
                reason,
                penalty,
            )
        if banned:
            peer = self.peer(node_id)
            if peer is not None:
                self._close(peer, REASON_BANNED)
        return banned

    def _on_misbehaviour(self, conn: PeerConnection, reason: str, penalty: float) -> None:
        self.punish(conn.node_id, penalty, reason)

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, conn: PeerConnection, body: Struct) -> Struct | None:
        handler = self._handlers.get(type(body))
        if handler is None:
            return None
        result = handler(conn, body)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _hello(self) -> Hello:
        height, best_hash = self._chain_tip()
        return Hello(
            protocol_version=PROTOCOL_VERSION,
            chain_id=self.chain_id,
            genesis_hash=self.genesis_hash,
            node_id=self.node_id,
            best_height=height,
            best_hash=best_hash or ZERO_HASH,
            listen_addr=self.listen_addr.hostport,
            agent=self.config.agent,
        )

    def _conn_kwargs(self) -> dict[str, Any]:
        return {
            "node_key": self.node_key,
            "local_hello": self._hello(),
            "registry": self.registry,
            "handler": self._dispatch,
            "on_misbehaviour": self._on_misbehaviour,
            "on_close": self._on_close,
            "config": self.config.transport,
        }

    # ------------------------------------------------------------------ inbound

    def _on_inbound(self, proto: FrameProtocol) -> None:
        self.spawn(self._accept(proto), name="p2p-accept")

    async def _accept(self, proto: FrameProtocol) -> None:
        ip = dial.peer_address(proto)[0]
        if not self._running or self.bans.is_banned(ip):
            dial.close_transport(proto)
            return
        if self.count(outbound=False) + self._inbound_pending >= self.config.max_inbound:
            log.debug("refusing inbound from %s: inbound limit", ip)
            dial.close_transport(proto)
            return
        self._inbound_pending += 1
        try:
            conn = await dial.accept(proto, **self._conn_kwargs())
        except HandshakeError as exc:
            self._score_handshake_failure(ip, REASON_REMOTE_REFUSED if exc.remote else exc.reason, str(exc))
            dial.close_transport(proto)
            return
        except Exception as exc:  # whatever a stranger sends must not escape into the server loop
            self._score_handshake_failure(ip, "bad_handshake", repr(exc))
            dial.close_transport(proto)
            return
        finally:
            self._inbound_pending -= 1
        self._admit(conn, outbound=False, remote_ip=ip, dial_addr=None)

    def _score_handshake_failure(self, ip: str, reason: str, detail: str) -> None:
        if reason == REASON_SELF:
            log.info("closed a connection to ourselves (our own address is being advertised)")
            return
        benign = reason in BENIGN_HANDSHAKE_REASONS
        penalty = self.config.benign_handshake_penalty if benign else self.config.handshake_failure_penalty
        if self.bans.punish(ip, penalty, f"handshake: {reason}"):
            log.warning("banning %s after failed handshakes (%s)", ip, detail)
        else:
            log.info("inbound handshake from %s failed: %s", ip, detail)

    # ------------------------------------------------------------------ outbound

    async def connect(self, addr: PeerAddr | str, *, persistent: bool = False) -> PeerInfo | None:
        """Dial `addr` once; returns the connected peer, or None (refused, failed, or already busy)."""
        if isinstance(addr, str):
            addr = parse_peer_addr(addr)
        nid = addr.node_id
        if not self._running or nid == self.node_id or self.bans.is_banned(nid):
            return None
        if self.is_connected(nid):
            return self._peers[nid]
        if nid in self._dialing:
            return None
        persistent = persistent or nid in self._persistent
        if not persistent and self.outbound_slots <= 0:
            return None
        self._dialing.add(nid)
        self.addrbook.mark_attempt(nid)
        try:
            conn = await asyncio.wait_for(
                dial.dial(addr.host, addr.port, expected_node_id=nid, **self._conn_kwargs()),
                self.config.dial_timeout,
            )
        except (P2PError, OSError, TimeoutError) as exc:
            log.debug("dial %s failed: %s", addr, exc)
            self.addrbook.mark_failure(nid, keep=persistent)
            if isinstance(exc, HandshakeError) and exc.reason == REASON_NODE_ID and not persistent:
                self.addrbook.remove(nid)  # someone else lives at that address now
            return None
        finally:
            self._dialing.discard(nid)
        if not self._running:
            conn.close(REASON_SHUTDOWN)
            return None
        peer = self._admit(conn, outbound=True, remote_ip=conn.remote_addr[0], dial_addr=addr)
        if peer is not None:
            self.addrbook.add(addr, source="config" if persistent else "dial")
            self.addrbook.mark_success(nid)
        return peer

    def _start_persistent(self, addr: PeerAddr) -> None:
        task = self._persistent_tasks.get(addr.node_id)
        if task is None or task.done():
            self._persistent_tasks[addr.node_id] = asyncio.ensure_future(self._keep_connected(addr))

    def reconnect_delay(self, attempt: int) -> float:
        """Backoff before the next redial of a persistent peer: base*2**attempt, capped, with jitter."""
        delay = min(self.config.reconnect_max, self.config.reconnect_base * 2 ** min(attempt, 30))
        return delay * (0.5 + 0.5 * self._rng.random())

    async def _keep_connected(self, addr: PeerAddr) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while self._running:
            peer = self.peer(addr.node_id)
            if peer is not None:
                since = loop.time()
                await peer.conn.wait_closed()
                if self.peer(addr.node_id) is not None:
                    continue  # replaced by a duplicate-resolution swap: still connected
                # A peer that keeps dropping us right after the handshake must not be redialled in a
                # tight loop: only a connection that lasted resets the backoff.
                if loop.time() - since >= self.config.stable_after:
                    attempt = 0
                else:
                    await asyncio.sleep(self.reconnect_delay(attempt))
                    attempt += 1
                continue
            if self.bans.is_banned(addr.node_id):
                await asyncio.sleep(max(self.bans.ban_remaining(addr.node_id), self.config.reconnect_base))
                continue
            if await self.connect(addr, persistent=True) is not None:
                attempt = 0
                continue
            await asyncio.sleep(self.reconnect_delay(attempt))
            attempt += 1

    # ------------------------------------------------------------------ admission

    def _admit(
        self, conn: PeerConnection, *, outbound: bool, remote_ip: str, dial_addr: PeerAddr | None
    ) -> PeerInfo | None:
        """Apply the connection policy to a freshly handshaken connection."""
        nid = conn.node_id
        if conn.closed:
            return None
        if not self._running:
            conn.close(REASON_SHUTDOWN)
            return None
        if nid == self.node_id:
            conn.close(REASON_SELF)
            return None
        if self.bans.is_banned(nid):
            conn.close(REASON_BANNED)
            return None
        existing = self.peer(nid)
        if existing is not None:
            # Two connections to one node (e.g. both dialled at once). Keep, on both sides, the one
            # dialled by the node with the smaller id, so the two ends agree on which survives.
            keep_new = existing.outbound != outbound and (outbound == (self.node_id < nid))
            if not keep_new:
                conn.close(REASON_DUPLICATE)
                return None
        elif not outbound and self.count(outbound=False) >= self.config.max_inbound:
            conn.close(REASON_TOO_MANY_PEERS)
            return None
        stale = self._peers.get(nid)
        if stale is not None and stale is not existing:
            self._drop(stale, stale.conn.close_reason or REASON_CONNECTION_LOST)
        hello = conn.remote_hello
        if dial_addr is None:
            dial_addr = self._advertised_addr(nid, hello, remote_ip)
            if dial_addr is not None:
                self.addrbook.add(dial_addr, source="inbound")
        peer = PeerInfo(
            node_id=nid,
            conn=conn,
            outbound=outbound,
            persistent=nid in self._persistent,
            remote_ip=remote_ip,
            connected_at=time.time(),
            hello=hello,
            dial_addr=dial_addr,
            queue=asyncio.Queue(self.config.send_queue_size),
        )
        self._peers[nid] = peer
        peer.sender = asyncio.ensure_future(self._sender(peer))
        if existing is not None:
            existing.conn.close(REASON_DUPLICATE)  # replaced: the peer stays connected, no events
            if existing.sender is not None:
                existing.sender.cancel()
            return peer
        log.info(
            "peer %s connected (%s %s)", nid.hex()[:12], "outbound" if outbound else "inbound", remote_ip
        )
        self._fire(self._connect_cbs, peer)
        return peer

    @staticmethod
    def _advertised_addr(node_id: bytes, hello: Hello, remote_ip: str) -> PeerAddr | None:
        """Where an inbound peer says it listens. A bind-any host, or a loopback host advertised from
        another machine, means 'the IP I came from' (the peer does not know its own address)."""
        try:
            host, port = parse_hostport(hello.listen_addr)
        except AddressError:
            return None
        if is_unspecified_host(host) or (is_loopback_host(host) and not is_loopback_host(remote_ip)):
            host = remote_ip
        return PeerAddr(node_id, host, port)

    def _close(self, peer: PeerInfo, reason: str) -> None:
        """Close a peer we decided to drop, and forget it now rather than when the socket is gone."""
        peer.conn.close(reason)
        self._drop(peer, reason)

    def _on_close(self, conn: PeerConnection, reason: str) -> None:
        peer = self._peers.get(conn.node_id)
        if peer is not None and peer.conn is conn:
            self._drop(peer, reason)

    def _drop(self, peer: PeerInfo, reason: str) -> None:
        if self._peers.get(peer.node_id) is not peer:
            return
        del self._peers[peer.node_id]
        if peer.sender is not None:
            peer.sender.cancel()
        log.info("peer %s disconnected: %s", peer.node_id.hex()[:12], reason)
        self._fire(self._disconnect_cbs, peer)

    def _fire(self, callbacks: list[PeerCallback], peer: PeerInfo) -> None:
        for cb in callbacks:
            try:
                result = cb(peer)
                if inspect.isawaitable(result):
                    self.spawn(result, name="p2p-peer-callback")
            except Exception:
                log.exception("peer callback failed")
