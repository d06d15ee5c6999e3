"""The PoCL phase schedule: pure functions of a round record and a height (DESIGN §5.2).

Round r opens at height s_r in COMMIT. Each phase has a maximum length in blocks and closes EARLY after
the block in which everyone expected has acted. COMMIT carries commitments only; the test shards are
opened in SHARD, once no model can be committed any more:

    COMMIT  heights s_r .. at most s_r + train_blocks - 1      expected: every eligible miner
    SHARD   next height .. at most + shard_blocks - 1          expected: every committer
    PREDICT next height .. at most + predict_blocks - 1        expected: every shard owner
    VOTE    next height .. at most + vote_blocks - 1           expected: every revealed predictor

Transitions happen in the end-block step of the phase's last block, so every tx of block h is judged by
the phase the round was in when block h started. A phase that cannot lead to a valid round is skipped:
with < 2 committers after COMMIT, < 2 shard owners after SHARD, or < 2 revealed predictors after
PREDICT, the round finalizes right there (void; withholders are still penalised). FINALIZE runs in the execution of the last block; round
r+1 opens at `end_height + 1 + round_gap_blocks` with its eligible set taken from the state as it is
before that height.

An empty eligible set never closes COMMIT early (that would open a void round every block).

Liveness (downtime, as Cosmos jails validators): an eligible miner that does not commit in
`max_missed_rounds` consecutive rounds is jailed for `jail_rounds`, so it leaves the eligible set and
stops holding COMMIT open (`downtime`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping

from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import (
    PHASE_COMMIT,
    PHASE_DONE,
    PHASE_PREDICT,
    PHASE_SHARD,
    PHASE_VOTE,
    RoundRecord,
)
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_SHARD, KIND_POCL_VOTE

KIND_PHASE = {
    KIND_POCL_COMMIT: PHASE_COMMIT,
    KIND_POCL_SHARD: PHASE_SHARD,
    KIND_POCL_PREDICT: PHASE_PREDICT,
    KIND_POCL_VOTE: PHASE_VOTE,
}
MIN_PARTICIPANTS = 2


class Step(enum.Enum):
    NONE = "none"  # stay in the phase
    ADVANCE = "advance"  # the next phase starts at height + 1
    FINALIZE = "finalize"  # run finalization now, in this block's execution


def phase_start(rec: RoundRecord) -> int:
    if rec.phase == PHASE_COMMIT:
        return rec.start_height
    if rec.phase == PHASE_SHARD:
        return rec.shard_start
    if rec.phase == PHASE_PREDICT:
        return rec.predict_start
    if rec.phase == PHASE_VOTE:
        return rec.vote_start
    raise ValueError("round is finalized")


def phase_max_blocks(phase: int, params: PoclParams) -> int:
    return {
        PHASE_COMMIT: params.train_blocks,
        PHASE_SHARD: params.shard_blocks,
        PHASE_PREDICT: params.predict_blocks,
        PHASE_VOTE: params.vote_blocks,
    }[phase]


def phase_deadline(rec: RoundRecord, params: PoclParams) -> int:
    """The last height the current phase can last (inclusive)."""
    return phase_start(rec) + phase_max_blocks(rec.phase, params) - 1


def everyone_acted(rec: RoundRecord) -> bool:
    """Every miner the phase expects (see the module docstring) has sent its tx."""
    if rec.phase == PHASE_COMMIT:
        expected, acted = rec.eligible, rec.committers
    elif rec.phase == PHASE_SHARD:
        expected, acted = rec.committers, rec.shard_owners
    elif rec.phase == PHASE_PREDICT:
        expected, acted = rec.shard_owners, rec.predictors
    elif rec.phase == PHASE_VOTE:
        expected, acted = rec.revealed, rec.voters
    else:
        return False
    return bool(expected) and set(expected) <= set(acted)


def end_block_step(rec: RoundRecord, height: int, params: PoclParams) -> Step:
    """What the end-block step of `height` does to an open round."""
    if rec.phase == PHASE_DONE or height < phase_start(rec):
        return Step.NONE
    if not (everyone_acted(rec) or height >= phase_deadline(rec, params)):
        return Step.NONE
    if rec.phase == PHASE_COMMIT and len(rec.committers) < MIN_PARTICIPANTS:
        return Step.FINALIZE
    if rec.phase == PHASE_SHARD and len(rec.shard_owners) < MIN_PARTICIPANTS:
        return Step.FINALIZE
    if rec.phase == PHASE_PREDICT and len(rec.revealed) < MIN_PARTICIPANTS:
        return Step.FINALIZE
    if rec.phase == PHASE_VOTE:
        return Step.FINALIZE
    return Step.ADVANCE


def advance(rec: RoundRecord, height: int) -> RoundRecord:
    """The record after an ADVANCE step at `height`."""
    if rec.phase == PHASE_COMMIT:
        return dataclasses.replace(rec, phase=PHASE_SHARD, shard_start=height + 1)
    if rec.phase == PHASE_SHARD:
        return dataclasses.replace(rec, phase=PHASE_PREDICT, predict_start=height + 1)
    if rec.phase == PHASE_PREDICT:
        return dataclasses.replace(rec, phase=PHASE_VOTE, vote_start=height + 1)
    raise ValueError(f"cannot advance from phase {rec.phase_name}")


def mark_finalized(rec: RoundRecord, height: int, outcome: object) -> RoundRecord:
    return dataclasses.replace(rec, phase=PHASE_DONE, end_height=height, outcome=outcome)


def next_round_start(rec: RoundRecord, params: PoclParams) -> int:
    if rec.phase != PHASE_DONE:
        raise ValueError("round not finalized yet")
    return rec.end_height + 1 + params.round_gap_blocks


def max_round_blocks(params: PoclParams) -> int:
    """Upper bound on a round's length in blocks (all phases run to their maximum)."""
    return params.max_round_blocks()


def tx_in_phase(rec: RoundRecord, kind: str) -> bool:
    return rec.phase == KIND_PHASE.get(kind)


def select_eligible(
    accounts: Iterable[tuple[bytes, int, int]], round_: int, params: PoclParams
) -> list[bytes]:
    """Eligible miners for round r from `(address, bonded_stake, jailed_until_round)` triples.

    Stake >= min_miner_stake and not jailed (jailed_until_round < r); at most `max_miners`, the largest
    stakes first with ties by address; returned in canonical (address) order.
    """
    ok = [
        (addr, stake)
        for addr, stake, jailed_until in accounts
        if stake >= params.min_miner_stake and jailed_until < round_
    ]
    ok.sort(key=lambda t: (-t[1], t[0]))
    return sorted(addr for addr, _ in ok[: params.max_miners])


def downtime(
    eligible: Iterable[bytes], committers: Iterable[bytes], missed: Mapping[bytes, int], params: PoclParams
) -> tuple[dict[bytes, int], list[bytes]]:
    """Consecutive missed COMMITs after a round: `(new counts for the round's eligible miners, jailed now)`.

    `missed` holds the counts before the round (absent = 0). A committer's count resets to 0; an eligible
    miner that did not commit adds one, and on reaching `max_missed_rounds` is jailed (its count resets
    to 0 too). Miners outside the eligible set keep their counts. The jailed list is in address order.
    """
    done = set(committers)
    counts: dict[bytes, int] = {}
    jailed: list[bytes] = []
    for m in sorted(set(eligible)):
        n = 0 if m in done else missed.get(m, 0) + 1
        if n >= params.max_missed_rounds:
            jailed.append(m)
            n = 0
        counts[m] = n
    return counts, jailed
