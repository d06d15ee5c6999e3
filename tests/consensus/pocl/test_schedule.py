"""Phase schedule: early close, maximum lengths, skipped phases, next round, eligibility."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.pocl.records import PHASE_DONE, PHASE_PREDICT, PHASE_VOTE, RoundRecord
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
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_VOTE

from tests.support.pocl_scenario import (
    ABSENT,
    HONEST,
    WITHHOLD,
    make_params,
    make_scenario,
    run_round,
)

A, B, C = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
P = make_params(train_blocks=4, predict_blocks=3, vote_blocks=2, round_gap_blocks=2)


def rec(**kw: object) -> RoundRecord:
    base = RoundRecord.open(1, 100, [A, B, C], b"\0" * 32)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_commit_runs_to_its_maximum_without_everyone() -> None:
    r = rec(committers=[A, B])
    assert phase_deadline(r, P) == 103
    assert [end_block_step(r, h, P) for h in (100, 101, 102)] == [Step.NONE] * 3
    assert end_block_step(r, 103, P) is Step.ADVANCE
    r2 = advance(r, 103)
    assert (r2.phase, r2.predict_start) == (PHASE_PREDICT, 104)
    assert phase_deadline(r2, P) == 106


def test_commit_closes_early_when_every_eligible_miner_committed() -> None:
    r = rec(committers=[A, B, C])
    assert end_block_step(r, 100, P) is Step.ADVANCE


def test_predict_and_vote_close_early_and_finalize() -> None:
    r = advance(rec(committers=[A, B, C]), 100)
    r = dataclasses.replace(r, predictors=[A, B], revealed=[A, B])
    assert end_block_step(r, 101, P) is Step.NONE  # C may still predict
    r = dataclasses.replace(r, predictors=[A, B, C], revealed=[A, B])  # C's reveal mismatched: it counts
    assert end_block_step(r, 101, P) is Step.ADVANCE
    r = advance(r, 101)
    assert (r.phase, r.vote_start) == (PHASE_VOTE, 102)
    assert end_block_step(r, 102, P) is Step.NONE
    assert (
        end_block_step(dataclasses.replace(r, voters=[A, B]), 102, P) is Step.FINALIZE
    )  # only revealed vote
    assert end_block_step(r, 103, P) is Step.FINALIZE  # deadline: vote_blocks = 2


def test_too_few_participants_skip_to_finalize() -> None:
    assert end_block_step(rec(committers=[A]), 103, P) is Step.FINALIZE
    assert end_block_step(rec(committers=[]), 103, P) is Step.FINALIZE
    r = advance(rec(committers=[A, B]), 103)
    r = dataclasses.replace(r, predictors=[A, B], revealed=[A])
    assert end_block_step(r, 104, P) is Step.FINALIZE


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
    r = rec()
    assert tx_in_phase(r, KIND_POCL_COMMIT) and not tx_in_phase(r, KIND_POCL_PREDICT)
    r = advance(r, 100)
    assert tx_in_phase(r, KIND_POCL_PREDICT) and not tx_in_phase(r, KIND_POCL_VOTE)
    assert not tx_in_phase(r, "transfer")


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
    assert run.transitions == [(h + 1, "predict"), (h + 2, "vote"), (h + 2, "finalize")]
    assert run.record.end_height == h + 2 and run.record.predict_start == h + 1


def test_driven_round_waits_for_stragglers_up_to_the_maximum() -> None:
    s = make_scenario([HONEST, HONEST, ABSENT, WITHHOLD], trained=False)
    run = run_round(s, acts_at={"commit": 1})
    h, p = s.start_height, s.params
    predict_at = h + p.train_blocks  # the absent miner keeps COMMIT open to its maximum
    vote_at = predict_at + p.predict_blocks  # the withholder keeps PREDICT open to its maximum
    assert run.transitions == [(predict_at, "predict"), (vote_at, "vote"), (vote_at, "finalize")]
