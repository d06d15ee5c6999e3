"""Shards stay hidden until every model is committed (issue 12 attack 2), and each shard is used once.

Under the old protocol a commit carried its shard's inputs: a miner committing late could label every
other miner's shard (k-NN, or any oracle) and train on it before committing its own model. Now COMMIT
carries commitments only; the inputs are opened in SHARD, must open the sender's commitment, and must be
new (not opened in this round or the last `memory_rounds`). A committer whose shard is not opened is
penalised as a withholder and is neither predicted on nor predicts.

Every test drives real signed blocks through the executor (`tests.support.pocl_chain.Chain`); a tx the
chain must refuse is checked with `executor.check_tx` against the state the next block starts from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from pocl.consensus.pocl.events import Slashed
from pocl.consensus.pocl.execution import NS_POCL
from pocl.consensus.pocl.records import (
    PENALTY_WITHHOLD,
    PHASE_COMMIT,
    PHASE_DONE,
    PHASE_PREDICT,
    PHASE_SHARD,
    CommitEntry,
    RoundRecord,
    commit_key,
    predict_key,
    seen_key,
    seen_round_key,
    shard_key,
)
from pocl.consensus.pocl.txs import (
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    CommitPayload,
    build_shard,
    shard_commitment,
    shard_digest,
)
from pocl.consensus.pocl.validate import E_NO_SHARD, E_SHARD_MISMATCH, E_SHARD_SEEN, E_WRONG_COUNT
from pocl.ledger import codec
from pocl.ledger.codec import Struct
from pocl.ledger.tx import TX_VERSION, SignedTx, Tx, sign_tx
from pocl.ml.model.inference import predict
from pocl.node.simulation.miners import public_shard_inputs

from tests.support.pocl_chain import FEE, STAKE, Chain, key
from tests.support.pocl_scenario import (
    CHAIN_ID,
    HONEST,
    SHARD_WITHHOLDER,
    Miner,
    make_params,
    make_scenario,
    predict_payload,
)

# --------------------------------------------------------------------------- helpers


def new_chain(behaviours: list[str], **params: object) -> Chain:
    return Chain(make_scenario(behaviours, make_params(first_round_height=2, **params)))


def record(c: Chain, round_: int) -> RoundRecord | None:
    return c.pocl.record(c.state, round_)


def drive(
    c: Chain, until: Callable[[], bool], hold: set[tuple[bytes, str]] | None = None, limit: int = 60
) -> None:
    """Blocks of the scenario's miner txs (minus `hold`: (address, phase) pairs) until `until()` holds."""
    for _ in range(limit):
        if until():
            return
        c.block(c.miner_txs(hold or set()))
    raise AssertionError("condition never reached")


def in_phase(c: Chain, round_: int, phase: int) -> Callable[[], bool]:
    def check() -> bool:
        rec = record(c, round_)
        return rec is not None and rec.phase == phase

    return check


def probe(c: Chain, m: Miner, kind: str, payload: Struct) -> str | None:
    """The code the chain answers for this tx in the next block (None: accepted); consumes no nonce."""
    k = key(m.index)
    nonce = c.state.account(k.address).nonce
    stx = sign_tx(k, Tx(TX_VERSION, CHAIN_ID, kind, k.pubkey, nonce, FEE, payload.to_list()))
    err = c.executor.check_tx(c.state, stx)
    return None if err is None else err.code


def shard_tx(c: Chain, m: Miner, round_: int, x: np.ndarray) -> SignedTx:
    return c.tx(key(m.index), KIND_POCL_SHARD, build_shard(round_, x))


def replayed(x: np.ndarray, seed: int) -> np.ndarray:
    """The same shard disguised: rows in another order, every 0.0 written as -0.0."""
    out = x[np.random.default_rng(seed).permutation(len(x))].copy()
    out[out == 0.0] = np.float32(-0.0)
    return out


def next_round(c: Chain, round_: int) -> None:
    """Prepare the scenario for round `round_` before it opens: every miner draws its fresh shard (what
    `miner_txs` does when it meets a new round), so a test can then give one miner a shard of its own."""
    c.s.fresh_shards(round_)
    c.s.round = round_


def rows_of(x: np.ndarray) -> list[bytes]:
    """The wire bytes of each sample of a shard (as `build_shard` puts them in a tx)."""
    a = np.ascontiguousarray(x, dtype="<f4")
    return [row.tobytes() for row in a.reshape(len(a), -1)]


def withhold_penalties(c: Chain, round_: int) -> dict[bytes, list]:
    rec = record(c, round_)
    assert rec is not None and rec.outcome is not None
    out = {}
    for pen in rec.outcome.penalties:
        assert pen.kind == PENALTY_WITHHOLD, pen
        out[pen.miner] = codec.decode(pen.evidence)
    return out


