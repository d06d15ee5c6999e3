"""Proposer-based timestamps: the `timely` predicate and the machine's prevote rule (line 22 only)."""

from __future__ import annotations

import pytest
from pocl.consensus.bft.machine import (
    Broadcast,
    ConsensusMachine,
    NewHeight,
    ProposalReceived,
    TimeoutFired,
    VoteReceived,
)
from pocl.consensus.bft.messages import Proposal, ProposalMessage, VoteMessage, make_vote
from pocl.consensus.bft.proposer import proposer_for
from pocl.consensus.bft.timely import (
    MAX_DELAY_GROWTH_ROUNDS,
    is_timely,
    message_delay_ms,
    timely_window,
)
from pocl.ledger.block import NIL_HASH, VOTE_PRECOMMIT, VOTE_PREVOTE, Block
from pocl.ledger.params import ChainParams

from tests.support.bft_harness import (
    CHAIN_ID,
    PARAMS,
    MemorySigner,
    SimNetwork,
    keys,
    make_block,
    validator_set,
)

P = ChainParams(pbts_precision_ms=500, pbts_message_delay_ms=3_000)
NOW = 1_800_000_000_000
HOUR_MS = 3_600_000
YEAR_MS = 365 * 24 * HOUR_MS

# --------------------------------------------------------------------------- the predicate


def test_window_edges_are_inclusive() -> None:
    assert timely_window(NOW, P) == (NOW - 3_500, NOW + 500)
    assert is_timely(NOW, NOW, P)
    assert is_timely(NOW + 500, NOW, P)  # a proposer's clock at most PRECISION ahead of ours
    assert not is_timely(NOW + 501, NOW, P)
    assert is_timely(NOW - 3_500, NOW, P)  # PRECISION + MSGDELAY behind: built, sent, received late
    assert not is_timely(NOW - 3_501, NOW, P)


@pytest.mark.parametrize("offset", [HOUR_MS, YEAR_MS, -HOUR_MS, -YEAR_MS])
def test_a_clock_an_hour_or_a_year_off_is_never_timely(offset: int) -> None:
    for round_ in (0, 1, 10, 100):
        assert not is_timely(NOW + offset, NOW, P, round_)


def test_message_delay_grows_with_the_round_precision_does_not() -> None:
    assert message_delay_ms(P, 0) == 3_000
    assert message_delay_ms(P, 1) == 3_300
    assert message_delay_ms(P, 2) == 3_630  # compounded, as CometBFT's 1.1**round
    assert message_delay_ms(P, 10) == 7_781
    capped = message_delay_ms(P, MAX_DELAY_GROWTH_ROUNDS)
    assert message_delay_ms(P, 2**62) == capped  # a peer's huge round number costs nothing
    # the window outgrows the linearly growing propose timeout: PBTS never binds before the timeout does
    d = ChainParams()
    assert all(
        d.pbts_precision_ms + message_delay_ms(d, r) > d.timeout_propose_ms + r * d.timeout_propose_delta_ms
        for r in range(200)
    )
    late = NOW - 500 - 3_300
    assert not is_timely(late, NOW, P, 0) and is_timely(late, NOW, P, 1)  # an under-estimated delay recovers
    assert not is_timely(NOW + 501, NOW, P, 1_000)  # a clock ahead never does
    assert message_delay_ms(P, -1) == 3_000  # defensive: never shrinks below the base


def test_defaults_fit_the_chain() -> None:
    d = ChainParams()
    assert (d.pbts_precision_ms, d.pbts_message_delay_ms) == (500, 3_000)
    # an honest proposer's block built and gossiped within a propose timeout is timely everywhere
    assert d.pbts_precision_ms + d.pbts_message_delay_ms > d.timeout_propose_ms


# --------------------------------------------------------------------------- one machine, scripted


class Machine:
    """One validator that proposes in none of rounds 0-1 of heights 1-2, fed hand-made messages."""

    def __init__(self) -> None:
        self.ks = keys(4)
        self.vals = validator_set(self.ks)
        proposers = {proposer_for(self.vals, h, r).pubkey for h in (1, 2) for r in range(2)}
        self.me = next(k for k in self.ks if k.pubkey not in proposers)
        self.others = [k for k in self.ks if k is not self.me]
        self.m = ConsensusMachine(
            CHAIN_ID, PARAMS, signer=MemorySigner(self.me), get_value=lambda h, r: None, valid=lambda b: True
        )
        self.m.handle(NewHeight(1, self.vals))

    def proposal(self, height: int, round_: int, block: Block, pol_round: int = -1) -> ProposalMessage:
        k = next(k for k in self.ks if k.pubkey == proposer_for(self.vals, height, round_).pubkey)
        return ProposalMessage(Proposal.create(k, CHAIN_ID, height, round_, block.hash, pol_round), block)

    def prevotes(self, actions: list) -> list[bytes]:
        return [
            a.message.vote.block_hash
            for a in actions
            if isinstance(a, Broadcast)
            and isinstance(a.message, VoteMessage)
            and a.message.vote.vote_type == VOTE_PREVOTE
        ]

    def votes(self, vote_type: int, round_: int, value: bytes) -> None:
        for k in self.others:
            self.m.handle(VoteReceived(make_vote(k, CHAIN_ID, vote_type, self.m.height, round_, value)))


