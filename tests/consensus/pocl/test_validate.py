"""Stateful tx rules: round, phase, eligibility, one per miner, shards that open their commitment and are
new, counts; mismatched weight/label reveals are recorded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pocl.consensus.pocl.records import CommitEntry, RoundRecord
from pocl.consensus.pocl.schedule import advance
from pocl.consensus.pocl.txs import (
    PayloadError,
    PredictPayload,
    VotePayload,
    build_shard,
    labels_array,
    shard_digest,
)
from pocl.consensus.pocl.validate import (
    E_DUPLICATE,
    E_NO_ROUND,
    E_NO_SHARD,
    E_NOT_COMMITTER,
    E_NOT_ELIGIBLE,
    E_NOT_REVEALED,
    E_SHARD_MISMATCH,
    E_SHARD_SEEN,
    E_WRONG_COUNT,
    E_WRONG_PHASE,
    E_WRONG_ROUND,
    accept_commit,
    accept_predict,
    accept_shard,
    accept_vote,
)
from pocl.ml.model.weights import encode_weights, weights_hash

from tests.support.pocl_scenario import (
    CHAIN_ID,
    HONEST,
    address_of_index,
    commit_payload,
    make_scenario,
    predict_payload,
    shard_payload,
    vote_payload,
)

TX = b"\x07" * 32


def code_of(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(PayloadError) as exc:
        fn(*args)
    return exc.value.code


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    s = make_scenario([HONEST, HONEST, HONEST], trained=False)
    outsider = address_of_index(99)
    rec = RoundRecord.open(1, 10, [m.address for m in s.miners], weights_hash(s.global_weights))
    return s, outsider, rec


def test_commit_rules(setup) -> None:  # type: ignore[no-untyped-def]
    s, outsider, rec = setup
    a, b = s.miners[0], s.miners[1]
    pa = commit_payload(s, a)
    assert code_of(accept_commit, None, a.address, pa, s.params, 10, TX) == E_NO_ROUND
    assert code_of(accept_commit, rec, outsider, pa, s.params, 10, TX) == E_NOT_ELIGIBLE
    wrong_round = dataclasses.replace(pa, round=2)
    assert code_of(accept_commit, rec, a.address, wrong_round, s.params, 10, TX) == E_WRONG_ROUND
    rec2, entry = accept_commit(rec, a.address, pa, s.params, 10, TX)
    assert isinstance(entry, CommitEntry) and entry.miner == a.address and rec2.committers == [a.address]
    assert code_of(accept_commit, rec2, a.address, pa, s.params, 10, TX) == E_DUPLICATE
    rec3, _ = accept_commit(rec2, b.address, commit_payload(s, b), s.params, 10, TX)
    assert rec3.committers == sorted([a.address, b.address])
    assert (
        code_of(
            accept_commit,
            advance(rec3, 10),
            s.miners[2].address,
            commit_payload(s, s.miners[2]),
            s.params,
            11,
            TX,
        )
        == E_WRONG_PHASE
    )


def _committed(s, rec):  # type: ignore[no-untyped-def]
    """Everyone committed; the round is in SHARD."""
    commits = {}
    for m in s.miners:
        rec, commits[m.address] = accept_commit(rec, m.address, commit_payload(s, m), s.params, 10, TX)
    return advance(rec, 10), commits


def _never_seen(_digest: bytes) -> bool:
    return False


def _opened(s, rec, owners=None):  # type: ignore[no-untyped-def]
    """Everyone committed, `owners` (default: everyone) opened their shards; the round is in PREDICT."""
    rec, commits = _committed(s, rec)
    for m in owners if owners is not None else s.miners:
        rec, _ = accept_shard(
            rec, m.address, shard_payload(s, m), commits[m.address], s.params, CHAIN_ID, 11, TX, _never_seen
        )
    return advance(rec, 11), commits


def shard_code(rec, m, payload, commit, s, seen=_never_seen, chain_id=CHAIN_ID):  # type: ignore[no-untyped-def]
    return code_of(accept_shard, rec, m.address, payload, commit, s.params, chain_id, 11, TX, seen)


def test_shard_rules(setup) -> None:  # type: ignore[no-untyped-def]
    s, outsider, rec0 = setup
    a, b, c = s.miners
    # c never commits
    rec = rec0
    commits = {}
    for m in (a, b):
        rec, commits[m.address] = accept_commit(rec, m.address, commit_payload(s, m), s.params, 10, TX)
    pa = shard_payload(s, a)
    # not during COMMIT (the shard must stay hidden while models can still be committed)
    assert shard_code(rec, a, pa, commits[a.address], s) == E_WRONG_PHASE
    rec = advance(rec, 10)
    assert shard_code(None, a, pa, commits[a.address], s) == E_NO_ROUND
    assert shard_code(rec, a, dataclasses.replace(pa, round=2), commits[a.address], s) == E_WRONG_ROUND
    assert shard_code(rec, c, shard_payload(s, c), None, s) == E_NOT_COMMITTER  # eligible, did not commit
    assert (
        code_of(accept_shard, rec, outsider, pa, commits[a.address], s.params, CHAIN_ID, 11, TX, _never_seen)
        == E_NOT_COMMITTER  # a's commit entry does not make the outsider a committer
    )
    # b's inputs do not open a's commitment; a's own commitment does not open on another chain
    assert shard_code(rec, a, shard_payload(s, b), commits[a.address], s) == E_SHARD_MISMATCH
    assert shard_code(rec, a, pa, commits[a.address], s, chain_id="other") == E_SHARD_MISMATCH
    tweaked = a.shard_x.copy()
    tweaked[0, 0, 0, 0] += np.float32(0.5)
    assert shard_code(rec, a, build_shard(1, tweaked), commits[a.address], s) == E_SHARD_MISMATCH
    # a shard seen before (this round or a recent one) is rejected even when it opens the commitment
    digest = shard_digest(a.shard_x)
    assert shard_code(rec, a, pa, commits[a.address], s, seen={digest}.__contains__) == E_SHARD_SEEN
    # rows reordered open the same commitment: the digest is of the set of rows
    rec2, entry = accept_shard(
        rec,
        a.address,
        build_shard(1, a.shard_x[::-1]),
        commits[a.address],
        s.params,
        CHAIN_ID,
        11,
        TX,
        _never_seen,
    )
    assert entry.miner == a.address and entry.digest == digest and entry.height == 11
    assert rec2.shard_owners == [a.address] and rec2.committers == rec.committers
    assert shard_code(rec2, a, pa, commits[a.address], s) == E_DUPLICATE
    rec3, _ = accept_shard(
        rec2, b.address, shard_payload(s, b), commits[b.address], s.params, CHAIN_ID, 11, TX, _never_seen
    )
    assert rec3.shard_owners == sorted([a.address, b.address])


def test_predict_rules_and_mismatch_is_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    s, outsider, rec = setup
    rec, commits = _opened(s, rec)
    a, b = s.miners[0], s.miners[1]
    pa = predict_payload(s, a, rec.shard_owners)
    assert code_of(accept_predict, rec, outsider, pa, None, s.params, CHAIN_ID, 11, TX) == E_NOT_COMMITTER
    short = dataclasses.replace(pa, predictions=pa.predictions[:1])
    assert (
        code_of(accept_predict, rec, a.address, short, commits[a.address], s.params, CHAIN_ID, 11, TX)
        == E_WRONG_COUNT
    )
    rec2, entry = accept_predict(rec, a.address, pa, commits[a.address], s.params, CHAIN_ID, 11, TX)
    assert entry.reveal_ok and rec2.revealed == [a.address] and rec2.predictors == [a.address]
    assert (
        code_of(accept_predict, rec2, a.address, pa, commits[a.address], s.params, CHAIN_ID, 11, TX)
        == E_DUPLICATE
    )
    # b reveals weights that do not match its commitment: accepted, flagged, not "revealed"
    other = PredictPayload(
        1,
        encode_weights([w * np.float32(2) for w in b.weights]),
        predict_payload(s, b, rec.shard_owners).predictions,
    )
    rec3, eb = accept_predict(rec2, b.address, other, commits[b.address], s.params, CHAIN_ID, 11, TX)
    assert not eb.reveal_ok
    assert b.address in rec3.predictors and b.address not in rec3.revealed
    # a reveal is bound to the chain id: the same weights on another chain do not match
    _, ea = accept_predict(rec, a.address, pa, commits[a.address], s.params, "other-chain", 11, TX)
    assert not ea.reveal_ok
    # wrong phase: predictions are not accepted during COMMIT or SHARD
    fresh = RoundRecord.open(1, 10, rec.eligible, rec.prev_model_hash)
    for early in (fresh, advance(fresh, 10)):
        assert (
            code_of(accept_predict, early, a.address, pa, commits[a.address], s.params, CHAIN_ID, 10, TX)
            == E_WRONG_PHASE
        )


def test_only_shard_owners_predict_and_are_predicted_on(setup) -> None:  # type: ignore[no-untyped-def]
    s, _outsider, rec = setup
    a, b, c = s.miners
    rec, commits = _opened(s, rec, owners=[a, b])  # c committed but never opened its shard
    assert rec.committers == sorted(m.address for m in s.miners)
    assert rec.shard_owners == sorted([a.address, b.address])
    pc = predict_payload(s, c, rec.shard_owners)
    assert (
        code_of(accept_predict, rec, c.address, pc, commits[c.address], s.params, CHAIN_ID, 12, TX)
        == E_NO_SHARD
    )
    # one prediction per OTHER shard owner: a predicts on b only, not on c
    pa = predict_payload(s, a, rec.shard_owners)
    assert len(pa.predictions) == 1
    _, entry = accept_predict(rec, a.address, pa, commits[a.address], s.params, CHAIN_ID, 12, TX)
    assert entry.reveal_ok and len(entry.predictions) == 1
    as_committers = predict_payload(s, a, rec.committers)  # one for c too: one too many
    assert (
        code_of(accept_predict, rec, a.address, as_committers, commits[a.address], s.params, CHAIN_ID, 12, TX)
        == E_WRONG_COUNT
    )


def test_vote_rules_and_label_mismatch_is_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    s, _outsider, rec = setup
    rec, commits = _opened(s, rec)
    preds = {}
    a, b, c = s.miners
    for m in (a, b):
        rec, preds[m.address] = accept_predict(
            rec,
            m.address,
            predict_payload(s, m, rec.shard_owners),
            commits[m.address],
            s.params,
            CHAIN_ID,
            11,
            TX,
        )
    rec = advance(rec, 11)  # c withheld its weights
    va = vote_payload(s, a, rec, preds)
    assert len(va.scores) == 1
    assert (
        code_of(
            accept_vote,
            rec,
            c.address,
            vote_payload(s, c, rec, preds),
            commits[c.address],
            s.params,
            CHAIN_ID,
            12,
            TX,
        )
        == E_NOT_REVEALED
    )
    bad_count = dataclasses.replace(va, scores=[1, 2])
    assert (
        code_of(accept_vote, rec, a.address, bad_count, commits[a.address], s.params, CHAIN_ID, 12, TX)
        == E_WRONG_COUNT
    )
    rec2, entry = accept_vote(rec, a.address, va, commits[a.address], s.params, CHAIN_ID, 12, TX)
    assert entry.labels_ok and rec2.voters == [a.address]
    assert (
        code_of(accept_vote, rec2, a.address, va, commits[a.address], s.params, CHAIN_ID, 12, TX)
        == E_DUPLICATE
    )
    vb = vote_payload(s, b, rec, preds)
    lying = VotePayload(1, labels_array((vb.labels.to_numpy(1 << 20) + 1) % 10), vb.salt, vb.scores)
    rec3, eb = accept_vote(rec2, b.address, lying, commits[b.address], s.params, CHAIN_ID, 12, TX)
    assert not eb.labels_ok and b.address in rec3.voters