# --------------------------------------------------------------------------- nothing leaks during COMMIT


def test_no_shard_input_is_public_while_commit_is_open() -> None:
    """Three miners commit at once, a fourth waits to the last COMMIT block: in every block before it, no
    byte of any shard's inputs is in the chain's txs or state, and the simulator's late committer (which
    would launder whatever it finds through training) finds nothing."""
    c = new_chain([HONEST] * 4)
    late = c.s.miners[3]
    hold = {(late.address, "commit")}
    rows = {m.address: rows_of(m.shard_x) for m in c.s.miners}
    deadline = c.s.params.first_round_height + c.s.params.train_blocks - 1
    c.block(c.miner_txs(hold))  # height 1: no round yet
    commit_heights = []
    while c.next_height < deadline:
        c.block(c.miner_txs(hold))
        rec = record(c, 1)
        assert rec is not None and rec.phase == PHASE_COMMIT
        assert len(rec.committers) == 3 and late.address not in rec.committers
        commit_heights.append(c.state.height)
        # the late committer's view: what a node's miner could read on chain now
        assert public_shard_inputs(c, rec) == {}
        assert c.pocl.round_data(c.state, rec).shards == {}
        blobs = [raw for blk in c.blocks for raw in blk.txs] + list(c.state.entries_snapshot().values())
        for owner, owner_rows in rows.items():
            assert c.state.get_raw(NS_POCL, shard_key(1, owner)) is None
            assert not any(r in blob for r in owner_rows for blob in blobs), "shard inputs leaked"
        for a in rec.committers:  # the state's commit entries carry commitments only
            entry = CommitEntry.decode(c.state.get_raw(NS_POCL, commit_key(1, a)))
            x = c.s.by_address()[a].shard_x
            assert entry.shard_commit == shard_commitment(CHAIN_ID, 1, a, shard_digest(x))
            assert {f.name for f in dataclasses.fields(entry)} == {
                "miner",
                "height",
                "tx_hash",
                "model_commit",
                "label_commit",
                "shard_commit",
                "n_train",
            }
    assert commit_heights == list(range(2, deadline))  # several blocks of an open COMMIT were checked
    # the commit txs themselves: four fields, no array, a few hundred bytes (a shard alone is 5 KiB)
    for blk in c.blocks:
        for raw in blk.txs:
            stx = SignedTx.decode(raw)
            p = CommitPayload.from_list(stx.tx.payload)
            assert len(raw) < 1024 and all(not isinstance(v, list) for v in stx.tx.payload)
            assert p.shard_commit == shard_commitment(
                CHAIN_ID, 1, stx.sender_address, shard_digest(c.s.by_address()[stx.sender_address].shard_x)
            )
    # the late miner commits in COMMIT's last block; the shards open only in SHARD, after it
    c.block(c.miner_txs())
    rec = record(c, 1)
    assert rec.phase == PHASE_SHARD and len(rec.committers) == 4 and rec.shard_start == deadline + 1
    assert public_shard_inputs(c, rec) == {}
    c.block(c.miner_txs())
    rec = record(c, 1)
    assert rec.phase == PHASE_PREDICT and rec.shard_owners == rec.committers
    opened = public_shard_inputs(c, rec)  # the same probe does see shards once they are opened
    assert sorted(opened) == rec.shard_owners
    for m in c.s.miners:
        assert np.array_equal(opened[m.address], m.shard_x)
        assert any(rows_of(m.shard_x)[0] in raw for raw in c.blocks[-1].txs)


# --------------------------------------------------------------------------- shards that are not opened


