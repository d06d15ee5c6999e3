"""Typed events of the PoCL round lifecycle, appended to `BlockContext.events` by `PoclExecution`.

Like every executor event (`ledger.events`), they are reports for clients and never enter state: a
round opening, a phase starting, a reward paid, a penalty applied, an absent miner jailed, a round finalized.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pocl.ledger.events import Event


@dataclasses.dataclass(frozen=True, slots=True)
class RoundOpened(Event):
    """Round `round` opened at `height` (its COMMIT phase starts) with this eligible miner set."""

    event_kind: ClassVar[str] = "pocl_round_opened"
    round: int
    height: int
    eligible: tuple[bytes, ...]  # miner addresses


@dataclasses.dataclass(frozen=True, slots=True)
class PhaseStarted(Event):
    """The round moved to `phase` (a `records.PHASE_NAMES` name), first open at `start_height`."""

    event_kind: ClassVar[str] = "pocl_phase"
    round: int
    phase: str
    start_height: int


@dataclasses.dataclass(frozen=True, slots=True)
class RewardPaid(Event):
    """`amount` was minted to `address` for its `role` ("winner" or "voter") in round `round`."""

    event_kind: ClassVar[str] = "pocl_reward"
    round: int
    address: bytes
    role: str
    amount: int


@dataclasses.dataclass(frozen=True, slots=True)
class Slashed(Event):
    """A penalty of round `round`: `slashed` stake burned from `address`, jailed through a round."""

    event_kind: ClassVar[str] = "pocl_slashed"
    round: int
    address: bytes
    kind: str  # the penalty kind (withhold, model_mismatch, ...)
    slashed: int
    jailed_until_round: int


@dataclasses.dataclass(frozen=True, slots=True)
class Jailed(Event):
    """`address` missed COMMIT in `missed_rounds` consecutive rounds up to `round`: jailed for downtime
    (no stake burned), it is not eligible again before round `jailed_until_round + 1`."""

    event_kind: ClassVar[str] = "pocl_jailed"
    round: int
    address: bytes
    missed_rounds: int
    jailed_until_round: int


@dataclasses.dataclass(frozen=True, slots=True)
class RoundFinalized(Event):
    """Round `round` was finalized: its winners, the resulting global model, the next round's start."""

    event_kind: ClassVar[str] = "pocl_round_finalized"
    round: int
    void: bool
    winners: tuple[bytes, ...]  # addresses in ranking order
    model_hash: bytes  # G_r (== G_{r-1} when the round did not change the model)
    next_round_start: int
