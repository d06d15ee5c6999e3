"""Algorithm 1 scenarios on a deterministic in-memory network of state machines."""

from __future__ import annotations

from pocl.consensus.bft.commit import verify_commit
from pocl.consensus.bft.machine import (
    Broadcast,
    ConsensusMachine,
    Decide,
    NewHeight,
    ProposalReceived,
    ScheduleTimeout,
    Step,
    TimeoutFired,
    VoteReceived,
    timeout_duration_ms,
)
from pocl.consensus.bft.messages import Proposal, ProposalMessage, VoteMessage, make_vote
from pocl.consensus.bft.proposer import proposer_for
from pocl.ledger.block import NIL_HASH, VOTE_PRECOMMIT, VOTE_PREVOTE, Block, Vote

from tests.support.bft_harness import (
    CHAIN_ID,
    PARAMS,
    MemorySigner,
    SimNetwork,
    keys,
    make_block,
    validator_set,
)


def name_of(net: SimNetwork, pubkey: bytes) -> str:
    return net.node_of(pubkey).name


def proposer_name(net: SimNetwork, height: int, round_: int) -> str:
    return name_of(net, proposer_for(net.validators, height, round_).pubkey)


def own_votes(net: SimNetwork, name: str, height: int, round_: int, vote_type: int) -> list[Vote]:
    return [
        a.message.vote
        for a in net.nodes[name].sent
        if isinstance(a, Broadcast) and isinstance(a.message, VoteMessage)
        and (a.message.vote.height, a.message.vote.round, a.message.vote.vote_type) == (height, round_, vote_type)
    ]


def own_proposals(net: SimNetwork, name: str, height: int) -> list[Proposal]:
    return [
        a.message.proposal
        for a in net.nodes[name].sent
        if isinstance(a, Broadcast) and isinstance(a.message, ProposalMessage) and a.message.proposal.height == height
    ]


def assert_agreement(net: SimNetwork, heights: range) -> None:
    for h in heights:
        assert len(net.decided_hashes(h)) == 1, f"disagreement at height {h}"


# --------------------------------------------------------------------------- happy path


def test_happy_path_four_validators_and_an_observer() -> None:
    net = SimNetwork(4, observers=1)
    net.start()
    net.run_until_height(5)
    assert_agreement(net, range(1, 6))
    for h in range(1, 6):
        for node in net.nodes.values():
            d = node.decisions[h]
            assert d.round == 0
            assert d.block.height == h
            verify_commit(CHAIN_ID, d.commit, net.validators, d.block.hash, h)
        # the round-0 proposer's block is decided
        assert net.nodes["v0"].decisions[h].block.txs == [f"{proposer_name(net, h, 0)}/h{h}/r0".encode()]
    # the observer never signed anything
    assert not any(isinstance(a, Broadcast) for a in net.nodes["o0"].sent)
    assert all(not n.invalid_messages and not n.evidence for n in net.nodes.values())


def test_decided_commit_grows_with_late_precommits() -> None:
    net = SimNetwork(4)
    net.start()
    net.run_until_height(1)
    net.run_until(lambda: not net.queue)  # let the remaining precommits arrive
    for node in net.nodes.values():
        full = node.machine.decided_commit()
        assert full is not None and len(full.signatures) == 4
        assert len(node.decisions[1].commit.signatures) >= 3
        verify_commit(CHAIN_ID, full, net.validators, full.block_hash, 1)


def test_timeouts_grow_with_the_round() -> None:
    assert timeout_duration_ms(PARAMS, "propose", 0) == PARAMS.timeout_propose_ms
    assert timeout_duration_ms(PARAMS, "propose", 3) == PARAMS.timeout_propose_ms + 3 * PARAMS.timeout_propose_delta_ms
    assert timeout_duration_ms(PARAMS, "prevote", 2) == PARAMS.timeout_prevote_ms + 2 * PARAMS.timeout_prevote_delta_ms
    assert (timeout_duration_ms(PARAMS, "precommit", 5)
            == PARAMS.timeout_precommit_ms + 5 * PARAMS.timeout_precommit_delta_ms)


