"""Typed events a node publishes to its plug-ins (RPC event stream, metrics, miner) after each block.

`BlockCommitted` is published once per committed block, by consensus or block sync, with the executor's
typed events of that block (`ledger.events`, `consensus.pocl.events`). The PoCL round and phase events
are derived from those (`pocl_events`) and published right after the block, so a consumer that only
follows rounds never has to look inside blocks. Consumers match on the types; nothing is a string-keyed
dict until the RPC renders it as JSON (`node.rpc.json_view`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pocl.consensus.pocl.events import Jailed, PhaseStarted, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.consensus.pocl.records import PHASE_COMMIT, PHASE_DONE, PHASE_NAMES
from pocl.ledger.events import Event


@dataclasses.dataclass(frozen=True, slots=True)
class BlockCommitted:
    """A block was committed to this node's chain."""

    height: int
    hash: bytes
    time_ms: int
    txs: int  # number of transactions
    round: int  # BFT round that decided it (the commit's round for synced blocks)
    interval_s: float  # since the previous block was decided here (0 for synced blocks)
    synced: bool  # applied by block sync rather than decided by consensus here
    tx_hashes: tuple[bytes, ...]
    events: tuple[Event, ...]  # the executor's events, in execution order


RoundStep = RoundOpened | RoundFinalized | RewardPaid | Slashed | Jailed


@dataclasses.dataclass(frozen=True, slots=True)
class PoclRoundEvent:
    """A PoCL round opened, paid a reward, slashed or jailed a miner, or was finalized at `height`."""

    height: int
    step: RoundStep


@dataclasses.dataclass(frozen=True, slots=True)
class PoclPhaseEvent:
    """The open PoCL round entered `phase` (commit, shard, predict, vote, done) in the block at `height`."""

    height: int
    round: int
    phase: str
    start_height: int | None = None  # first height of the phase, when the executor reported it


NodeEvent = BlockCommitted | PoclRoundEvent | PoclPhaseEvent
NodeEventListener = Callable[[NodeEvent], None]


def pocl_events(block: BlockCommitted) -> list[PoclRoundEvent | PoclPhaseEvent]:
    """The round and phase events told by one block's PoCL executor events, in order."""
    out: list[PoclRoundEvent | PoclPhaseEvent] = []
    h = block.height
    for ev in block.events:
        match ev:
            case RoundOpened():
                out += [PoclRoundEvent(h, ev), PoclPhaseEvent(h, ev.round, PHASE_NAMES[PHASE_COMMIT])]
            case PhaseStarted():
                out.append(PoclPhaseEvent(h, ev.round, ev.phase, ev.start_height))
            case RoundFinalized():
                out += [PoclRoundEvent(h, ev), PoclPhaseEvent(h, ev.round, PHASE_NAMES[PHASE_DONE])]
            case RewardPaid() | Slashed() | Jailed():
                out.append(PoclRoundEvent(h, ev))
    return out
