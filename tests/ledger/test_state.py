"""State, overlays and the incremental state root (must equal a from-scratch recomputation)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pocl.ledger import codec
from pocl.ledger.codec import CodecError
from pocl.ledger.executor import Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import Account, State, full_key
from pocl.ledger.state_root import NUM_BUCKETS, BucketTree, bucket_of, compute_root
from pocl.ledger.tx import make_stake, make_transfer, make_unstake
from pocl.ledger.tx_kinds import BlockContext

from tests.support.ledger_kit import ALICE, BOB, CHAIN_ID, PROPOSER, VAL1, apply_new_block

EX = Executor()


def test_bucket_tree_preview_apply_matches_scratch() -> None:
    rng = random.Random(1)
    entries = {rng.randbytes(rng.randrange(1, 40)): rng.randbytes(rng.randrange(0, 50)) for _ in range(500)}
    tree = BucketTree.from_entries(entries)
    assert tree.root == compute_root(entries)
    for _ in range(20):
        changes: dict[bytes, bytes | None] = {}
        keys = list(entries)
        for k in rng.sample(keys, 20):
            changes[k] = None if rng.random() < 0.3 else rng.randbytes(8)
        for _ in range(10):
            changes[rng.randbytes(12)] = rng.randbytes(5)
        before = tree.root
        upd = tree.preview(changes)
        assert tree.root == before  # preview does not mutate
        tree.apply(upd)
        for k, v in changes.items():
            if v is None:
                entries.pop(k, None)
            else:
                entries[k] = v
        assert tree.root == upd.root == compute_root(entries)
        assert len(upd.bucket_hashes) <= len(changes)  # only dirty buckets re-hashed


def test_root_depends_on_keys_values_and_is_order_free() -> None:
    a = compute_root({b"k1": b"v1", b"k2": b"v2"})
    assert a == compute_root([(b"k2", b"v2"), (b"k1", b"v1")])
    assert a != compute_root({b"k1": b"v1", b"k2": b"v3"})
    assert a != compute_root({b"k1": b"v1", b"k3": b"v2"})
    assert compute_root({}) == BucketTree().root
    assert 0 <= bucket_of(b"anything") < NUM_BUCKETS


def test_incremental_root_equals_scratch_after_random_blocks() -> None:
    rng = random.Random(42)
    keys = [PrivateKey.from_seed_text(f"acct-{i}") for i in range(30)]
    params = ChainParams(unbonding_blocks=2, min_validator_stake=50)
    genesis = [GenesisAccount(k.address, 100_000) for k in keys]
    state = State.from_genesis(params, genesis, CHAIN_ID)
    nonces = [0] * len(keys)
    for _ in range(40):
        txs = []
        for _ in range(rng.randrange(0, 12)):
            i = rng.randrange(len(keys))
            r = rng.random()
            acct = state.account(keys[i].address)
            if r < 0.6:
                j = (i + rng.randrange(1, len(keys))) % len(keys)
                to = keys[j].address if rng.random() < 0.8 else rng.randbytes(20)
                tx = make_transfer(keys[i], CHAIN_ID, nonces[i], to, rng.randrange(1, 500), 1)
            elif r < 0.8:
                tx = make_stake(keys[i], CHAIN_ID, nonces[i], rng.randrange(1, 200), 1)
            elif acct is not None and acct.stake > 0:
                tx = make_unstake(keys[i], CHAIN_ID, nonces[i], rng.randrange(1, acct.stake + 1), 1)
            else:
                continue
            # keep only txs valid on top of the already chosen ones
            probe = state.copy()
            ctx = BlockContext(state.height + 1, 0, PROPOSER.address, CHAIN_ID, params)
            if EX.execute_block(probe, ctx, [*txs, tx.raw], skip_invalid=True).rejected:
                continue
            txs.append(tx.raw)
            nonces[i] += 1
        state, _ = apply_new_block(EX, state, txs)
        assert state.state_root() == compute_root(state.entries_snapshot())
        # an overlay with pending writes also previews the right root
        over = state.copy()
        over.account_for_update(keys[0].address).balance += 1
        over.set_raw("x", b"y", b"z")
        assert over.state_root() == compute_root(over.entries_snapshot())
        assert over.state_root() != state.state_root()
    assert state.height == 40


def test_overlay_isolation_and_commit(genesis: State) -> None:
    root0 = genesis.state_root()
    a = genesis.copy()
    a.account_for_update(ALICE.address).balance = 5
    a.set_raw("pocl", b"k", b"v")
    b = a.copy()
    b.account_for_update(ALICE.address).balance = 7
    b.delete_raw("pocl", b"k")
    assert genesis.balance(ALICE.address) == 1_000_000 and genesis.state_root() == root0
    assert a.balance(ALICE.address) == 5 and a.get_raw("pocl", b"k") == b"v"
    assert b.balance(ALICE.address) == 7 and b.get_raw("pocl", b"k") is None
    root_b = b.state_root()
    base = b.commit()
    assert base is genesis
    assert genesis.balance(ALICE.address) == 7 and genesis.get_raw("pocl", b"k") is None
    assert genesis.state_root() == root_b == compute_root(genesis.entries_snapshot())
    # a no-op overlay keeps the root
    c = genesis.copy()
    c.account(BOB.address)
    assert c.state_root() == genesis.state_root() and c.delta().changes == {}


def test_models_are_staged_in_the_overlay(genesis: State) -> None:
    w = genesis.copy()
    w.put_model(b"\x01" * 32, b"weights")
    w.set_global_model_hash(b"\x01" * 32)
    assert w.get_model(b"\x01" * 32) == b"weights" and genesis.get_model(b"\x01" * 32) is None
    assert w.delta().models == {b"\x01" * 32: b"weights"}
    assert w.global_model_hash == b"\x01" * 32 and genesis.global_model_hash is None


def test_account_encoding_is_strict() -> None:
    acct = Account(5, 1, VAL1.pubkey, 10, [[3, 9]], 4, 2, 1)
    assert Account.decode(acct.encode()) == acct
    for bad in (
        b"\x98" + b"\x00" * 8,  # pubkey as int
        Account(5).encode()[:-1],
        Account(5).encode() + b"\x00",
        b"\x91\x05",
    ):
        with pytest.raises(CodecError):
            Account.decode(bad)


def test_full_key_layout() -> None:
    assert full_key("acct", b"\x01\x02") == b"\x04acct\x01\x02"
    with pytest.raises(ValueError):
        full_key("", b"x")


def test_genesis_validation(params: ChainParams) -> None:
    k = PrivateKey.from_seed_text("g")
    with pytest.raises(ValueError, match="duplicate"):
        State.from_genesis(params, [GenesisAccount(k.address, 1), GenesisAccount(k.address, 1)], CHAIN_ID)
    with pytest.raises(ValueError, match="pubkey"):
        State.from_genesis(params, [GenesisAccount(k.address, 1, 5)], CHAIN_ID)
    with pytest.raises(ValueError, match="pubkey"):
        State.from_genesis(params, [GenesisAccount(k.address, 1, 5, BOB.pubkey)], CHAIN_ID)
    with pytest.raises(ValueError, match="out of range"):
        State.from_genesis(params, [GenesisAccount(k.address, -1)], CHAIN_ID)
    with pytest.raises(ValueError):
        State.from_genesis(params, [GenesisAccount(b"\x00" * 19, 1)], CHAIN_ID)
    big = 2**62
    two = [GenesisAccount(k.address, big), GenesisAccount(BOB.address, big)]
    with pytest.raises(ValueError, match="supply"):
        State.from_genesis(params, two, CHAIN_ID)


u63 = st.integers(0, 2**63 - 1)


@settings(max_examples=100, deadline=None)
@given(
    u63,
    u63,
    st.sampled_from([b"", VAL1.pubkey]),
    u63,
    st.lists(st.lists(u63, min_size=2, max_size=2), max_size=4),
    u63,
    u63,
    u63,
)
def test_account_round_trip(bal, nonce, pk, stake, unb, jh, jr, slashed) -> None:
    acct = Account(bal, nonce, pk, stake, unb, jh, jr, slashed)
    raw = acct.encode()
    assert raw == codec.encode(acct.to_list())  # fast packer == canonical codec
    assert Account.decode(raw) == acct == Account.decode(raw, strict=False)
    assert Account.decode(raw).copy() == acct
