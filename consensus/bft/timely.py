"""Proposer-based timestamps (PBTS): the `timely` predicate of CometBFT's PBTS specification.

A block's time is its original proposer's clock when it built the block (`Chain.build_block`, forced above
the parent's time). Block validity (`valid(v)`) checks only that time increases: a node replaying history
cannot judge clocks. Instead a validator *prevotes* nil for a new proposal (the rule on line 22, valid
round -1) whose time is not timely on its own clock at receipt ([PBTS-RECEPTION-STEP.1]):

    receive - PRECISION - MSGDELAY(round)  <=  proposal_time  <=  receive + PRECISION

so no decided block carries a time that was not within those bounds of some honest validator's clock: one
validator (anything under a third of the power) with a wrong clock cannot move chain time, its proposals
just get nil prevotes and the round moves on to the next proposer. A re-proposed block (valid round >= 0)
keeps the time of the round it was first proposed in, which +2/3 already judged timely, and is not judged
again.

PRECISION bounds the difference between two honest clocks, MSGDELAY the time from reading the clock to the
proposal reaching every validator. As CometBFT does (`SynchronyParams.InRound`), MSGDELAY grows by 10 % a
round, compounded (in integers), so a network whose delay was under-estimated still gets proposals
accepted after a few rounds, and the window always outgrows the linearly growing propose timeout. The
growth stops at MAX_DELAY_GROWTH_ROUNDS (the round comes from a peer's message: bounded work). PRECISION
never grows: a clock ahead of the others by more than PRECISION is never accepted.

Pure: the node reads its clock when a proposal arrives (`node/consensus_driver.py`) and hands the machine
the verdict with the event, so the machine stays deterministic given its inputs.
"""

from __future__ import annotations

from pocl.ledger.params import ChainParams

DELAY_GROWTH_NUM, DELAY_GROWTH_DEN = 11, 10  # MSGDELAY(r) = MSGDELAY * 1.1**r (CometBFT's factor)
MAX_DELAY_GROWTH_ROUNDS = 64  # 1.1**64 ~ 446: a 3 s base reaches ~22 min; later rounds grow no more


def message_delay_ms(params: ChainParams, round_: int) -> int:
    """MSGDELAY(round): the base message delay times 1.1**round, rounded down, round capped."""
    r = min(max(round_, 0), MAX_DELAY_GROWTH_ROUNDS)
    return params.pbts_message_delay_ms * DELAY_GROWTH_NUM**r // DELAY_GROWTH_DEN**r


def timely_window(receive_time_ms: int, params: ChainParams, round_: int = 0) -> tuple[int, int]:
    """The inclusive [earliest, latest] proposal times that are timely for a proposal of `round_` received
    at `receive_time_ms` on the receiver's clock."""
    earliest = receive_time_ms - params.pbts_precision_ms - message_delay_ms(params, round_)
    latest = receive_time_ms + params.pbts_precision_ms
    return earliest, latest


def is_timely(proposal_time_ms: int, receive_time_ms: int, params: ChainParams, round_: int = 0) -> bool:
    """[PBTS-RECEPTION-STEP.1]: the proposal time is within PRECISION ahead of the receiver's clock and
    within PRECISION + MSGDELAY(round) behind it."""
    earliest, latest = timely_window(receive_time_ms, params, round_)
    return earliest <= proposal_time_ms <= latest
