"""The OpenAPI document's response schemas are generated from the handlers' response types and match
what a running node answers (every route, success and error), including the routes CometBFT users look
for: `/net_info`, `/genesis`, `POST /txs?wait=commit`, txs by account and by height."""

from __future__ import annotations

import asyncio

import pytest
from jsonschema import ValidationError
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import make_transfer
from pocl.node.node import Node
from pocl.node.rpc.openapi import openapi_document
from pocl.node.rpc.routes import CORE_ROUTES

from tests.support.openapi_check import check
from tests.support.rpc_node import FAUCET, Api

openapi_schema_validator = pytest.importorskip("openapi_schema_validator")

CHAIN = "rpc-test"
CAROL = PrivateKey.from_seed_text("rpc-carol")


def test_response_schemas_are_typed_and_strict() -> None:
    doc = openapi_document(CORE_ROUTES)
    status = doc["components"]["schemas"]["StatusView"]
    assert status["additionalProperties"] is False
    assert status["properties"]["height"] == {"type": "integer"}
    assert "validator" in status["required"]
    block = doc["components"]["schemas"]["BlockView"]
    assert "txs" in block["properties"] and "txs" not in block["required"]  # NotRequired
    assert {"$ref": "#/components/schemas/CommitView"} in block["properties"]["last_commit"]["anyOf"]
    # no route answers the untyped `{"type": "object"}` any more, except the OpenAPI document itself
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for code, resp in op["responses"].items():
                if code.startswith("2") and path != "/openapi.json":
                    assert "$ref" in resp["content"]["application/json"]["schema"], (path, method, code)
    # path parameters are typed, query parameters declared
    params = {
        (p, m): {q["name"]: q for q in op.get("parameters", [])}
        for p, o in doc["paths"].items()
        for m, op in o.items()
    }
    assert params[("/blocks/{height}/commit", "get")]["height"]["schema"]["type"] == "integer"
    assert "pattern" in params[("/txs/{hash}", "get")]["hash"]["schema"]
    assert "pattern" in params[("/accounts/{address}", "get")]["address"]["schema"]
    assert set(params[("/txs", "get")]) == {"account", "from_height", "to_height", "limit"}
    assert params[("/txs", "post")]["wait"]["schema"]["enum"] == ["commit"]
    assert {"404", "503", "504"} <= set(doc["paths"]["/txs"]["post"]["responses"])


