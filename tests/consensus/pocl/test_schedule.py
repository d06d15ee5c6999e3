"""Phase schedule: COMMIT -> SHARD -> PREDICT -> VOTE, early close, maximum lengths, skipped phases, next
round, eligibility."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.pocl.records import (
    PHASE_COMMIT,
    PHASE_DONE,
    PHASE_PREDICT,
    PHASE_SHARD,
    PHASE_VOTE,
    RoundRecord,
)
from pocl.consensus.pocl.schedule import (
    Step,
    advance,
    end_block_step,
    mark_finalized,
    next_round_start,
    phase_deadline,
    select_eligible,
    tx_in_phase,
)
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_SHARD, KIND_POCL_VOTE

from tests.support.pocl_scenario import (
    ABSENT,
    HONEST,
    WITHHOLD,
    make_params,
    make_scenario,
    run_round,
)

A, B, C = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
P = make_params(train_blocks=4, shard_blocks=2, predict_blocks=3, vote_blocks=2, round_gap_blocks=2)


def rec(**kw: object) -> RoundRecord:
    base = RoundRecord.open(1, 100, [A, B, C], b"\0" * 32)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_commit_runs_to_its_maximum_without_everyone() -> None:
    r = rec(committers=[A, B])
    assert phase_deadline(r, P) == 103
    assert [end_block_step(r, h, P) for h in (100, 101, 102)] == [Step.NONE] * 3
    assert end_block_step(r, 103, P) is Step.ADVANCE
    r2 = advance(r, 103)  # COMMIT is followed by SHARD, never directly by PREDICT
    assert (r2.phase, r2.shard_start, r2.predict_start) == (PHASE_SHARD, 104, 0)
    assert phase_deadline(r2, P) == 105  # shard_blocks = 2
    assert end_block_step(r2, 104, P) is Step.NONE  # neither committer opened its shard yet
    r2 = dataclasses.replace(r2, shard_owners=[A])
    assert end_block_step(r2, 104, P) is Step.NONE  # B may still open its shard
    assert end_block_step(r2, 105, P) is Step.FINALIZE  # deadline with one shard owner: void
    r3 = advance(dataclasses.replace(r2, shard_owners=[A, B]), 105)
    assert (r3.phase, r3.predict_start) == (PHASE_PREDICT, 106)
    assert phase_deadline(r3, P) == 108


def test_commit_closes_early_when_every_eligible_miner_committed() -> None:
    r = rec(committers=[A, B, C])
    assert end_block_step(r, 100, P) is Step.ADVANCE


def test_shard_closes_early_when_every_committer_opened_its_shard() -> None:
    r = advance(rec(committers=[A, B]), 100)
    assert r.phase == PHASE_SHARD and r.shard_start == 101
    assert end_block_step(r, 100, P) is Step.NONE  # SHARD has not started yet at 100
    assert end_block_step(dataclasses.replace(r, shard_owners=[A]), 101, P) is Step.NONE
    # C is eligible but did not commit: SHARD waits only for committers
    assert end_block_step(dataclasses.replace(r, shard_owners=[A, B]), 101, P) is Step.ADVANCE


def test_predict_and_vote_close_early_and_finalize() -> None:
    r = advance(rec(committers=[A, B, C]), 100)
    r = advance(dataclasses.replace(r, shard_owners=[A, B, C]), 101)
    assert (r.phase, r.predict_start) == (PHASE_PREDICT, 102)
    r = dataclasses.replace(r, predictors=[A, B], revealed=[A, B])
    assert end_block_step(r, 102, P) is Step.NONE  # C may still predict
    r = dataclasses.replace(r, predictors=[A, B, C], revealed=[A, B])  # C's reveal mismatched: it counts
    assert end_block_step(r, 102, P) is Step.ADVANCE
    r = advance(r, 102)
    assert (r.phase, r.vote_start) == (PHASE_VOTE, 103)
    assert end_block_step(r, 103, P) is Step.NONE
    assert (
        end_block_step(dataclasses.replace(r, voters=[A, B]), 103, P) is Step.FINALIZE
    )  # only revealed vote
    assert end_block_step(r, 104, P) is Step.FINALIZE  # deadline: vote_blocks = 2


def test_predict_waits_for_shard_owners_not_committers() -> None:
    r = advance(rec(committers=[A, B, C]), 100)
    r = advance(dataclasses.replace(r, shard_owners=[A, B]), 102)  # C never opened its shard
    assert r.phase == PHASE_PREDICT
    r = dataclasses.replace(r, predictors=[A, B], revealed=[A, B])
    assert end_block_step(r, 103, P) is Step.ADVANCE  # C cannot predict, so nobody waits for it


def test_too_few_participants_skip_to_finalize() -> None:
    assert end_block_step(rec(committers=[A]), 103, P) is Step.FINALIZE
    assert end_block_step(rec(committers=[]), 103, P) is Step.FINALIZE
    r = advance(rec(committers=[A, B]), 103)
    assert end_block_step(dataclasses.replace(r, shard_owners=[A]), 105, P) is Step.FINALIZE
    assert end_block_step(r, 105, P) is Step.FINALIZE  # nobody opened a shard
    r = advance(dataclasses.replace(r, shard_owners=[A, B]), 105)
    r = dataclasses.replace(r, predictors=[A, B], revealed=[A])
    assert end_block_step(r, 106, P) is Step.FINALIZE


def test_empty_eligible_set_never_closes_early() -> None:
    r = RoundRecord.open(1, 100, [], b"\0" * 32)
    assert end_block_step(r, 100, P) is Step.NONE
    assert end_block_step(r, 103, P) is Step.FINALIZE


def test_next_round_start_and_done_rounds() -> None:
    r = mark_finalized(rec(), 110, None)
    assert r.phase == PHASE_DONE and r.end_height == 110
    assert next_round_start(r, P) == 113  # end + 1 + gap
    assert end_block_step(r, 111, P) is Step.NONE
    with pytest.raises(ValueError):
        next_round_start(rec(), P)


def test_tx_kinds_by_phase() -> None:
    kinds = (KIND_POCL_COMMIT, KIND_POCL_SHARD, KIND_POCL_PREDICT, KIND_POCL_VOTE)
    r = rec(committers=[A, B])
    expected = [(PHASE_COMMIT, KIND_POCL_COMMIT), (PHASE_SHARD, KIND_POCL_SHARD)]
    expected += [(PHASE_PREDICT, KIND_POCL_PREDICT), (PHASE_VOTE, KIND_POCL_VOTE)]
    for phase, kind in expected:
        assert r.phase == phase
        assert [k for k in kinds if tx_in_phase(r, k)] == [kind]
        assert not tx_in_phase(r, "transfer")
        if phase != PHASE_VOTE:
            r = advance(r, 100)
    assert not any(tx_in_phase(mark_finalized(r, 101, None), k) for k in kinds)


def test_select_eligible_by_stake_jail_and_cap() -> None:
    p = make_params(min_miner_stake=10_000, max_miners=2)
    accounts = [
        (C, 50_000, 0),
        (A, 10_000, 0),
        (B, 50_000, 0),
        (b"\x01" * 20, 9_999, 0),
        (b"\x02" * 20, 100_000, 3),
    ]
    assert select_eligible(accounts, 3, p) == [B, C]  # 0x02 jailed through round 3; cap 2 by stake
    assert select_eligible(accounts, 4, p) == [b"\x02" * 20, B]  # released; ties at 50 -> lower address
    assert select_eligible(accounts, 4, make_params(min_miner_stake=10_000))[0] == b"\x02" * 20


def test_driven_round_closes_every_phase_early() -> None:
    s = make_scenario([HONEST, HONEST, HONEST], trained=False)
    run = run_round(s)
    h = s.start_height
    assert run.transitions == [(h + 1, "shard"), (h + 2, "predict"), (h + 3, "vote"), (h + 3, "finalize")]
    r = run.record
    assert (r.shard_start, r.predict_start, r.vote_start, r.end_height) == (h + 1, h + 2, h + 3, h + 3)


def test_driven_round_waits_for_stragglers_up_to_the_maximum() -> None:
    s = make_scenario([HONEST, HONEST, ABSENT, WITHHOLD], trained=False)
    run = run_round(s, acts_at={"commit": 1})
    h, p = s.start_height, s.params
    shard_at = h + p.train_blocks  # the absent miner keeps COMMIT open to its maximum
    predict_at = shard_at + 1  # every committer (the withholder too) opens its shard: SHARD closes early
    vote_at = predict_at + p.predict_blocks  # the withholder keeps PREDICT open to its maximum
    assert run.transitions == [
        (shard_at, "shard"),
        (predict_at, "predict"),
        (vote_at, "vote"),
        (vote_at, "finalize"),
    ]


def test_driven_round_waits_for_a_late_shard_up_to_the_maximum() -> None:
    s = make_scenario([HONEST, HONEST, HONEST], trained=False)
    run = run_round(s, acts_at={"shard": s.params.shard_blocks - 1})
    h = s.start_height
    predict_at = h + 1 + s.params.shard_blocks  # shards arrive in SHARD's last block
    assert run.transitions[:2] == [(h + 1, "shard"), (predict_at, "predict")]
    assert run.record.shard_start == h + 1 and run.record.predict_start == predict_at
