"""`GET /search?q=`: what the explorer's search box names, resolved by the node in one request.

A browser cannot probe `/blocks/{hash}` then `/txs/{hash}` without logging a failed request for the one
that misses, so the node says which it is: a height (`12`), a round (`round 3`, `r3`), a block or tx hash
(64 hex digits, committed or pending), or an address (40 hex digits). Always 200; `kind` none (with a
message) when the text names nothing here.
"""

from __future__ import annotations

import re

from aiohttp import web
from pocl.ledger.keys import format_address
from pocl.node.interfaces import ChainReader
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import hexstr
from pocl.node.rpc.request import MAX_INT_DIGITS, require_chain
from pocl.node.rpc.routes import Handler
from pocl.node.rpc.types import SearchView

MAX_QUERY_CHARS = 100
ROUND_TEXT = re.compile(r"^(?:round|r)\s*#?\s*([0-9]{1,19})$")
HEX = re.compile(r"^[0-9a-f]+$")


class SearchApi:
    def __init__(self, node: ChainReader) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {"search": self.search}

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        if not query.strip() or len(query) > MAX_QUERY_CHARS:
            raise ApiError(400, "bad_query", f"q must be 1..{MAX_QUERY_CHARS} characters")
        return web.json_response(self.resolve(query))

    def resolve(self, query: str) -> SearchView:
        chain = require_chain(self.node)
        text = query.strip().lower()
        bare = text.removeprefix("0x")
        if text.isdigit() and len(text) <= MAX_INT_DIGITS:
            h = int(text)
            if 1 <= h <= chain.height:
                return {"query": query, "kind": "block", "height": h, "message": f"block {h}"}
            return _none(query, f"no block at height {h} (the chain is at {chain.height})")
        m = ROUND_TEXT.match(text)
        if m:
            return {
                "query": query,
                "kind": "round",
                "height": int(m.group(1)),
                "message": f"round {m.group(1)}",
            }
        if HEX.match(bare) and len(bare) == 64:
            digest = bytes.fromhex(bare)
            block = chain.store.block_by_hash(digest)
            if block is not None:
                return {
                    "query": query,
                    "kind": "block",
                    "height": block.height,
                    "hash": hexstr(digest),
                    "message": f"block {block.height}",
                }
            loc = chain.store.tx_location(digest)
            if loc is not None:
                return {
                    "query": query,
                    "kind": "tx",
                    "height": loc[0],
                    "hash": hexstr(digest),
                    "message": f"transaction in block {loc[0]}",
                }
            if self.node.mempool is not None and self.node.mempool.get(digest) is not None:
                return {
                    "query": query,
                    "kind": "tx",
                    "hash": hexstr(digest),
                    "message": "pending transaction",
                }
            return _none(query, "no block or transaction with this hash on this node")
        if HEX.match(bare) and len(bare) == 40:
            address = format_address(bytes.fromhex(bare))
            return {"query": query, "kind": "account", "address": address, "message": f"account {address}"}
        return _none(query, "enter a height, a round (round 3), a block or tx hash, or a 0x address")


def _none(query: str, message: str) -> SearchView:
    return {"query": query, "kind": "none", "message": message}
