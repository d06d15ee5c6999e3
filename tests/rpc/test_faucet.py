"""The testnet faucet: `[faucet]` config, `POST /faucet` on a real in-process node (grants commit, rate
limits per address and per source, concurrent grants, bad input, an empty faucet), and the grant logic
against a small fake node (nonces, the in-flight cap, bounded rate-limit tables)."""

from __future__ import annotations

import asyncio
import dataclasses
import types
from pathlib import Path
from typing import Any

import pytest
from pocl.ledger import errors
from pocl.ledger.errors import TxError
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import SignedTx
from pocl.node.config import Config
from pocl.node.errors import ConfigError
from pocl.node.faucet import (
    FAUCET_BUSY,
    FAUCET_EMPTY,
    FAUCET_RATE_LIMITED,
    Faucet,
    FaucetRefused,
    FaucetSettings,
    FaucetSetupError,
    RateLimit,
)
from pocl.node.mempool import AddResult
from pocl.node.node import Node, NodeError
from pocl.node.rpc.openapi import openapi_document

from tests.support.faucet_node import AMOUNT, FEE, faucet_node, serving
from tests.support.rpc_node import FAUCET, FAUCET_BALANCE, Api

openapi_schema_validator = pytest.importorskip("openapi_schema_validator")


def check_schema(doc: dict, status: int, body: Any) -> None:
    """`body` is what `/openapi.json` documents for `POST /faucet` answering `status`."""
    resp = doc["paths"]["/faucet"]["post"]["responses"][str(status)]
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
    schema = {**resp["content"]["application/json"]["schema"], "components": doc["components"]}
    openapi_schema_validator.OAS30Validator(schema).validate(body)


def address_of(seed: str) -> str:
    return format_address(PrivateKey.from_seed_text(seed).address)


async def grant(api: Api, address: str) -> tuple[int, Any]:
    return await api.post("/faucet", json={"address": address})


async def committed(api: Api, tx_hash: str) -> dict:
    async def poll() -> dict:
        while True:
            status, body = await api.get(f"/txs/{tx_hash}")
            if status == 200 and body["status"] == "committed":
                return body
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), 30)


async def balance(api: Api, address: str) -> int:
    status, body = await api.get(f"/accounts/{address}")
    assert status == 200, body
    return int(body["balance"])


# --------------------------------------------------------------------------- config


def test_the_faucet_is_off_by_default_and_its_section_is_strict() -> None:
    section = Config().faucet
    assert section.enabled is False and section.key == "faucet" and section.amount > 0
    assert section.per_address_interval_s > 0 and section.per_source_interval_s > 0
    assert "[faucet]" in Config().to_toml()
    parsed = Config.from_dict(
        {"faucet": {"enabled": True, "key": "tap", "amount": 7, "per_source_interval_s": 0}}
    )
    assert (
        parsed.faucet.key == "tap" and parsed.faucet.amount == 7 and parsed.faucet.per_source_interval_s == 0
    )
    for bad, message in (
        ({"amount": 0}, "config faucet.amount: must be positive"),
        ({"key": "faucet.json"}, "config faucet.key: not the name of a key"),
        ({"key": "../x"}, "config faucet.key: not the name of a key"),
        ({"per_address_interval_s": -1}, "config faucet.per_address_interval_s: must not be negative"),
        ({"max_in_flight": 0}, "config faucet.max_in_flight: must be positive"),
        ({"enabeld": True}, "config faucet.enabeld: unknown key"),
    ):
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            Config.from_dict({"faucet": bad})


async def test_an_enabled_faucet_needs_its_key_and_a_fee_the_chain_accepts(tmp_path: Path) -> None:
    node = faucet_node(tmp_path / "n")
    node.faucet_key = None
    with pytest.raises(NodeError, match=r"\[faucet\] enabled = true but no key 'faucet'"):
        await node.start()  # refused before the store, P2P or RPC start
    assert node.chain is None and node.rpc is None
    node = faucet_node(tmp_path / "m", fee=0)
    with pytest.raises(NodeError, match=r"faucet\.fee = 0 is below the chain's min_fee 1"):
        await node.start()
    with pytest.raises(FaucetSetupError, match="below the chain's min_fee 50"):
        FaucetSettings.from_config(Config().faucet, min_fee=50)


# --------------------------------------------------------------------------- a real node


