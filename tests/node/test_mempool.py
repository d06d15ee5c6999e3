"""Mempool admission, ordering and re-checking after blocks (unit tests on a real State)."""

from __future__ import annotations

import pytest
from pocl.ledger import errors
from pocl.ledger.block import Block, Header, txs_root
from pocl.ledger.executor import Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.tx import make_transfer
from pocl.ledger.tx_kinds import BlockContext
from pocl.node.mempool import MEMPOOL_FULL, Mempool, MempoolConfig

CHAIN = "mempool-test"
ALICE = PrivateKey.from_seed_text("alice")
BOB = PrivateKey.from_seed_text("bob")
CAROL = PrivateKey.from_seed_text("carol")


def genesis_state() -> State:
    params = ChainParams(min_fee=1)
    accounts = [
        GenesisAccount(ALICE.address, 1_000, 1_000, ALICE.pubkey),
        GenesisAccount(BOB.address, 100),
    ]
    return State.from_genesis(params, accounts, CHAIN)


def transfer(key: PrivateKey, nonce: int, amount: int = 10, fee: int = 1, to: bytes | None = None):
    return make_transfer(key, CHAIN, nonce, to or CAROL.address, amount, fee)


def commit_block(executor: Executor, state: State, txs) -> State:
    nxt = state.copy()
    ctx = BlockContext(state.height + 1, 0, ALICE.address, CHAIN, state.params)
    result = executor.execute_block(nxt, ctx, [t.raw for t in txs])
    header = Header(ctx.height, 0, b"", ALICE.address, txs_root(result.txs), result.state_root, b"", b"")
    assert Block(header, result.txs, None).height == ctx.height
    return nxt.commit()


def test_admits_nonce_chain_and_rejects_gaps_and_replays() -> None:
    pool = Mempool(Executor(), genesis_state())
    assert pool.add(transfer(ALICE, 0).raw).ok
    assert pool.add(transfer(ALICE, 1).raw).ok
    gap = pool.add(transfer(ALICE, 5).raw)
    assert gap.ok and gap.queued  # waits for nonces 2..4
    stale = pool.add(transfer(ALICE, 0, amount=11).raw)
    assert stale.error is not None and stale.error.code == errors.NONCE_TOO_LOW
    again = pool.add(transfer(ALICE, 0).raw)
    assert again.ok and not again.is_new
    assert len(pool) == 2 and pool.queued_count == 1
    assert pool.pending_nonce(ALICE.address) == 2


def test_cumulative_balance_is_checked() -> None:
    pool = Mempool(Executor(), genesis_state())
    assert pool.add(transfer(BOB, 0, amount=60).raw).ok
    res = pool.add(transfer(BOB, 1, amount=60).raw)
    assert res.error is not None and res.error.code == errors.INSUFFICIENT_BALANCE


def test_bad_input_is_an_error_not_an_exception() -> None:
    pool = Mempool(Executor(), genesis_state())
    res = pool.add(b"\x93garbage")
    assert res.error is not None and res.error.code == errors.MALFORMED_TX
    tampered = bytearray(transfer(ALICE, 0).raw)
    tampered[-1] ^= 1
    res = pool.add(bytes(tampered))
    assert res.error is not None and res.error.code == errors.BAD_SIGNATURE
    assert len(pool) == 0


def test_reap_orders_by_fee_but_keeps_sender_nonce_order() -> None:
    pool = Mempool(Executor(), genesis_state())
    a0 = transfer(ALICE, 0, fee=1)
    a1 = transfer(ALICE, 1, fee=50)
    b0 = transfer(BOB, 0, fee=5)
    for t in (a0, a1, b0):
        assert pool.add(t.raw).ok
    reaped = [t.hash for t in pool.reap(10, 10**9)]
    assert reaped == [b0.hash, a0.hash, a1.hash]
    assert [t.hash for t in pool.reap(1, 10**9)] == [b0.hash]


def test_update_drops_committed_and_keeps_the_rest() -> None:
    executor = Executor()
    state = genesis_state()
    pool = Mempool(executor, state)
    txs = [transfer(ALICE, n) for n in range(3)]
    for t in txs:
        assert pool.add(t.raw).ok
    state = commit_block(executor, state, txs[:2])
    dropped = pool.update(state)
    assert set(dropped) == {txs[0].hash, txs[1].hash}
    assert [t.hash for t in pool.txs()] == [txs[2].hash]
    assert pool.add(transfer(ALICE, 3).raw).ok


def test_verified_signatures_are_remembered() -> None:
    pool = Mempool(Executor(), genesis_state())
    t = transfer(ALICE, 0)
    assert pool.add(t.raw).ok
    assert t.hash in pool.verified


def test_full_pool_rejects_with_stable_code() -> None:
    pool = Mempool(Executor(), genesis_state(), MempoolConfig(max_txs=1))
    assert pool.add(transfer(ALICE, 0).raw).ok
    res = pool.add(transfer(BOB, 0).raw)
    assert res.error is not None and res.error.code == MEMPOOL_FULL


