"""`POST /faucet {"address": "0x…"}`: coins for a newcomer on a testnet (`node.faucet`, `[faucet]`).

The route is always in the route table (and `/openapi.json`); a node without `[faucet] enabled = true`
answers 403 `faucet_disabled`. A grant answers 202 `{"tx_hash", "amount", "address"}` once the transfer
is in the mempool (it commits with the next block; follow it with `GET /txs/{hash}`). Refusals:
400 `bad_address`/`bad_json`/`bad_request` (or the mempool's code), 429 `faucet_rate_limited` with
`retry_after_s` in the error object and a `Retry-After` header, 503 `faucet_empty` (the faucet's balance
cannot cover amount + fee) or `faucet_busy` (too many grants waiting for a block).

The client's source is the TCP peer address (`request.remote`): the RPC is meant to be reached
directly, so no forwarding header is trusted.
"""

from __future__ import annotations

import json
import math

from aiohttp import web
from pocl.ledger.keys import KeyFormatError, format_address, parse_address
from pocl.node.faucet import (
    FAUCET_BUSY,
    FAUCET_DISABLED,
    FAUCET_EMPTY,
    FAUCET_NOT_READY,
    FAUCET_RATE_LIMITED,
    Faucet,
    FaucetRefused,
)
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import hexstr
from pocl.node.rpc.request import require_chain
from pocl.node.rpc.routes import Route
from pocl.node.rpc.types import FaucetView

MAX_FAUCET_BODY_BYTES = 4096
UNKNOWN_SOURCE = "unknown"
REFUSAL_STATUS = {FAUCET_RATE_LIMITED: 429, FAUCET_EMPTY: 503, FAUCET_BUSY: 503, FAUCET_NOT_READY: 503}
BODY_HELP = 'JSON {"address": "0x<40 hex digits>"}'


def _address(body: bytes) -> bytes:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", f"body must be {BODY_HELP}") from None
    text = doc.get("address") if isinstance(doc, dict) else None
    if not isinstance(text, str):
        raise ApiError(400, "bad_request", f"body must be {BODY_HELP}")
    try:
        return parse_address(text)
    except KeyFormatError as exc:
        raise ApiError(400, "bad_address", str(exc)) from None


def refusal_response(exc: FaucetRefused) -> web.Response:
    """The RPC's error JSON, plus `retry_after_s` (and the `Retry-After` header) when rate limited."""
    error: dict[str, object] = {"code": exc.code, "message": exc.message}
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        error["retry_after_s"] = round(exc.retry_after_s, 3)
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return web.json_response({"error": error}, status=REFUSAL_STATUS.get(exc.code, 400), headers=headers)


def faucet_routes(faucet: Faucet | None) -> tuple[Route, ...]:
    async def request_grant(request: web.Request) -> web.Response:
        if faucet is None:
            raise ApiError(403, FAUCET_DISABLED, "this node runs no faucet ([faucet] enabled = false)")
        if request.content_length is not None and request.content_length > MAX_FAUCET_BODY_BYTES:
            raise ApiError(400, "bad_request", f"body must be {BODY_HELP}")
        address = _address(await request.read())
        require_chain(faucet.node)
        try:
            grant = faucet.grant(address, request.remote or UNKNOWN_SOURCE)
        except FaucetRefused as exc:
            return refusal_response(exc)
        view: FaucetView = {
            "tx_hash": hexstr(grant.tx_hash),
            "amount": grant.amount,
            "address": format_address(grant.address),
        }
        return web.json_response(view, status=202)

    return (
        Route(
            "POST",
            "/faucet",
            "faucet",
            "Testnet faucet ([faucet] enabled = true): transfer the configured amount to an address; "
            "rate-limited per address and per client IP",
            handler=request_grant,
            body=BODY_HELP,
            response=FaucetView,
            status=202,
            errors=(403, 429),
        ),
    )
