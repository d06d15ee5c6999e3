"""CORS for browser clients: only the origins in `[rpc] cors_allowed_origins` (none by default)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pocl.node.rpc.server import RpcServer


async def client_for(origins: tuple[str, ...]) -> TestClient:
    server = RpcServer(None, "127.0.0.1:0", cors_allowed_origins=origins)  # type: ignore[arg-type]
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    return client


async def headers(client: TestClient, method: str, origin: str | None) -> tuple[int, Any]:
    hdrs = {"Origin": origin} if origin else {}
    async with client.request(method, "/openapi.json", headers=hdrs) as resp:
        return resp.status, resp.headers


async def test_no_cors_by_default() -> None:
    client = await client_for(())
    try:
        status, hdrs = await headers(client, "GET", "https://app.example")
        assert status == 200 and "Access-Control-Allow-Origin" not in hdrs
        status, _ = await headers(client, "OPTIONS", "https://app.example")
        assert status == 405
    finally:
        await client.close()


async def test_listed_origin_gets_headers_and_preflight() -> None:
    client = await client_for(("https://app.example",))
    try:
        status, hdrs = await headers(client, "GET", "https://app.example")
        assert status == 200 and hdrs["Access-Control-Allow-Origin"] == "https://app.example"
        status, hdrs = await headers(client, "OPTIONS", "https://app.example")
        assert status == 204 and "POST" in hdrs["Access-Control-Allow-Methods"]
        status, hdrs = await headers(client, "GET", "https://evil.example")
        assert status == 200 and "Access-Control-Allow-Origin" not in hdrs
        async with client.get("/nope", headers={"Origin": "https://app.example"}) as resp:
            assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    finally:
        await client.close()


async def test_wildcard_origin() -> None:
    client = await client_for(("*",))
    try:
        status, hdrs = await headers(client, "GET", "https://any.example")
        assert status == 200 and hdrs["Access-Control-Allow-Origin"] == "*"
    finally:
        await client.close()
