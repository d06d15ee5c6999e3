"""`/blocks`, `/blocks/{h}/txs`, `/accounts`, `/validators`: reads of the committed chain."""

from __future__ import annotations

from aiohttp import web
from pocl.ledger.keys import KeyFormatError, address_of, format_address, parse_address
from pocl.node.interfaces import ChainReader
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import block_json, commit_json, hexstr, located_txs_json
from pocl.node.rpc.request import block_at, height_param, pruned_hint, require_chain
from pocl.node.rpc.routes import Handler
from pocl.node.rpc.types import AccountView, BlockTxsView, ValidatorsView

HASH_LEN = 32


class ChainApi:
    def __init__(self, node: ChainReader) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {
            "block_latest": self.block_latest,
            "block": self.block,
            "block_commit": self.block_commit,
            "block_txs": self.block_txs,
            "account": self.account,
            "validators": self.validators,
        }

    async def block_latest(self, _request: web.Request) -> web.Response:
        chain = require_chain(self.node)
        if chain.height == 0:
            raise ApiError(404, "block_not_found", "no block committed yet")
        return web.json_response(block_json(block_at(chain, chain.height)))

    async def block(self, request: web.Request) -> web.Response:
        chain = require_chain(self.node)
        text = request.match_info["height"].removeprefix("0x")
        if len(text) == 2 * HASH_LEN and not text.isdigit():
            try:
                block_hash = bytes.fromhex(text)
            except ValueError:
                raise ApiError(400, "bad_hash", "block hash must be 64 hex digits") from None
            block = chain.store.block_by_hash(block_hash)
            if block is None:
                raise ApiError(404, "block_not_found", f"no block with hash {text}{pruned_hint(chain)}")
            return web.json_response(block_json(block))
        return web.json_response(block_json(block_at(chain, height_param(request))))

    async def block_commit(self, request: web.Request) -> web.Response:
        chain = require_chain(self.node)
        height = height_param(request)
        block_at(chain, height)
        commit = chain.store.commit(height)
        if commit is None:
            raise ApiError(404, "commit_not_found", f"no commit stored for height {height}")
        return web.json_response(commit_json(commit))

    async def block_txs(self, request: web.Request) -> web.Response:
        block = block_at(require_chain(self.node), height_param(request))
        txs = located_txs_json(block)
        view: BlockTxsView = {
            "height": block.height,
            "hash": hexstr(block.hash),
            "count": len(txs),
            "txs": txs,
        }
        return web.json_response(view)

    async def account(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        try:
            address = parse_address(text)
        except KeyFormatError as exc:
            raise ApiError(400, "bad_address", str(exc)) from None
        acct = require_chain(self.node).state.account(address)
        pending = self.node.mempool.pending_nonce(address) if self.node.mempool else None
        view: AccountView
        if acct is None:
            view = {
                "address": format_address(address),
                "exists": False,
                "balance": 0,
                "nonce": 0,
                "pending_nonce": pending or 0,
                "stake": 0,
                "unbonding": [],
                "jailed_until_height": 0,
                "jailed_until_round": 0,
                "slashed_total": 0,
            }
            return web.json_response(view)
        view = {
            "address": format_address(address),
            "exists": True,
            "balance": acct.balance,
            "nonce": acct.nonce,
            "pending_nonce": pending if pending is not None else acct.nonce,
            "pubkey": hexstr(acct.pubkey) if acct.pubkey else None,
            "stake": acct.stake,
            "unbonding": [{"amount": a, "release_height": h} for a, h in acct.unbonding],
            "jailed_until_height": acct.jailed_until_height,
            "jailed_until_round": acct.jailed_until_round,
            "slashed_total": acct.slashed_total,
        }
        return web.json_response(view)

    async def validators(self, _request: web.Request) -> web.Response:
        state = require_chain(self.node).state
        vals = state.validator_set()
        view: ValidatorsView = {
            "height": state.height + 1,
            "total_power": sum(v.power for v in vals),
            "validators": [
                {
                    "address": format_address(address_of(v.pubkey)),
                    "pubkey": hexstr(v.pubkey),
                    "operator": format_address(v.operator),
                    "power": v.power,
                }
                for v in vals
            ],
        }
        return web.json_response(view)
