"""Consensus on the wire (CometBFT's consensus reactor): proposal and vote gossip, our own messages
re-sent until the height ends, and fetching a block that +2/3 voted for (DESIGN §5.1, §6).

Peers' proposals and votes enter through the gossip validate hook and go straight to the consensus
driver (`ConsensusInbox.feed`), so a message is relayed only after the machine accepted it, and a peer
that sends an invalid one is scored by gossip. Gossip is fire-and-forget: a peer that connected late or
dropped a message would never get our vote, and Tendermint's liveness needs every message delivered
eventually. So, like CometBFT's vote gossip (simplified to our own messages), what we signed at the
current height is re-sent every `REBROADCAST_S` and to every newly connected peer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

from cachetools import FIFOCache
from pocl.consensus.bft.machine import ProposalReceived, VoteReceived
from pocl.consensus.bft.messages import ProposalMessage, VoteMessage
from pocl.ledger.block import Block
from pocl.ledger.codec import Struct
from pocl.p2p import message_ids
from pocl.p2p.gossip import Gossip
from pocl.p2p.host import Host, PeerInfo

log = logging.getLogger("pocl.consensus")

MAX_VOTE_MSG_BYTES = 1024
BLOCK_MESSAGE_OVERHEAD = 64 * 1024  # a proposal or a served block: the block plus its envelope
RECENT_BLOCKS = 32
FETCH_TIMEOUT_S = 5.0
BAD_BLOCK_PENALTY = 20.0  # a served block that does not decode or has the wrong hash
REBROADCAST_S = 1.0  # re-send our own votes for the current height (peers may have missed them)
PROPOSAL_REBROADCAST_EVERY = 3  # ... and our proposal every this many ticks (blocks are big)

ConsensusMessage = ProposalMessage | VoteMessage


@dataclasses.dataclass(frozen=True)
class GetProposalBlock(Struct):
    height: int
    block_hash: bytes


@dataclasses.dataclass(frozen=True)
class ProposalBlock(Struct):
    found: bool
    block: bytes  # canonical Block encoding, empty when not found


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
    ) -> None:
        self.host = host
        self.gossip = gossip
        self._stored_block = stored_block  # a committed block by hash
        self._recent_blocks: FIFOCache[bytes, Block] = FIFOCache(RECENT_BLOCKS)  # proposals, committed or not
        self._inbox: ConsensusInbox | None = None
        self._rebroadcast: asyncio.Task[None] | None = None
        block_message_bytes = max_block_bytes + BLOCK_MESSAGE_OVERHEAD
        gossip.register(message_ids.PROPOSAL, ProposalMessage, block_message_bytes, validate=self._on_proposal)
        gossip.register(message_ids.VOTE, VoteMessage, MAX_VOTE_MSG_BYTES, validate=self._on_vote)
        host.register(message_ids.GET_PROPOSAL_BLOCK, GetProposalBlock, 128, self._serve_block)
        host.register(message_ids.PROPOSAL_BLOCK, ProposalBlock, block_message_bytes)

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
        self.gossip.publish(message)

    async def fetch_block(self, height: int, block_hash: bytes) -> Block | None:
        """Ask peers in turn for the block `block_hash` (+2/3 voted for it, we lack it); None if no peer
        serves it. A peer serving a wrong block is punished."""
        for peer in self.host.peers():
            try:
                resp = await self.host.request(peer.node_id, GetProposalBlock(height, block_hash), FETCH_TIMEOUT_S)
            except Exception:  # a peer failing to answer is routine
                continue
            if not isinstance(resp, ProposalBlock) or not resp.found:
                continue
            try:
                block = Block.decode(resp.block)
            except Exception:
                self.host.punish(peer.node_id, BAD_BLOCK_PENALTY, "undecodable proposal block")
                continue
            if block.hash != block_hash:
                self.host.punish(peer.node_id, BAD_BLOCK_PENALTY, "proposal block with the wrong hash")
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
                    self.host.broadcast(msg)

    def _send_own_to(self, peer: PeerInfo) -> None:
        assert self._inbox is not None
        for msg in self._inbox.own_messages():
            self.host.send_to(peer.node_id, msg)

    # ------------------------------------------------------------------ receiving

    def _on_proposal(self, msg: ProposalMessage, _sender: bytes) -> bool:
        assert self._inbox is not None
        self._remember_block(msg.block)
        return self._inbox.feed(ProposalReceived(msg))

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
