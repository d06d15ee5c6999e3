"""Typed events a block's execution reports to clients (a slash, an unbonding release, a PoCL round step).

Hooks and tx kinds append them to `BlockContext.events`; they end up in `BlockResult.events`. Events are
not state: they enter neither the state root nor any block hash, so adding one changes no consensus
value. Each event type names its `event_kind`, the stable name clients see in the RPC event stream;
its fields are the event's data (their names are the JSON keys).

PoCL's events live in `consensus.pocl.events`; they subclass `Event` like the core ones below.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base of every executor event: something a block did that clients may want to see."""

    event_kind: ClassVar[str] = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Unbonded(Event):
    """Matured unbonding entries of `address` went back to its balance at the start of the block."""

    event_kind: ClassVar[str] = "unbonded"
    address: bytes
    amount: int


@dataclasses.dataclass(frozen=True, slots=True)
class DoubleSignSlashed(Event):
    """Evidence of two votes for one (height, round) was applied: the validator is slashed and jailed."""

    event_kind: ClassVar[str] = "double_sign_slashed"
    validator: bytes  # consensus address (what the votes name)
    operator: bytes  # the account slashed and jailed (`ledger.roles.operator_of(validator)`)
    height: int  # of the double-signed votes
    round: int
    slashed: int
    jailed_until_height: int
    reporter: bytes  # address of the evidence tx's sender