def test_machine_is_deterministic() -> None:
    def run() -> list[object]:
        net = SimNetwork(4, powers=[5, 10, 20, 7], jitter_seed=42)
        net.start()
        net.run_until_height(3)
        return [(n.name, n.sent) for n in net.nodes.values()]

    assert run() == run()


# --------------------------------------------------------------------------- faulty proposers


def test_silent_proposer_times_out_and_next_round_decides() -> None:
    net = SimNetwork(4)
    silent = proposer_name(net, 1, 0)
    net.nodes[silent].down = True
    net.start()
    others = [n for n in net.nodes if n != silent]
    net.run_until_height(1, others)
    d = net.nodes[others[0]].decisions[1]
    assert d.round >= 1
    assert d.block.txs[0].startswith(proposer_name(net, 1, d.round).encode())
    for n in others:
        # lines 57-60: prevote nil on timeout propose in round 0
        assert [v.block_hash for v in own_votes(net, n, 1, 0, VOTE_PREVOTE)] == [NIL_HASH]
    assert_agreement(net, range(1, 2))
    # timeouts of round 1 are longer than those of round 0
    sched = [a for a in net.nodes[others[0]].sent if isinstance(a, ScheduleTimeout) and a.kind == "propose"]
    assert sched[0].duration_ms < sched[1].duration_ms


def test_invalid_proposal_gets_nil_prevotes() -> None:
    net = SimNetwork(4)
    bad = proposer_name(net, 1, 0)
    bad_block = make_block(1, net.nodes[bad].key.address, "invalid")
    net.values[bad] = lambda h, r: bad_block if r == 0 else make_block(h, net.nodes[bad].key.address, f"ok{r}")
    for node in net.nodes.values():
        node.invalid_blocks.add(bad_block.hash)
    net.start()
    net.run_until_height(1)
    for n in net.nodes:
        assert [v.block_hash for v in own_votes(net, n, 1, 0, VOTE_PREVOTE)] == [NIL_HASH]
        assert [v.block_hash for v in own_votes(net, n, 1, 0, VOTE_PRECOMMIT)] == [NIL_HASH]
    assert net.decided_hashes(1) != {bad_block.hash}
    assert_agreement(net, range(1, 2))
    assert net.nodes["v0"].decisions[1].round >= 1


def test_byzantine_proposer_sends_two_proposals() -> None:
    net = SimNetwork(4)
    byz = proposer_name(net, 1, 0)
    key = net.nodes[byz].key
    net.nodes[byz].down = True  # it only does what we script below
    honest = [n for n in net.nodes if n != byz]
    blocks = [make_block(1, key.address, f"equivocation-{i}") for i in range(2)]
    msgs = [ProposalMessage(Proposal.create(key, CHAIN_ID, 1, 0, b.hash, -1), b) for b in blocks]
    net.start()
    net.inject(honest[0], msgs[0])
    net.inject(honest[1], msgs[0])
    net.inject(honest[2], msgs[1])
    net.inject(honest[2], msgs[0])  # a second proposal for the same round is not prevoted
    net.run_until_height(1, honest)
    assert_agreement(net, range(1, 2))
    assert len(own_votes(net, honest[2], 1, 0, VOTE_PREVOTE)) == 1
    assert own_votes(net, honest[2], 1, 0, VOTE_PREVOTE)[0].block_hash == blocks[1].hash
    assert net.nodes[honest[0]].decisions[1].round >= 1


