"""Every RPC endpoint of a real in-process node (LevelDB, TCP, Ed25519), success and error paths."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import make_stake, make_transfer
from pocl.node.explorer.web import is_page_path
from pocl.node.node import Node
from pocl.node.rpc.openapi import openapi_document
from pocl.node.rpc.websocket import WS_QUEUE_SIZE

from tests.support.rpc_node import FAUCET, FAUCET_BALANCE, Api, wait_for

CHAIN = "rpc-test"
BOB = PrivateKey.from_seed_text("rpc-bob")


def assert_error(status: int, body: object, want_status: int, code: str | None = None) -> None:
    assert status == want_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body


async def committed(api: Api, tx_hash: str) -> dict:
    async def poll() -> dict:
        while True:
            status, body = await api.get(f"/txs/{tx_hash}")
            if status == 200 and body["status"] == "committed":
                return body
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), 30)


# --------------------------------------------------------------------------- read endpoints


async def test_status_health_peers_validators(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(2)
    status, st = await api.get("/status")
    assert status == 200
    assert st["chain_id"] == CHAIN
    assert st["node_id"] == node.node_key.pubkey.hex()
    assert st["height"] >= 2 and len(st["latest_block_hash"]) == 64
    assert st["peers"] == 0 and st["syncing"] is False
    assert node.consensus_key is not None and node.account_key is not None
    assert st["validator"]["address"] == format_address(node.consensus_key.address)
    assert st["validator"]["operator"] == format_address(node.account_key.address)
    assert st["validator"]["registered"] is True and st["validator"]["active"] is True

    status, health = await api.get("/health")
    assert status == 200 and health["ok"] is True

    status, peers = await api.get("/peers")
    assert status == 200 and peers == {"peers": []}

    status, vals = await api.get("/validators")
    assert status == 200
    assert [v["address"] for v in vals["validators"]] == [st["validator"]["address"]]
    assert [v["operator"] for v in vals["validators"]] == [st["validator"]["operator"]]
    assert [v["pubkey"] for v in vals["validators"]] == [node.consensus_key.pubkey.hex()]
    assert vals["total_power"] == sum(v["power"] for v in vals["validators"]) > 0


async def test_blocks_by_height_hash_and_latest(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(3)
    status, b2 = await api.get("/blocks/2")
    assert status == 200
    assert b2["header"]["height"] == 2 and len(b2["hash"]) == 64
    assert b2["last_commit"]["height"] == 1
    status, b1 = await api.get("/blocks/1")
    assert b2["header"]["prev_hash"] == b1["hash"]
    for ref in (b2["hash"], "0x" + b2["hash"], b2["hash"].upper()):
        status, by_hash = await api.get(f"/blocks/{ref}")
        assert status == 200 and by_hash == b2
    status, latest = await api.get("/blocks/latest")
    assert status == 200 and latest["header"]["height"] >= 3

    status, commit = await api.get("/blocks/2/commit")
    assert status == 200
    assert commit["height"] == 2 and commit["block_hash"] == b2["hash"]
    # votes are signed with the consensus key, never the account key
    assert [s["validator"] for s in commit["signatures"]] == [format_address(node.consensus_key.address)]

    assert_error(*await api.get("/blocks/0"), 404, "block_not_found")
    assert_error(*await api.get("/blocks/99999999"), 404, "block_not_found")
    assert_error(*await api.get("/blocks/99999999/commit"), 404, "block_not_found")
    assert_error(*await api.get(f"/blocks/{'ab' * 32}"), 404, "block_not_found")
    assert_error(*await api.get("/blocks/-1"), 400, "bad_height")
    assert_error(*await api.get("/blocks/abc"), 400, "bad_height")
    assert_error(*await api.get("/blocks/1" + "0" * 30), 400, "bad_height")
    assert_error(*await api.get(f"/blocks/{'zz' * 32}"), 400, "bad_hash")
    assert_error(*await api.get("/blocks/x/commit"), 400, "bad_height")


async def test_accounts(api: Api, height_at_least) -> None:
    await height_at_least(1)
    status, acct = await api.get(f"/accounts/{format_address(FAUCET.address)}")
    assert status == 200
    assert acct["exists"] is True and acct["balance"] == FAUCET_BALANCE
    assert acct["nonce"] == 0 and acct["pending_nonce"] == 0
    status, nobody = await api.get(f"/accounts/{format_address(BOB.address)}")
    assert status == 200 and nobody["exists"] is False and nobody["balance"] == 0
    for bad in ("0x1234", "nothex", "0x" + "g" * 40):
        assert_error(*await api.get(f"/accounts/{bad}"), 400, "bad_address")


# --------------------------------------------------------------------------- transactions


async def test_submit_tx_json_and_octet_stream_then_lookup(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(1)
    t0 = make_transfer(FAUCET, CHAIN, 0, BOB.address, 1_000, 10)
    t1 = make_stake(FAUCET, CHAIN, 1, 500, 10)
    status, body = await api.post("/txs", json={"tx": t0.raw.hex()})
    assert status == 202 and body == {"hash": t0.hash.hex(), "new": True}
    status, body = await api.post("/txs", data=t1.raw, headers={"Content-Type": "application/octet-stream"})
    assert status == 202 and body["hash"] == t1.hash.hex()
    # the same tx again is accepted idempotently (not new)
    status, body = await api.post("/txs", json={"tx": "0x" + t0.raw.hex()})
    assert status == 202 and body["new"] is False

    status, acct = await api.get(f"/accounts/{format_address(FAUCET.address)}")
    assert acct["pending_nonce"] in (1, 2) or acct["nonce"] >= 1  # pending txs counted until committed
    info0 = await committed(api, t0.hash.hex())
    info1 = await committed(api, t1.hash.hex())
    assert info0["kind"] == "transfer" and info0["sender"] == format_address(FAUCET.address)
    assert info0["payload"][0] == format_address(BOB.address)
    assert info1["kind"] == "stake"
    status, block = await api.get(f"/blocks/{info0['height']}")
    assert block["txs"][info0["index"]]["hash"] == t0.hash.hex()
    status, acct = await api.get(f"/accounts/{format_address(BOB.address)}")
    assert acct["balance"] == 1_000
    status, acct = await api.get(f"/accounts/{format_address(FAUCET.address)}")
    assert acct["nonce"] == 2 and acct["pending_nonce"] == 2 and acct["stake"] == 500
    # replaying a committed tx is rejected with its code
    assert_error(*await api.post("/txs", json={"tx": t0.raw.hex()}), 400, "nonce_too_low")


async def test_pending_tx_lookup_and_mempool(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(1)
    # nonce 1 without nonce 0 is held (queued) or rejected; nonce 0 is pending until the next block
    tx = make_transfer(FAUCET, CHAIN, 0, BOB.address, 7, 10)
    assert node.mempool is not None
    res = node.mempool.add(tx.raw)  # add without gossip so it stays until the next reap
    assert res.ok
    status, pool = await api.get("/mempool")
    if status == 200 and pool["count"]:
        assert pool["txs"][0]["hash"] == tx.hash.hex()
        assert pool["bytes"] >= len(tx.raw)
    status, got = await api.get(f"/txs/{tx.hash.hex()}")
    assert status == 200 and got["status"] in ("pending", "committed")
    status, pool = await api.get("/mempool?limit=0")
    assert status == 200 and pool["txs"] == []
    status, pool = await api.get("/mempool?limit=nonsense")
    assert status == 200


async def test_submit_tx_errors(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(1)
    js = {"Content-Type": "application/json"}
    assert_error(*await api.post("/txs", data=b"", headers=js), 400, "bad_json")
    assert_error(*await api.post("/txs", data=b"{not json", headers=js), 400, "bad_json")
    assert_error(*await api.post("/txs", data=b"\xff\xfe\x00", headers=js), 400, "bad_json")
    assert_error(*await api.post("/txs", data=b"", headers={"Content-Type": "text/plain"}), 400, "bad_json")
    assert_error(*await api.post("/txs", json=[1, 2]), 400, "bad_request")
    assert_error(*await api.post("/txs", json={"tx": 5}), 400, "bad_request")
    assert_error(*await api.post("/txs", json={"tx": "zz"}), 400, "bad_hex")
    assert_error(*await api.post("/txs", json={"tx": "00ff"}), 400, "malformed_tx")
    octet = {"Content-Type": "application/octet-stream"}
    assert_error(*await api.post("/txs", data=b"\x93\x01\x02", headers=octet), 400, "malformed_tx")
    good = make_transfer(FAUCET, CHAIN, 0, BOB.address, 1, 10)
    tampered = bytearray(good.raw)
    tampered[-1] ^= 1
    assert_error(*await api.post("/txs", json={"tx": bytes(tampered).hex()}), 400, "bad_signature")
    other_chain = make_transfer(FAUCET, "other-chain", 0, BOB.address, 1, 10)
    status, body = await api.post("/txs", json={"tx": other_chain.raw.hex()})
    assert_error(status, body, 400)
    broke = make_transfer(BOB, CHAIN, 0, FAUCET.address, 1, 10)  # BOB has no account
    status, body = await api.post("/txs", json={"tx": broke.raw.hex()})
    assert_error(status, body, 400)
    # body over [rpc] max_body_bytes (1 MiB in these tests) -> 413, JSON or raw
    big = b"0" * (2 << 20)
    assert_error(*await api.post("/txs", data=big, headers=js), 413, "body_too_large")
    assert_error(*await api.post("/txs", data=big, headers=octet), 413, "body_too_large")
    # nothing of that reached the mempool, and the node still works
    assert node.mempool is not None and len(node.mempool) == 0
    status, _ = await api.get("/status")
    assert status == 200


async def test_tx_lookup_errors(api: Api) -> None:
    assert_error(*await api.get("/txs/nothex"), 400, "bad_hash")
    assert_error(*await api.get("/txs/abcd"), 400, "bad_hash")
    assert_error(*await api.get(f"/txs/{'00' * 32}"), 404, "tx_not_found")


async def test_unknown_route_and_method(api: Api) -> None:
    assert_error(*await api.get("/nope"), 404, "not_found")
    assert_error(*await api.get("/blocks/1/extra/parts"), 404, "not_found")
    assert_error(*await api.post("/status", json={}), 405, "method_not_allowed")
    assert_error(*await api.request("PUT", "/txs"), 405, "method_not_allowed")
    assert_error(*await api.get("/txs"), 400, "bad_request")  # GET /txs is the search: needs ?account=
    assert_error(*await api.request("DELETE", "/blocks/1"), 405, "method_not_allowed")


async def test_unsafe_routes_are_off_by_default(api: Api) -> None:
    assert_error(*await api.post("/unsafe/p2p/block", json={"node_ids": []}), 404, "not_found")


# --------------------------------------------------------------------------- OpenAPI


def validate(doc: dict) -> None:
    """Full OpenAPI 3.0 validation with openapi-spec-validator (the `test` extra); a structural check
    of the same essentials where it is not installed."""
    try:
        from openapi_spec_validator import validate as full_validate
    except ImportError:
        full_validate = None
    if full_validate is not None:
        full_validate(doc)
        return
    assert doc["openapi"].startswith("3.0.") and doc["info"]["title"] and doc["info"]["version"]
    ops = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    assert len(ops) == sum(len(o) for o in doc["paths"].values()), "operationIds must be unique"
    for path, methods in doc["paths"].items():
        assert path.startswith("/")
        for method, op in methods.items():
            assert method in ("get", "post", "put", "delete", "patch", "options", "head")
            assert op["responses"] and all(code.isdigit() for code in op["responses"])
            for resp in op["responses"].values():
                ref = resp.get("$ref")
                assert ref is None or ref.split("/")[-1] in doc["components"]["responses"]
                assert ref is not None or resp["description"]
            for param in op.get("parameters", []):
                assert param["in"] in ("path", "query") and param["schema"]
                assert param["in"] != "path" or param["required"] is True


async def test_openapi_validates_and_matches_the_router(node: Node, api: Api) -> None:
    status, doc = await api.get("/openapi.json")
    assert status == 200
    validate(doc)
    assert node.rpc is not None
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    routed = {(r.method, r.resource.canonical) for r in node.rpc.app().router.routes() if r.resource}
    pages = {(m, path) for m, path in routed if is_page_path(path)}  # the web explorer: not JSON API
    assert ("GET", "/explorer") in pages and not {path for _, path in pages} & set(doc["paths"])
    assert documented == routed - pages
    for path, ops in doc["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
    # the required endpoints of the operator surface are all there
    for path in ("/status", "/health", "/peers", "/blocks/latest", "/blocks/{height}",
                 "/blocks/{height}/commit", "/txs/{hash}", "/txs", "/accounts/{address}",
                 "/validators", "/mempool", "/events", "/openapi.json"):  # fmt: skip
        assert path in doc["paths"], path


def test_openapi_with_unsafe_and_extra_routes_validates() -> None:
    from pocl.node.rpc.routes import CORE_ROUTES, UNSAFE_ROUTES, Route

    extra = (Route("GET", "/rounds/{round}", "round", "A PoCL round", (("round", "round number"),)),)
    validate(openapi_document(CORE_ROUTES + extra + UNSAFE_ROUTES))


# --------------------------------------------------------------------------- WebSocket events


async def test_events_stream_delivers_every_block_in_order(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(1)
    tx = make_transfer(FAUCET, CHAIN, 0, BOB.address, 5, 10)
    async with api.session.ws_connect(api.base + "/events") as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello" and hello["chain_id"] == CHAIN
        start = hello["height"]
        status, _ = await api.post("/txs", json={"tx": tx.raw.hex()})
        assert status == 202
        heights: list[int] = []
        tx_seen = None
        while len(heights) < 6 or tx_seen is None:
            msg = await ws.receive_json(timeout=15)
            if msg["type"] == "block":
                heights.append(msg["height"])
                assert len(msg["hash"]) == 64
            elif msg["type"] == "tx":
                tx_seen = msg
        assert heights == list(range(heights[0], heights[0] + len(heights)))
        assert heights[0] == start + 1 or heights[0] <= start + 1
        assert tx_seen["hash"] == tx.hash.hex()
        status, info = await api.get(f"/txs/{tx.hash.hex()}")
        assert info["height"] == tx_seen["height"]


async def test_events_replay_from_height_has_no_gaps_or_duplicates(api: Api, height_at_least) -> None:
    await height_at_least(3)
    async with api.session.ws_connect(api.base + "/events?from_height=1") as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello"
        heights: list[int] = []
        while len(heights) < hello["height"] + 3:
            msg = await ws.receive_json(timeout=15)
            if msg["type"] == "block":
                heights.append(msg["height"])
        assert heights == list(range(1, len(heights) + 1))


async def test_events_errors(node: Node, api: Api) -> None:
    assert_error(*await api.get("/events"), 400, "websocket_required")
    assert_error(*await api.get("/events?from_height=x"), 400, "bad_height")
    socks = [await api.session.ws_connect(api.base + "/events") for _ in range(4)]  # max_ws_clients=4
    try:
        for ws in socks:
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await api.session.ws_connect(api.base + "/events")
        assert err.value.status == 503
    finally:
        for ws in socks:
            await ws.close()
    await wait_for(lambda: node.rpc is not None and not node.rpc.events.subscribers, 10, "subscribers to go")


def test_slow_subscriber_is_cut_off_with_lagged() -> None:
    from pocl.node.rpc.websocket import Subscriber

    sub = Subscriber()
    for i in range(WS_QUEUE_SIZE + 10):
        sub.push({"type": "block", "height": i})
    assert sub.lagged and sub.queue.qsize() == WS_QUEUE_SIZE + 1
    items = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert items[-1] == {"type": "lagged"}
    assert [m["height"] for m in items[:-1]] == list(range(WS_QUEUE_SIZE))


async def test_malformed_http_is_logged_as_one_line_without_traceback(
    node: Node, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    assert node.rpc is not None
    caplog.set_level(logging.INFO)
    for payload in (b"\x16\x03\x01\x00garbage\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 5000):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.rpc.port)
        writer.write(payload)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert any("rejected malformed http request" in r.getMessage() for r in caplog.records)
    status, _ = await api.get("/health")
    assert status == 200


async def test_peers_and_status_of_two_connected_nodes(node: Node, api: Api, tmp_path) -> None:
    from tests.support.rpc_node import make_node

    assert node.host is not None
    full = make_node(
        tmp_path / "full", genesis=node.genesis, peers=(str(node.host.listen_addr),), validator=False
    )
    await full.start()
    try:
        await wait_for(lambda: full.host is not None and len(full.host.peers()) == 1, 20, "connection")
        await wait_for(lambda: full.chain.height >= 2, 30, "full node to follow")  # type: ignore[union-attr]
        status, peers = await api.get("/peers")
        assert status == 200 and len(peers["peers"]) == 1
        peer = peers["peers"][0]
        assert peer["node_id"] == full.node_key.pubkey.hex()
        assert peer["outbound"] is False and peer["remote_ip"] == "127.0.0.1"
        assert isinstance(peer["best_height_at_connect"], int) and peer["agent"]
        status, st = await api.get("/status")
        assert st["peers"] == 1
        assert full.rpc is not None
        async with api.session.get(f"http://127.0.0.1:{full.rpc.port}/status") as resp:
            fst = await resp.json()
        assert fst["validator"] is None and fst["chain_id"] == st["chain_id"]
    finally:
        await full.stop()
