"""What a miner still owes the open round, and what walking away from it costs.

A miner that has committed to round r must open its shard, reveal its model and vote in the phases
that follow; a committer that stops before that is penalised as a withholder at finalization
(docs/pocl-protocol.md §6): `slash_withhold_bps` of its bonded and unbonding stake is burned and it is
jailed through round r + `jail_rounds`. Stopping a node safely (`node.shutdown`) and switching mining
off (`node.mining_switch`) both ask the same two questions, answered here from the committed state
alone (pure functions, so they are unit-tested without a node).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import PHASE_COMMIT, PHASE_PREDICT, PHASE_SHARD, PHASE_VOTE, RoundRecord

BPS = 10_000

DUE_COMMIT_LANDING = "commit (sent, not in a block yet)"
DUE_SHARD = "shard"
DUE_PREDICT = "predict"
DUE_VOTE = "vote"


@dataclasses.dataclass(frozen=True)
class OpenDuty:
    """Round `round` (in phase `phase`) still expects `due` from this miner."""

    round: int
    phase: str
    due: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def open_duty(rec: RoundRecord | None, address: bytes, commit_in_flight: bool = False) -> OpenDuty | None:
    """The step this miner still owes the open round `rec`, or None when it owes nothing.

    `commit_in_flight`: this miner sent a commit for `rec` that is not in a block yet; while COMMIT
    is open it may still land (it was gossiped), and then the miner owes the rest of the round.
    """
    if rec is None or rec.outcome is not None:
        return None
    due: str | None = None
    if rec.phase == PHASE_COMMIT:
        if address in rec.committers:
            due = DUE_SHARD
        elif commit_in_flight:
            due = DUE_COMMIT_LANDING
    elif rec.phase == PHASE_SHARD and address in rec.committers:
        due = DUE_PREDICT if address in rec.shard_owners else DUE_SHARD
    elif rec.phase == PHASE_PREDICT and address in rec.shard_owners:
        if address not in rec.predictors:
            due = DUE_PREDICT
        elif address in rec.revealed:
            due = DUE_VOTE
    elif rec.phase == PHASE_VOTE and address in rec.revealed and address not in rec.voters:
        due = DUE_VOTE
    return OpenDuty(rec.round, rec.phase_name, due) if due is not None else None


@dataclasses.dataclass(frozen=True)
class WithholdCost:
    """The withholding penalty a committer that stops now would get (if the phases it skips run)."""

    round: int
    slash_bps: int
    amount: int  # of the stake it has now (bonded plus unbonding), burned
    jail_rounds: int

    @property
    def jailed_through_round(self) -> int:
        return self.round + self.jail_rounds

    def describe(self) -> str:
        return (
            f"slash {self.slash_bps} bps = {self.amount} of its stake and jail for {self.jail_rounds} rounds, "
            f"through round {self.jailed_through_round}"
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "jailed_through_round": self.jailed_through_round}


def withhold_cost(params: PoclParams, round_: int, stake: int, unbonding: list[int]) -> WithholdCost:
    """As `ledger.evidence.slash_stake` burns it: floor per part (bonded stake, each unbonding entry)."""
    bps = params.slash_withhold_bps
    amount = stake * bps // BPS + sum(entry * bps // BPS for entry in unbonding)
    return WithholdCost(round_, bps, amount, params.jail_rounds)
