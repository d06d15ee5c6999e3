"""Consensus on the wire (CometBFT's consensus reactor): proposal and vote gossip, our own messages
re-sent until the height ends, and fetching a block that +2/3 voted for (DESIGN §5.1, §6).

Peers' proposals and votes enter through the gossip validate hook and go straight to the consensus
driver (`ConsensusInbox.feed`), so a message is relayed only after the machine accepted it, and a peer
that sends an invalid one is scored by gossip. Gossip is fire-and-forget: a peer that connected late or
dropped a message would never get our vote, and Tendermint's liveness needs every message delivered
eventually. So, like CometBFT's vote gossip (simplified to our own messages), what we signed at the
current height is re-sent every `REBROADCAST_S` and to every newly connected peer.

Proposals travel compact (`node/compact_block.py`; config `p2p.compact_blocks`, on by default): the
signed proposal with the block's header, last commit and tx hashes. A peer rebuilds the block from its
mempool, asks the peer that sent the proposal for the txs it lacks (`GetBlockTxs`), and only then
hands the proposal to the machine and lets gossip relay it (still compact: it now holds every tx, so
its own peers can fetch from it). A peer that answers with txs whose hashes differ, or whose hash list
does not rebuild the header's `txs_root`, is scored like any peer serving bad data; if the txs cannot be
had (no answer, a tx left the mempool meanwhile), the full block is fetched by hash as before. Full
`ProposalMessage`s are still accepted, from peers with compact blocks off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Protocol

from cachetools import FIFOCache
from pocl.consensus.bft.machine import ProposalReceived, VoteReceived
from pocl.consensus.bft.messages import Proposal, ProposalMessage, VoteMessage
from pocl.ledger.block import HASH_LEN, Block, txs_root
from pocl.ledger.codec import Struct
from pocl.node.compact_block import (
    MAX_COMPACT_TXS,
    CompactBlock,
    CompactBlockError,
    TxLookup,
    check_fetched,
    missing,
    rebuild,
    serve,
)
from pocl.p2p import message_ids
from pocl.p2p.gossip import Gossip
from pocl.p2p.host import Host, PeerInfo

log = logging.getLogger("pocl.consensus")

MAX_VOTE_MSG_BYTES = 1024
BLOCK_MESSAGE_OVERHEAD = 64 * 1024  # a proposal or a served block: the block plus its envelope
RECENT_BLOCKS = 32
FETCH_TIMEOUT_S = 5.0
BAD_BLOCK_PENALTY = 20.0  # a served block that does not decode or has the wrong hash, or lying tx answers
GET_BLOCK_TXS_BYTES = MAX_COMPACT_TXS * (HASH_LEN + 2) + 256
RECENT_FETCHES = 16  # what we asked peers for, kept for logs and tests
REBROADCAST_S = 1.0  # re-send our own votes for the current height (peers may have missed them)
PROPOSAL_REBROADCAST_EVERY = 3  # ... and our proposal every this many ticks (blocks are big)

ConsensusMessage = ProposalMessage | VoteMessage


def _no_tx(_tx_hash: bytes) -> bytes | None:
    return None


@dataclasses.dataclass(frozen=True)
class GetProposalBlock(Struct):
    height: int
    block_hash: bytes


@dataclasses.dataclass(frozen=True)
class ProposalBlock(Struct):
    found: bool
    block: bytes  # canonical Block encoding, empty when not found


@dataclasses.dataclass(frozen=True)
class CompactProposalMessage(Struct):
    """A signed proposal with its block in compact form (txs by hash)."""

    proposal: Proposal
    block: CompactBlock


@dataclasses.dataclass(frozen=True)
class GetBlockTxs(Struct):
    """The txs `tx_hashes` of the compact block `block_hash` (asked of the peer that sent it)."""

    block_hash: bytes
    tx_hashes: list[bytes]

    BYTES_LEN: ClassVar[dict[str, int]] = {"block_hash": HASH_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hashes": MAX_COMPACT_TXS}


@dataclasses.dataclass(frozen=True)
class BlockTxs(Struct):
    found: bool  # False: the peer lacks some of them (txs is then empty)
    txs: list[bytes]  # in the order asked

    MAX_LEN: ClassVar[dict[str, int]] = {"txs": MAX_COMPACT_TXS}


@dataclasses.dataclass
class CompactStats:
    """Compact proposals received, and what rebuilding them took."""

    received: int = 0
    rebuilt_locally: int = 0  # every tx was already here
    fetched: int = 0  # rebuilt after fetching the missing txs from the sender
    fetched_txs: int = 0
    full_fallbacks: int = 0  # the full block was fetched instead
    bad: int = 0  # the sender lied (wrong txs, a hash list that does not match txs_root)


class ConsensusInbox(Protocol):
    """The consensus driver, as this reactor sees it."""

    def feed(self, event: ProposalReceived | VoteReceived) -> bool:
        """Hand a peer's message to the machine; False only if it is invalid (gossip scores the peer)."""
        ...

    def own_messages(self) -> list[ConsensusMessage]:
        """What we signed at the current height."""
        ...