def test_wrong_proposer_and_bad_signatures_are_reported() -> None:
    net = SimNetwork(4)
    net.start()
    target = "v0"
    machine = net.nodes[target].machine
    not_proposer = next(k for k in net.keys if k.pubkey != machine.proposer(0))
    b = make_block(1, not_proposer.address, "usurper")
    msg = ProposalMessage(Proposal.create(not_proposer, CHAIN_ID, 1, 0, b.hash, -1), b)
    actions = machine.handle(ProposalReceived(msg))
    assert [a.reason for a in actions if a.__class__.__name__ == "InvalidMessage"] == [
        "proposal from the wrong proposer"
    ]
    vote = make_vote(net.keys[1], CHAIN_ID, VOTE_PREVOTE, 1, 0, b.hash)
    forged = Vote(vote.chain_id, vote.vote_type, vote.height, vote.round, vote.block_hash, vote.validator,
                  bytes(64))
    actions = machine.handle(VoteReceived(forged))
    assert [a.reason for a in actions if a.__class__.__name__ == "InvalidMessage"] == ["bad vote signature"]
    outsider = keys(1, "outsider")[0]
    actions = machine.handle(VoteReceived(make_vote(outsider, CHAIN_ID, VOTE_PREVOTE, 1, 0, b.hash)))
    assert [a.reason for a in actions if a.__class__.__name__ == "InvalidMessage"] == ["vote from a non-validator"]
    # a proposal whose block does not match its hash
    p = machine.proposer(0)
    pk = next(k for k in net.keys if k.pubkey == p)
    good = make_block(1, pk.address, "x")
    other = make_block(1, pk.address, "y")
    actions = machine.handle(ProposalReceived(ProposalMessage(Proposal.create(pk, CHAIN_ID, 1, 0, good.hash, -1),
                                                              other)))
    assert [a.reason for a in actions if a.__class__.__name__ == "InvalidMessage"] == ["malformed proposal"]


# --------------------------------------------------------------------------- locking and validValue


def test_lock_in_round_zero_and_repropose_valid_value() -> None:
    """Round 0: +2/3 prevote v, so A, B, C lock on v, but no one sees +2/3 precommits for v. A later
    round re-proposes v (validValue, pol_round 0) and D, which never had v, prevotes it via line 28."""
    net = SimNetwork(4)
    p = proposer_name(net, 1, 0)
    names = list(net.nodes)
    d = next(n for n in names if n != p)  # never receives v in round 0 and cannot fetch it
    c = next(n for n in names if n not in (p, d))
    net.fetch_blocked.add(d)

    def round0_filter(src: str, dst: str, msg: object) -> bool:
        if isinstance(msg, ProposalMessage) and msg.proposal.round == 0 and dst == d:
            return False
        if isinstance(msg, VoteMessage) and msg.vote.round == 0 and msg.vote.vote_type == VOTE_PRECOMMIT:
            if src == c:
                return False  # C's precommit for v reaches no one
            if dst == c and src != d:
                return False  # C sees only its own and D's nil precommit
        return True

    net.filters.append(round0_filter)
    net.start()
    v = own_proposals(net, p, 1)[0]
    net.run_until_height(1)
    assert_agreement(net, range(1, 2))
    decision = net.nodes[p].decisions[1]
    assert decision.block.hash == v.block_hash
    assert decision.round >= 1
    # the round-0 votes were as scripted
    assert own_votes(net, d, 1, 0, VOTE_PREVOTE)[0].block_hash == NIL_HASH
    assert own_votes(net, c, 1, 0, VOTE_PRECOMMIT)[0].block_hash == v.block_hash
    # v was re-proposed in the deciding round with proof-of-lock round 0
    reproposer = proposer_name(net, 1, decision.round)
    props = [q for q in own_proposals(net, reproposer, 1) if q.round == decision.round]
    assert props and props[0].block_hash == v.block_hash and props[0].pol_round == 0
    # D prevoted v in that round although it never saw the round-0 proposal (line 28)
    assert own_votes(net, d, 1, decision.round, VOTE_PREVOTE)[0].block_hash == v.block_hash
    # nobody prevoted anything but v or nil at height 1 after locking (lines 22-32)
    for n in (p, c):
        for r in range(1, decision.round + 1):
            assert {x.block_hash for x in own_votes(net, n, 1, r, VOTE_PREVOTE)} <= {v.block_hash, NIL_HASH}


