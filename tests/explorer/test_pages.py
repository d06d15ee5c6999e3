"""The explorer's page and assets (no browser): served at /explorer with their content types and a
Content-Security-Policy of this origin only, nothing loaded from elsewhere, and kept out of the OpenAPI
document; its JSON routes (/search, /rounds, /miners, /accounts/{address}/rounds) answer their schemas."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import make_transfer
from pocl.node.explorer.web import EXPLORER_PATH, content_security_policy, is_page_path, load_assets
from pocl.node.node import Node
from pocl.node.rpc.server import RpcServer

from tests.support.openapi_check import check
from tests.support.rpc_node import FAUCET, Api

CHAIN = "rpc-test"
DAVE = PrivateKey.from_seed_text("explorer-dave")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    server = RpcServer(None, "127.0.0.1:0")  # type: ignore[arg-type]  # pages need no node
    c = TestClient(TestServer(server.app()))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/explorer", "text/html"),
        ("/explorer/", "text/html"),
        ("/explorer/static/app.js", "text/javascript"),
        ("/explorer/static/style.css", "text/css"),
        ("/explorer/static/favicon.svg", "image/svg+xml"),
    ],
)
async def test_pages_and_assets_have_their_type_and_csp(
    client: TestClient, path: str, content_type: str
) -> None:
    async with client.get(path, headers={"Host": "127.0.0.1:26657"}) as resp:
        body = await resp.read()
        assert resp.status == 200 and body
        assert resp.content_type == content_type
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "img-src"):
        assert directives[name] == "'self'", name
    assert directives["connect-src"] == "'self' ws://127.0.0.1:26657 wss://127.0.0.1:26657"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp


async def test_root_redirects_and_unknown_assets_are_404(client: TestClient) -> None:
    async with client.get("/", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == EXPLORER_PATH
    for path in ("/explorer/static/nope.js", "/explorer/static/..%2Findex.html", "/explorer/static/"):
        async with client.get(path) as resp:
            assert resp.status == 404, path
            assert resp.content_type == "application/json"
    # a Host header is echoed into connect-src only when it is a plain host[:port]
    assert "evil" not in content_security_policy("x; script-src evil")


def test_assets_load_nothing_from_elsewhere() -> None:
    """Offline: every URL the page loads is one of this node's (no CDN, no web font, no inline code)."""
    assets = load_assets()
    assert set(assets) == {"index.html", "app.js", "style.css", "favicon.svg"}
    html = assets["index.html"].body.decode()
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith(("/explorer/static/", "#", "/openapi.json")) for r in refs), refs
    assert "<script>" not in html and " style=" not in html and "onclick" not in html
    css = assets["style.css"].body.decode()
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
    js = assets["app.js"].body.decode()
    assert not re.findall(
        r"https?://(?!www\.w3\.org/2000/svg)", js
    )  # the SVG namespace is a name, not a load
    assert "innerHTML" not in js and "eval(" not in js


async def test_openapi_is_unaffected_by_the_pages(client: TestClient) -> None:
    async with client.get("/openapi.json") as resp:
        doc = await resp.json()
    assert not [p for p in doc["paths"] if is_page_path(p)]
    for path in ("/search", "/openapi.json", "/status"):
        assert path in doc["paths"]


async def test_search_names_heights_hashes_and_addresses(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(2)
    tx = make_transfer(FAUCET, CHAIN, 0, DAVE.address, 7, 10)
    status, sub = await api.post("/txs?wait=commit&timeout_ms=30000", json={"tx": tx.raw.hex()})
    assert status == 200, sub
    _, doc = await api.get("/openapi.json")
    _, block = await api.get("/blocks/1")
    dave = format_address(DAVE.address)
    cases = [
        ("1", "block", {"height": 1}),
        (block["hash"], "block", {"height": 1, "hash": block["hash"]}),
        ("0x" + tx.hash.hex().upper(), "tx", {"height": sub["height"], "hash": tx.hash.hex()}),
        (dave.upper().replace("0X", "0x"), "account", {"address": dave}),
        ("round 3", "round", {"height": 3}),
        ("99999999", "none", {}),
        ("ab" * 32, "none", {}),
        ("hello", "none", {}),
    ]
    for q, kind, fields in cases:
        status, body = await api.request("GET", "/search", params={"q": q})
        assert status == 200, body
        check(doc, "/search", "get", 200, body)
        assert body["kind"] == kind and {k: body[k] for k in fields} == fields, (q, body)
    status, body = await api.get("/search?q=")
    assert status == 400 and body["error"]["code"] == "bad_query"


async def test_round_lists_answer_their_schemas_before_any_round(api: Api, height_at_least) -> None:
    """Before round 1 the lists are empty (200), never a 404 the page would have to log."""
    await height_at_least(1)
    _, doc = await api.get("/openapi.json")
    dave = format_address(DAVE.address)
    for path, url in (
        ("/rounds", "/rounds?limit=5"),
        ("/miners", "/miners"),
        ("/accounts/{address}/rounds", f"/accounts/{dave}/rounds?rounds=10"),
    ):
        status, body = await api.get(url)
        assert status == 200, (url, body)
        check(doc, path, "get", 200, body)
    for url, code in (("/rounds?limit=0", "bad_limit"), ("/miners?rounds=257", "bad_rounds")):
        status, body = await api.get(url)
        assert status == 400 and body["error"]["code"] == code
