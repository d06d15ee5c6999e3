"""The web explorer the node serves on its RPC listener (`GET /explorer`): a single page (HTML, JS and CSS
shipped in this package, nothing fetched from elsewhere, so it works offline) that reads the JSON RPC and
follows the `/events` WebSocket for live updates. See docs/explorer.md.

    web.py       the page and its assets: routes outside the OpenAPI document, content types, CSP
    search.py    `GET /search?q=`: what a height, hash or address names (a JSON route of the RPC)
    index.html, app.js, style.css, favicon.svg   the page (served under /explorer/static/)
"""

from pocl.node.explorer.web import EXPLORER_PATH, explorer_url, mount_explorer

__all__ = ["EXPLORER_PATH", "explorer_url", "mount_explorer"]