def test_locked_validator_prevotes_nil_for_other_value() -> None:
    """A single machine locked on v in round 0 refuses a fresh proposal w in round 1 (line 22)."""
    ks = keys(4)
    vals = validator_set(ks)
    me = ks[0]
    m = ConsensusMachine(CHAIN_ID, PARAMS, signer=MemorySigner(me), get_value=lambda h, r: None,
                         valid=lambda b: True)
    m.handle(NewHeight(1, vals))
    p0 = next(k for k in ks if k.pubkey == proposer_for(vals, 1, 0).pubkey)
    v = make_block(1, p0.address, "v")
    acts = m.handle(ProposalReceived(ProposalMessage(Proposal.create(p0, CHAIN_ID, 1, 0, v.hash, -1), v)))
    if p0 is not me:
        assert any(isinstance(a, Broadcast) and a.message.vote.block_hash == v.hash for a in acts)
    for k in ks[1:]:
        m.handle(VoteReceived(make_vote(k, CHAIN_ID, VOTE_PREVOTE, 1, 0, v.hash)))
    assert m.locked_round == 0 and m.locked_value == v and m.valid_round == 0 and m.step == Step.PRECOMMIT
    # precommits: two nil from others -> +2/3 any, timeout precommit -> round 1
    for k in ks[1:3]:
        m.handle(VoteReceived(make_vote(k, CHAIN_ID, VOTE_PRECOMMIT, 1, 0, NIL_HASH)))
    m.handle(TimeoutFired("precommit", 1, 0))
    assert m.round == 1 and m.locked_round == 0
    p1 = next(k for k in ks if k.pubkey == proposer_for(vals, 1, 1).pubkey)
    if p1 is me:  # we would re-propose v ourselves; nothing more to check
        return
    w = make_block(1, p1.address, "w")
    acts = m.handle(ProposalReceived(ProposalMessage(Proposal.create(p1, CHAIN_ID, 1, 1, w.hash, -1), w)))
    prevotes = [a.message.vote for a in acts if isinstance(a, Broadcast)]
    assert [x.block_hash for x in prevotes] == [NIL_HASH]
    # but a re-proposal of v with pol_round 0 is prevoted
    m2_acts = m.handle(ProposalReceived(ProposalMessage(Proposal.create(p1, CHAIN_ID, 1, 1, v.hash, 0), v)))
    assert not any(isinstance(a, Broadcast) for a in m2_acts)  # already prevoted this round


# --------------------------------------------------------------------------- catching up


def test_decides_on_precommits_for_a_block_it_never_received() -> None:
    net = SimNetwork(4)
    p = proposer_name(net, 1, 0)
    late = next(n for n in net.nodes if n != p)
    net.filters.append(lambda src, dst, msg: not (isinstance(msg, ProposalMessage) and dst == late))
    net.start()
    net.run_until_height(1)
    assert_agreement(net, range(1, 2))
    assert net.nodes[late].fetches and net.nodes[late].fetches[0].block_hash in net.decided_hashes(1)


def test_decides_once_the_fetched_block_arrives() -> None:
    net = SimNetwork(4)
    p = proposer_name(net, 1, 0)
    late = next(n for n in net.nodes if n != p)
    net.fetch_blocked.add(late)
    net.filters.append(lambda src, dst, msg: not (isinstance(msg, ProposalMessage) and dst == late))
    net.start()
    others = [n for n in net.nodes if n != late]
    net.run_until_height(1, others)
    net.run_until(lambda: not net.queue)
    assert 1 not in net.nodes[late].decisions
    block = net.nodes[p].decisions[1].block
    fetch = net.nodes[late].fetches
    assert fetch and fetch[0].block_hash == block.hash
    from pocl.consensus.bft.machine import BlockReceived

    net.deliver(late, BlockReceived(make_block(1, b"\x00" * 20, "unrequested")))  # ignored
    assert 1 not in net.nodes[late].decisions
    net.deliver(late, BlockReceived(block))
    assert net.nodes[late].decisions[1].block.hash == block.hash


def test_round_skip_on_f_plus_one_higher_round_messages() -> None:
    ks = keys(4)
    vals = validator_set(ks, [10, 10, 10, 10])
    m = ConsensusMachine(CHAIN_ID, PARAMS, signer=MemorySigner(ks[0]), get_value=lambda h, r: None,
                         valid=lambda b: True)
    m.handle(NewHeight(1, vals))
    assert m.round == 0
    m.handle(VoteReceived(make_vote(ks[1], CHAIN_ID, VOTE_PREVOTE, 1, 5, NIL_HASH)))
    assert m.round == 0  # 1/4 of the power is not f+1
    m.handle(VoteReceived(make_vote(ks[1], CHAIN_ID, VOTE_PRECOMMIT, 1, 5, NIL_HASH)))
    assert m.round == 0  # the same sender counts once
    acts = m.handle(VoteReceived(make_vote(ks[2], CHAIN_ID, VOTE_PRECOMMIT, 1, 7, NIL_HASH)))
    assert m.round == 0  # different rounds do not add up
    acts = m.handle(VoteReceived(make_vote(ks[2], CHAIN_ID, VOTE_PREVOTE, 1, 5, NIL_HASH)))
    assert m.round == 5 and m.step == Step.PROPOSE
    assert any(isinstance(a, ScheduleTimeout) and a.round == 5 and a.kind == "propose" for a in acts)