class ConsensusReactor:
    """Registers the consensus messages on `host` / `gossip`; `bind` the driver before `host.start()`."""

    def __init__(
        self,
        host: Host,
        gossip: Gossip,
        *,
        max_block_bytes: int,
        stored_block: Callable[[bytes], Block | None],
        tx_lookup: TxLookup = _no_tx,
        compact: bool = True,
    ) -> None:
        self.host = host
        self.gossip = gossip
        self.compact = compact  # send our proposals compact (we accept both forms either way)
        self.stats = CompactStats()
        self.recent_fetches: deque[tuple[bytes, tuple[bytes, ...]]] = deque(maxlen=RECENT_FETCHES)
        self._stored_block = stored_block  # a committed block by hash
        self._tx_lookup = tx_lookup  # a tx we hold (the mempool) by hash
        self._recent_blocks: FIFOCache[bytes, Block] = FIFOCache(RECENT_BLOCKS)  # proposals, committed or not
        self._inbox: ConsensusInbox | None = None
        self._rebroadcast: asyncio.Task[None] | None = None
        self._max_block_bytes = max_block_bytes
        block_message_bytes = max_block_bytes + BLOCK_MESSAGE_OVERHEAD
        gossip.register(
            message_ids.PROPOSAL, ProposalMessage, block_message_bytes, validate=self._on_proposal
        )
        gossip.register(message_ids.VOTE, VoteMessage, MAX_VOTE_MSG_BYTES, validate=self._on_vote)
        gossip.register(
            message_ids.COMPACT_PROPOSAL,
            CompactProposalMessage,
            block_message_bytes,
            validate=self._on_compact_proposal,
        )
        host.register(message_ids.GET_PROPOSAL_BLOCK, GetProposalBlock, 128, self._serve_block)
        host.register(message_ids.PROPOSAL_BLOCK, ProposalBlock, block_message_bytes)
        host.register(message_ids.GET_BLOCK_TXS, GetBlockTxs, GET_BLOCK_TXS_BYTES, self._serve_block_txs)
        host.register(message_ids.BLOCK_TXS, BlockTxs, block_message_bytes)

    def bind(self, inbox: ConsensusInbox) -> None:
        self._inbox = inbox

    def start(self) -> None:
        """Re-send our own messages: to each newly connected peer, and to all every `REBROADCAST_S`."""
        self.host.on_connect(self._send_own_to)
        self._rebroadcast = asyncio.get_running_loop().create_task(self._rebroadcast_loop())

    def stop(self) -> None:
        if self._rebroadcast is not None:
            self._rebroadcast.cancel()

    # ------------------------------------------------------------------ sending

    def publish(self, message: ConsensusMessage) -> None:
        """Gossip a message we signed."""
        if isinstance(message, ProposalMessage):
            self._remember_block(message.block)
        self.gossip.publish(self._wire(message))

    def _wire(self, message: ConsensusMessage) -> Struct:
        """What goes on the wire for one of our messages: proposals compact when enabled."""
        if self.compact and isinstance(message, ProposalMessage):
            return CompactProposalMessage(message.proposal, CompactBlock.of(message.block))
        return message

    async def fetch_block(
        self, height: int, block_hash: bytes, *, first: bytes | None = None, exclude: bytes | None = None
    ) -> Block | None:
        """Ask peers in turn (`first` first, never `exclude`) for the block `block_hash` (+2/3 voted for it,
        or its compact form could not be completed); None if no peer serves it. A peer serving a wrong
        block is punished."""
        peers = [p.node_id for p in self.host.peers() if p.node_id not in (first, exclude)]
        if first is not None and first != exclude and self.host.is_connected(first):
            peers.insert(0, first)
        for node_id in peers:
            try:
                resp = await self.host.request(node_id, GetProposalBlock(height, block_hash), FETCH_TIMEOUT_S)
            except Exception:  # a peer failing to answer is routine
                continue
            if not isinstance(resp, ProposalBlock) or not resp.found:
                continue
            try:
                block = Block.decode(resp.block)
            except Exception:
                self.host.punish(node_id, BAD_BLOCK_PENALTY, "undecodable proposal block")
                continue
            if block.hash != block_hash:
                self.host.punish(node_id, BAD_BLOCK_PENALTY, "proposal block with the wrong hash")
                continue
            if txs_root(block.txs) != block.header.txs_root:
                self.host.punish(
                    node_id, BAD_BLOCK_PENALTY, "proposal block whose txs do not match its header"
                )
                continue
            return block
        return None

    async def _rebroadcast_loop(self) -> None:
        assert self._inbox is not None
        tick = 0
        while True:
            await asyncio.sleep(REBROADCAST_S)  # a cadence, not a wait for a condition
            tick += 1
            for msg in self._inbox.own_messages():
                if isinstance(msg, VoteMessage) or tick % PROPOSAL_REBROADCAST_EVERY == 0:
                    self.host.broadcast(self._wire(msg))

    def _send_own_to(self, peer: PeerInfo) -> None:
        assert self._inbox is not None
        for msg in self._inbox.own_messages():
            self.host.send_to(peer.node_id, self._wire(msg))

    # ------------------------------------------------------------------ receiving

    def _on_proposal(self, msg: ProposalMessage, _sender: bytes) -> bool:
        assert self._inbox is not None
        self._remember_block(msg.block)
        return self._inbox.feed(ProposalReceived(msg))

    async def _on_compact_proposal(self, msg: CompactProposalMessage, sender: bytes) -> bool | None:
        """Complete the block, then hand the proposal to the machine. False (gossip scores the sender):
        the message or the sender's answers were bad; None: the txs could not be had (no penalty, a
        later copy tries again)."""
        assert self._inbox is not None
        compact, proposal = msg.block, msg.proposal
        if compact.hash != proposal.block_hash or compact.height != proposal.height:
            return False
        try:
            compact.check_shape()
        except CompactBlockError:
            return False
        self.stats.received += 1
        block = self._recent_blocks.get(compact.hash)
        if block is not None and CompactBlock.of(block).tx_hashes != compact.tx_hashes:
            self.stats.bad += 1  # the header we know with another hash list: never relay that
            return False
        if block is None:
            if not proposal.verify_signature():  # before doing any work for it
                return False
            try:
                block = await self._complete(compact, sender)
            except CompactBlockError as exc:
                self.stats.bad += 1
                log.info("bad compact proposal from %s: %s", sender.hex()[:12], exc)
                return False
            if block is None:
                return None
        self._remember_block(block)
        return self._inbox.feed(ProposalReceived(ProposalMessage(proposal, block)))

    async def _complete(self, compact: CompactBlock, sender: bytes) -> Block | None:
        """The full block of `compact`: from our mempool, the sender for what we lack, else the full block
        by hash. Raises CompactBlockError if the hash list does not describe the header's txs."""
        need = missing(compact, self._tx_lookup)
        if not need:
            self.stats.rebuilt_locally += 1
            return rebuild(compact, self._tx_lookup)
        self.recent_fetches.append((compact.hash, tuple(need)))
        fetched: dict[bytes, bytes] | None = None
        liar: bytes | None = None
        try:
            fetched = await self._fetch_txs(sender, compact.hash, need)
        except CompactBlockError as exc:
            self.host.punish(sender, BAD_BLOCK_PENALTY, f"block txs: {exc}")
            liar = sender
        if fetched is not None:
            try:
                block = rebuild(compact, self._tx_lookup, fetched)
            except KeyError:  # a tx we held left the mempool meanwhile (a block committed)
                pass
            else:
                self.stats.fetched += 1
                self.stats.fetched_txs += len(need)
                return block
        self.stats.full_fallbacks += 1
        block = await self.fetch_block(compact.height, compact.hash, first=sender, exclude=liar)
        if block is not None and CompactBlock.of(block).tx_hashes != compact.tx_hashes:
            raise CompactBlockError("tx hashes that are not the block's")
        return block

    async def _fetch_txs(
        self, peer: bytes, block_hash: bytes, need: list[bytes]
    ) -> dict[bytes, bytes] | None:
        """The txs `need` of `block_hash` from `peer`; None if it does not answer or lacks them.
        Raises CompactBlockError if it answers with other txs."""
        try:
            resp = await self.host.request(peer, GetBlockTxs(block_hash, need), FETCH_TIMEOUT_S)
        except Exception:  # a peer failing to answer is routine
            return None
        if not isinstance(resp, BlockTxs) or not resp.found:
            return None
        return check_fetched(need, resp.txs)

    def _serve_block_txs(self, _conn: object, req: GetBlockTxs) -> BlockTxs:
        block = self._recent_blocks.get(req.block_hash) or self._stored_block(req.block_hash)
        txs = serve(block, req.tx_hashes, self._tx_lookup, self._max_block_bytes)
        return BlockTxs(False, []) if txs is None else BlockTxs(True, txs)

    def _on_vote(self, msg: VoteMessage, _sender: bytes) -> bool:
        assert self._inbox is not None
        return self._inbox.feed(VoteReceived(msg.vote))

    def _serve_block(self, _conn: object, req: GetProposalBlock) -> ProposalBlock:
        block = self._recent_blocks.get(req.block_hash) or self._stored_block(req.block_hash)
        if block is None:
            return ProposalBlock(False, b"")
        return ProposalBlock(True, block.encode())

    def _remember_block(self, block: Block) -> None:
        self._recent_blocks[block.hash] = block  # the oldest is evicted past RECENT_BLOCKS
