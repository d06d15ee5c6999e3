"""A peer's input never crashes the machine, and arbitrary Byzantine messages never break agreement."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pocl.consensus.bft.machine import (
    BlockReceived,
    CommitReceived,
    ConsensusMachine,
    Decide,
    NewHeight,
    ProposalReceived,
    TimeoutFired,
    VoteReceived,
)
from pocl.consensus.bft.messages import Proposal, ProposalMessage, make_vote
from pocl.ledger.block import NIL_HASH, VOTE_PRECOMMIT, VOTE_PREVOTE, Commit, CommitSig, Vote

from tests.support.bft_harness import (
    CHAIN_ID,
    PARAMS,
    MemorySigner,
    SimNetwork,
    keys,
    make_block,
    validator_set,
)

KEYS = keys(4)
VALS = validator_set(KEYS)
BLOCKS = [make_block(h, KEYS[0].address, f"fuzz{i}") for h in (1, 2) for i in range(3)]

heights = st.sampled_from([0, 1, 1, 1, 2, 3, 2**63])
rounds = st.one_of(st.integers(0, 3), st.sampled_from([-1, 7, 1000, 2**63 - 1, 2**64 - 1]))
values = st.sampled_from([NIL_HASH, *(b.hash for b in BLOCKS), b"\x00" * 32, b"\x01" * 5])
signers = st.sampled_from(range(5))  # 4 = an outsider


@st.composite
def events(draw):
    kind = draw(st.sampled_from(["vote", "vote", "vote", "proposal", "block", "commit", "timeout"]))
    h, r = draw(heights), draw(rounds)
    if kind == "vote":
        i = draw(signers)
        key = KEYS[i] if i < 4 else keys(1, "outsider")[0]
        v = make_vote(key, draw(st.sampled_from([CHAIN_ID, "other"])), draw(st.sampled_from([1, 2, 3])),
                      h, r, draw(values))
        if draw(st.booleans()) and draw(st.booleans()):
            v = Vote(v.chain_id, v.vote_type, v.height, v.round, v.block_hash, v.validator, bytes(64))
        return VoteReceived(v)
    if kind == "proposal":
        block = draw(st.sampled_from(BLOCKS))
        key = KEYS[draw(st.integers(0, 3))]
        p = Proposal.create(key, CHAIN_ID, h, r, draw(st.sampled_from([block.hash, BLOCKS[0].hash])),
                            draw(st.sampled_from([-5, -1, 0, 1, r])))
        return ProposalReceived(ProposalMessage(p, block))
    if kind == "block":
        return BlockReceived(draw(st.sampled_from(BLOCKS)))
    if kind == "commit":
        block = draw(st.sampled_from(BLOCKS))
        n = draw(st.integers(0, 4))
        sigs = [CommitSig(KEYS[i].pubkey, make_vote(KEYS[i], CHAIN_ID, VOTE_PRECOMMIT, block.height, 0,
                                                    block.hash).signature) for i in range(n)]
        return CommitReceived(block, Commit(block.height, 0, block.hash, sigs))
    return TimeoutFired(draw(st.sampled_from(["propose", "prevote", "precommit"])), h, r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=40), st.integers(0, 4))
def test_arbitrary_peer_input_never_crashes(evs, me: int) -> None:
    signer = MemorySigner(KEYS[me]) if me < 4 else None
    m = ConsensusMachine(CHAIN_ID, PARAMS, signer=signer, get_value=lambda h, r: BLOCKS[0] if h == 1 else None,
                         valid=lambda b: b.hash != BLOCKS[1].hash)
    m.handle(NewHeight(1, VALS))
    decided = []
    for ev in evs:
        decided += [a for a in m.handle(ev) if isinstance(a, Decide)]
    assert len(decided) <= 1
    if decided:  # only with +2/3 precommits (or a verified commit) for a valid block
        d = decided[0]
        assert d.block.hash != BLOCKS[1].hash and len(d.commit.signatures) >= 3


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([VOTE_PREVOTE, VOTE_PRECOMMIT]),
                          st.integers(1, 3), st.integers(0, 4), st.integers(0, 6)), max_size=30),
       st.integers(0, 10_000))
def test_one_byzantine_validator_spamming_signed_votes_cannot_break_agreement(spam, seed: int) -> None:
    """v3 is Byzantine: it signs whatever (type, height, round, value) and sends it to anyone."""
    net = SimNetwork(4, jitter_seed=seed)
    net.nodes["v3"].down = True
    byz = net.nodes["v3"].key
    net.start()
    for step, (target, _x, vtype, h, r, val) in enumerate(spam):
        value = NIL_HASH if val == 0 else make_block(h, byz.address, f"spam{val}").hash
        net.inject(f"v{target % 3}", make_vote(byz, CHAIN_ID, vtype, h, r, value))
        for _ in range(step % 7):
            net.step()
    net.run_until_height(3, ["v0", "v1", "v2"])
    for h in (1, 2, 3):
        assert len(net.decided_hashes(h)) == 1
