"""JSON/WebSocket RPC (aiohttp), bound to 127.0.0.1 by default (DESIGN §7).

Every error is JSON `{"error": {"code": "...", "message": "..."}}` with a stable code; request bodies are
capped (413). Routes are declared once in `ROUTES`, which drives both the aiohttp router and the
OpenAPI document, so the two cannot drift apart. Extra routes (PoCL rounds, models) are added by
passing more `Route`s to `RpcServer`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from pocl.ledger.block import Block, Commit
from pocl.ledger.keys import KeyFormatError, address_of, format_address, parse_address
from pocl.ledger.tx import SignedTx
from pocl.node.config import parse_host_port
from pocl.node.http_server import serve_app

if TYPE_CHECKING:
    from pocl.node.node import Node, NodeEvent

log = logging.getLogger("pocl.rpc")

WS_QUEUE_SIZE = 1024  # events buffered per subscriber; beyond that it is told "lagged" and closed
API_VERSION = "1"
HASH_LEN = 32

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def hexstr(b: bytes) -> str:
    return b.hex()


# --------------------------------------------------------------------------- JSON views


def header_json(block: Block) -> dict[str, Any]:
    h = block.header
    return {
        "height": h.height,
        "time_ms": h.time_ms,
        "prev_hash": hexstr(h.prev_hash),
        "proposer": format_address(h.proposer),
        "txs_root": hexstr(h.txs_root),
        "state_root": hexstr(h.state_root),
        "last_commit_hash": hexstr(h.last_commit_hash),
        "round_info": hexstr(h.round_info),
    }


def tx_json(stx: SignedTx) -> dict[str, Any]:
    tx = stx.tx
    return {
        "hash": hexstr(stx.hash),
        "kind": tx.kind,
        "chain_id": tx.chain_id,
        "sender": format_address(stx.sender_address),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "payload": _plain(tx.payload),
        "size": len(stx.raw),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        if len(value) == 20:
            return format_address(value)
        return value.hex() if len(value) <= 4096 else f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "height": commit.height,
        "round": commit.round,
        "block_hash": hexstr(commit.block_hash),
        "hash": hexstr(commit.hash),
        "signatures": [
            {
                "validator": format_address(address_of(s.validator)),
                "pubkey": hexstr(s.validator),
                "signature": hexstr(s.signature),
            }
            for s in commit.signatures
        ],
    }


def block_json(block: Block, txs: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hash": hexstr(block.hash),
        "header": header_json(block),
        "num_txs": len(block.txs),
    }
    if txs:
        decoded = []
        for raw in block.txs:
            try:
                decoded.append(tx_json(SignedTx.decode(raw)))
            except Exception:  # a committed tx always decodes; keep the view robust anyway
                decoded.append({"raw": raw.hex()})
        out["txs"] = decoded
    out["last_commit"] = commit_json(block.last_commit) if block.last_commit is not None else None
    return out


# --------------------------------------------------------------------------- routes


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler_name: str  # method of RpcServer (or a callable for extensions)
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


class RpcServer:
    def __init__(
        self,
        node: Node,
        listen_addr: str,
        *,
        max_body_bytes: int = 8 * 1024 * 1024,
        max_ws_clients: int = 100,
        extra_routes: tuple[Route, ...] = (),
        unsafe: bool = False,
        cors_allowed_origins: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.node = node
        self.cors_allowed_origins = frozenset(cors_allowed_origins)
        self.listen_addr = listen_addr
        self.max_body_bytes = max_body_bytes
        self.max_ws_clients = max_ws_clients
        self.routes = CORE_ROUTES + extra_routes + (UNSAFE_ROUTES if unsafe else ())
        self._subscribers: set[_Subscriber] = set()
        self._runner: web.AppRunner | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._cors, self._errors])
        for r in self.routes:
            handler = r.handler or getattr(self, r.handler_name)
            app.router.add_route(r.method, r.path, handler)
        return app

    async def start(self) -> None:
        self._runner, self.port = await serve_app(self.app(), self.listen_addr, what="rpc")
        self._unsubscribe = self.node.subscribe(self._on_event)
        log.info("rpc listening on http://%s:%d", parse_host_port(self.listen_addr)[0], self.port)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for sub in list(self._subscribers):
            sub.queue.put_nowait({"type": "shutdown"})
        if self._runner is not None:
            await self._runner.cleanup()

    def _allowed_origin(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or not self.cors_allowed_origins:
            return None
        if "*" in self.cors_allowed_origins:
            return "*"
        return origin if origin in self.cors_allowed_origins else None

    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Browser access for the origins in `[rpc] cors_allowed_origins` (none by default)."""
        allowed = self._allowed_origin(request)
        if allowed is not None and request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": allowed,
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        if allowed is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Vary"] = "Origin"
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "body_too_large", f"request body exceeds {self.max_body_bytes} bytes")
        except web.HTTPNotFound:
            return error_response(404, "not_found", f"no route for {request.method} {request.path}")
        except web.HTTPMethodNotAllowed:
            return error_response(
                405, "method_not_allowed", f"{request.method} not allowed on {request.path}"
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = (exc.reason or "http_error").lower().replace(" ", "_")
            return error_response(exc.status, code, exc.text or exc.reason)
        except Exception:
            log.exception("rpc handler failed for %s %s", request.method, request.path)
            return error_response(500, "internal_error", "internal error (see the node log)")

    # ------------------------------------------------------------------ helpers

    @property
    def chain(self):
        if self.node.chain is None:
            raise ApiError(503, "not_ready", "node is starting")
        return self.node.chain

    @staticmethod
    def _height(request: web.Request) -> int:
        text = request.match_info["height"]
        if not text.isdigit() or len(text) > 19:
            raise ApiError(400, "bad_height", f"height must be a non-negative integer, got {text!r}")
        return int(text)

    def _block_at(self, height: int) -> Block:
        block = self.chain.store.block(height)
        if block is None:
            raise ApiError(404, "block_not_found", f"no block at height {height}")
        return block

    # ------------------------------------------------------------------ handlers

    async def status(self, _request: web.Request) -> web.Response:
        node = self.node
        chain = self.chain
        head = chain.store.head_block()
        driver = node.driver
        validator = None
        if node.validator_key is not None:
            addr = node.validator_key.address
            vals = chain.state.validator_set()
            power = next((v.power for v in vals if v.address == addr), 0)
            validator = {
                "address": format_address(addr),
                "pubkey": hexstr(node.validator_key.pubkey),
                "voting_power": power,
                "active": power > 0,
            }
        return web.json_response(
            {
                "chain_id": node.genesis.chain_id,
                "genesis_hash": hexstr(node.genesis.hash),
                "node_id": hexstr(node.node_key.pubkey),
                "moniker": node.config.node.moniker,
                "height": chain.height,
                "latest_block_hash": hexstr(head.hash) if head else "",
                "latest_block_time_ms": head.header.time_ms if head else node.genesis.genesis_time_ms,
                "state_root": hexstr(chain.state.state_root()),
                "peers": len(node.host.peers()) if node.host else 0,
                "syncing": node.syncing,
                "consensus": driver.summary() if driver else None,
                "mempool": {"txs": len(node.mempool) if node.mempool else 0},
                "validator": validator,
                "p2p": str(node.host.listen_addr) if node.host else "",
                "uptime_s": round(time.time() - node.started_at, 1),
            }
        )

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "height": self.chain.height})

    async def peers(self, _request: web.Request) -> web.Response:
        host = self.node.host
        peers = host.peers() if host else []
        return web.json_response(
            {
                "peers": [
                    {
                        "node_id": hexstr(p.node_id),
                        "outbound": p.outbound,
                        "persistent": p.persistent,
                        "remote_ip": p.remote_ip,
                        "best_height_at_connect": p.hello.best_height,
                        "connected_s": round(time.time() - p.connected_at, 1),
                        "listen_addr": p.hello.listen_addr,
                        "agent": p.hello.agent,
                    }
                    for p in peers
                ]
            }
        )

    async def block_latest(self, _request: web.Request) -> web.Response:
        chain = self.chain
        if chain.height == 0:
            raise ApiError(404, "block_not_found", "no block committed yet")
        return web.json_response(block_json(self._block_at(chain.height)))

    async def block(self, request: web.Request) -> web.Response:
        text = request.match_info["height"].removeprefix("0x")
        if len(text) == 2 * HASH_LEN and not text.isdigit():
            try:
                block_hash = bytes.fromhex(text)
            except ValueError:
                raise ApiError(400, "bad_hash", "block hash must be 64 hex digits") from None
            block = self.chain.store.block_by_hash(block_hash)
            if block is None:
                raise ApiError(404, "block_not_found", f"no block with hash {text}")
            return web.json_response(block_json(block))
        return web.json_response(block_json(self._block_at(self._height(request))))

    async def block_commit(self, request: web.Request) -> web.Response:
        height = self._height(request)
        self._block_at(height)
        commit = self.chain.store.commit(height)
        if commit is None:
            raise ApiError(404, "commit_not_found", f"no commit stored for height {height}")
        return web.json_response(commit_json(commit))

    async def tx(self, request: web.Request) -> web.Response:
        text = request.match_info["hash"].removeprefix("0x")
        try:
            tx_hash = bytes.fromhex(text)
        except ValueError:
            raise ApiError(400, "bad_hash", "tx hash must be hex") from None
        if len(tx_hash) != 32:
            raise ApiError(400, "bad_hash", "tx hash must be 32 bytes")
        chain = self.chain
        loc = chain.store.tx_location(tx_hash)
        if loc is not None:
            height, index = loc
            block = self._block_at(height)
            out = tx_json(SignedTx.decode(block.txs[index]))
            out.update({"status": "committed", "height": height, "index": index})
            return web.json_response(out)
        pending = self.node.mempool.get(tx_hash) if self.node.mempool else None
        if pending is not None:
            out = tx_json(pending)
            out["status"] = "pending"
            return web.json_response(out)
        raise ApiError(404, "tx_not_found", f"transaction {text} is not known")

    async def submit_tx(self, request: web.Request) -> web.Response:
        _ = self.chain  # 503 until the node (and its mempool) is up
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

    async def account(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        try:
            address = parse_address(text)
        except KeyFormatError as exc:
            raise ApiError(400, "bad_address", str(exc)) from None
        state = self.chain.state
        acct = state.account(address)
        pending = self.node.mempool.pending_nonce(address) if self.node.mempool else None
        if acct is None:
            return web.json_response(
                {
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
            )
        return web.json_response(
            {
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
        )

    async def validators(self, _request: web.Request) -> web.Response:
        state = self.chain.state
        vals = state.validator_set()
        total = sum(v.power for v in vals)
        return web.json_response(
            {
                "height": state.height + 1,
                "total_power": total,
                "validators": [
                    {"address": format_address(v.address), "pubkey": hexstr(v.pubkey), "power": v.power}
                    for v in vals
                ],
            }
        )

    async def mempool(self, request: web.Request) -> web.Response:
        pool = self.node.mempool
        txs = pool.txs() if pool else []
        limit = min(
            int(request.query.get("limit", "100")) if request.query.get("limit", "100").isdigit() else 100,
            1000,
        )
        return web.json_response(
            {
                "count": len(txs),
                "bytes": pool.size_bytes if pool else 0,
                "txs": [tx_json(t) for t in txs[:limit]],
            }
        )

    async def _node_ids(self, request: web.Request) -> list[bytes]:
        try:
            body = await request.json()
            ids = [bytes.fromhex(t) for t in body["node_ids"]]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ApiError(400, "bad_request", 'body must be {"node_ids": ["<hex>", ...]}') from None
        if self.node.host is None:
            raise ApiError(503, "not_ready", "node is starting")
        return ids

    async def unsafe_block_peers(self, request: web.Request) -> web.Response:
        host = self.node.host
        ids = await self._node_ids(request)
        assert host is not None
        for nid in ids:
            host.bans.ban(nid, "unsafe rpc: test partition", duration=10**9)
            peer = host.peer(nid)
            if peer is not None:
                peer.conn.close("test partition")
        log.warning("UNSAFE rpc: blocked %d peers", len(ids))
        return web.json_response({"blocked": [n.hex() for n in ids]})

    async def unsafe_unblock_peers(self, request: web.Request) -> web.Response:
        host = self.node.host
        ids = await self._node_ids(request)
        assert host is not None
        for nid in ids:
            host.bans.unban(nid)
        return web.json_response({"unblocked": [n.hex() for n in ids]})

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.routes))

    # ------------------------------------------------------------------ events

    def _on_event(self, event: NodeEvent) -> None:
        messages = [{"type": event.kind, **event.data}]
        if event.kind == "block":
            messages += [
                {"type": "tx", "hash": tx_hash, "height": event.data["height"]}
                for tx_hash in event.data.get("tx_hashes", [])
            ]
        for sub in list(self._subscribers):
            for message in messages:
                sub.push(message)

    def _replayed(self, block: Block) -> list[dict[str, Any]]:
        """The stream messages of a stored block (replay carries no executor events)."""
        hashes = [tx_hash_hex(raw) for raw in block.txs]
        head: dict[str, Any] = {
            "type": "block",
            "height": block.height,
            "hash": hexstr(block.hash),
            "time_ms": block.header.time_ms,
            "txs": len(block.txs),
            "tx_hashes": hashes,
            "replayed": True,
        }
        return [head, *({"type": "tx", "hash": h, "height": block.height} for h in hashes)]

    async def events(self, request: web.Request) -> web.StreamResponse:
        if len(self._subscribers) >= self.max_ws_clients:
            raise ApiError(503, "too_many_clients", "too many event subscribers")
        from_height = None
        if "from_height" in request.query:
            text = request.query["from_height"]
            if not text.isdigit() or len(text) > 19:
                raise ApiError(400, "bad_height", f"from_height must be a non-negative integer, got {text!r}")
            from_height = max(1, int(text))
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "websocket_required", "GET /events needs a WebSocket upgrade")
        chain = self.chain
        await ws.prepare(request)
        # Subscribe before replaying so nothing committed meanwhile is missed; duplicates are skipped.
        sub = _Subscriber()
        self._subscribers.add(sub)

        async def reader() -> None:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break

        read_task = asyncio.create_task(reader())
        last_sent = 0
        try:
            await ws.send_json(
                {"type": "hello", "height": chain.height, "chain_id": self.node.genesis.chain_id}
            )
            if from_height is not None:
                h = from_height
                while h <= chain.height and not ws.closed:
                    block = chain.store.block(h)
                    if block is None:
                        break
                    for message in self._replayed(block):
                        await ws.send_json(message)
                    last_sent = h
                    h += 1
            while not ws.closed:
                get = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({get, read_task}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    break
                message = get.result()
                if message.get("type") == "shutdown":
                    break
                if message.get("type") == "lagged":
                    await ws.send_json(
                        {
                            "type": "error",
                            "code": "lagged",
                            "message": f"subscriber fell more than {WS_QUEUE_SIZE} events behind; "
                            "reconnect with ?from_height=N",
                        }
                    )
                    break
                if message.get("type") in ("block", "tx") and message.get("height", 0) <= last_sent:
                    continue  # already sent by the replay
                await ws.send_json(message)
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self._subscribers.discard(sub)
            read_task.cancel()
            await ws.close()
        return ws


class _Subscriber:
    """One WebSocket client's event buffer. A client too slow to keep up is cut off with a `lagged`
    error (it can resume from a height) instead of silently missing events or growing without bound."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.lagged = False

    def push(self, message: dict[str, Any]) -> None:
        if self.lagged:
            return
        if self.queue.qsize() >= WS_QUEUE_SIZE:
            self.lagged = True
            self.queue.put_nowait({"type": "lagged"})
            return
        self.queue.put_nowait(message)


def tx_hash_hex(raw: bytes) -> str:
    try:
        return hexstr(SignedTx.decode(raw).hash)
    except Exception:  # committed txs always decode; keep the stream robust anyway
        return ""


def openapi_document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """OpenAPI 3.0 document generated from the same `Route`s that build the router."""
    error = {"$ref": "#/components/responses/Error"}
    json_ok = {"content": {"application/json": {"schema": {"type": "object"}}}}
    paths: dict[str, Any] = {}
    for r in routes:
        responses: dict[str, Any] = {}
        if r.method == "POST":
            responses["200"] = {"description": "done", **json_ok}
            responses["202"] = {"description": "accepted (transactions: admitted to the mempool)", **json_ok}
            responses["413"] = error
        elif r.handler_name == "events":
            responses["101"] = {"description": "switching to the WebSocket protocol"}
        else:
            responses["200"] = {"description": "OK", **json_ok}
        responses.update({"400": error, "404": error, "405": error, "503": error})
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler_name, "responses": responses}
        parameters = [
            {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}
            for name, desc in r.params
        ] + [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": desc,
                "schema": {"type": "integer"},
            }
            for name, desc in r.query
        ]
        if parameters:
            op["parameters"] = parameters
        if r.method == "POST":
            op["requestBody"] = {
                "required": True,
                "description": r.body or "",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pocl-node RPC",
            "version": API_VERSION,
            "description": "JSON RPC of a Proof-of-Collaborative-Learning node. Errors are "
            '{"error": {"code", "message"}} with stable codes.',
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                            "required": ["code", "message"],
                        }
                    },
                    "required": ["error"],
                },
            },
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
    }
