"""Round reward arithmetic: integers only, exact sums (DESIGN §5.2).

`round_reward` splits into the winners' pool `round_reward * (BPS - voter_share_bps) // BPS` and the
voters' pool (the rest). Winners share theirs in proportion to their scores (equally if every score is
0), honest voters share theirs equally. Each split uses the largest-remainder rule: everyone gets
`floor(pool * w_i / W)`, then the units left over go one each to the largest fractional remainders,
ties to the earlier position (winners in ranking order, voters in address order). If there is no honest
voter, the voters' pool goes to the winners. So whenever anything is paid, exactly `round_reward` is.
"""

from __future__ import annotations

from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import ROLE_VOTER, ROLE_WINNER, Payout


def split_proportional(pool: int, weights: list[int]) -> list[int]:
    """Split `pool` by non-negative integer weights; sums to `pool` exactly (largest remainder)."""
    if pool < 0 or any(w < 0 for w in weights):
        raise ValueError("pool and weights must be non-negative")
    if not weights:
        return []
    if sum(weights) == 0:
        weights = [1] * len(weights)
    total = sum(weights)
    shares = [pool * w // total for w in weights]
    left = pool - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(pool * weights[i] % total), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def compute_payouts(
    winners: list[bytes], winner_scores: list[int], honest_voters: list[bytes], params: PoclParams
) -> list[Payout]:
    """Payouts for a round: winners (given order) then honest voters (address order); [] if no winner."""
    if not winners:
        return []
    if len(winner_scores) != len(winners):
        raise ValueError("one score per winner")
    voters = sorted(honest_voters)
    winners_pool = params.winners_pool if voters else params.round_reward
    voters_pool = params.round_reward - winners_pool
    out = [
        Payout(w, ROLE_WINNER, amount)
        for w, amount in zip(winners, split_proportional(winners_pool, winner_scores))
    ]
    out += [
        Payout(v, ROLE_VOTER, amount)
        for v, amount in zip(voters, split_proportional(voters_pool, [1] * len(voters)))
    ]
    return out
