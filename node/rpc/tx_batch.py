"""`POST /txs/batch`: submit many signed transactions in one request.

One HTTP request per transaction costs the node more (request parsing, a JSON answer, one socket write
each) than admitting the transaction itself, so wallets, exchanges and load generators that hold many
signed transactions send them together. Each transaction gets exactly the treatment of `POST /txs`
(`TxSubmitter.submit_tx`: admission, then gossip); one bad transaction does not reject the others, its error is
reported by index.

Body: `application/octet-stream` with the canonical encoding (`ledger.codec`) of an array of signed-tx
byte strings, or JSON `{"txs": ["<hex>", ...]}`. At most `MAX_BATCH_TXS` transactions. Answer (202):
`{"accepted": n, "new": k, "errors": [{"index", "hash", "code", "message"}]}`.

Wired through `RpcServer(extra_routes=...)`, so the route appears in `/openapi.json`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pocl.ledger import codec
from pocl.node.interfaces import TxSubmitter
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import hexstr
from pocl.node.rpc.routes import Route
from pocl.node.rpc.types import BatchError, BatchView

MAX_BATCH_TXS = 1_000


def _parse(body: bytes, content_type: str) -> list[bytes]:
    if content_type == "application/octet-stream":
        try:
            value: Any = codec.decode(body)
        except codec.CodecError as exc:
            raise ApiError(
                400, "bad_batch", f"body must be a canonical array of tx byte strings: {exc}"
            ) from None
        if not isinstance(value, list) or not all(isinstance(t, bytes) for t in value):
            raise ApiError(400, "bad_batch", "body must be a canonical array of tx byte strings")
        return value
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", 'body must be JSON {"txs": ["<hex>", ...]}') from None
    txs = doc.get("txs") if isinstance(doc, dict) else None
    if not isinstance(txs, list) or not all(isinstance(t, str) for t in txs):
        raise ApiError(400, "bad_request", 'body must be JSON {"txs": ["<hex>", ...]}')
    try:
        return [bytes.fromhex(t.removeprefix("0x")) for t in txs]
    except ValueError:
        raise ApiError(400, "bad_hex", "every tx must be hex") from None


def tx_batch_routes(node: TxSubmitter) -> tuple[Route, ...]:
    async def submit_batch(request: web.Request) -> web.Response:
        raws = _parse(await request.read(), request.content_type)
        if len(raws) > MAX_BATCH_TXS:
            raise ApiError(400, "batch_too_large", f"at most {MAX_BATCH_TXS} txs per batch, got {len(raws)}")
        accepted = new = 0
        errors: list[BatchError] = []
        for i, raw in enumerate(raws):
            res = node.submit_tx(raw)
            if res.error is None:
                accepted += 1
                new += res.is_new
            else:
                errors.append(
                    {
                        "index": i,
                        "hash": hexstr(res.tx_hash),
                        "code": res.error.code,
                        "message": res.error.message,
                    }
                )
        view: BatchView = {"accepted": accepted, "new": new, "errors": errors}
        return web.json_response(view, status=202)

    return (
        Route(
            "POST",
            "/txs/batch",
            "submit_tx_batch",
            f"Submit up to {MAX_BATCH_TXS} signed transactions; per-tx errors by index",
            handler=submit_batch,
            response=BatchView,
            status=202,
            body='canonical msgpack array of tx bytes (application/octet-stream) or {"txs": ["<hex>", ...]}',
        ),
    )