def test_untimely_new_proposal_gets_a_nil_prevote() -> None:
    s = Machine()
    v = make_block(1, b"\x01" * 20, "v")
    assert s.prevotes(s.m.handle(ProposalReceived(s.proposal(1, 0, v), timely=False))) == [NIL_HASH]


def test_timely_new_proposal_gets_a_prevote() -> None:
    s = Machine()
    v = make_block(1, b"\x01" * 20, "v")
    assert s.prevotes(s.m.handle(ProposalReceived(s.proposal(1, 0, v), timely=True))) == [v.hash]


def test_only_the_first_receipt_counts() -> None:
    """A copy that arrives later (re-broadcast) with another verdict changes nothing: the first receipt."""
    s = Machine()
    v = make_block(1, b"\x01" * 20, "v")
    msg = s.proposal(1, 0, v)
    assert s.prevotes(s.m.handle(ProposalReceived(msg, timely=False))) == [NIL_HASH]
    assert s.m.handle(ProposalReceived(msg, timely=True)) == []


def test_a_reproposed_block_keeps_its_time_and_is_not_judged_again() -> None:
    """Line 28: +2/3 judged v timely in round 0; its re-proposal in round 1 (pol_round 0) carries the
    same, now old, time and is prevoted even if the receiver's clock would call it untimely."""
    s = Machine()
    v = make_block(1, b"\x01" * 20, "v")
    s.m.handle(ProposalReceived(s.proposal(1, 0, v), timely=True))
    s.votes(VOTE_PREVOTE, 0, v.hash)  # polka: lock on v
    s.votes(VOTE_PRECOMMIT, 0, NIL_HASH)
    s.m.handle(TimeoutFired("precommit", 1, 0))
    assert s.m.round == 1 and s.m.locked_value == v
    acts = s.m.handle(ProposalReceived(s.proposal(1, 1, v, pol_round=0), timely=False))
    assert s.prevotes(acts) == [v.hash]


def test_a_buffered_next_height_proposal_keeps_its_verdict() -> None:
    """Judged at receipt while we were still at height 1; the verdict applies when height 2 starts."""
    s = Machine()
    v2 = make_block(2, b"\x01" * 20, "v2")
    assert s.m.handle(ProposalReceived(s.proposal(2, 0, v2), timely=False)) == []
    acts = s.m.handle(NewHeight(2, s.vals))
    assert s.prevotes(acts) == [NIL_HASH]


# --------------------------------------------------------------------------- a network with clocks


@pytest.mark.parametrize("skew_ms", [HOUR_MS, YEAR_MS, -HOUR_MS])
def test_a_skewed_proposer_cannot_move_chain_time(skew_ms: int) -> None:
    """The round-0 proposer of every height has a clock an hour/a year ahead (or an hour behind): the others
    prevote nil for its blocks, the round moves on to an honest proposer, and every decided block's time is
    within the timely window of true time."""
    net = SimNetwork(4, pbts=True)
    skewed = proposer_for(net.validators, 1, 0).pubkey
    name = net.node_of(skewed).name
    net.clock_skew_ms[name] = skew_ms
    net.start()
    net.run_until_height(6)
    honest = [n for n in net.nodes if n != name]
    skewed_heights = 0
    for h in range(1, 7):
        assert len(net.decided_hashes(h)) == 1
        d = net.nodes[honest[0]].decisions[h]
        assert d.block.header.proposer != net.nodes[name].key.address  # never the skewed proposer's block
        true_now = net.clock_ms(honest[0])  # honest clocks are true time
        assert true_now - 10_000 <= d.block.header.time_ms <= true_now
        if proposer_for(net.validators, h, 0).pubkey == skewed:
            skewed_heights += 1
            assert d.round >= 1  # its round timed out
            for n in honest:  # line 22 with timely = False
                prevotes = [
                    a.message.vote.block_hash
                    for a in net.nodes[n].sent
                    if isinstance(a, Broadcast)
                    and isinstance(a.message, VoteMessage)
                    and (a.message.vote.height, a.message.vote.round, a.message.vote.vote_type)
                    == (h, 0, VOTE_PREVOTE)
                ]
                assert prevotes == [NIL_HASH]
    assert skewed_heights >= 1


def test_without_skew_every_height_decides_in_round_zero() -> None:
    net = SimNetwork(4, pbts=True)
    net.start()
    net.run_until_height(4)
    assert all(net.nodes["v0"].decisions[h].round == 0 for h in range(1, 5))
