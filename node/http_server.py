"""Serving an aiohttp application on a configured address: shared by the RPC and the metrics endpoint."""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pocl.node.config import parse_host_port
from pocl.node.errors import UserError


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


async def serve_app(app: web.Application, listen_addr: str, *, what: str) -> tuple[web.AppRunner, int]:
    """Start `app` on `listen_addr` ("host:port", port 0 = any free port); returns the runner and the bound
    port. A taken or invalid address is the operator's to fix: one-line UserError naming `[what]`."""
    host, port = parse_host_port(listen_addr)
    runner = web.AppRunner(app, access_log=None, logger=HttpLogger(f"pocl.{what}.http"))
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
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
