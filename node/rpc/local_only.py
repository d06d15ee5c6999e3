"""Routes that change what the node does (`POST /miner/mining`) answer only its own machine.

The check is the TCP peer's address (aiohttp's `request.remote`): a loopback address, with no
proxy header saying the request was forwarded for someone else. Browsers are kept out too, since a page
on this machine reaches loopback as well: a request carrying an `Origin` header (every cross-site
browser request does) is refused, and the body must be JSON, which a page cannot send cross-site
without a CORS preflight that the node does not grant.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web
from pocl.node.rpc.errors import ApiError

FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
JSON_CONTENT_TYPE = "application/json"


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def require_local(request: web.Request) -> None:
    """Raise 403 `local_only` unless the request comes from this machine, not through a proxy or browser."""
    forwarded = any(name in request.headers for name in FORWARDING_HEADERS)
    if forwarded or "Origin" in request.headers or not is_loopback(request.remote):
        raise ApiError(
            403, "local_only", f"{request.path} answers only requests from this machine (loopback)"
        )
    if request.content_type != JSON_CONTENT_TYPE:
        raise ApiError(
            415, "unsupported_media_type", f"{request.path} takes a JSON body ({JSON_CONTENT_TYPE})"
        )