async def test_every_route_answers_what_its_schema_says(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(2)
    status, doc = await api.get("/openapi.json")
    assert status == 200

    # POST /txs?wait=commit answers once the tx is committed, with its height and index
    t0 = make_transfer(FAUCET, CHAIN, 0, CAROL.address, 5_000, 10)
    status, sub = await api.post("/txs?wait=commit&timeout_ms=30000", json={"tx": t0.raw.hex()})
    assert status == 200, sub
    check(doc, "/txs", "post", 200, sub)
    assert sub["hash"] == t0.hash.hex() and sub["status"] == "committed" and sub["height"] >= 1
    assert node.chain is not None and node.chain.store.tx_location(t0.hash) == (sub["height"], sub["index"])
    # the same tx again: already committed, answered at once
    status, again = await api.post("/txs?wait=commit", json={"tx": t0.raw.hex()})
    assert status == 200 and (again["height"], again["index"]) == (sub["height"], sub["index"])
    t1 = make_transfer(FAUCET, CHAIN, 1, CAROL.address, 1, 10)
    status, plain = await api.post("/txs", json={"tx": t1.raw.hex()})
    check(doc, "/txs", "post", status, plain)
    h = sub["height"]
    carol = format_address(CAROL.address)

    gets = {
        "/status": "/status",
        "/health": "/health",
        "/peers": "/peers",
        "/net_info": "/net_info",
        "/genesis": "/genesis",
        "/blocks/latest": "/blocks/latest",
        "/blocks/{height}": f"/blocks/{h}",
        "/blocks/{height}/commit": "/blocks/1/commit",
        "/blocks/{height}/txs": f"/blocks/{h}/txs",
        "/txs/{hash}": f"/txs/{t0.hash.hex()}",
        "/txs": f"/txs?account={carol}",
        "/accounts/{address}": f"/accounts/{carol}",
        "/validators": "/validators",
        "/mempool": "/mempool",
        "/rounds/latest": "/rounds/latest",
        "/models/global": "/models/global",
        "/models/global/predict": "/models/global/predict?inputs=" + str([[0] * 8] * 8).replace(" ", ""),
    }
    answers = {}
    for path, url in gets.items():
        status, body = await api.get(url)
        if path == "/rounds/latest" and status == 404:  # no round has opened on this chain yet
            check(doc, path, "get", 404, body)
            continue
        assert status == 200, (url, body)
        check(doc, path, "get", 200, body)
        answers[path] = body
    # block by hash, and a pending tx, have the same shapes
    status, body = await api.get(f"/blocks/{answers['/blocks/{height}']['hash']}")
    check(doc, "/blocks/{height}", "get", status, body)

    # the new routes say what they should
    net = answers["/net_info"]
    assert net["listening"] and net["listen_addrs"] and net["n_peers"] == 0 == len(net["peers"])
    assert net["node_id"] == answers["/status"]["node_id"] and net["p2p_address"].startswith(net["node_id"])
    assert answers["/genesis"]["genesis_hash"] == answers["/status"]["genesis_hash"]
    assert answers["/genesis"]["genesis"]["chain_id"] == CHAIN
    block_txs = answers["/blocks/{height}/txs"]
    assert block_txs["txs"][sub["index"]]["hash"] == t0.hash.hex() and block_txs["count"] == len(
        block_txs["txs"]
    )
    found = answers["/txs"]
    assert found["account"] == carol and t0.hash.hex() in [t["hash"] for t in found["txs"]]
    assert all(t["status"] == "committed" for t in found["txs"])
    status, by_sender = await api.get(f"/txs?account={format_address(FAUCET.address)}&limit=1")
    assert status == 200 and by_sender["txs"][0]["sender"] == format_address(FAUCET.address)
    check(doc, "/txs", "get", 200, by_sender)
    # paging backwards: the block before the searched range is where the next page starts
    assert by_sender["next_to_height"] == by_sender["from_height"] - 1 or by_sender["from_height"] == 1

    # errors answer the Error schema
    for method, url, want, path in (
        ("GET", "/txs", 400, "/txs"),
        ("GET", "/txs?account=0x12", 400, "/txs"),
        ("GET", f"/txs?account={carol}&limit=0", 400, "/txs"),
        ("GET", f"/txs?account={carol}&to_height=x", 400, "/txs"),
        ("GET", "/blocks/999999/txs", 404, "/blocks/{height}/txs"),
        ("GET", "/blocks/x/txs", 400, "/blocks/{height}/txs"),
        ("POST", "/txs?wait=forever", 400, "/txs"),
        ("POST", "/txs?wait=commit&timeout_ms=0", 400, "/txs"),
    ):
        status, body = await api.request(method, url, json={"tx": t1.raw.hex()} if method == "POST" else None)
        assert status == want, (url, body)
        check(doc, path, method.lower(), status, body)


async def test_wait_commit_times_out_with_504_and_the_tx_stays_pending(
    node: Node, api: Api, height_at_least
) -> None:
    await height_at_least(1)
    gap = make_transfer(
        FAUCET, CHAIN, 5, CAROL.address, 1, 10
    )  # nonce 5 without 0..4: queued, never committed
    status, body = await api.post("/txs?wait=commit&timeout_ms=300", json={"tx": gap.raw.hex()})
    assert status == 504 and body["error"]["code"] == "commit_timeout", body
    assert gap.hash.hex() in body["error"]["message"]
    status, doc = await api.get("/openapi.json")
    check(doc, "/txs", "post", 504, body)
    # a bad tx is still a 400 with its code, not a wait
    status, body = await api.post("/txs?wait=commit", json={"tx": "00"})
    assert status == 400


async def test_a_drifting_response_fails_its_schema(api: Api, height_at_least) -> None:
    await height_at_least(1)
    _, doc = await api.get("/openapi.json")
    _, status = await api.get("/status")
    check(doc, "/status", "get", 200, status)
    with pytest.raises(ValidationError, match="undocumented"):
        check(doc, "/status", "get", 200, {**status, "undocumented": 1})
    with pytest.raises(ValidationError, match="integer"):
        check(doc, "/status", "get", 200, {**status, "height": "12"})


async def test_wait_commit_does_not_block_other_requests(api: Api, height_at_least) -> None:
    await height_at_least(1)
    gap = make_transfer(FAUCET, CHAIN, 9, CAROL.address, 1, 10)
    waiting = asyncio.create_task(api.post("/txs?wait=commit&timeout_ms=2000", json={"tx": gap.raw.hex()}))
    status, _ = await api.get("/health")
    assert status == 200 and not waiting.done()
    status, _ = await waiting
    assert status == 504