@pytest.mark.parametrize("n", [50])
def test_many_senders_reap_respects_byte_cap(n: int) -> None:
    pool = Mempool(Executor(), genesis_state())
    for i in range(n):
        assert pool.add(transfer(ALICE, i, amount=1).raw).ok
    size = len(transfer(ALICE, 0, amount=1).raw)
    assert len(pool.reap(1000, size * 7 + 3)) == 7


def test_future_nonces_wait_for_the_gap_then_promote() -> None:
    pool = Mempool(Executor(), genesis_state())
    t2 = transfer(ALICE, 2)
    t1 = transfer(ALICE, 1)
    res = pool.add(t2.raw)
    assert res.ok and res.queued
    assert pool.add(t1.raw).queued
    assert len(pool) == 0 and t2.hash in pool
    assert pool.add(transfer(ALICE, 0).raw).ok
    assert len(pool) == 3 and pool.queued_count == 0
    assert [t.tx.nonce for t in pool.reap(10, 10**9)] == [0, 1, 2]
    far = pool.add(transfer(ALICE, 3 + 1000).raw)
    assert far.error is not None and far.error.code == errors.NONCE_TOO_HIGH
    forged = bytearray(transfer(ALICE, 5).raw)
    forged[-1] ^= 1
    bad = pool.add(bytes(forged))
    assert bad.error is not None and bad.error.code == errors.BAD_SIGNATURE


# --------------------------------------------------------------------------- rules that raise (issue 16 row 6)


def flaky_executor(fail: dict[str, bool]) -> Executor:
    """The core kinds plus `test.flaky`: valid, but its apply writes and then raises while `fail["now"]`
    (as PoCL's apply raised `pocl_no_round` for a commit whose round closed)."""
    from pocl.ledger.core_txs import default_registry
    from pocl.ledger.tx import TransferPayload
    from pocl.ledger.tx_kinds import TxKind

    def validate(_state: State, _ctx: object, _p: TransferPayload) -> None:
        return None

    def apply(state: State, _ctx: object, p: TransferPayload) -> None:
        state.account_for_update(p.to).balance += p.amount  # a partial write first
        if fail["now"]:
            raise RuntimeError("round 7 is closed")

    registry = default_registry()
    registry.register(TxKind("test.flaky", TransferPayload, validate, apply))
    return Executor(registry)


def flaky_tx(key: PrivateKey, nonce: int):
    from pocl.ledger.tx import TX_VERSION, TransferPayload, Tx, sign_tx

    payload = TransferPayload(CAROL.address, 5).to_list()
    return sign_tx(key, Tx(TX_VERSION, CHAIN, "test.flaky", key.pubkey, nonce, 1, payload))


def test_a_rule_that_raises_on_recheck_drops_that_tx_not_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    fail = {"now": False}
    executor = flaky_executor(fail)
    state = genesis_state()
    pool = Mempool(executor, state)
    bad, later = flaky_tx(BOB, 0), transfer(BOB, 1)
    good = transfer(ALICE, 0)
    for tx in (bad, later, good):
        assert pool.add(tx.raw).ok
    fail["now"] = True  # the state moved on (a round boundary): the queued tx no longer applies
    state = commit_block(executor, state, [])
    dropped = pool.update(state)  # block sync / the consensus driver call this right after a commit
    assert set(dropped) == {bad.hash, later.hash}  # its sender's later nonce cannot apply either
    assert [t.hash for t in pool.reap(10, 1 << 20)] == [good.hash]
    assert pool.pending_nonce(BOB.address) == 0  # the overlay holds nothing of the failed tx
    assert pool._overlay.balance(CAROL.address) == pool._state.balance(CAROL.address) + 10
    assert "dropped tx" in caplog.text and "round 7 is closed" in caplog.text


def test_a_rule_that_raises_on_admission_or_promotion_is_an_error_answer() -> None:
    fail = {"now": True}
    pool = Mempool(flaky_executor(fail), genesis_state())
    assert pool.add(transfer(ALICE, 0).raw).ok
    res = pool.add(flaky_tx(BOB, 0).raw)
    assert res.error is not None and res.error.code == errors.TX_REJECTED and "round 7" in res.error.message
    assert pool.pending_nonce(BOB.address) == 0 and len(pool) == 1  # overlay rebuilt without it
    # promotion: a queued flaky tx whose turn comes is dropped, the pool goes on
    queued = pool.add(flaky_tx(ALICE, 2).raw)
    assert queued.ok and queued.queued
    assert pool.add(transfer(ALICE, 1).raw).ok  # nonce 1 arrives: nonce 2 is promoted and fails
    assert pool.pending_nonce(ALICE.address) == 2 and pool.queued_count == 0 and len(pool) == 2
