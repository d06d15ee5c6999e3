"""Serving an aiohttp application on a configured address: shared by the RPC and the metrics endpoint.

The RPC passes a `ConnectionGate` (node.rpc.connection_gate): its listener then wraps aiohttp's
protocol factory, so connections above the caps are refused at accept and slow headers are cut.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pocl.node.config import parse_host_port
from pocl.node.errors import UserError

if TYPE_CHECKING:
    from pocl.node.rpc.connection_gate import ConnectionGate


class HttpLogger:
    """aiohttp's server logger without tracebacks for a client's malformed HTTP: that is the client's
    mistake (or a port scanner), so it gets one INFO line, not an ERROR with a stack."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, tuple):
            exc = exc[1]
        elif not isinstance(exc, BaseException):
            exc = sys.exc_info()[1]
        if isinstance(exc, (HttpProcessingError, ConnectionError)):
            self._log.info("rejected malformed http request: %s", " ".join(str(exc).split()))
        else:
            self._log.exception(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class GatedTCPSite(web.TCPSite):
    """A TCP site whose listener hands each accepted connection to `gate` first. Same as `TCPSite.start`
    but for the wrapped protocol factory (aiohttp offers no hook for it)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, gate: ConnectionGate) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self.gate = gate
        self._listen = (host, port)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (what TCPSite.start does first)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.gate.wrap(server), *self._listen, reuse_address=True
        )


async def serve_app(
    app: web.Application,
    listen_addr: str,
    *,
    what: str,
    gate: ConnectionGate | None = None,
    **handler_options: Any,
) -> tuple[web.AppRunner, int]:
    """Start `app` on `listen_addr` ("host:port", port 0 = any free port); returns the runner and the bound
    port. A taken or invalid address is the operator's to fix: one-line UserError naming `[what]`.
    `handler_options` go to aiohttp's request handler (`keepalive_timeout`, `lingering_time`, ...)."""
    host, port = parse_host_port(listen_addr)
    runner = web.AppRunner(app, access_log=None, logger=HttpLogger(f"pocl.{what}.http"), **handler_options)
    await runner.setup()
    site = (
        web.TCPSite(runner, host, port, reuse_address=True)
        if gate is None
        else GatedTCPSite(runner, host, port, gate=gate)
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(
            f"{what}: cannot listen on {listen_addr}: {exc.strerror or exc} (see [{what}] listen_addr)"
        ) from None
    server = site._server  # aiohttp exposes no public accessor for the bound port
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = server.sockets[0].getsockname()[1]
    return runner, bound
