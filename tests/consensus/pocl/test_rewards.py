"""Reward arithmetic: integer, exact sums, defined remainder rule; pay for positive gain and information
only, nothing issued when there is none."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pocl.consensus.pocl.records import ROLE_VOTER, ROLE_WINNER, Payout
from pocl.consensus.pocl.rewards import compute_payouts, split_proportional

from tests.support.pocl_scenario import make_params

W1, W2, W3 = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
V1, V2 = b"\x11" * 20, b"\x12" * 20


@given(st.integers(0, 10**15), st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
def test_split_sums_exactly(pool: int, weights: list[int]) -> None:
    shares = split_proportional(pool, weights)
    assert all(s >= 0 for s in shares) and len(shares) == len(weights)
    total = sum(weights)
    if total:
        assert sum(shares) == pool
        for s, w in zip(shares, weights):
            assert pool * w // total <= s <= pool * w // total + 1
            if w == 0:
                assert s == 0  # a zero weight never gets a remainder unit
    else:
        assert shares == [0] * len(weights)  # nothing to be proportional to: nothing is issued


def test_largest_remainder_then_earlier_position() -> None:
    assert split_proportional(10, [1, 1, 1]) == [4, 3, 3]
    assert split_proportional(11, [1, 1, 1]) == [4, 4, 3]
    assert split_proportional(100, [3, 3, 1]) == [43, 43, 14]  # 42.86, 42.86, 14.29
    assert split_proportional(10, [0, 1, 0, 2]) == [0, 3, 0, 7]  # 3.33, 6.67
    assert split_proportional(7, [0, 0]) == [0, 0]  # all-zero weights: nothing issued
    assert split_proportional(5, []) == []


def test_split_rejects_negative_inputs() -> None:
    with pytest.raises(ValueError):
        split_proportional(-1, [1])
    with pytest.raises(ValueError):
        split_proportional(10, [1, -1])


def test_payouts_split_pools_by_gain_and_information() -> None:
    p = make_params(round_reward=1_000_003, voter_share_bps=2_000, min_miner_stake=2_000_000)
    out = compute_payouts([W2, W1], [900, 300], [W2, W1], [5, 15], p)
    assert [(x.miner, x.role) for x in out] == [
        (W2, ROLE_WINNER),  # winners in the given (ranking) order
        (W1, ROLE_WINNER),
        (W1, ROLE_VOTER),  # voters in address order
        (W2, ROLE_VOTER),
    ]
    assert p.winners_pool == 800_002 and p.voters_pool == 200_001
    assert [x.amount for x in out] == [600_002, 200_000, 150_001, 50_000]  # 3:1 by gain, 3:1 by information
    assert sum(x.amount for x in out) == p.round_reward


def test_only_positive_gain_is_paid() -> None:
    p = make_params(round_reward=1_000, voter_share_bps=2_000)
    out = compute_payouts([W1, W2, W3], [0, 40, -300], [], [], p)
    assert [(x.miner, x.role, x.amount) for x in out] == [(W2, ROLE_WINNER, p.winners_pool)]
    # no winner gained: the winners' pool is not issued at all (not split equally, not to anyone)
    assert compute_payouts([W1, W2], [0, -5], [], [], p) == []
    # and a better rank does not earn more than a larger gain
    out = compute_payouts([W1, W2], [10, 30], [], [], p)
    assert [x.amount for x in out] == [200, 600]


def test_voters_paid_by_information_only() -> None:
    p = make_params(round_reward=1_000, voter_share_bps=2_000)
    # W1 has a positive gain; of the paid voters only the informative ones get anything
    out = compute_payouts([W1], [100], [V1, V2], [0, 7], p)
    assert [(x.miner, x.role, x.amount) for x in out] == [
        (W1, ROLE_WINNER, p.winners_pool),
        (V2, ROLE_VOTER, p.voters_pool),
    ]
    # no information anywhere: the voters' pool is not issued
    out = compute_payouts([W1], [100], [V1, V2], [0, 0], p)
    assert [(x.miner, x.role) for x in out] == [(W1, ROLE_WINNER)]
    assert sum(x.amount for x in out) == p.winners_pool < p.round_reward


def test_nothing_issued_without_gain_or_information() -> None:
    """The rule that replaced "without honest voters everything goes to the winners": nothing is paid for
    work the round did not verify, so a round can issue less than round_reward - or nothing."""
    p = make_params(round_reward=999)
    assert compute_payouts([W1, W2, W3], [1, 1, 1], [], [], p) == [
        Payout(W1, ROLE_WINNER, 267),
        Payout(W2, ROLE_WINNER, 266),
        Payout(W3, ROLE_WINNER, 266),
    ]  # winners_pool = 799: the voters' 200 are not issued without paid voters
    assert compute_payouts([W1, W2, W3], [0, 0, 0], [W1], [0], p) == []


def test_nothing_paid_without_winners() -> None:
    assert compute_payouts([], [], [], [], make_params()) == []


def test_one_gain_per_winner_and_one_information_per_voter() -> None:
    with pytest.raises(ValueError):
        compute_payouts([W1], [], [], [], make_params())
    with pytest.raises(ValueError):
        compute_payouts([W1], [1], [V1], [], make_params())


@given(
    st.lists(st.integers(-10_000, 10_000), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.integers(1, 10**12),
)
def test_payouts_never_exceed_the_round_reward(gains: list[int], info: list[int], reward: int) -> None:
    p = make_params(round_reward=reward, min_miner_stake=10**13)
    winners = [bytes([1, i]) * 10 for i in range(len(gains))]
    voters = [bytes([2, i]) * 10 for i in range(len(info))]
    out = compute_payouts(winners, gains, voters, info, p)
    assert sum(x.amount for x in out) <= p.round_reward
    assert all(x.amount > 0 for x in out)
    won = sum(x.amount for x in out if x.role == ROLE_WINNER)
    assert won == (p.winners_pool if any(g > 0 for g in gains) else 0)
    voted = sum(x.amount for x in out if x.role == ROLE_VOTER)
    assert voted == (p.voters_pool if any(info) else 0)
    for w, g in zip(winners, gains):
        if g <= 0:
            assert all(x.miner != w for x in out)
