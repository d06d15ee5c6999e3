"""Compact proposals over real sockets: a proposal whose txs a peer holds moves only their hashes, a peer
missing some fetches exactly those from the sender, and a lying peer (other txs for a hash, a hash list
that does not rebuild the header) is scored while the proposal still reaches consensus.

The first tests run the consensus reactor alone on real hosts (a recording inbox stands in for the BFT
driver, so liars can be scripted); the last ones run in-process nodes (real store, mempool, consensus)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pocl.consensus.bft.machine import ProposalReceived, VoteReceived
from pocl.consensus.bft.messages import Proposal, ProposalMessage
from pocl.ledger.block import Block, Header, txs_root
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import make_transfer
from pocl.node.compact_block import CompactBlock, tx_hash
from pocl.node.node import Node
from pocl.node.reactors.consensus import (
    BAD_BLOCK_PENALTY,
    BlockTxs,
    CompactProposalMessage,
    ConsensusReactor,
    GetBlockTxs,
)
from pocl.p2p.gossip import Gossip
from pocl.p2p.host import Host

from tests.support.hostkit import CHAIN_ID, make_host, running, wait_until
from tests.support.rpc_node import FAUCET, home_keys, make_node, wait_for

PROPOSER = PrivateKey.from_seed_text("compact-proposer")
SENDER = PrivateKey.from_seed_text("compact-sender")
SINK = PrivateKey.from_seed_text("compact-sink").address
MAX_BLOCK_BYTES = 1 << 20


class RecordingInbox:
    """Stands in for the consensus driver: keeps every proposal the reactor hands on."""

    def __init__(self) -> None:
        self.proposals: list[ProposalMessage] = []

    def feed(self, event: ProposalReceived | VoteReceived) -> bool:
        if isinstance(event, ProposalReceived):
            self.proposals.append(event.message)
        return True

    def own_messages(self) -> list:
        return []


class LyingReactor(ConsensusReactor):
    """Answers every tx fetch with the right number of txs, but not the ones asked for."""

    def _serve_block_txs(self, conn: object, req: GetBlockTxs) -> BlockTxs:
        return BlockTxs(
            True,
            [make_transfer(SENDER, CHAIN_ID, 900 + i, SINK, 1, 1).raw for i in range(len(req.tx_hashes))],
        )


@dataclasses.dataclass
class Peer:
    host: Host
    reactor: ConsensusReactor
    inbox: RecordingInbox
    pool: dict[bytes, bytes]


def make_peer(name: str, *, blocks: dict[bytes, Block] | None = None, cls: type = ConsensusReactor) -> Peer:
    host = make_host(name)
    pool: dict[bytes, bytes] = {}
    stored = blocks if blocks is not None else {}
    reactor = cls(
        host, Gossip(host), max_block_bytes=MAX_BLOCK_BYTES, stored_block=stored.get, tx_lookup=pool.get
    )
    inbox = RecordingInbox()
    reactor.bind(inbox)
    return Peer(host, reactor, inbox, pool)


def txs(n: int) -> list[bytes]:
    return [make_transfer(SENDER, CHAIN_ID, i, SINK, 5, 1).raw for i in range(n)]


def proposed(raws: list[bytes]) -> tuple[Block, Proposal]:
    header = Header(3, 3000, bytes(32), PROPOSER.address, txs_root(raws), bytes(32), bytes(32), b"")
    block = Block(header, raws, None)
    return block, Proposal.create(PROPOSER, CHAIN_ID, 3, 0, block.hash, -1)


async def connect(a: Host, *others: Host) -> None:
    for other in others:
        await a.connect(other.listen_addr)
    await wait_until(lambda: len(a.peers()) == len(others), what="connections")


async def test_a_peer_holding_every_tx_rebuilds_without_fetching() -> None:
    raws = txs(30)
    block, proposal = proposed(raws)
    node, proposer = make_peer("cp-node"), make_peer("cp-proposer")
    node.pool.update({tx_hash(r): r for r in raws})
    async with running(node.host, proposer.host):
        await connect(node.host, proposer.host)
        proposer.reactor.publish(ProposalMessage(proposal, block))
        await wait_until(lambda: bool(node.inbox.proposals), what="the proposal")
    assert node.inbox.proposals == [ProposalMessage(proposal, block)]
    assert node.reactor.stats.rebuilt_locally == 1 and not node.reactor.recent_fetches
    # what crossed the link: the hashes, a small fraction of the txs
    wire = CompactProposalMessage(proposal, CompactBlock.of(block)).encode()
    assert len(wire) < sum(map(len, raws)) / 3


async def test_a_peer_missing_some_txs_fetches_exactly_those_from_the_sender() -> None:
    raws = txs(12)
    block, proposal = proposed(raws)
    node, proposer = make_peer("cm-node"), make_peer("cm-proposer")
    lacking = {3, 7, 8}
    node.pool.update({tx_hash(r): r for i, r in enumerate(raws) if i not in lacking})
    async with running(node.host, proposer.host):
        await connect(node.host, proposer.host)
        proposer.reactor.publish(ProposalMessage(proposal, block))
        await wait_until(lambda: bool(node.inbox.proposals), what="the proposal")
    assert node.inbox.proposals[0].block == block
    assert list(node.reactor.recent_fetches) == [
        (block.hash, tuple(tx_hash(raws[i]) for i in sorted(lacking)))
    ]
    assert node.reactor.stats.fetched == 1 and node.reactor.stats.fetched_txs == 3
    assert node.reactor.stats.full_fallbacks == 0


async def test_other_txs_for_the_asked_hashes_score_the_liar_and_the_full_block_comes_from_another_peer() -> (
    None
):
    raws = txs(6)
    block, proposal = proposed(raws)
    node = make_peer("cl-node")
    liar = make_peer("cl-liar", cls=LyingReactor)
    honest = make_peer("cl-honest", blocks={block.hash: block})
    node.pool.update({tx_hash(raws[0]): raws[0]})
    async with running(node.host, liar.host, honest.host):
        await connect(node.host, liar.host, honest.host)
        liar.host.send_to(node.host.node_id, CompactProposalMessage(proposal, CompactBlock.of(block)))
        await wait_until(lambda: bool(node.inbox.proposals), what="the proposal, despite the liar")
        assert node.host.bans.score(liar.host.node_id) >= BAD_BLOCK_PENALTY * 0.9  # scores decay
        assert node.host.bans.score(honest.host.node_id) == 0
    assert node.inbox.proposals == [ProposalMessage(proposal, block)]
    assert node.reactor.stats.full_fallbacks == 1


async def test_a_hash_list_that_does_not_match_the_header_is_refused_and_the_honest_copy_goes_through() -> (
    None
):
    raws = txs(5)
    block, proposal = proposed(raws)
    node, liar, honest = make_peer("ch-node"), make_peer("ch-liar"), make_peer("ch-honest")
    node.pool.update({tx_hash(r): r for r in raws})
    forged = CompactBlock(block.header, None, [tx_hash(r) for r in reversed(raws)])
    async with running(node.host, liar.host, honest.host):
        await connect(node.host, liar.host, honest.host)
        liar.host.send_to(node.host.node_id, CompactProposalMessage(proposal, forged))
        await wait_until(lambda: node.reactor.stats.bad == 1, what="the forged list refused")
        assert not node.inbox.proposals
        assert node.host.bans.score(liar.host.node_id) > 0
        honest.host.send_to(node.host.node_id, CompactProposalMessage(proposal, CompactBlock.of(block)))
        await wait_until(lambda: bool(node.inbox.proposals), what="the honest copy")
    assert node.inbox.proposals == [ProposalMessage(proposal, block)]


async def test_a_forged_hash_list_for_a_block_already_held_is_refused_not_relayed() -> None:
    raws = txs(3)
    block, proposal = proposed(raws)
    node, liar, other = make_peer("cf-node"), make_peer("cf-liar"), make_peer("cf-other")
    node.pool.update({tx_hash(r): r for r in raws})
    relayed: list[object] = []
    other.host._handlers[CompactProposalMessage] = lambda _conn, body: relayed.append(body)
    async with running(node.host, liar.host, other.host):
        await connect(node.host, liar.host, other.host)
        liar.host.send_to(node.host.node_id, CompactProposalMessage(proposal, CompactBlock.of(block)))
        await wait_until(lambda: len(relayed) == 1, what="the honest list fed and relayed")
        forged = CompactBlock(block.header, None, [tx_hash(r) for r in reversed(raws)])
        liar.host.send_to(node.host.node_id, CompactProposalMessage(proposal, forged))
        await wait_until(lambda: node.reactor.stats.bad == 1, what="the forged list refused")
        assert node.host.bans.score(liar.host.node_id) > 0
    assert len(relayed) == 1 and len(node.inbox.proposals) == 1


async def test_txs_nobody_serves_leave_the_proposal_undecided_without_penalty_and_a_later_copy_goes_through() -> (
    None
):
    raws = txs(4)
    block, proposal = proposed(raws)
    held: dict[bytes, Block] = {}
    node, sender = make_peer("cu-node"), make_peer("cu-sender", blocks=held)
    wire = CompactProposalMessage(proposal, CompactBlock.of(block))
    async with running(node.host, sender.host):
        await connect(node.host, sender.host)
        sender.host.send_to(node.host.node_id, wire)  # it cannot serve the txs, nor the block
        await wait_until(lambda: node.reactor.stats.full_fallbacks == 1, what="the failed fetches")
        await wait_until(
            lambda: node.reactor.gossip.message_id(wire) not in node.reactor.gossip.seen, what="forgotten"
        )
        assert not node.inbox.proposals and node.host.bans.score(sender.host.node_id) == 0
        held[block.hash] = block  # now it can (the full block)
        sender.host.send_to(node.host.node_id, wire)  # a re-broadcast of the same message
        await wait_until(lambda: bool(node.inbox.proposals), what="the proposal from the later copy")
    assert node.inbox.proposals == [ProposalMessage(proposal, block)]


# --------------------------------------------------------------------------- in-process nodes


def received_bytes(node: Node) -> int:
    """Bytes that reached `node` on its P2P connections (TCP payload: encrypted frames)."""
    assert node.host is not None
    return sum(p.conn._proto.bytes_received for p in node.host.peers())


async def two_nodes(tmp_path: Path, compact: bool = True) -> tuple[Node, Node]:
    """A validator and a full node dialling it, both started, connected, and past their first block."""
    validator = make_node(tmp_path / "v")
    validator.config = validator.config.replace("p2p", compact_blocks=compact)
    await validator.start()
    assert validator.host is not None
    full = make_node(
        tmp_path / "f", genesis=validator.genesis, peers=(str(validator.host.listen_addr),), validator=False
    )
    full.config = full.config.replace("p2p", compact_blocks=compact)
    await full.start()
    await wait_for(lambda: full.chain is not None and full.chain.height >= 2, what="the full node following")
    return validator, full


def stored(node: Node, hashes: set[bytes]) -> Callable[[], bool]:
    """True once every tx of `hashes` is in a block `node` committed."""

    def done() -> bool:
        assert node.chain is not None
        return all(node.chain.store.tx_location(h) is not None for h in hashes)

    return done


async def gossip_then_commit(validator: Node, full: Node, n: int) -> tuple[int, int]:
    """`n` transfers submitted at the full node (gossip takes them to the validator), until the full
    node has committed them: (bytes the full node received meanwhile, bytes of the txs)."""
    raws = [make_transfer(FAUCET, validator.genesis.chain_id, i, SINK, 5, 1).raw for i in range(n)]
    before = received_bytes(full)
    for raw in raws:
        assert full.submit_tx(raw).ok
    await wait_for(stored(full, {tx_hash(r) for r in raws}), what="the txs committed at the full node")
    return received_bytes(full) - before, sum(map(len, raws))


async def test_nodes_move_only_hashes_for_txs_the_peer_already_has(tmp_path: Path) -> None:
    validator, full = await two_nodes(tmp_path)
    try:
        got, tx_bytes = await gossip_then_commit(validator, full, 400)
        assert full.consensus is not None
        stats = full.consensus.stats
        assert stats.rebuilt_locally >= 1 and stats.fetched == 0 and stats.full_fallbacks == 0
        assert got < tx_bytes / 2, (got, tx_bytes)  # the block's txs did not come back (≈ 1/6 with hashes)
    finally:
        await full.stop()
        await validator.stop()


async def test_full_proposals_when_compact_blocks_are_off(tmp_path: Path) -> None:
    """The same exchange with `p2p.compact_blocks = false` moves the txs again (the figure above is the
    feature's doing)."""
    validator, full = await two_nodes(tmp_path, compact=False)
    try:
        got, tx_bytes = await gossip_then_commit(validator, full, 400)
        assert full.consensus is not None and full.consensus.stats.received == 0
        assert got > tx_bytes, (got, tx_bytes)
    finally:
        await full.stop()
        await validator.stop()


async def test_a_node_fetches_only_the_txs_it_never_saw(tmp_path: Path) -> None:
    validator, full = await two_nodes(tmp_path)
    try:
        assert validator.mempool is not None and full.consensus is not None
        chain_id = validator.genesis.chain_id
        account, _ = home_keys(tmp_path / "v")
        private = [make_transfer(account, chain_id, i, SINK, 5, 1).raw for i in range(4)]
        shared = [make_transfer(FAUCET, chain_id, i, SINK, 5, 1).raw for i in range(20)]
        for raw in shared:
            assert full.submit_tx(raw).ok
        await wait_for(lambda: all(tx_hash(r) in validator.mempool for r in shared), what="gossip")  # type: ignore[operator]
        for raw in private:  # into the validator's mempool only: never gossiped
            assert validator.mempool.add(raw).ok
        await wait_for(stored(full, {tx_hash(r) for r in (*private, *shared)}), what="the txs committed")
        asked = {h for _block, hashes in full.consensus.recent_fetches for h in hashes}
        assert asked == {tx_hash(r) for r in private}
        assert full.consensus.stats.full_fallbacks == 0
    finally:
        await full.stop()
        await validator.stop()


async def test_idle_heights_keep_finalising_with_compact_blocks(tmp_path: Path) -> None:
    validator, full = await two_nodes(tmp_path)
    try:
        assert validator.chain is not None and full.chain is not None
        target = validator.chain.height + 3
        await wait_for(lambda: full.chain.height >= target, what="three more heights")  # type: ignore[union-attr]
    finally:
        await full.stop()
        await validator.stop()
