"""Reward arithmetic: integer, exact sums, defined remainder rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pocl.consensus.pocl.records import ROLE_VOTER, ROLE_WINNER
from pocl.consensus.pocl.rewards import compute_payouts, split_proportional

from tests.support.pocl_scenario import make_params

W1, W2, W3 = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
V1, V2 = b"\x11" * 20, b"\x12" * 20


@given(st.integers(0, 10**15), st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
def test_split_sums_exactly(pool: int, weights: list[int]) -> None:
    shares = split_proportional(pool, weights)
    assert sum(shares) == pool and all(s >= 0 for s in shares)
    if sum(weights):
        total = sum(weights)
        for s, w in zip(shares, weights):
            assert pool * w // total <= s <= pool * w // total + 1


def test_largest_remainder_then_earlier_position() -> None:
    assert split_proportional(10, [1, 1, 1]) == [4, 3, 3]
    assert split_proportional(11, [1, 1, 1]) == [4, 4, 3]
    assert split_proportional(100, [3, 3, 1]) == [43, 43, 14]  # 42.86, 42.86, 14.29
    assert split_proportional(7, [0, 0]) == [4, 3]  # all-zero weights: equal split
    assert split_proportional(5, []) == []


def test_payouts_split_pools_and_sum_to_round_reward() -> None:
    p = make_params(round_reward=1_000_003, voter_share_bps=2_000, min_miner_stake=2_000_000)
    out = compute_payouts([W2, W1], [9000, 8000], [V2, V1], p)
    assert [(x.miner, x.role) for x in out] == [
        (W2, ROLE_WINNER),
        (W1, ROLE_WINNER),
        (V1, ROLE_VOTER),
        (V2, ROLE_VOTER),
    ]
    winners = sum(x.amount for x in out if x.role == ROLE_WINNER)
    assert winners == p.winners_pool == 800_002
    assert out[0].amount > out[1].amount  # proportional to score
    assert sum(x.amount for x in out) == p.round_reward


def test_no_honest_voter_gives_everything_to_winners() -> None:
    p = make_params(round_reward=999)
    out = compute_payouts([W1, W2, W3], [1, 1, 1], [], p)
    assert [x.amount for x in out] == [333, 333, 333]


def test_nothing_paid_without_winners() -> None:
    assert compute_payouts([], [], [V1], make_params()) == []