async def test_post_faucet_is_refused_when_disabled(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(1)
    status, body = await grant(api, address_of("nobody"))
    assert status == 403 and body["error"]["code"] == "faucet_disabled", body
    assert node.faucet is None
    status, doc = await api.get("/openapi.json")
    assert "/faucet" in doc["paths"]  # documented either way
    check_schema(doc, 403, body)


async def test_a_grant_is_a_committed_transfer_from_the_faucet_key(tmp_path: Path) -> None:
    alice = address_of("faucet-alice")
    async with serving(faucet_node(tmp_path / "n")) as api:
        status, body = await grant(api, alice)
        assert status == 202, body
        assert body == {"tx_hash": body["tx_hash"], "amount": AMOUNT, "address": alice}
        _, doc = await api.get("/openapi.json")
        check_schema(doc, 202, body)
        tx = await committed(api, body["tx_hash"])
        assert tx["kind"] == "transfer" and tx["sender"] == format_address(FAUCET.address)
        assert tx["fee"] == FEE and tx["payload"] == [alice, AMOUNT]
        assert await balance(api, alice) == AMOUNT
        assert await balance(api, format_address(FAUCET.address)) == FAUCET_BALANCE - AMOUNT - FEE


async def test_the_same_address_twice_within_the_interval_is_429_with_retry_after(tmp_path: Path) -> None:
    alice, bob = address_of("faucet-alice"), address_of("faucet-bob")
    async with serving(
        faucet_node(tmp_path / "n", per_address_interval_s=600.0, per_source_interval_s=0.0)
    ) as api:
        assert (await grant(api, alice))[0] == 202
        async with api.session.post(api.base + "/faucet", json={"address": alice}) as resp:
            body = await resp.json()
            retry_header = resp.headers.get("Retry-After")
        assert resp.status == 429, body
        assert body["error"]["code"] == FAUCET_RATE_LIMITED
        assert 590 < body["error"]["retry_after_s"] <= 600
        assert retry_header is not None and 590 < int(retry_header) <= 600
        _, doc = await api.get("/openapi.json")
        check_schema(doc, 429, body)
        # the limit is per address: another address from the same client is served (no per-source limit)
        assert (await grant(api, bob))[0] == 202


async def test_another_address_from_the_same_source_within_its_interval_is_429(tmp_path: Path) -> None:
    async with serving(
        faucet_node(tmp_path / "n", per_address_interval_s=0.0, per_source_interval_s=300.0)
    ) as api:
        assert (await grant(api, address_of("faucet-alice")))[0] == 202
        status, body = await grant(api, address_of("faucet-bob"))
        assert status == 429 and body["error"]["code"] == FAUCET_RATE_LIMITED, body
        assert "127.0.0.1" in body["error"]["message"] and 290 < body["error"]["retry_after_s"] <= 300


async def test_concurrent_grants_to_distinct_addresses_all_commit(tmp_path: Path) -> None:
    addresses = [address_of(f"faucet-many-{i}") for i in range(24)]
    node = faucet_node(tmp_path / "n", per_source_interval_s=0.0)
    async with serving(node) as api:
        answers = await asyncio.gather(*(grant(api, a) for a in addresses))
        assert [status for status, _ in answers] == [202] * len(addresses), answers
        hashes = [body["tx_hash"] for _, body in answers]
        assert len(set(hashes)) == len(addresses)
        heights = [(await committed(api, h))["height"] for h in hashes]
        assert max(heights) >= 1
        assert [await balance(api, a) for a in addresses] == [AMOUNT] * len(addresses)
        _, faucet = await api.get(f"/accounts/{format_address(FAUCET.address)}")
        assert faucet["nonce"] == len(addresses)  # one nonce each: none collided, none was skipped


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"address": "0x12"}, "bad_address"),
        ({"address": "0x" + "zz" * 20}, "bad_address"),
        ({"address": 12}, "bad_request"),
        ({"to": "0x" + "00" * 20}, "bad_request"),
        ("not json", "bad_json"),
    ],
)
async def test_a_malformed_request_is_400(tmp_path: Path, body: Any, code: str) -> None:
    async with serving(faucet_node(tmp_path / "n")) as api:
        if isinstance(body, str):
            status, answer = await api.post("/faucet", data=body)
        else:
            status, answer = await api.post("/faucet", json=body)
        assert status == 400 and answer["error"]["code"] == code, answer
        _, doc = await api.get("/openapi.json")
        check_schema(doc, 400, answer)


async def test_an_empty_faucet_is_503_and_costs_the_client_nothing(tmp_path: Path) -> None:
    alice = address_of("faucet-alice")
    async with serving(faucet_node(tmp_path / "n", amount=FAUCET_BALANCE)) as api:  # amount + fee > balance
        for _ in range(2):  # a refusal records no rate limit
            status, body = await grant(api, alice)
            assert status == 503 and body["error"]["code"] == FAUCET_EMPTY, body
            assert "cannot cover" in body["error"]["message"]
        _, doc = await api.get("/openapi.json")
        check_schema(doc, 503, body)
        assert await balance(api, alice) == 0


# --------------------------------------------------------------------------- the grant logic, on a fake node