def test_round_skip_with_unequal_power() -> None:
    ks = keys(4)
    vals = validator_set(ks, [1, 1, 1, 2])  # total 5: the power-2 validator alone is > 1/3
    m = ConsensusMachine(CHAIN_ID, PARAMS, signer=None, get_value=lambda h, r: None, valid=lambda b: True)
    m.handle(NewHeight(1, vals))
    m.handle(VoteReceived(make_vote(ks[0], CHAIN_ID, VOTE_PREVOTE, 1, 3, NIL_HASH)))
    assert m.round == 0
    m.handle(VoteReceived(make_vote(ks[3], CHAIN_ID, VOTE_PREVOTE, 1, 2, NIL_HASH)))
    assert m.round == 2


def test_network_catches_up_after_a_validator_lags_rounds() -> None:
    net = SimNetwork(4)
    # round 0 and 1 proposals are lost for everyone: the network moves through rounds by timeouts
    net.filters.append(lambda src, dst, msg: not (isinstance(msg, ProposalMessage) and msg.proposal.round < 2))
    net.start()
    net.run_until_height(1)
    assert_agreement(net, range(1, 2))
    assert net.nodes["v0"].decisions[1].round >= 2


# --------------------------------------------------------------------------- voting power


def test_unequal_powers_progress_without_the_smallest_validator() -> None:
    net = SimNetwork(4, powers=[50, 20, 20, 10])
    small = name_of(net, next(v.pubkey for v in net.validators if v.power == 10))
    net.nodes[small].down = True
    net.start()
    others = [n for n in net.nodes if n != small]
    net.run_until_height(3, others)
    assert_agreement(net, range(1, 4))


def test_unequal_powers_no_progress_without_the_largest_validator() -> None:
    net = SimNetwork(4, powers=[50, 20, 20, 10])
    big = name_of(net, next(v.pubkey for v in net.validators if v.power == 50))
    net.nodes[big].down = True
    net.start()
    while net.step():  # the others time out, prevote nil, and wait: 50 of 100 is not > 2/3
        assert not any(n.decisions for n in net.nodes.values())
    assert not any(n.decisions for n in net.nodes.values())
    other = net.nodes[next(n for n in net.nodes if n != big)].machine
    assert (other.round, other.step) == (0, Step.PREVOTE)


def test_one_validator_with_over_two_thirds_decides_alone() -> None:
    net = SimNetwork(4, powers=[1, 1, 1, 100])
    big = name_of(net, next(v.pubkey for v in net.validators if v.power == 100))
    for n in net.nodes:
        if n != big:
            net.nodes[n].down = True
    net.start()
    net.run_until_height(3, [big])


# --------------------------------------------------------------------------- many heights, reordering


def test_agreement_and_progress_under_random_message_latency() -> None:
    for seed in range(6):
        net = SimNetwork(4, powers=[3, 5, 7, 11], jitter_seed=seed, observers=1)
        net.start()
        net.run_until_height(4)
        assert_agreement(net, range(1, 5))