@pytest.mark.parametrize("attempt", ["silent", "another-miners-shard", "own-shard-altered"])
def test_an_unopened_shard_is_withholding(attempt: str) -> None:
    """Miner 3 commits but its shard is never opened - it stays silent, or every shard it sends fails to
    open its commitment (pocl_shard_mismatch). It is not predicted on, cannot predict (pocl_no_shard), and
    is penalised as a withholder for the shard once the round finalizes; the honest miners are not."""
    c = new_chain([HONEST, HONEST, HONEST, SHARD_WITHHOLDER])
    m3 = c.s.miners[3]
    drive(c, in_phase(c, 1, PHASE_SHARD))
    rec = record(c, 1)
    assert len(rec.committers) == 4
    if attempt != "silent":
        other = c.s.miners[0].shard_x
        altered = m3.shard_x.copy()
        altered[0, 0, 0, 0] = np.float32(1.0) - altered[0, 0, 0, 0]
        bad = other if attempt == "another-miners-shard" else altered
        assert probe(c, m3, KIND_POCL_SHARD, build_shard(1, bad)) == E_SHARD_MISMATCH
        # the honest miners' shards go in; m3's still does not open its commitment
        c.block(c.miner_txs())
        rec = record(c, 1)
        assert rec.phase == PHASE_SHARD and m3.address not in rec.shard_owners
        assert probe(c, m3, KIND_POCL_SHARD, build_shard(1, bad)) == E_SHARD_MISMATCH
    drive(c, in_phase(c, 1, PHASE_PREDICT))
    rec = record(c, 1)
    honest = sorted(m.address for m in c.s.miners[:3])
    assert rec.committers == sorted([*honest, m3.address]) and rec.shard_owners == honest
    assert rec.predict_start == rec.shard_start + c.s.params.shard_blocks  # SHARD waited for m3 to its end
    assert c.state.get_raw(NS_POCL, shard_key(1, m3.address)) is None
    # m3 cannot predict, and nobody predicts on a shard that was never opened
    assert probe(c, m3, KIND_POCL_PREDICT, predict_payload(c.s, m3, rec.shard_owners)) == E_NO_SHARD
    m0 = c.s.miners[0]
    over = predict_payload(c.s, m0, rec.committers)  # one label vector per committer: one too many
    assert probe(c, m0, KIND_POCL_PREDICT, over) == E_WRONG_COUNT
    c.block(c.miner_txs())
    rec = record(c, 1)
    assert rec.predictors == honest
    data = c.pocl.round_data(c.state, rec)
    assert all(len(data.predictions[a].predictions) == len(honest) - 1 for a in honest)
    commit_tx = CommitEntry.decode(c.state.get_raw(NS_POCL, commit_key(1, m3.address))).tx_hash
    drive(c, in_phase(c, 1, PHASE_DONE))
    assert c.state.get_raw(NS_POCL, commit_key(1, m3.address)) is None  # final: entries deleted
    rec = record(c, 1)
    out = rec.outcome
    assert m3.address not in out.predictors and m3.address not in out.voters
    assert out.predictors == out.voters == honest and all(len(row) == len(honest) for row in out.accuracy)
    assert withhold_penalties(c, 1) == {m3.address: [PENALTY_WITHHOLD, 1, commit_tx, b"shard"]}
    slashed = [e for e in c.events if isinstance(e, Slashed)]
    expected = STAKE * c.s.params.slash_withhold_bps // 10_000
    assert [(e.address, e.kind, e.slashed) for e in slashed] == [(m3.address, PENALTY_WITHHOLD, expected)]
    assert c.state.account(m3.address).stake == STAKE - expected
    for a in honest:
        assert c.state.account(a).stake == STAKE and c.state.account(a).slashed_total == 0


# --------------------------------------------------------------------------- replayed shards


def test_a_shard_opened_earlier_in_the_round_is_refused() -> None:
    """Miner 3 commits to miner 0's shard (rows reordered, zeros written as -0.0: a different byte string
    that the digest treats as the same set of rows). Miner 0 opens first; every disguise of the shard is
    then refused as seen - it does open miner 3's commitment, so the refusal is the duplicate rule - and
    miner 3 ends the round as a shard withholder."""
    c = new_chain([HONEST, HONEST, HONEST, HONEST])
    m0, m3 = c.s.miners[0], c.s.miners[3]
    perm = np.random.default_rng(3).permutation(c.s.params.test_shard_size)
    m3.shard_x = replayed(m0.shard_x, 3)
    m3.shard_y = m0.shard_y[perm]
    assert m3.shard_x.tobytes() != m0.shard_x.tobytes() and shard_digest(m3.shard_x) == shard_digest(
        m0.shard_x
    )
    hold = {(m3.address, "shard")}
    drive(c, in_phase(c, 1, PHASE_SHARD), hold)
    c.block(c.miner_txs(hold))  # miners 0..2 open their shards
    rec = record(c, 1)
    assert rec.phase == PHASE_SHARD and m0.address in rec.shard_owners
    for x in (m0.shard_x, m3.shard_x, m0.shard_x[::-1], replayed(m0.shard_x, 9)):
        assert probe(c, m3, KIND_POCL_SHARD, build_shard(1, x)) == E_SHARD_SEEN
    drive(c, in_phase(c, 1, PHASE_DONE), hold)
    rec = record(c, 1)
    assert m3.address not in rec.shard_owners and len(rec.shard_owners) == 3
    assert list(withhold_penalties(c, 1)) == [m3.address]
    assert withhold_penalties(c, 1)[m3.address][-1] == b"shard"


