"""The RPC middleware that bounds request bodies: their size, the time to send them, and the memory all
bodies in flight may take together.

40 clients posting 8 MiB each made the node hold 40 bodies at once (RSS 90 → 767 MB). Here, before a
handler reads anything:

- a `Content-Length` above `max_body_bytes` is answered 413 `body_too_large` without reading the body
  (a chunked body is cut at the same limit while it streams: aiohttp's `client_max_size`);
- each body reserves its declared length (a chunked one: `max_body_bytes`) from a budget of
  `max_buffered_body_bytes`; when the budget is spent the request is answered 503 `rpc_busy` at once,
  so memory held in bodies never exceeds the budget, whatever the number of clients;
- a body not fully received `body_timeout_s` after its headers gets its connection cut.

It also tells the connection gate when a request's headers are complete (`request_started`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pocl.node.heap_trim import HeapTrimmer
from pocl.node.rpc.connection_gate import ConnectionGate, GuardedConnection
from pocl.node.rpc.errors import error_response
from pocl.node.rpc.limits import BODY_BUSY, BODY_TOO_LARGE, TIMEOUT_BODY, RpcLimits
from pocl.node.rpc.routes import Handler

log = logging.getLogger("pocl.rpc.limits")

BODY_TOO_LARGE_CODE = "body_too_large"
RPC_BUSY_CODE = "rpc_busy"
RETRY_AFTER_S = "1"


class BodyBudget:
    """Bytes of request bodies admitted and not yet released; refuses what would exceed the budget
    (0 = no budget)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.in_flight = 0

    def try_reserve(self, size: int) -> bool:
        if self.budget_bytes and self.in_flight + size > self.budget_bytes:
            return False
        self.in_flight += size
        return True

    def release(self, size: int) -> None:
        self.in_flight -= size


class BodyGuard:
    def __init__(self, limits: RpcLimits, gate: ConnectionGate) -> None:
        self.limits = limits
        self.gate = gate
        self.counters = gate.counters
        self.budget = BodyBudget(limits.body_budget_bytes)
        self.trimmer = HeapTrimmer()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self.gate.of(request.transport)
        if conn is not None:
            conn.request_started()
        try:
            if not request.body_exists:
                return await handler(request)
            return await self._with_body(request, handler, conn)
        finally:
            if conn is not None:
                conn.request_finished()

    async def _with_body(
        self, request: web.Request, handler: Handler, conn: GuardedConnection | None
    ) -> web.StreamResponse:
        limit = self.limits.max_body_bytes
        declared = request.content_length
        if limit and declared is not None and declared > limit:
            self.counters.bodies_refused[BODY_TOO_LARGE] += 1
            return _closing(
                error_response(
                    413,
                    BODY_TOO_LARGE_CODE,
                    f"request body of {declared} bytes exceeds the limit of {limit} bytes ([rpc] max_body_bytes)",
                )
            )
        size = declared if declared is not None else limit
        if not self.budget.try_reserve(size):
            self.counters.bodies_refused[BODY_BUSY] += 1
            response = error_response(
                503,
                RPC_BUSY_CODE,
                f"too many request bodies in flight ({self.budget.in_flight} of {self.budget.budget_bytes} "
                "bytes, [rpc] max_buffered_body_bytes): retry shortly",
            )
            response.headers["Retry-After"] = RETRY_AFTER_S
            return _closing(response)
        self.counters.body_bytes_in_flight = self.budget.in_flight
        timer = None
        if self.limits.body_timeout_s > 0:
            timer = asyncio.get_running_loop().call_later(
                self.limits.body_timeout_s, self._body_timed_out, request, conn
            )
        try:
            return await handler(request)
        finally:
            if timer is not None:
                timer.cancel()
            self.budget.release(size)
            self.counters.body_bytes_in_flight = self.budget.in_flight
            self.trimmer.freed(size, idle=self.budget.in_flight == 0)

    def _body_timed_out(self, request: web.Request, conn: GuardedConnection | None) -> None:
        if request.content.is_eof():
            return
        self.counters.timeouts[TIMEOUT_BODY] += 1
        log.debug("rpc request %s %s cut: body not received in time", request.method, request.path)
        if conn is not None:
            conn.abort()
        elif request.transport is not None:
            request.transport.abort()


def _closing(response: web.Response) -> web.Response:
    """A refusal ends the connection: the unread body is discarded (briefly) instead of parsed as the
    next request."""
    response.force_close()
    return response
