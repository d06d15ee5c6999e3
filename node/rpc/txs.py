"""`POST /txs`, `GET /txs/{hash}`, `GET /mempool`: submitting and finding transactions."""

from __future__ import annotations

import json

from aiohttp import web
from pocl.ledger.tx import SignedTx
from pocl.node.interfaces import TxNode
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import hexstr, tx_json
from pocl.node.rpc.request import block_at, require_chain
from pocl.node.rpc.routes import Handler

DEFAULT_MEMPOOL_LIMIT = 100
MAX_MEMPOOL_LIMIT = 1000


class TxApi:
    def __init__(self, node: TxNode) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {"tx": self.tx, "submit_tx": self.submit_tx, "mempool": self.mempool}

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
            out = tx_json(SignedTx.decode(block_at(chain, height).txs[index]))
            out.update({"status": "committed", "height": height, "index": index})
            return web.json_response(out)
        pending = self.node.mempool.get(tx_hash) if self.node.mempool else None
        if pending is not None:
            out = tx_json(pending)
            out["status"] = "pending"
            return web.json_response(out)
        raise ApiError(404, "tx_not_found", f"transaction {text} is not known")

    async def submit_tx(self, request: web.Request) -> web.Response:
        require_chain(self.node)  # 503 until the node (and its mempool) is up
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
        res = self.node.submit_tx(raw)
        if res.error is not None:
            raise ApiError(400, res.error.code, res.error.message)
        return web.json_response({"hash": hexstr(res.tx_hash), "new": res.is_new}, status=202)

    async def mempool(self, request: web.Request) -> web.Response:
        pool = self.node.mempool
        txs = pool.txs() if pool else []
        text = request.query.get("limit", str(DEFAULT_MEMPOOL_LIMIT))
        limit = min(int(text) if text.isdigit() else DEFAULT_MEMPOOL_LIMIT, MAX_MEMPOOL_LIMIT)
        return web.json_response(
            {
                "count": len(txs),
                "bytes": pool.size_bytes if pool else 0,
                "txs": [tx_json(t) for t in txs[:limit]],
            }
        )
