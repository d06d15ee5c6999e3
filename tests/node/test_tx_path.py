"""The transaction fast path: POST /txs/batch, the mempool's decoded-tx map and the block check that
reuses it (unit tests; the chain benchmark exercises them end to end; batched gossip is in
test_tx_gossip_reactor.py)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from pocl.ledger import codec, errors
from pocl.ledger.block import Block
from pocl.ledger.block_builder import build_block
from pocl.ledger.errors import TxError
from pocl.ledger.executor import Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.tx import make_transfer
from pocl.node.mempool import AddResult, Mempool
from pocl.node.rpc.tx_batch import MAX_BATCH_TXS, tx_batch_routes

CHAIN = "tx-path-test"
KEYS = [PrivateKey.from_seed_text(f"tx-path-{i}") for i in range(4)]
SINK = PrivateKey.from_seed_text("tx-path-sink").address


def genesis_state() -> State:
    accounts = [GenesisAccount(k.address, 10_000) for k in KEYS]
    return State.from_genesis(ChainParams(min_fee=1), accounts, CHAIN)


def transfer(key: PrivateKey, nonce: int, amount: int = 5):
    return make_transfer(key, CHAIN, nonce, SINK, amount, 1)


# --------------------------------------------------------------------------- POST /txs/batch


class FakeNode:
    def __init__(self) -> None:
        self.pool = Mempool(Executor(), genesis_state())

    def submit_tx(self, raw: bytes) -> AddResult:
        return self.pool.add(raw)


async def _client(node: FakeNode) -> TestClient:
    from pocl.node.rpc.server import RpcServer

    server = RpcServer(node, "127.0.0.1:0", extra_routes=tx_batch_routes(node))  # type: ignore[arg-type]
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    return client


async def test_batch_endpoint_octet_stream_and_json() -> None:
    node = FakeNode()
    client = await _client(node)
    try:
        good = [transfer(KEYS[2], n).raw for n in range(3)]
        replay = transfer(KEYS[2], 0, amount=7).raw  # nonce 0 is taken by good[0]
        resp = await client.post(
            "/txs/batch",
            data=codec.encode([*good, replay, b"\x01junk"]),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert resp.status == 202
        body = await resp.json()
        assert body["accepted"] == 3 and body["new"] == 3
        assert [(e["index"], e["code"]) for e in body["errors"]] == [
            (3, errors.NONCE_TOO_LOW),
            (4, errors.MALFORMED_TX),
        ]
        assert len(node.pool) == 3
        resp = await client.post("/txs/batch", json={"txs": [transfer(KEYS[3], 0).raw.hex()]})
        assert resp.status == 202 and (await resp.json())["accepted"] == 1
    finally:
        await client.close()


async def test_batch_endpoint_rejects_bad_bodies() -> None:
    node = FakeNode()
    client = await _client(node)
    try:
        cases: list[tuple[bytes | str, str, str]] = [
            (b"\xc1", "application/octet-stream", "bad_batch"),
            (codec.encode([1, 2]), "application/octet-stream", "bad_batch"),
            ("{", "application/json", "bad_json"),
            ('{"txs": "00"}', "application/json", "bad_request"),
            ('{"txs": ["zz"]}', "application/json", "bad_hex"),
            (codec.encode([b"x"] * (MAX_BATCH_TXS + 1)), "application/octet-stream", "batch_too_large"),
        ]
        for data, ctype, code in cases:
            resp = await client.post("/txs/batch", data=data, headers={"Content-Type": ctype})
            assert resp.status == 400, code
            assert (await resp.json())["error"]["code"] == code
        assert len(node.pool) == 0
    finally:
        await client.close()


def test_route_is_documented() -> None:
    (route,) = tx_batch_routes(FakeNode())  # type: ignore[arg-type]
    assert (route.method, route.path) == ("POST", "/txs/batch") and route.handler is not None


# --------------------------------------------------------------------------- mempool map + block check


def _block_of(state: State, txs: list[bytes]) -> tuple[Block, State]:
    built = build_block(Executor(), state, txs, proposer=KEYS[0].address, time_ms=1, prev_hash=b"", last_commit=None)
    return built.block, built.state


def test_known_txs_give_the_same_block_result() -> None:
    state = genesis_state()
    pool = Mempool(Executor(), state)
    stxs = [transfer(k, n) for k in KEYS for n in range(3)]
    for stx in stxs:
        assert pool.add(stx.raw).ok
    assert set(pool.by_raw) == {s.raw for s in stxs}
    block, _ = _block_of(state, [s.raw for s in stxs])
    plain = Executor().apply_block(state.copy(), block)
    fast = Executor().apply_block(state.copy(), block, known_txs=pool.by_raw, verified_sigs=pool.verified)  # type: ignore[arg-type]
    assert (fast.state_root, fast.tx_hashes) == (plain.state_root, plain.tx_hashes)


def test_update_drops_committed_and_keeps_the_rest_in_nonce_order() -> None:
    state = genesis_state()
    pool = Mempool(Executor(), state)
    stxs = {(i, n): transfer(k, n) for i, k in enumerate(KEYS[:2]) for n in range(4)}
    for stx in stxs.values():
        assert pool.add(stx.raw).ok
    committed = [stxs[(0, 0)].raw, stxs[(0, 1)].raw, stxs[(1, 0)].raw]
    _, work = _block_of(state, committed)
    dropped = pool.update(work.commit())
    assert sorted(dropped) == sorted(stxs[k].hash for k in [(0, 0), (0, 1), (1, 0)])
    assert set(pool.by_raw) == {stxs[k].raw for k in [(0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]}
    assert pool.pending_nonce(KEYS[0].address) == 4 and pool.pending_nonce(KEYS[1].address) == 4
    assert [s.tx.nonce for s in pool.reap(100, 10**6) if s.sender_address == KEYS[1].address] == [1, 2, 3]


def test_update_with_a_conflicting_block_drops_the_broken_tail() -> None:
    """A block spent the balance another way: the pending tail of that sender can no longer apply."""
    state = genesis_state()
    pool = Mempool(Executor(), state)
    for n in range(3):
        assert pool.add(transfer(KEYS[0], n, amount=3_000).raw).ok
    other = make_transfer(KEYS[0], CHAIN, 0, SINK, 9_000, 1)  # same nonce 0, different tx
    _, work = _block_of(state, [other.raw])
    committed = work.commit()
    dropped = pool.update(committed)
    assert len(dropped) == 3 and len(pool) == 0 and not pool.by_raw
    err = Executor().check_tx(committed, transfer(KEYS[0], 1, amount=3_000))
    assert isinstance(err, TxError) and err.code == errors.INSUFFICIENT_BALANCE
