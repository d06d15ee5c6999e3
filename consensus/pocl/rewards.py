"""Round reward arithmetic: integers only, exact sums, and pay for verified work only (DESIGN §5.2).

`round_reward` splits into the winners' pool `round_reward * (BPS - voter_share_bps) // BPS` and the
voters' pool (the rest); both are issued only for work the round verified (docs/pocl-protocol.md §9):

- winners share their pool in proportion to their GAIN over G_{r-1} (`finalize`: the median over the
  winner's scoring shards of its accuracy minus G_{r-1}'s, bps); a gain of 0 or less earns nothing, and
  when no winner gained the pool is not issued - a model that does not beat the current one is not paid
  for, whatever the ranking;
- paid voters (honest, valid, and winners of the round with a positive gain: evaluation alone earns
  nothing) share theirs in proportion to the information their shards carried (samples that G_r labels right and G_{r-1} got wrong); when that is
  0 for everyone the pool is not issued.

Each split uses the largest-remainder rule: everyone gets `floor(pool * w_i / W)`, then the units left
over go one each to the largest fractional remainders, ties to the earlier position (winners in ranking
order, voters in address order). Nothing is ever paid beyond `round_reward`; zero payouts are omitted.
"""

from __future__ import annotations

from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import ROLE_VOTER, ROLE_WINNER, Payout


def split_proportional(pool: int, weights: list[int]) -> list[int]:
    """Split `pool` by non-negative integer weights; sums to `pool` exactly (largest remainder), or to 0
    when every weight is 0."""
    if pool < 0 or any(w < 0 for w in weights):
        raise ValueError("pool and weights must be non-negative")
    total = sum(weights)
    if total == 0:
        return [0] * len(weights)
    shares = [pool * w // total for w in weights]
    left = pool - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(pool * weights[i] % total), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def compute_payouts(
    winners: list[bytes],
    winner_gains: list[int],
    voters: list[bytes],
    voter_information: list[int],
    params: PoclParams,
) -> list[Payout]:
    """Payouts for a round: winners (given order) then paid voters (address order), zero amounts left out.

    `winner_gains`: bps over G_{r-1}, one per winner (negative allowed: paid as 0); `voter_information`:
    samples, one per paid voter."""
    if len(winner_gains) != len(winners) or len(voter_information) != len(voters):
        raise ValueError("one gain per winner and one information count per voter")
    out = [
        Payout(w, ROLE_WINNER, amount)
        for w, amount in zip(
            winners, split_proportional(params.winners_pool, [max(0, g) for g in winner_gains])
        )
        if amount
    ]
    order = sorted(range(len(voters)), key=lambda k: voters[k])
    shares = split_proportional(params.voters_pool, [max(0, voter_information[k]) for k in order])
    out += [Payout(voters[k], ROLE_VOTER, amount) for k, amount in zip(order, shares) if amount]
    return out