class FakeNode:
    """What `Faucet` reads (`TxNode`): committed nonce and balance, the mempool's pending nonce, submit."""

    def __init__(self, balance: int) -> None:
        self.committed_nonce = 0
        self.balance = balance
        self.submitted: list[SignedTx] = []
        self.reject: str | None = None
        state = types.SimpleNamespace(
            chain_id="fake",
            account=lambda _a: types.SimpleNamespace(nonce=self.committed_nonce),
            balance=lambda _a: self.balance,
        )
        self.chain = types.SimpleNamespace(state=state)
        self.mempool = types.SimpleNamespace(
            pending_nonce=lambda _a: self.committed_nonce + len(self.submitted)
        )

    def submit_tx(self, raw: bytes) -> AddResult:
        stx = SignedTx.decode(raw)
        if self.reject is not None:
            return AddResult(stx.hash, TxError(self.reject, "rejected"))
        self.submitted.append(stx)
        return AddResult(stx.hash, None, is_new=True)

    def commit_all(self) -> None:
        self.committed_nonce += len(self.submitted)
        self.submitted.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_faucet(node: FakeNode, clock: Clock, **changes: Any) -> Faucet:
    settings = FaucetSettings(
        amount=AMOUNT, fee=FEE, per_address_interval_s=60.0, per_source_interval_s=10.0, max_in_flight=3
    )
    return Faucet(node, FAUCET, dataclasses.replace(settings, **changes), timer=clock)  # type: ignore[arg-type]


def addr(i: int) -> bytes:
    return PrivateKey.from_seed_text(f"fake-{i}").address


def test_grants_take_consecutive_pending_nonces_and_the_in_flight_cap_holds() -> None:
    node, clock = FakeNode(10**9), Clock()
    faucet = fake_faucet(node, clock, per_source_interval_s=0.0)
    grants = [faucet.grant(addr(i), "10.0.0.1") for i in range(3)]
    assert [g.nonce for g in grants] == [0, 1, 2] == [s.tx.nonce for s in node.submitted]
    assert all(s.sender_address == FAUCET.address and s.tx.fee == FEE for s in node.submitted)
    with pytest.raises(FaucetRefused) as busy:
        faucet.grant(addr(3), "10.0.0.1")
    assert busy.value.code == FAUCET_BUSY and busy.value.retry_after_s is None
    node.commit_all()  # a block took them: room again, nonces continue from the committed state
    assert faucet.grant(addr(3), "10.0.0.1").nonce == 3


def test_rate_limits_expire_after_their_interval_and_are_recorded_only_on_success() -> None:
    node, clock = FakeNode(10**9), Clock()
    faucet = fake_faucet(node, clock, max_in_flight=100)
    faucet.grant(addr(0), "10.0.0.1")
    clock.now += 4
    with pytest.raises(FaucetRefused) as same_source:
        faucet.grant(addr(1), "10.0.0.1")
    assert same_source.value.code == FAUCET_RATE_LIMITED and same_source.value.retry_after_s == 6
    faucet.grant(addr(1), "10.0.0.2")  # another client
    clock.now += 6  # the source's interval is over; the address's (60 s) is not
    with pytest.raises(FaucetRefused) as same_address:
        faucet.grant(addr(0), "10.0.0.3")
    assert same_address.value.retry_after_s == 50
    clock.now += 50
    faucet.grant(addr(0), "10.0.0.3")
    # a grant the mempool refuses records nothing
    node.reject = errors.INSUFFICIENT_BALANCE
    with pytest.raises(FaucetRefused) as empty:
        faucet.grant(addr(9), "10.0.0.9")
    assert empty.value.code == FAUCET_EMPTY
    node.reject = None
    faucet.grant(addr(9), "10.0.0.9")


def test_rate_limit_tables_are_bounded() -> None:
    clock = Clock()
    limit = RateLimit(3600.0, max_keys=100, timer=clock)
    for i in range(10_000):  # an abusive client cycling through addresses
        limit.record(i)
    assert len(limit) == 100
    assert limit.retry_after(9_999) == 3600 and limit.retry_after(0) is None  # the oldest were evicted
    unlimited = RateLimit(0.0, max_keys=100, timer=clock)
    unlimited.record("x")
    assert unlimited.retry_after("x") is None and len(unlimited) == 0


def test_the_route_is_in_the_openapi_document_with_its_errors() -> None:
    from pocl.node.rpc.faucet import faucet_routes

    doc = openapi_document(faucet_routes(None))
    op = doc["paths"]["/faucet"]["post"]
    assert op["operationId"] == "faucet" and {"202", "400", "403", "429", "503"} <= set(op["responses"])
    assert doc["components"]["schemas"]["FaucetView"]["required"] == ["tx_hash", "amount", "address"]
