"""Serving the explorer page: `/explorer` (and `/explorer/`) answer index.html, `/explorer/static/{name}`
the assets of this package, and `/` redirects to `/explorer`.

These are not JSON API routes, so they are added to the app beside the `Route` table and stay out of
`/openapi.json`. The RPC's middlewares (CORS, body guard, errors) apply to them as to every route. The
assets are read once, at mount, from the installed package; a name outside that set is a 404 (no path is
ever joined from the request). Every answer carries a Content-Security-Policy allowing only this origin
(scripts, styles, images, and fetch/WebSocket connections back to it), so the page runs nothing that
did not ship with the node.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

from aiohttp import web
from pocl.node.rpc.errors import ApiError

EXPLORER_PATH = "/explorer"
STATIC_PATH = EXPLORER_PATH + "/static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# A Host header we echo into connect-src: host or [v6] with an optional port, nothing else.
SAFE_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


def is_page_path(path: str) -> bool:
    """Whether an RPC path is one of the explorer's page routes (not part of the JSON API)."""
    return path in ("/", EXPLORER_PATH) or path.startswith(EXPLORER_PATH + "/")


def explorer_url(rpc_url: str) -> str:
    """The explorer of the node whose RPC answers at `rpc_url` (`http://host:port`)."""
    return rpc_url.rstrip("/") + EXPLORER_PATH


def content_security_policy(host: str | None) -> str:
    """Only this origin: no inline script or style, no other host; WebSocket back to the same host (named
    explicitly: older browsers do not count ws: as 'self')."""
    connect = "'self'"
    if host and SAFE_HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """The page files of the installed package (html, js, css, svg beside this module), by name."""
    out: dict[str, Asset] = {}
    for entry in resources.files(__package__).iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            out[entry.name] = Asset(entry.read_bytes(), CONTENT_TYPES[suffix])
    return out


class ExplorerPages:
    def __init__(self) -> None:
        self.assets = load_assets()

    def _answer(self, request: web.Request, asset: Asset) -> web.Response:
        return web.Response(
            body=asset.body,
            headers={
                "Content-Type": asset.content_type,
                "Content-Security-Policy": content_security_policy(request.host),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    async def index(self, request: web.Request) -> web.Response:
        return self._answer(request, self.assets["index.html"])

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        asset = self.assets.get(name)
        if asset is None:
            raise ApiError(404, "not_found", f"no explorer asset {name!r}")
        return self._answer(request, asset)

    async def root(self, _request: web.Request) -> web.Response:
        raise web.HTTPFound(EXPLORER_PATH)


def mount_explorer(app: web.Application) -> None:
    """Add the explorer's page routes to the RPC app (outside the OpenAPI route table)."""
    pages = ExplorerPages()
    app.router.add_get("/", pages.root)
    app.router.add_get(EXPLORER_PATH, pages.index)
    app.router.add_get(EXPLORER_PATH + "/", pages.index)
    app.router.add_get(STATIC_PATH + "/{name}", pages.static)
