"""Proposer selection: CometBFT proposer priority, replayed deterministically per (height, round)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pocl.consensus.bft.proposer import (
    MAX_CYCLE,
    ProposerSchedule,
    increment_priorities,
    proposer_for,
    proposer_index,
    proposer_weights,
)
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.keys import PrivateKey


def vset(powers: list[int], prefix: str = "p") -> ValidatorSet:
    return ValidatorSet([(PrivateKey.from_seed_text(f"{prefix}{i}").pubkey, p) for i, p in enumerate(powers)])


def cometbft_reference(vals: ValidatorSet, steps: int) -> list[int]:
    """A straightforward stateful CometBFT loop (priorities carried across blocks from zero)."""
    prio = [0] * len(vals)
    powers = [v.power for v in vals]
    total = sum(powers)
    out = []
    for _ in range(steps):
        for i in range(len(prio)):
            prio[i] += powers[i]
        best = max(range(len(prio)), key=lambda i: (prio[i], [-b for b in vals.validators[i].address]))
        prio[best] -= total
        out.append(best)
    return out


def test_matches_a_stateful_cometbft_loop_for_round_zero() -> None:
    vals = vset([1, 2, 3, 4, 7])
    ref = cometbft_reference(vals, 200)
    assert [proposer_index(vals, h, 0) for h in range(1, 201)] == ref


def test_rounds_continue_the_sequence() -> None:
    vals = vset([5, 1, 3])
    for h in range(1, 20):
        for r in range(5):
            assert proposer_index(vals, h, r) == proposer_index(vals, h + r, 0)


def test_fairness_proportional_to_stake() -> None:
    powers = [1, 2, 3, 4, 10]
    vals = vset(powers)
    total = sum(powers)
    picks = Counter(proposer_index(vals, h, 0) for h in range(1, 50 * total + 1))
    for i, v in enumerate(vals):
        assert picks[i] == 50 * v.power  # exact over whole periods


def test_fairness_over_heights_and_rounds_mixed() -> None:
    powers = [10, 30, 60]
    vals = vset(powers)
    picks = Counter()
    for h in range(1, 2001):
        for r in range(h % 3):
            picks[proposer_for(vals, h, r).power] += 1
    n = sum(picks.values())
    for p in powers:
        assert abs(picks[p] / n - p / 100) < 0.02


def test_equal_powers_round_robin_by_address() -> None:
    vals = vset([7, 7, 7, 7])
    first = [proposer_index(vals, h, 0) for h in range(1, 9)]
    assert first[:4] == [0, 1, 2, 3]  # ties go to the smaller address; the set is sorted by address
    assert first[4:] == first[:4]


def test_identical_across_instances_and_orderings() -> None:
    pairs = [(PrivateKey.from_seed_text(f"q{i}").pubkey, p) for i, p in enumerate([3, 9, 4, 1, 5])]
    a = ValidatorSet(pairs)
    b = ValidatorSet(list(reversed(pairs)))
    seq_a = [proposer_for(a, h, r).pubkey for h in range(1, 60) for r in range(3)]
    seq_b = [proposer_for(b, h, r).pubkey for h in range(1, 60) for r in range(3)]
    fresh = ProposerSchedule(proposer_weights([v.power for v in a]), [v.address for v in a])
    seq_fresh = [a.validators[fresh.pick(h + r)].pubkey for h in range(1, 60) for r in range(3)]
    assert seq_a == seq_b == seq_fresh


def test_large_heights_are_cheap_and_periodic() -> None:
    vals = vset([2, 3])
    assert proposer_index(vals, 10**12, 0) == proposer_index(vals, 10**12 + 5, 0)
    assert proposer_index(vals, 10**12 + 1, 3) == proposer_index(vals, 10**12 + 4, 0)


def test_huge_stakes_are_quantised_but_stay_proportional() -> None:
    powers = [10**18, 3 * 10**18 + 7, 6 * 10**18 - 5, 12_345]
    vals = vset(powers)
    w = proposer_weights([v.power for v in vals])
    assert sum(w) <= MAX_CYCLE + len(w)
    total = sum(powers)
    picks = Counter(proposer_index(vals, h, 0) for h in range(1, 20_001))
    for i, v in enumerate(vals):
        share = picks[i] / 20_000
        assert abs(share - v.power / total) < 0.002
        assert picks[i] >= 1  # even a tiny validator proposes sometimes


def test_gcd_reduction_keeps_the_sequence() -> None:
    a = vset([1, 2, 3])
    b = vset([1000, 2000, 3000])
    assert [proposer_index(a, h, 0) for h in range(1, 30)] == [proposer_index(b, h, 0) for h in range(1, 30)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=8))
def test_one_cycle_picks_each_validator_by_weight(powers: list[int]) -> None:
    """W picks from zero pick each validator `weight` times (±1 when CometBFT's rescale kicks in)."""
    addrs = [bytes([i]) * 20 for i in range(len(powers))]
    prio = [0] * len(powers)
    rescaled = False
    picks: Counter[int] = Counter()
    for _ in range(sum(powers)):
        rescaled |= max(prio) - min(prio) > 2 * sum(powers)
        picks[increment_priorities(prio, powers, addrs)] += 1
    for i, p in enumerate(powers):
        assert abs(picks[i] - p) <= (1 if rescaled else 0)
    if not rescaled:
        assert prio == [0] * len(powers)


def test_skewed_sets_stay_within_one_pick_per_cycle() -> None:
    for powers in ([1] * 30 + [2000], [1, 2, 3, 1000, 5000, 1, 1000, 3] * 4, [1] * 50 + [7, 900]):
        vals = vset(powers, prefix="skew")
        weights = proposer_weights([v.power for v in vals])
        w = sum(weights)
        picks = Counter(proposer_index(vals, h, 0) for h in range(1, 3 * w + 1))
        for i, weight in enumerate(weights):
            assert abs(picks[i] - 3 * weight) <= 3


def test_rescale_and_centre_like_cometbft() -> None:
    # spread 100 > 2 * total (2 * 3 = 6): ratio ceil(100 / 6) = 17; Go division truncates toward zero
    prio = [50, -50, 0]
    addrs = [b"\x01" * 20, b"\x02" * 20, b"\x03" * 20]
    chosen = increment_priorities(prio, [1, 1, 1], addrs)
    # rescaled: [2, -2, 0]; centred (avg 0); incremented: [3, -1, 1]; winner 0 -> [0, -1, 1]
    assert chosen == 0 and prio == [0, -1, 1]
    prio = [4, 1, 1]  # sum 6, avg 2 -> [2, -1, -1] -> +1 -> [3, 0, 0] -> winner 0 -> [0, 0, 0]
    assert increment_priorities(prio, [1, 1, 1], addrs) == 0 and prio == [0, 0, 0]
    # spread 7 > 6: ratio 2, -7 / 2 truncates to -3 (Go) -> [-3, 0, 0]; floor average of -3/3 = -1
    # (big.Int Div) -> [-2, 1, 1]; +1 -> [-1, 2, 2]; tie between 1 and 2 -> smaller address 1 wins
    prio = [-7, 0, 0]
    assert increment_priorities(prio, [1, 1, 1], addrs) == 1 and prio == [-1, -1, 2]
    prio = [-8, 0, 1]  # spread 9: ratio 2 -> [-4, 0, 0]; avg floor(-4/3) = -2 -> [-2, 2, 2] -> [-1, 3, 3]
    assert increment_priorities(prio, [1, 1, 1], addrs) == 1 and prio == [-1, 0, 3]


def test_rejects_bad_height_or_round() -> None:
    vals = vset([1])
    with pytest.raises(ValueError):
        proposer_index(vals, 0, 0)
    with pytest.raises(ValueError):
        proposer_index(vals, 1, -1)


def exact_cycle(weights: list[int], addrs: list[bytes]) -> tuple[list[int], int]:
    prio = [0] * len(weights)
    picks, rescales = [], 0
    for _ in range(sum(weights)):
        rescales += max(prio) - min(prio) > 2 * sum(weights)
        picks.append(increment_priorities(prio, weights, addrs))
    return picks, rescales


def test_vectorised_replay_matches_the_exact_step() -> None:
    vals = vset([(i * 7919) % 97 + 1 for i in range(40)] + [3000], prefix="big")
    addrs = [v.address for v in vals]
    weights = proposer_weights([v.power for v in vals])
    exact, _ = exact_cycle(weights, addrs)
    fast = ProposerSchedule(weights, addrs)
    assert [fast.pick(k) for k in range(1, len(exact) + 1)] == exact
    assert [proposer_index(vals, k, 0) for k in range(1, 300)] == exact[:299]
    # a set where CometBFT's rescaling triggers once in the cycle (found by search)
    weights = [200, 1000, 1000, 200, 200, 2, 2, 2, 1000, 200, 1, 1, 2, 1000, 1, 3, 1, 3, 200, 1000, 200,
               200, 200, 1000, 200, 2, 3, 1, 1, 2]
    addrs = [i.to_bytes(20, "big") for i in range(len(weights))]
    exact, rescales = exact_cycle(weights, addrs)
    assert rescales == 1
    fast = ProposerSchedule(weights, addrs)
    assert [fast.pick(k) for k in range(1, len(exact) + 1)] == exact
    assert fast.pick(len(exact) + 3) == exact[2]  # restart from zero every W picks
