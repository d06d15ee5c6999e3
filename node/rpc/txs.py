"""`POST /txs` (optionally `?wait=commit`), `GET /txs/{hash}`, `GET /txs?account=…`, `GET /mempool`:
submitting and finding transactions.

`?wait=commit` answers once the tx is in a committed block (200 with its height and index) or, after
`timeout_ms`, 504 `commit_timeout` (the tx stays in the mempool and may still commit). The search scans
at most `MAX_SEARCH_BLOCKS` blocks per request (there is no account index in the store): clients page
backwards with `to_height = next_to_height`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pocl.ledger.keys import ADDRESS_LEN, KeyFormatError, format_address, parse_address
from pocl.ledger.tx import SignedTx
from pocl.node.events import BlockCommitted, NodeEvent
from pocl.node.interfaces import EventSource, TxNode
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import hexstr, located_tx_json, tx_json
from pocl.node.rpc.request import block_at, parse_uint, pruned_hint, require_chain
from pocl.node.rpc.routes import Handler
from pocl.node.rpc.types import LocatedTxView, MempoolView, SubmitView, TxSearchView

DEFAULT_MEMPOOL_LIMIT = 100
MAX_MEMPOOL_LIMIT = 1000
DEFAULT_COMMIT_WAIT_MS = 10_000
MAX_COMMIT_WAIT_MS = 60_000
MAX_COMMIT_WAITERS = 1000  # concurrent ?wait=commit requests; more get 503 busy
MAX_SEARCH_BLOCKS = 1000  # blocks scanned per /txs?account= request
DEFAULT_SEARCH_LIMIT = 100
MAX_SEARCH_LIMIT = 1000
MAX_PAYLOAD_DEPTH = 8  # how deep the search looks into a payload for the account


def _mentions(value: Any, address: bytes, depth: int = 0) -> bool:
    """Whether a tx payload names `address` (a 20-byte value anywhere in it)."""
    if isinstance(value, bytes):
        return len(value) == ADDRESS_LEN and value == address
    if depth >= MAX_PAYLOAD_DEPTH:
        return False
    if isinstance(value, (list, tuple)):
        return any(_mentions(v, address, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(
            _mentions(k, address, depth + 1) or _mentions(v, address, depth + 1) for k, v in value.items()
        )
    return False


def _query_uint(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    return default if text is None else parse_uint(text, f"bad_{name}", name)


class TxApi:
    def __init__(self, node: TxNode, events: EventSource | None = None) -> None:
        self.node = node
        self.events = events
        self._waiters = 0

    def handlers(self) -> dict[str, Handler]:
        return {
            "tx": self.tx,
            "submit_tx": self.submit_tx,
            "mempool": self.mempool,
            "txs_search": self.search,
        }

    async def tx(self, request: web.Request) -> web.Response:
        text = request.match_info["hash"].removeprefix("0x")
        try:
            tx_hash = bytes.fromhex(text)
        except ValueError:
            raise ApiError(400, "bad_hash", "tx hash must be hex") from None
        if len(tx_hash) != 32:
            raise ApiError(400, "bad_hash", "tx hash must be 32 bytes")
        chain = require_chain(self.node)
        loc = chain.store.tx_location(tx_hash)
        if loc is not None:
            height, index = loc
            return web.json_response(
                located_tx_json(SignedTx.decode(block_at(chain, height).txs[index]), height, index)
            )
        pending = self.node.mempool.get(tx_hash) if self.node.mempool else None
        if pending is not None:
            view: LocatedTxView = {**tx_json(pending), "status": "pending"}  # type: ignore[typeddict-item]
            return web.json_response(view)
        raise ApiError(404, "tx_not_found", f"transaction {text} is not known{pruned_hint(chain)}")

    async def submit_tx(self, request: web.Request) -> web.Response:
        require_chain(self.node)  # 503 until the node (and its mempool) is up
        wait = request.query.get("wait")
        if wait not in (None, "commit"):
            raise ApiError(400, "bad_wait", f"wait must be 'commit', got {wait!r}")
        timeout_ms = _query_uint(request, "timeout_ms", DEFAULT_COMMIT_WAIT_MS)
        if wait and not 0 < timeout_ms <= MAX_COMMIT_WAIT_MS:
            raise ApiError(400, "bad_timeout_ms", f"timeout_ms must be 1..{MAX_COMMIT_WAIT_MS}")
        if request.content_type == "application/octet-stream":
            raw = await request.read()
        else:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "bad_json", 'body must be JSON {"tx": "<hex>"}') from None
            if not isinstance(body, dict) or not isinstance(body.get("tx"), str):
                raise ApiError(400, "bad_request", 'body must be JSON {"tx": "<hex>"}')
            try:
                raw = bytes.fromhex(body["tx"].removeprefix("0x"))
            except ValueError:
                raise ApiError(400, "bad_hex", "tx must be hex") from None
        if not wait:
            res = self.node.submit_tx(raw)
            if res.error is not None:
                raise ApiError(400, res.error.code, res.error.message)
            view: SubmitView = {"hash": hexstr(res.tx_hash), "new": res.is_new}
            return web.json_response(view, status=202)
        return await self._submit_and_wait(raw, timeout_ms / 1000)

    async def _submit_and_wait(self, raw: bytes, timeout_s: float) -> web.Response:
        if self.events is None:
            raise ApiError(503, "not_ready", "this node cannot wait for commits")
        if self._waiters >= MAX_COMMIT_WAITERS:
            raise ApiError(503, "busy", f"{MAX_COMMIT_WAITERS} requests are already waiting for commits")
        chain = require_chain(self.node)
        committed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        tx_hash = b""

        def listener(event: NodeEvent) -> None:
            if isinstance(event, BlockCommitted) and tx_hash in event.tx_hashes and not committed.done():
                committed.set_result(event.height)

        # Subscribe before submitting: the block holding the tx cannot be missed.
        unsubscribe = self.events.subscribe(listener)
        self._waiters += 1
        try:
            res = self.node.submit_tx(raw)
            tx_hash = res.tx_hash
            loc = chain.store.tx_location(tx_hash) if tx_hash else None
            if res.error is not None and loc is None:
                raise ApiError(400, res.error.code, res.error.message)
            if loc is None:
                try:
                    await asyncio.wait_for(committed, timeout_s)
                except TimeoutError:
                    raise ApiError(
                        504,
                        "commit_timeout",
                        f"tx {tx_hash.hex()} was not committed within {timeout_s:g}s "
                        "(it may still be; look it up with GET /txs/{hash})",
                    ) from None
                loc = chain.store.tx_location(tx_hash)
        finally:
            self._waiters -= 1
            unsubscribe()
        view: SubmitView = {"hash": hexstr(tx_hash), "new": res.is_new, "status": "committed"}
        if loc is not None:
            view["height"], view["index"] = loc
        return web.json_response(view, status=200)

    async def search(self, request: web.Request) -> web.Response:
        chain = require_chain(self.node)
        text = request.query.get("account")
        if text is None:
            raise ApiError(400, "bad_request", "give ?account=0x<address> (or look a tx up at /txs/{hash})")
        try:
            address = parse_address(text)
        except KeyFormatError as exc:
            raise ApiError(400, "bad_address", str(exc)) from None
        to_height = min(_query_uint(request, "to_height", chain.height), chain.height)
        from_height = _query_uint(request, "from_height", max(1, to_height - MAX_SEARCH_BLOCKS + 1))
        earliest = chain.store.earliest_height  # pruned blocks are not searched
        from_height = max(earliest, from_height, to_height - MAX_SEARCH_BLOCKS + 1)
        limit = _query_uint(request, "limit", DEFAULT_SEARCH_LIMIT)
        if not 0 < limit <= MAX_SEARCH_LIMIT:
            raise ApiError(400, "bad_limit", f"limit must be 1..{MAX_SEARCH_LIMIT}")
        found: list[LocatedTxView] = []
        oldest = to_height + 1
        for height in range(to_height, from_height - 1, -1):
            if len(found) >= limit:
                break
            block = block_at(chain, height)
            oldest = height
            for index in range(len(block.txs) - 1, -1, -1):
                stx = SignedTx.decode(block.txs[index])
                if stx.sender_address == address or _mentions(stx.tx.payload, address):
                    found.append(located_tx_json(stx, height, index))
        view: TxSearchView = {
            "account": format_address(address),
            "from_height": min(oldest, to_height),
            "to_height": to_height,
            "count": len(found),
            "txs": found,
            "next_to_height": oldest - 1 if oldest > earliest else None,
        }
        return web.json_response(view)

    async def mempool(self, request: web.Request) -> web.Response:
        pool = self.node.mempool
        txs = pool.txs() if pool else []
        text = request.query.get("limit", str(DEFAULT_MEMPOOL_LIMIT))
        limit = min(int(text) if text.isdigit() else DEFAULT_MEMPOOL_LIMIT, MAX_MEMPOOL_LIMIT)
        view: MempoolView = {
            "count": len(txs),
            "bytes": pool.size_bytes if pool else 0,
            "txs": [tx_json(t) for t in txs[:limit]],
        }
        return web.json_response(view)