def test_byzantine_validator_equivocates_votes_safety_holds() -> None:
    """One of four validators sends conflicting prevotes and precommits to different peers."""
    net = SimNetwork(4, jitter_seed=7)
    byz = "v3"
    key = net.nodes[byz].key
    honest = ["v0", "v1", "v2"]
    orig = net.nodes[byz].machine.handle

    def equivocate(event):  # forward honest behaviour, plus a conflicting vote to half the peers
        actions = orig(event)
        for a in actions:
            if isinstance(a, Broadcast) and isinstance(a.message, VoteMessage):
                v = a.message.vote
                alt = make_block(v.height, key.address, f"alt-{v.round}")
                twin = make_vote(key, CHAIN_ID, v.vote_type, v.height, v.round, alt.hash)
                for n in honest[:1]:
                    net.inject(n, twin)
        return actions

    net.nodes[byz].machine.handle = equivocate  # type: ignore[method-assign]
    net.start()
    net.run_until_height(3, honest)
    assert_agreement(net, range(1, 4))
    assert net.nodes["v0"].evidence, "the equivocation was detected"
    ev = net.nodes["v0"].evidence[0].evidence
    assert ev.vote_a.validator == key.pubkey and ev.vote_a.block_hash < ev.vote_b.block_hash


def test_messages_for_the_next_height_are_buffered() -> None:
    ks = keys(4)
    vals = validator_set(ks)
    m = ConsensusMachine(CHAIN_ID, PARAMS, signer=None, get_value=lambda h, r: None, valid=lambda b: True)
    m.handle(NewHeight(1, vals))
    p = next(k for k in ks if k.pubkey == proposer_for(vals, 2, 0).pubkey)
    b = make_block(2, p.address, "next")
    m.handle(ProposalReceived(ProposalMessage(Proposal.create(p, CHAIN_ID, 2, 0, b.hash, -1), b)))
    for k in ks:
        m.handle(VoteReceived(make_vote(k, CHAIN_ID, VOTE_PREVOTE, 2, 0, b.hash)))
        m.handle(VoteReceived(make_vote(k, CHAIN_ID, VOTE_PRECOMMIT, 2, 0, b.hash)))
    assert m.height == 1 and m.decision is None
    acts = m.handle(NewHeight(2, vals))
    decides = [a for a in acts if isinstance(a, Decide)]
    assert len(decides) == 1 and decides[0].block == b and decides[0].height == 2


def test_stale_timeouts_and_messages_are_ignored() -> None:
    ks = keys(4)
    vals = validator_set(ks)
    m = ConsensusMachine(CHAIN_ID, PARAMS, signer=MemorySigner(ks[0]), get_value=lambda h, r: None,
                         valid=lambda b: True)
    m.handle(NewHeight(3, vals))
    assert m.handle(TimeoutFired("prevote", 3, 0)) == []  # wrong step
    assert m.handle(TimeoutFired("propose", 2, 0)) == []  # wrong height
    assert m.handle(VoteReceived(make_vote(ks[1], CHAIN_ID, VOTE_PREVOTE, 1, 0, NIL_HASH))) == []
    other_chain = make_vote(ks[1], "other-chain", VOTE_PREVOTE, 3, 0, NIL_HASH)
    assert m.handle(VoteReceived(other_chain)) == []


def test_get_value_none_means_no_proposal_but_round_moves_on() -> None:
    net = SimNetwork(4)
    p = proposer_name(net, 1, 0)
    net.values[p] = lambda h, r: None if r == 0 else make_block(h, net.nodes[p].key.address, "late")
    net.start()
    net.run_until_height(1)
    assert_agreement(net, range(1, 2))
    assert own_proposals(net, p, 1) == [] or own_proposals(net, p, 1)[0].round >= 1


def test_block_type_roundtrip_in_messages() -> None:
    ks = keys(1)
    b = make_block(1, ks[0].address, "x")
    msg = ProposalMessage(Proposal.create(ks[0], CHAIN_ID, 1, 0, b.hash, -1), b)
    assert ProposalMessage.decode(msg.encode()) == msg
    assert isinstance(ProposalMessage.decode(msg.encode()).block, Block)
    vm = VoteMessage(make_vote(ks[0], CHAIN_ID, VOTE_PREVOTE, 1, 0, NIL_HASH))
    assert VoteMessage.decode(vm.encode()) == vm


