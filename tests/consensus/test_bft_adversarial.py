"""Safety and liveness under partial synchrony, equivocating validators and proposers."""

from __future__ import annotations

import random

from pocl.consensus.bft.machine import Action, Broadcast, Event, ProposalReceived
from pocl.consensus.bft.messages import Proposal, ProposalMessage
from pocl.ledger.evidence import check_evidence
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State

from tests.support.bft_harness import CHAIN_ID, SimNetwork, make_block, make_equivocator, validator_accounts

GST_MS = 20_000


def partially_synchronous(net: SimNetwork, seed: int) -> None:
    """Before GST messages take up to GST_MS (arbitrary reordering); after it at most 30 ms."""
    rng = random.Random(seed)

    def delay(src: str, dst: str, msg: object) -> int:
        if net.now < GST_MS:
            return rng.randint(0, GST_MS)
        return rng.randint(1, 30)

    net.delay = delay


def assert_agreement(net: SimNetwork, names: list[str], heights: range) -> None:
    for h in heights:
        hashes = {net.nodes[n].decisions[h].block.hash for n in names if h in net.nodes[n].decisions}
        assert len(hashes) <= 1, f"two blocks decided at height {h}"


def test_partial_synchrony_agreement_and_progress() -> None:
    for seed in range(5):
        net = SimNetwork(4, powers=[4, 3, 2, 2], observers=1)
        partially_synchronous(net, seed)
        net.start()
        net.run_until_height(3)
        names = list(net.nodes)
        assert_agreement(net, names, range(1, 4))


def test_two_equivocators_out_of_seven_cannot_break_safety() -> None:
    for seed in range(3):
        net = SimNetwork(7, jitter_seed=seed)
        honest = [f"v{i}" for i in range(2, 7)]
        make_equivocator(net, "v0", honest[:2])
        make_equivocator(net, "v1", honest[2:4])
        net.start()
        net.run_until_height(3, honest)
        assert_agreement(net, list(net.nodes), range(1, 4))
        found = [e.evidence for n in honest for e in net.nodes[n].evidence]
        assert found
        offenders = set()
        state = State.from_genesis(ChainParams(), validator_accounts(net.keys, 1, 1), CHAIN_ID)
        for ev in found:
            assert check_evidence(state, ev, CHAIN_ID, 3, ChainParams()) is None  # the chain would punish it
            offenders.add(ev.vote_a.validator)
        assert offenders <= {net.nodes["v0"].key.pubkey, net.nodes["v1"].key.pubkey}


def make_equivocating_proposer(net: SimNetwork, name: str, targets: list[str]) -> None:
    node = net.nodes[name]
    key = node.key
    honest_handle = node.machine.handle

    def handle(event: Event) -> list[Action]:
        actions = honest_handle(event)
        for a in actions:
            if isinstance(a, Broadcast) and isinstance(a.message, ProposalMessage):
                p = a.message.proposal
                alt = make_block(p.height, key.address, f"{name}-altprop/h{p.height}/r{p.round}")
                twin = ProposalMessage(Proposal.create(key, CHAIN_ID, p.height, p.round, alt.hash, -1), alt)
                for t in targets:
                    net.queue.appendleft((t, ProposalReceived(twin)))
        return actions

    node.machine.handle = handle  # type: ignore[method-assign]


def test_equivocating_proposer_and_voter_under_partial_synchrony() -> None:
    for seed in range(3):
        net = SimNetwork(4)
        honest = ["v1", "v2", "v3"]
        make_equivocating_proposer(net, "v0", ["v2", "v3"])
        make_equivocator(net, "v0", ["v3"])
        partially_synchronous(net, 100 + seed)
        net.start()
        net.run_until_height(4, honest)
        assert_agreement(net, list(net.nodes), range(1, 5))
