"""The RPC's route table: each `Route` is declared once and drives both the router and the OpenAPI
document, so the two cannot drift apart. Core routes name their handler (`handler_name`, also the
OpenAPI operationId); extension routes (PoCL, tx batches) carry the handler itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler_name: str  # operationId; names a core handler unless `handler` is given
    summary: str
    params: tuple[tuple[str, str], ...] = ()  # (name, description) of path parameters
    handler: Handler | None = None
    body: str | None = None  # request body description (POST)
    query: tuple[tuple[str, str], ...] = ()  # (name, description) of optional query parameters


CORE_ROUTES: tuple[Route, ...] = (
    Route("GET", "/status", "status", "Node status: chain id, node id, height, peers, sync, validator"),
    Route("GET", "/health", "health", "Liveness: 200 when the node runs"),
    Route("GET", "/peers", "peers", "Connected peers"),
    Route("GET", "/blocks/latest", "block_latest", "The latest committed block"),
    Route(
        "GET",
        "/blocks/{height}",
        "block",
        "Block at a height, or by its hash",
        (("height", "block height, or the block hash as 64 hex digits (optionally 0x-prefixed)"),),
    ),
    Route(
        "GET",
        "/blocks/{height}/commit",
        "block_commit",
        "Commit certificate of a block",
        (("height", "block height"),),
    ),
    Route("GET", "/txs/{hash}", "tx", "A committed (or pending) transaction", (("hash", "tx hash hex"),)),
    Route(
        "POST",
        "/txs",
        "submit_tx",
        "Submit a signed transaction",
        body='{"tx": "<hex of the canonical signed tx>"} or the raw bytes (application/octet-stream)',
    ),
    Route("GET", "/accounts/{address}", "account", "Account state", (("address", "0x address"),)),
    Route("GET", "/validators", "validators", "Validator set for the next block"),
    Route(
        "GET",
        "/mempool",
        "mempool",
        "Pending transactions",
        query=(("limit", "at most this many txs in the list (default 100, max 1000)"),),
    ),
    Route(
        "GET",
        "/events",
        "events",
        "WebSocket stream of node events: hello, then block, tx (committed) and round events as JSON",
        query=(
            (
                "from_height",
                "first replay every stored block from this height, then continue live (no gaps)",
            ),
        ),
    ),
    Route("GET", "/openapi.json", "openapi", "This API's OpenAPI 3 document"),
)

UNSAFE_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/unsafe/p2p/block",
        "unsafe_block_peers",
        "TEST-ONLY ([rpc] unsafe = true): drop and refuse these peers (network partitions)",
        body='{"node_ids": ["<hex>", ...]}',
    ),
    Route(
        "POST",
        "/unsafe/p2p/unblock",
        "unsafe_unblock_peers",
        "TEST-ONLY ([rpc] unsafe = true): accept these peers again",
        body='{"node_ids": ["<hex>", ...]}',
    ),
)