def test_commit_received_decides_a_lagging_node() -> None:
    net = SimNetwork(4)
    net.start()
    lagging = "v0"
    net.nodes[lagging].down = True
    others = [n for n in net.nodes if n != lagging]
    net.run_until_height(1, others)
    d = net.nodes[others[0]].decisions[1]
    net.nodes[lagging].down = False
    m = net.nodes[lagging].machine
    from pocl.consensus.bft.machine import CommitReceived, InvalidMessage

    # a commit that does not carry +2/3 is reported and ignored
    weak = type(d.commit)(d.commit.height, d.commit.round, d.commit.block_hash, d.commit.signatures[:2])
    acts = m.handle(CommitReceived(d.block, weak))
    assert [type(a) for a in acts] == [InvalidMessage] and m.decision is None
    acts = m.handle(CommitReceived(d.block, d.commit))
    decides = [a for a in acts if isinstance(a, Decide)]
    assert len(decides) == 1 and decides[0].block == d.block and decides[0].commit == d.commit
    assert m.decided_commit() == d.commit


def test_restarted_validator_never_signs_conflicting_votes(tmp_path) -> None:
    """A validator crashes after voting and restarts mid-height with its persisted signing state."""
    from pocl.consensus.signing_state import SigningGuard

    net = SimNetwork(4, guard_dir=tmp_path)
    victim = proposer_name(net, 1, 0)  # it proposed block A in round 0 before crashing
    net.start()
    net.run_until(lambda: len(own_votes(net, victim, 1, 0, VOTE_PREVOTE)) == 1)
    old = net.nodes[victim]
    # restart: a fresh machine whose get_value now builds a different block (new timestamp)
    key = old.key
    net.values[victim] = lambda h, r: make_block(h, key.address, f"after-restart/h{h}/r{r}")
    new_machine = ConsensusMachine(
        CHAIN_ID, PARAMS, signer=SigningGuard(tmp_path / f"{victim}.state", key, CHAIN_ID),
        get_value=lambda h, r: net.values[victim](h, r), valid=lambda b: True,
    )
    old.machine = new_machine
    net.deliver(victim, NewHeight(1, net.validators))
    net.run_until_height(2)
    assert_agreement(net, range(1, 3))
    # no two different signed messages for one (height, round, type) by the victim
    signed: dict[tuple[int, int, str], set[bytes]] = {}
    for a in old.sent:
        if isinstance(a, Broadcast):
            msg = a.message
            if isinstance(msg, ProposalMessage):
                key_ = (msg.proposal.height, msg.proposal.round, "proposal")
                signed.setdefault(key_, set()).add(msg.proposal.block_hash)
            else:
                key_ = (msg.vote.height, msg.vote.round, str(msg.vote.vote_type))
                signed.setdefault(key_, set()).add(msg.vote.block_hash)
    assert all(len(v) == 1 for v in signed.values()), signed
    assert not any(n.evidence for n in net.nodes.values())


class Scripted:
    """One machine (the validator that proposes in none of rounds 0-2) driven by hand-made messages."""

    def __init__(self) -> None:
        self.ks = keys(4)
        self.vals = validator_set(self.ks)
        proposers = {proposer_for(self.vals, 1, r).pubkey for r in range(3)}
        self.me = next(k for k in self.ks if k.pubkey not in proposers)
        self.others = [k for k in self.ks if k is not self.me]
        self.m = ConsensusMachine(CHAIN_ID, PARAMS, signer=MemorySigner(self.me), get_value=lambda h, r: None,
                                  valid=lambda b: True)
        self.m.handle(NewHeight(1, self.vals))

    def proposer_key(self, round_: int):
        return next(k for k in self.ks if k.pubkey == proposer_for(self.vals, 1, round_).pubkey)

    def block(self, tag: str) -> Block:
        return make_block(1, self.proposer_key(0).address, tag)

    def propose(self, round_: int, block: Block, pol_round: int = -1) -> list[Vote]:
        k = self.proposer_key(round_)
        msg = ProposalMessage(Proposal.create(k, CHAIN_ID, 1, round_, block.hash, pol_round), block)
        return [a.message.vote for a in self.m.handle(ProposalReceived(msg)) if isinstance(a, Broadcast)]

    def votes(self, vote_type: int, round_: int, value: bytes) -> list[Vote]:
        out = []
        for k in self.others:
            acts = self.m.handle(VoteReceived(make_vote(k, CHAIN_ID, vote_type, 1, round_, value)))
            out += [a.message.vote for a in acts if isinstance(a, Broadcast)]
        return out

    def next_round(self) -> None:
        r = self.m.round
        self.votes(VOTE_PRECOMMIT, r, NIL_HASH)
        self.m.handle(TimeoutFired("precommit", 1, r))
        assert self.m.round == r + 1


