"""Connection caps and the header-read timeout of the RPC listener, around aiohttp's protocol.

aiohttp has neither a connection cap nor a time limit on reading a request's headers, so 2,000 idle
keep-alive clients or 1,400 slowloris connections (headers sent a byte at a time) took every file
descriptor of a node and it stopped persisting its signing state. `ConnectionGate.wrap` wraps the
server's protocol factory:

- at accept, a connection beyond `max_connections` in all, or beyond `max_connections_per_source`
  from one IP, is aborted at once (its fd freed before any read) and counted;
- from the connection's start, and again from the first byte after a finished request, the client has
  `header_timeout_s` to complete a request's headers (the RPC middleware calls `request_started`
  when aiohttp hands it a parsed request); otherwise the connection is cut.

Idle keep-alive connections are closed by aiohttp's own `keepalive_timeout` (set by `serve_app`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from pocl.node.rpc.limits import (
    REFUSED_PER_SOURCE,
    REFUSED_TOTAL,
    TIMEOUT_HEADER,
    RpcCounters,
    RpcLimits,
)

log = logging.getLogger("pocl.rpc.limits")

UNKNOWN_SOURCE = "?"


def _source(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return UNKNOWN_SOURCE


class GuardedConnection(asyncio.Protocol):
    """One accepted connection: admitted by the gate or aborted; forwards everything to aiohttp's
    protocol, which is only built once the connection is admitted."""

    def __init__(self, gate: ConnectionGate, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._gate = gate
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self.source = UNKNOWN_SOURCE
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_request = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.source = _source(transport)
        if not self._gate.admit(self):
            transport.abort()  # RST, fd released now; connection_lost below finds no inner protocol
            return
        self._transport = transport
        self._arm_header_timer()
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._in_request and self._header_timer is None:
            self._arm_header_timer()  # the first byte of the next request on a kept-alive connection
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._inner is None:
            return
        self._gate.release(self)
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # ---------------------------------------------------------------- request lifecycle (middleware)

    def request_started(self) -> None:
        """aiohttp parsed a request's headers: the header clock stops until the request is done."""
        self._in_request = True
        self._cancel_header_timer()

    def request_finished(self) -> None:
        self._in_request = False

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ---------------------------------------------------------------- header timer

    def _arm_header_timer(self) -> None:
        timeout = self._gate.limits.header_timeout_s
        if timeout > 0:
            self._header_timer = asyncio.get_running_loop().call_later(timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._in_request:
            return
        self._gate.counters.timeouts[TIMEOUT_HEADER] += 1
        log.debug("rpc connection from %s cut: no complete request headers in time", self.source)
        self.abort()


class ConnectionGate:
    """Counts open RPC connections in all and per source IP and refuses those above the caps."""

    def __init__(self, limits: RpcLimits, counters: RpcCounters | None = None) -> None:
        self.limits = limits
        self.counters = counters if counters is not None else RpcCounters()
        self.connections: set[GuardedConnection] = set()
        self._per_source: Counter[str] = Counter()

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory to give `loop.create_server` instead of aiohttp's `web.Server`."""
        return lambda: GuardedConnection(self, factory)

    def admit(self, conn: GuardedConnection) -> bool:
        """Count `conn` in, or False (counted as refused) when a cap is reached."""
        limits, source = self.limits, conn.source
        if limits.max_connections and len(self.connections) >= limits.max_connections:
            self.counters.refused[REFUSED_TOTAL] += 1
            return False
        if (
            limits.max_connections_per_source
            and self._per_source[source] >= limits.max_connections_per_source
        ):
            self.counters.refused[REFUSED_PER_SOURCE] += 1
            return False
        self._per_source[source] += 1
        self.connections.add(conn)
        self.counters.open_connections = len(self.connections)
        return True

    def release(self, conn: GuardedConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self._per_source[conn.source] -= 1
        if self._per_source[conn.source] <= 0:
            del self._per_source[conn.source]
        self.counters.open_connections = len(self.connections)

    def of(self, transport: asyncio.BaseTransport | None) -> GuardedConnection | None:
        """The guarded connection whose transport this is (the middleware's way back to it)."""
        if transport is None:
            return None
        protocol = transport.get_protocol()
        return protocol if isinstance(protocol, GuardedConnection) else None
