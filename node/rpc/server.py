"""The RPC server: one aiohttp application with CORS and error middleware over the route table.

Core routes (`routes.CORE_ROUTES`) are served by the handler areas (status, chain, txs, the event
stream); extension routes (PoCL rounds and models, tx batches) are passed in as `Route`s carrying their
handler, so they appear in `/openapi.json` like the core ones. The web explorer's page and assets (`/explorer`,
`/` redirects there) are mounted beside them, outside the OpenAPI document (`pocl.node.explorer`).

What a client can make the server hold is bounded by `RpcLimits` (`[rpc]` in config.toml): connections
in all and per source IP and the time to send headers (`connection_gate`), body size, time and the
memory of all bodies in flight (`body_guard`), and idle keep-alive time (aiohttp's `keepalive_timeout`).
"""

from __future__ import annotations

import logging

from aiohttp import web
from pocl.node.config import parse_host_port
from pocl.node.explorer.search import SearchApi
from pocl.node.explorer.web import mount_explorer
from pocl.node.http_server import serve_app
from pocl.node.interfaces import RpcNode
from pocl.node.rpc.body_guard import BodyGuard
from pocl.node.rpc.chain import ChainApi
from pocl.node.rpc.connection_gate import ConnectionGate
from pocl.node.rpc.errors import ApiError, error_response
from pocl.node.rpc.limits import LINGER_S, RpcCounters, RpcLimits, RpcLimitsCollector
from pocl.node.rpc.openapi import openapi_document
from pocl.node.rpc.routes import CORE_ROUTES, UNSAFE_ROUTES, Handler, Route
from pocl.node.rpc.status import StatusApi
from pocl.node.rpc.txs import TxApi
from pocl.node.rpc.unsafe import PeerAdminApi
from pocl.node.rpc.websocket import EventStream
from prometheus_client import CollectorRegistry

log = logging.getLogger("pocl.rpc")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_WS_CLIENTS = 100
CORS_MAX_AGE_S = "600"


class RpcServer:
    def __init__(
        self,
        node: RpcNode,
        listen_addr: str,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_ws_clients: int = DEFAULT_MAX_WS_CLIENTS,
        extra_routes: tuple[Route, ...] = (),
        unsafe: bool = False,
        cors_allowed_origins: tuple[str, ...] | list[str] = (),
        limits: RpcLimits | None = None,
    ) -> None:
        """`limits` (from `[rpc]`) bound what clients can make it hold; without it the defaults apply with
        `max_body_bytes`."""
        self.cors_allowed_origins = frozenset(cors_allowed_origins)
        self.listen_addr = listen_addr
        self.limits = limits if limits is not None else RpcLimits(max_body_bytes=max_body_bytes)
        self.max_body_bytes = self.limits.max_body_bytes
        self.counters = RpcCounters()
        self.gate = ConnectionGate(self.limits, self.counters)
        self.body_guard = BodyGuard(self.limits, self.gate)
        self.routes = CORE_ROUTES + extra_routes + (UNSAFE_ROUTES if unsafe else ())
        self.events = EventStream(node, max_ws_clients)
        self._handlers: dict[str, Handler] = {
            **StatusApi(node).handlers(),
            **ChainApi(node).handlers(),
            **TxApi(node, node).handlers(),
            **self.events.handlers(),
            **SearchApi(node).handlers(),
            **(PeerAdminApi(node).handlers() if unsafe else {}),
            "openapi": self.openapi,
        }
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body_bytes,
            middlewares=[self._cors, self.body_guard.middleware, self._errors],
        )
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler or self._handlers[r.handler_name])
        mount_explorer(app)  # the web page and its assets: not JSON API routes, not in /openapi.json
        return app

    async def start(self) -> None:
        self._runner, self.port = await serve_app(
            self.app(),
            self.listen_addr,
            what="rpc",
            gate=self.gate,
            keepalive_timeout=self.limits.keepalive_timeout_s,
            lingering_time=LINGER_S,
        )
        self.events.start()
        log.info("rpc listening on http://%s:%d", parse_host_port(self.listen_addr)[0], self.port)

    async def stop(self) -> None:
        self.events.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Export the `pocl_rpc_*` connection, timeout and body counters on a metrics registry."""
        registry.register(RpcLimitsCollector(self.counters))

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.routes))

    def _allowed_origin(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or not self.cors_allowed_origins:
            return None
        if "*" in self.cors_allowed_origins:
            return "*"
        return origin if origin in self.cors_allowed_origins else None

    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Browser access for the origins in `[rpc] cors_allowed_origins` (none by default)."""
        allowed = self._allowed_origin(request)
        if allowed is not None and request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": allowed,
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": CORS_MAX_AGE_S,
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        if allowed is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Vary"] = "Origin"
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "body_too_large", f"request body exceeds {self.max_body_bytes} bytes")
        except web.HTTPNotFound:
            return error_response(404, "not_found", f"no route for {request.method} {request.path}")
        except web.HTTPMethodNotAllowed:
            return error_response(
                405, "method_not_allowed", f"{request.method} not allowed on {request.path}"
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = (exc.reason or "http_error").lower().replace(" ", "_")
            return error_response(exc.status, code, exc.text or exc.reason)
        except Exception:
            log.exception("rpc handler failed for %s %s", request.method, request.path)
            return error_response(500, "internal_error", "internal error (see the node log)")