def test_rule_28_locked_on_a_later_round_prevotes_nil() -> None:
    s = Scripted()
    v, w = s.block("v"), s.block("w")
    s.next_round()  # round 0 passes without a proposal
    assert [x.block_hash for x in s.propose(1, v)] == [v.hash]  # line 22
    assert [x.block_hash for x in s.votes(VOTE_PREVOTE, 1, v.hash)] == [v.hash]  # line 36: lock, precommit
    assert (s.m.locked_round, s.m.locked_value, s.m.valid_round) == (1, v, 1)
    s.next_round()
    s.votes(VOTE_PREVOTE, 0, w.hash)  # a polka for w in round 0 (which we missed)
    assert [x.block_hash for x in s.propose(2, w, pol_round=0)] == [NIL_HASH]  # lockedRound 1 > vr 0
    assert s.m.locked_value == v


def test_rule_28_polka_after_the_lock_unlocks() -> None:
    s = Scripted()
    v, w = s.block("v"), s.block("w")
    assert [x.block_hash for x in s.propose(0, v)] == [v.hash]
    s.votes(VOTE_PREVOTE, 0, v.hash)
    assert (s.m.locked_round, s.m.locked_value) == (0, v)
    s.next_round()
    s.next_round()
    s.votes(VOTE_PREVOTE, 1, w.hash)  # +2/3 prevoted w in round 1 while we waited
    assert [x.block_hash for x in s.propose(2, w, pol_round=1)] == [w.hash]  # lockedRound 0 <= vr 1


def test_rule_28_waits_for_the_polka_then_times_out_to_nil() -> None:
    s = Scripted()
    w = s.block("w")
    s.next_round()
    assert s.propose(1, w, pol_round=0) == []  # no +2/3 prevotes for w in round 0 known: wait
    acts = s.m.handle(TimeoutFired("propose", 1, 1))
    assert [a.message.vote.block_hash for a in acts if isinstance(a, Broadcast)] == [NIL_HASH]  # line 57


def test_rule_22_locked_value_reproposed_without_pol_is_prevoted() -> None:
    s = Scripted()
    v, w = s.block("v"), s.block("w")
    s.propose(0, v)
    s.votes(VOTE_PREVOTE, 0, v.hash)
    s.next_round()
    assert [x.block_hash for x in s.propose(1, w)] == [NIL_HASH]  # locked on v: nil for w
    s.next_round()
    assert [x.block_hash for x in s.propose(2, v)] == [v.hash]  # lockedValue = v


def test_rule_36_sets_valid_value_without_locking_after_precommit() -> None:
    """We precommitted nil on the prevote timeout; a polka for v then completes: validValue, no lock."""
    s = Scripted()
    v = s.block("v")
    assert [x.block_hash for x in s.propose(0, v)] == [v.hash]
    assert s.m.handle(TimeoutFired("propose", 1, 0)) == []  # already prevoted: no effect
    for k in s.others[:2]:
        s.m.handle(VoteReceived(make_vote(k, CHAIN_ID, VOTE_PREVOTE, 1, 0, NIL_HASH)))
    acts = s.m.handle(TimeoutFired("prevote", 1, 0))  # line 61
    assert [a.message.vote.block_hash for a in acts if isinstance(a, Broadcast)] == [NIL_HASH]
    assert s.m.step == Step.PRECOMMIT and s.m.locked_round == -1
    s.m.handle(VoteReceived(make_vote(s.others[2], CHAIN_ID, VOTE_PREVOTE, 1, 0, v.hash)))
    assert s.m.valid_round == -1  # 20 of 40 for v: no polka yet
    for k in s.others[:2]:  # the two nil voters equivocate to v: 40 of 40
        s.m.handle(VoteReceived(make_vote(k, CHAIN_ID, VOTE_PREVOTE, 1, 0, v.hash)))
    assert (s.m.valid_round, s.m.valid_value) == (0, v)  # lines 42-43
    assert s.m.locked_round == -1  # no lock: we were past the prevote step (line 37)
