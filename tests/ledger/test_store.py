"""LevelDB store: persistence round trip, indexes, consistency checks and clear errors."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest
from pocl.ledger.block import Block, Commit, CommitSig
from pocl.ledger.executor import Executor
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State
from pocl.ledger.storage.store import K_SCHEMA, P_BLOCK, P_BUCKET, P_STATE, SCHEMA_VERSION, Store, StoreError
from pocl.ledger.tx import make_stake, make_transfer

from tests.support.ledger_kit import ALICE, BOB, CHAIN_ID, VAL1, build_block, genesis_accounts

EX = Executor()


def fake_commit(block: Block) -> Commit:
    return Commit(block.height, 0, block.hash, [CommitSig(VAL1.pubkey, b"\x07" * 64)])


def run_chain(store: Store, state: State, blocks_txs: list[list]) -> tuple[State, list[Block]]:
    blocks = []
    prev = b""
    last_commit = None
    for txs in blocks_txs:
        block, _ = build_block(EX, state, txs, prev_hash=prev)
        block = Block(block.header, block.txs, last_commit)
        work = state.copy()
        result = EX.apply_block(work, block)
        store.commit_block(block, work.delta(), seen_commit=fake_commit(block), tx_hashes=result.tx_hashes)
        state = work.commit()
        blocks.append(block)
        prev = block.hash
        last_commit = fake_commit(block)
    return state, blocks


def fresh(tmp_path: Path, params: ChainParams, name: str = "db") -> tuple[Store, State]:
    store = Store.open(tmp_path / name)
    state = State.from_genesis(params, genesis_accounts(), CHAIN_ID)
    store.init_genesis(state, genesis_hash=b"\x05" * 32)
    return store, state


def test_round_trip_and_indexes(tmp_path: Path, params: ChainParams) -> None:
    store, state = fresh(tmp_path, params)
    assert store.head_height == 0 and store.chain_id == CHAIN_ID and store.genesis_hash == b"\x05" * 32
    t1 = make_transfer(ALICE, CHAIN_ID, 0, BOB.address, 10, 1)
    t2 = make_stake(ALICE, CHAIN_ID, 1, 2_000, 1)
    state, blocks = run_chain(store, state, [[t1], [t2], []])
    w = state.copy()
    w.put_model(b"\x0a" * 32, b"model-bytes")
    store.close()

    store = Store.open(tmp_path / "db", create=False)
    assert store.head_height == 3 and store.head_block() == blocks[-1]
    assert store.block(2) == blocks[1] and store.block_by_hash(blocks[0].hash) == blocks[0]
    assert store.height_of(b"\x00" * 32) is None and store.block(9) is None
    assert store.tx_location(t1.hash) == (1, 0) and store.tx_location(t2.hash) == (2, 0)
    assert store.get_tx(t2.hash) == t2.raw and store.tx_location(b"\x00" * 32) is None
    assert store.commit(1) == blocks[1].last_commit  # canonical, from block 2
    assert store.commit(3) == fake_commit(blocks[2])  # seen commit for the head
    loaded = store.load_state(params)
    assert loaded.state_root() == state.state_root() == store.state_root() == store.verify_state()
    assert loaded.account(ALICE.address) == state.account(ALICE.address)
    assert [v.address for v in loaded.validator_set()] == [v.address for v in state.validator_set()]
    store.put_model(b"\x01" * 32, b"abc")
    assert store.get_model(b"\x01" * 32) == b"abc" and store.has_model(b"\x01" * 32)
    assert loaded.get_model(b"\x01" * 32) == b"abc"  # the loaded state reads models from the store
    store.put_misc(b"sign-state", b"\x01\x02")
    assert store.get_misc(b"sign-state") == b"\x01\x02"
    store.delete_misc(b"sign-state")
    assert store.get_misc(b"sign-state") is None
    store.close()


def test_models_staged_during_execution_commit_with_the_block(tmp_path: Path, params: ChainParams) -> None:
    store, state = fresh(tmp_path, params)
    block, _ = build_block(EX, state, [])
    work = state.copy()
    EX.apply_block(work, block)
    # a hook would do this during execution; staged models are not part of the root
    root = work.state_root()
    work.put_model(b"\x0b" * 32, b"global-model")
    assert work.state_root() == root
    store.commit_block(block, work.delta())
    assert store.get_model(b"\x0b" * 32) == b"global-model"
    store.close()


def test_same_blocks_on_two_fresh_stores(tmp_path: Path, params: ChainParams) -> None:
    roots = []
    for name in ("a", "b"):
        store, state = fresh(tmp_path, params, name)
        txs = [
            [make_transfer(ALICE, CHAIN_ID, 0, BOB.address, 3, 1)],
            [make_stake(BOB, CHAIN_ID, 0, 1_500, 2)],
        ]
        state, _ = run_chain(store, state, txs)
        store.close()
        store = Store.open(tmp_path / name)
        roots.append((state.state_root(), store.load_state(params).state_root(), store.verify_state()))
        store.close()
    assert roots[0] == roots[1] and len(set(roots[0])) == 1


def test_commit_block_rejects_wrong_height_and_root(tmp_path: Path, params: ChainParams) -> None:
    store, state = fresh(tmp_path, params)
    block, _ = build_block(EX, state, [])
    work = state.copy()
    EX.apply_block(work, block)
    other = state.copy()
    other.set_raw("x", b"y", b"z")
    with pytest.raises(ValueError):
        store.commit_block(block, other.delta())  # delta for the wrong height
    store.commit_block(block, work.delta())
    with pytest.raises(ValueError):
        store.commit_block(block, work.delta())  # same height again
    with pytest.raises(StoreError):
        store.init_genesis(state)
    store.close()


def test_open_errors(tmp_path: Path, params: ChainParams) -> None:
    with pytest.raises(StoreError, match="no ledger database"):
        Store.open(tmp_path / "missing", create=False)
    foreign = plyvel.DB(str(tmp_path / "foreign"), create_if_missing=True)
    foreign.put(b"hello", b"world")
    foreign.close()
    with pytest.raises(StoreError, match="not a pocl ledger"):
        Store.open(tmp_path / "foreign")
    newer = plyvel.DB(str(tmp_path / "newer"), create_if_missing=True)
    newer.put(K_SCHEMA, b"pocl-ledger/99")
    newer.close()
    with pytest.raises(StoreError, match="schema"):
        Store.open(tmp_path / "newer")
    store, _ = fresh(tmp_path, params, "locked")
    with pytest.raises(StoreError, match="another process"):
        Store.open(tmp_path / "locked")
    store.close()
    (tmp_path / "notadb").mkdir()
    (tmp_path / "notadb" / "CURRENT").write_text("garbage\n")
    with pytest.raises(StoreError):
        Store.open(tmp_path / "notadb")
    assert SCHEMA_VERSION.startswith(b"pocl-ledger/")


def _tamper(path: Path, fn) -> None:
    db = plyvel.DB(str(path))
    fn(db)
    db.close()


def test_inconsistent_databases_are_detected(tmp_path: Path, params: ChainParams) -> None:
    store, state = fresh(tmp_path, params)
    run_chain(store, state, [[make_transfer(ALICE, CHAIN_ID, 0, BOB.address, 3, 1)], []])
    store.close()
    path = tmp_path / "db"

    # state entry changed: open's cheap check passes, the from-scratch checks fail
    def flip_state(db: plyvel.DB) -> None:
        key, value = next(db.iterator(prefix=P_STATE))
        db.put(key, value + b"\x00")

    _tamper(path, flip_state)
    store = Store.open(path)
    with pytest.raises(StoreError):
        store.load_state(params)
    with pytest.raises(StoreError):
        store.verify_state()
    store.close()

    # bucket hash changed: detected at open
    def flip_bucket(db: plyvel.DB) -> None:
        key, _ = next(db.iterator(prefix=P_BUCKET))
        db.put(key, bytes(32))

    _tamper(path, flip_bucket)
    with pytest.raises(StoreError, match="bucket"):
        Store.open(path)

    # head block missing: detected at open
    _tamper(path, lambda db: db.delete(P_BLOCK + (2).to_bytes(8, "big")))
    with pytest.raises(StoreError, match="head block"):
        Store.open(path)
