"""The RPC's route table: each `Route` is declared once and drives both the router and the OpenAPI
document, so the two cannot drift apart. Core routes name their handler (`handler_name`, also the
OpenAPI operationId); extension routes (PoCL, tx batches) carry the handler itself. `response` is the
type the handler answers with (`types.py`); the OpenAPI response schema is generated from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pocl.node.rpc import types as t

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (name, description) or (name, description, OpenAPI schema); path parameters default to strings,
# query parameters to integers.
Param = tuple[str, str] | tuple[str, str, dict[str, Any]]

UINT: dict[str, Any] = {"type": "integer", "minimum": 0}
HASH_HEX: dict[str, Any] = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"}
ADDRESS: dict[str, Any] = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{40}$"}
HEIGHT_OR_HASH: dict[str, Any] = {"type": "string", "pattern": "^([0-9]{1,19}|(0x)?[0-9a-fA-F]{64})$"}
ROUND_REF: dict[str, Any] = {"type": "string", "pattern": "^(latest|[0-9]{1,19})$", "default": "latest"}


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler_name: str  # operationId; names a core handler unless `handler` is given
    summary: str
    params: tuple[Param, ...] = ()  # path parameters
    handler: Handler | None = None
    body: str | None = None  # request body description (POST)
    query: tuple[Param, ...] = ()  # optional query parameters
    response: Any = None  # the JSON type answered with `status` (None: any JSON object)
    status: int = 200
    other_responses: tuple[tuple[int, str, Any], ...] = ()  # (status, description, type) of other successes
    errors: tuple[int, ...] = ()  # error statuses beyond 400, 404, 405, 503 (and 413 for POST)
    binary: tuple[str, str] | None = None  # (content type, description) of a non-JSON 200 answer


CORE_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/status",
        "status",
        "Node status: chain id, node id, height, peers, sync, validator",
        response=t.StatusView,
    ),
    Route("GET", "/health", "health", "Liveness: 200 when the node runs", response=t.HealthView),
    Route(
        "GET",
        "/ready",
        "ready",
        "Readiness: 200 when in step with the chain, 503 with reasons (catching up, stalled, disk low, store failed)",
        response=t.ReadyView,
        other_responses=((503, "not ready, with the reasons", t.ReadyView),),
    ),
    Route("GET", "/peers", "peers", "Connected peers", response=t.PeersView),
    Route(
        "GET",
        "/net_info",
        "net_info",
        "Network: whether the node listens, its listen addresses and its peers (CometBFT's net_info)",
        response=t.NetInfoView,
    ),
    Route("GET", "/genesis", "genesis", "The chain's genesis document and its hash", response=t.GenesisView),
    Route("GET", "/blocks/latest", "block_latest", "The latest committed block", response=t.BlockView),
    Route(
        "GET",
        "/blocks/{height}",
        "block",
        "Block at a height, or by its hash",
        (
            (
                "height",
                "block height, or the block hash as 64 hex digits (optionally 0x-prefixed)",
                HEIGHT_OR_HASH,
            ),
        ),
        response=t.BlockView,
        errors=(410,),
    ),
    Route(
        "GET",
        "/blocks/{height}/commit",
        "block_commit",
        "Commit certificate of a block",
        (("height", "block height", UINT),),
        response=t.CommitView,
        errors=(410,),
    ),
    Route(
        "GET",
        "/blocks/{height}/txs",
        "block_txs",
        "The transactions of the block at a height (with their index)",
        (("height", "block height", UINT),),
        response=t.BlockTxsView,
        errors=(410,),
    ),
    Route(
        "GET",
        "/txs/{hash}",
        "tx",
        "A committed (or pending) transaction",
        (("hash", "tx hash hex", HASH_HEX),),
        response=t.LocatedTxView,
        errors=(410,),
    ),
    Route(
        "GET",
        "/txs",
        "txs_search",
        "Committed transactions sent by or to an account, newest first, searched in at most 1000 blocks "
        "per request (page with to_height = next_to_height)",
        query=(
            ("account", "0x address: txs it sent, or whose payload names it (required)", ADDRESS),
            ("to_height", "newest block to search (default: the latest)"),
            ("from_height", "oldest block to search (default: to_height - 999)"),
            ("limit", "at most this many txs (default 100, max 1000)"),
        ),
        response=t.TxSearchView,
    ),
    Route(
        "POST",
        "/txs",
        "submit_tx",
        "Submit a signed transaction; with ?wait=commit answer once it is in a committed block",
        body='{"tx": "<hex of the canonical signed tx>"} or the raw bytes (application/octet-stream)',
        query=(
            (
                "wait",
                "commit: wait until the tx is committed (200 with its height) or timeout_ms passes (504)",
                {"type": "string", "enum": ["commit"]},
            ),
            ("timeout_ms", "with wait=commit: how long to wait (default 10000, max 60000)"),
        ),
        response=t.SubmitView,
        status=202,
        other_responses=((200, "committed (with ?wait=commit): its height and index", t.SubmitView),),
        errors=(504,),
    ),
    Route(
        "GET",
        "/accounts/{address}",
        "account",
        "Account state",
        (("address", "0x address", ADDRESS),),
        response=t.AccountView,
    ),
    Route("GET", "/validators", "validators", "Validator set for the next block", response=t.ValidatorsView),
    Route(
        "GET",
        "/mempool",
        "mempool",
        "Pending transactions",
        query=(("limit", "at most this many txs in the list (default 100, max 1000)"),),
        response=t.MempoolView,
    ),
    Route(
        "GET",
        "/events",
        "events",
        "WebSocket stream of node events: hello, then block, tx (committed) and round events as JSON",
        query=(
            (
                "from_height",
                "first replay every stored block from this height, then continue live (no gaps); "
                "410 below a pruned node's earliest height",
            ),
        ),
        errors=(410,),
    ),
    Route(
        "GET",
        "/search",
        "search",
        "What a height, round (round 3), block or tx hash, or address names on this node (the explorer's "
        "search box); always 200, kind none when nothing",
        query=(("q", "the text searched (at most 100 characters)", {"type": "string"}),),
        response=t.SearchView,
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
        response=t.BlockedPeersView,
    ),
    Route(
        "POST",
        "/unsafe/p2p/unblock",
        "unsafe_unblock_peers",
        "TEST-ONLY ([rpc] unsafe = true): accept these peers again",
        body='{"node_ids": ["<hex>", ...]}',
        response=t.UnblockedPeersView,
    ),
)
