"""What every handler checks first: the node is up (503 otherwise) and path parameters are well formed."""

from __future__ import annotations

from aiohttp import web
from pocl.ledger.block import Block
from pocl.node.chain import Chain
from pocl.node.interfaces import ChainReader
from pocl.node.rpc.errors import ApiError

MAX_INT_DIGITS = 19  # fits an int64


def require_chain(node: ChainReader) -> Chain:
    if node.chain is None:
        raise ApiError(503, "not_ready", "node is starting")
    return node.chain


def parse_uint(text: str, code: str, what: str) -> int:
    """A non-negative decimal integer, else 400 with `code`."""
    if not text.isdigit() or len(text) > MAX_INT_DIGITS:
        raise ApiError(400, code, f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def height_param(request: web.Request) -> int:
    return parse_uint(request.match_info["height"], "bad_height", "height")


def block_at(chain: Chain, height: int) -> Block:
    """The stored block at `height`; 410 `block_pruned` (naming the earliest height) below the node's
    pruned history, 404 `block_not_found` otherwise."""
    block = chain.store.block(height)
    if block is None:
        require_not_pruned(chain, height)
        raise ApiError(404, "block_not_found", f"no block at height {height}")
    return block


def require_not_pruned(chain: Chain, height: int) -> None:
    """410 `block_pruned`, naming the earliest height, for a height below the node's pruned history."""
    earliest = chain.store.earliest_height
    if 1 <= height < earliest:
        raise ApiError(
            410,
            "block_pruned",
            f"block {height} is pruned on this node: the earliest available height is {earliest}",
        )


def pruned_hint(chain: Chain) -> str:
    """What to add to a not-found by hash: this node's history may simply not reach back that far."""
    earliest = chain.store.earliest_height
    return f" (this node has pruned the blocks below height {earliest})" if earliest > 1 else ""
