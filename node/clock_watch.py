"""Tells the operator when a clock is wrong (proposer-based timestamps, `consensus.bft.timely`).

A validator prevotes nil for a proposal whose time is outside its clock ± the chain's precision (and
message delay). Nothing breaks loudly when a clock is off: the chain keeps finalising on the others'
proposals, and the node with the bad clock only wastes its proposer turns and its prevotes. This watch
turns that into log lines an operator can act on (logger `consensus`):

- every untimely proposal: one INFO line with the proposer and the offset from our clock;
- `UNTIMELY_STREAK` untimely proposals in a row from `MIN_PROPOSERS_FOR_OWN_CLOCK` or more different
  validators: a WARNING that *our* clock is probably off (everybody else cannot be wrong at once);
- `UNTIMELY_STREAK` untimely proposals in a row from one validator: a WARNING naming that validator;
- our own new proposal got nil prevotes from +2/3 of the power: a WARNING (an untimely time is the usual
  reason; an invalid block is the other and is logged as such by `valid`).

Warnings of each kind repeat at most every `WARN_INTERVAL_S`, so a node with a bad clock logs a few lines a
minute, not one per block. The driver feeds it only proposals the machine accepted as the first proposal
of their round from the right proposer, so a peer cannot make it hold or log anything for forged messages.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable

from pocl.consensus.bft.timely import message_delay_ms, timely_window
from pocl.ledger.params import ChainParams

log = logging.getLogger("pocl.consensus")

UNTIMELY_STREAK = 3  # untimely proposals in a row before a warning
MIN_PROPOSERS_FOR_OWN_CLOCK = 2  # distinct proposers in that streak that point at our own clock
WARN_INTERVAL_S = 60.0  # one warning of each kind per interval
MAX_TRACKED_PROPOSERS = 1_000  # per-proposer streaks kept (validators only; bounded anyway)


@dataclasses.dataclass(frozen=True)
class Observation:
    proposer: bytes
    offset_ms: int  # proposal time minus our clock at receipt


def _seconds(ms: int) -> str:
    return f"{ms / 1000:+.1f} s"


def utc_text(time_ms: int) -> str:
    """Unix milliseconds as an ISO-8601 UTC time (what an operator compares with `date -u`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time_ms / 1000)) + f".{time_ms % 1000:03d}Z"


class ClockWatch:
    def __init__(self, params: ChainParams, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self._monotonic = monotonic
        self._streak: deque[Observation] = deque(maxlen=UNTIMELY_STREAK)
        self._per_proposer: dict[bytes, int] = {}
        self._last_warned: dict[object, float] = {}
        self.untimely_seen = 0  # proposals of others we judged untimely (for tests/metrics)
        self.own_rejected = 0  # our new proposals that got +2/3 nil prevotes

    # ------------------------------------------------------------------ others' proposals

    def observe(self, height: int, round_: int, proposer: bytes, timely: bool, offset_ms: int) -> None:
        """A new proposal (valid round -1) of another validator, judged on our clock at receipt."""
        if timely:
            self._streak.clear()
            self._per_proposer.pop(proposer, None)
            return
        self.untimely_seen += 1
        lo, hi = self.window_ms(round_)
        log.info(
            "untimely proposal height=%d round=%d proposer=%s: block time %s from our clock "
            "(timely: %s .. %s); prevoting nil",
            height,
            round_,
            proposer.hex()[:12],
            _seconds(offset_ms),
            _seconds(lo),
            _seconds(hi),
        )
        self._streak.append(Observation(proposer, offset_ms))
        if len(self._per_proposer) < MAX_TRACKED_PROPOSERS or proposer in self._per_proposer:
            self._per_proposer[proposer] = self._per_proposer.get(proposer, 0) + 1
        proposers = {o.proposer for o in self._streak}
        if len(self._streak) == UNTIMELY_STREAK and len(proposers) >= MIN_PROPOSERS_FOR_OWN_CLOCK:
            offsets = sorted(o.offset_ms for o in self._streak)
            if self._may_warn("own_clock"):
                log.warning(
                    "our clock is probably wrong: the last %d proposals, from %d validators, were all "
                    "untimely (their block times %s from our clock, median) and we prevote nil for them; "
                    "validators accept proposal times within %d ms of their clocks: sync this host's clock "
                    "(NTP: timedatectl status, chronyc tracking)",
                    len(offsets),
                    len(proposers),
                    _seconds(offsets[len(offsets) // 2]),
                    self.params.pbts_precision_ms,
                )
        elif self._per_proposer.get(proposer, 0) >= UNTIMELY_STREAK and self._may_warn(
            ("proposer", proposer)
        ):
            log.warning(
                "validator %s proposed %d untimely blocks in a row (last: block time %s from our clock): its "
                "clock is probably wrong; its rounds get nil prevotes and the next proposer's block is taken",
                proposer.hex()[:12],
                self._per_proposer[proposer],
                _seconds(offset_ms),
            )

    # ------------------------------------------------------------------ our proposals

    def own_proposal_rejected(self, height: int, round_: int, block_time_ms: int) -> None:
        """+2/3 of the power prevoted nil for the new block we proposed at (height, round)."""
        self.own_rejected += 1
        if self._may_warn("own_rejected"):
            log.warning(
                "our proposal height=%d round=%d was rejected: +2/3 of the power prevoted nil. Validators "
                "prevote nil for a block whose time is more than %d ms ahead of, or %d ms behind, their "
                "clocks; ours was %s (this host's clock): if this repeats and the block was valid, this "
                "host's clock is probably wrong (NTP: timedatectl status, chronyc tracking)",
                height,
                round_,
                self.params.pbts_precision_ms,
                self.params.pbts_precision_ms + message_delay_ms(self.params, round_),
                utc_text(block_time_ms),
            )

    # ------------------------------------------------------------------ helpers

    def window_ms(self, round_: int) -> tuple[int, int]:
        """Offsets (proposal time minus our clock) that are timely in `round_`."""
        return timely_window(0, self.params, round_)

    def _may_warn(self, kind: object) -> bool:
        now = self._monotonic()
        last = self._last_warned.get(kind)
        if last is not None and now - last < WARN_INTERVAL_S:
            return False
        if len(self._last_warned) >= MAX_TRACKED_PROPOSERS:
            self._last_warned.clear()
        self._last_warned[kind] = now
        return True