def test_a_shard_is_refused_for_memory_rounds_then_forgotten() -> None:
    """memory_rounds = 1: miner 0's round-1 shard, replayed (disguised) by miner 3 in round 2, is refused;
    once round 2 finalizes the index forgets round 1 (its state keys are gone), and in round 3 miner 4 may
    use that shard again."""
    c = new_chain([HONEST] * 5, memory_rounds=1)
    assert c.s.params.memory_rounds == 1
    m0, m3, m4 = c.s.miners[0], c.s.miners[3], c.s.miners[4]
    old_x, old_y = m0.shard_x.copy(), m0.shard_y.copy()
    d0 = shard_digest(old_x)

    drive(c, in_phase(c, 1, PHASE_DONE))
    round1 = {shard_digest(m.shard_x) for m in c.s.miners}
    assert codec.decode(c.state.get_raw(NS_POCL, seen_key(d0))) == 1
    assert round1 <= set(codec.decode(c.state.get_raw(NS_POCL, seen_round_key(1))))

    # round 2: miner 3 commits to miner 0's round-1 shard, disguised
    next_round(c, 2)
    m3.shard_x, m3.shard_y = replayed(old_x, 2), old_y.copy()
    assert shard_digest(m3.shard_x) == d0
    hold = {(m3.address, "shard")}
    drive(c, in_phase(c, 2, PHASE_SHARD), hold)
    assert probe(c, m3, KIND_POCL_SHARD, build_shard(2, m3.shard_x)) == E_SHARD_SEEN
    assert probe(c, m3, KIND_POCL_SHARD, build_shard(2, old_x)) == E_SHARD_SEEN
    drive(c, in_phase(c, 2, PHASE_DONE), hold)
    rec2 = record(c, 2)
    assert m3.address not in rec2.shard_owners and len(rec2.shard_owners) == 4
    assert list(withhold_penalties(c, 2)) == [m3.address]
    # round 1's fingerprints are forgotten; round 2's are remembered
    assert c.state.get_raw(NS_POCL, seen_round_key(1)) is None
    for d in round1:
        assert c.state.get_raw(NS_POCL, seen_key(d)) is None
    round2 = {shard_digest(c.s.by_address()[a].shard_x) for a in rec2.shard_owners}
    assert round2 <= set(codec.decode(c.state.get_raw(NS_POCL, seen_round_key(2))))
    assert all(codec.decode(c.state.get_raw(NS_POCL, seen_key(d))) == 2 for d in round2)

    # round 3 (miner 3 is jailed): miner 4 uses round 1's shard again, and it is accepted
    next_round(c, 3)
    m4.shard_x, m4.shard_y = old_x[::-1].copy(), old_y[::-1].copy()
    drive(c, in_phase(c, 3, PHASE_SHARD), {(m4.address, "shard")})
    rec3 = record(c, 3)
    assert m3.address not in rec3.eligible and m4.address in rec3.committers
    assert probe(c, m4, KIND_POCL_SHARD, build_shard(3, m4.shard_x)) is None
    c.block([shard_tx(c, m4, 3, m4.shard_x)])
    rec3 = record(c, 3)
    assert m4.address in rec3.shard_owners
    assert codec.decode(c.state.get_raw(NS_POCL, seen_key(d0))) == 3
    drive(c, in_phase(c, 3, PHASE_DONE))
    assert withhold_penalties(c, 3) == {}
    # round 3 forgot round 2 in turn
    assert c.state.get_raw(NS_POCL, seen_round_key(2)) is None
    assert all(c.state.get_raw(NS_POCL, seen_key(d)) is None for d in round2)


# --------------------------------------------------------------------------- predictions by shard owner


def test_predictions_are_indexed_by_shard_owners() -> None:
    """A committer without a shard leaves no hole in the predictions: each predictor labels the OTHER shard
    owners in address order, and the votes score exactly those labels."""
    c = new_chain([HONEST, SHARD_WITHHOLDER, HONEST, HONEST])
    drive(c, in_phase(c, 1, PHASE_PREDICT))
    rec = record(c, 1)
    withholder = c.s.miners[1].address
    assert withholder in rec.committers and withholder not in rec.shard_owners
    c.block(c.miner_txs())  # every shard owner predicts
    rec = record(c, 1)
    data = c.pocl.round_data(c.state, rec)
    by_address = c.s.by_address()
    for p in rec.shard_owners:
        others = [o for o in rec.shard_owners if o != p]
        got = [a.to_numpy(1 << 20) for a in data.predictions[p].predictions]
        want = [
            predict(c.s.params.model_spec(), by_address[p].weights, by_address[o].shard_x)[0] for o in others
        ]
        assert len(got) == len(others) == 2
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    drive(c, in_phase(c, 1, PHASE_DONE))
    out = record(c, 1).outcome
    assert out.voters == rec.shard_owners and withholder not in out.valid_voters
    assert set(out.valid_voters) == set(rec.shard_owners)  # every vote scored the owner-indexed labels
    assert list(withhold_penalties(c, 1)) == [withholder]
    assert c.state.get_raw(NS_POCL, predict_key(1, withholder)) is None
