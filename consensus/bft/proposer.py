"""Proposer selection: CometBFT's proposer-priority algorithm, replayed from a chain-derived start.

One step (CometBFT `IncrementProposerPriority(1)`): rescale priorities if their spread exceeds
2 × total power (integer division, truncating toward zero like Go), centre them on their floor average,
add each validator's power to its priority, pick the highest priority (ties: the smaller address),
and subtract the total power from the winner's priority.

**Choice (documented, same on every node and after restarts).** CometBFT carries the priorities in
its state across heights. We carry nothing: the priorities are a pure function of the validator set
and one index. Starting from all-zero priorities, pick number k (k = 1, 2, ...) defines the sequence,
and

    proposer(height, round) = pick number ((height + round - 1) mod W) + 1,   W = total weight

so each new height advances the sequence by one (as CometBFT increments once per block) and each new
round within a height by one more (as CometBFT's `IncrementProposerPriority(round)` on a copy), and the
priorities restart from zero every W picks. Without CometBFT's rescaling, W picks from zero pick every
validator exactly `weight` times and end at all-zero priorities (smooth weighted round robin), so the
restart changes nothing; for very skewed sets the rescaling step can trigger and a validator's count in
a cycle can then differ from its weight by one (measured; checked by a test). At most W picks are ever
replayed, and each validator set's schedule is memoised.

To keep the period (and the replay) small, weights are the powers divided by their gcd, and when the
total would exceed `MAX_CYCLE` they are quantised to `max(1, power * MAX_CYCLE // total)`. A
validator's share of proposals then matches its share of stake to within about 1/MAX_CYCLE of the total
(plus at least one slot per cycle for the smallest validator). Voting power is never quantised.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
from pocl.consensus.bft.votes import Validator, ValidatorSet

PRIORITY_WINDOW_SIZE_FACTOR = 2  # CometBFT: rescale when max - min priority > 2 × total power
MAX_CYCLE = 10_000  # upper bound (≈) on the period of the proposer sequence
NUMPY_MIN_VALIDATORS = 16  # from this size the replay runs vectorised (same integers, same picks)


def _go_div(a: int, b: int) -> int:
    """Integer division truncating toward zero (Go's `/` on int64)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def proposer_weights(powers: list[int]) -> list[int]:
    """Weights used for selection: powers reduced by their gcd, quantised if the total exceeds MAX_CYCLE."""
    g = 0
    for p in powers:
        g = gcd(g, p)
    weights = [p // g for p in powers]
    total = sum(weights)
    if total > MAX_CYCLE:
        weights = [max(1, w * MAX_CYCLE // total) for w in weights]
        g = 0
        for w in weights:
            g = gcd(g, w)
        weights = [w // g for w in weights]
    return weights


def increment_priorities(priorities: list[int], weights: list[int], addresses: list[bytes]) -> int:
    """One CometBFT `IncrementProposerPriority(1)` in place; returns the index of the chosen proposer."""
    total = sum(weights)
    n = len(priorities)
    # RescalePriorities(2 * total)
    diff_max = PRIORITY_WINDOW_SIZE_FACTOR * total
    diff = max(priorities) - min(priorities)
    if diff > diff_max:
        ratio = (diff + diff_max - 1) // diff_max
        for i in range(n):
            priorities[i] = _go_div(priorities[i], ratio)
    # shiftByAvgProposerPriority (big.Int Div: Euclidean, i.e. floor for a positive divisor)
    avg = sum(priorities) // n
    if avg:
        for i in range(n):
            priorities[i] -= avg
    # incrementProposerPriority
    best = 0
    for i in range(n):
        priorities[i] += weights[i]
        if i and (priorities[i] > priorities[best] or (
            priorities[i] == priorities[best] and addresses[i] < addresses[best]
        )):
            best = i
    priorities[best] -= total
    return best


class ProposerSchedule:
    """The periodic proposer sequence of one validator set, computed lazily and memoised."""

    def __init__(self, weights: list[int], addresses: list[bytes]) -> None:
        self.weights = weights
        self.addresses = addresses
        self.period = sum(weights)  # priorities restart from zero every `period` picks
        self._priorities = [0] * len(weights)
        self._picks: list[int] = []  # _picks[k-1] = index chosen by pick k

    def pick(self, k: int) -> int:
        """Index (in validator-set order) chosen by pick number k >= 1."""
        if k < 1:
            raise ValueError("pick number starts at 1")
        pos = (k - 1) % self.period
        if len(self._picks) <= pos:
            if len(self.weights) >= NUMPY_MIN_VALIDATORS:
                self._advance_vectorised(pos + 1 - len(self._picks))
            while len(self._picks) <= pos:
                self._picks.append(increment_priorities(self._priorities, self.weights, self.addresses))
        return self._picks[pos]

    def _advance_vectorised(self, steps: int) -> None:
        """`increment_priorities` for large sets with numpy int64 (the same integers, so the same picks:
        checked by a test). Priorities stay within a few × total ≤ ~MAX_CYCLE, far from overflow."""
        total = sum(self.weights)
        n = len(self.weights)
        diff_max = PRIORITY_WINDOW_SIZE_FACTOR * total
        prio = np.array(self._priorities, dtype=np.int64)
        w = np.array(self.weights, dtype=np.int64)
        picks = self._picks
        for _ in range(steps):
            diff = int(prio.max()) - int(prio.min())
            if diff > diff_max:
                ratio = (diff + diff_max - 1) // diff_max
                prio = np.sign(prio) * (np.abs(prio) // ratio)  # Go: truncate toward zero
            avg = int(prio.sum()) // n
            if avg:
                prio -= avg
            prio += w
            best = int(prio.argmax())  # first maximum = smallest address (the set is sorted)
            prio[best] -= total
            picks.append(best)
        self._priorities = [int(x) for x in prio]


@lru_cache(maxsize=32)
def _schedule(validators: tuple[tuple[bytes, int], ...]) -> ProposerSchedule:
    """Memoised pure function of the (address, power) tuple."""
    addresses = [a for a, _p in validators]
    return ProposerSchedule(proposer_weights([p for _a, p in validators]), addresses)


def schedule_for(validator_set: ValidatorSet) -> ProposerSchedule:
    return _schedule(tuple((v.address, v.power) for v in validator_set))


def pick_number(height: int, round_: int) -> int:
    if height < 1 or round_ < 0:
        raise ValueError("height starts at 1 and round at 0")
    return height + round_


def proposer_index(validator_set: ValidatorSet, height: int, round_: int) -> int:
    """Index in validator-set (address) order of the proposer of (height, round)."""
    return schedule_for(validator_set).pick(pick_number(height, round_))


def proposer_for(validator_set: ValidatorSet, height: int, round_: int) -> Validator:
    """The validator that proposes at (height, round): the one selection rule every node runs."""
    return validator_set.validators[proposer_index(validator_set, height, round_)]
