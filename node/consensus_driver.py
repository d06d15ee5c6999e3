"""Runs the pure BFT machine inside the asyncio node (DESIGN §5.1).

The machine decides; this module only carries out its actions: gossip our signed messages, arm
timers, fetch blocks that +2/3 voted for, submit evidence, and on `Decide` persist the block through
`Chain`, re-base the mempool and start the next height after `timeout_commit`.

Peers' proposals and votes enter through the gossip validate hook, so a message is relayed only after
the machine accepted it, and a peer that sends an invalid one is scored by gossip.
Everything runs on the event loop thread: `machine.handle` is synchronous, so events never interleave.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from pocl.consensus.bft.machine import (
    BlockReceived,
    Broadcast,
    ConsensusMachine,
    Decide,
    EvidenceFound,
    FetchBlock,
    InvalidMessage,
    NewHeight,
    ProposalReceived,
    Relay,
    ScheduleTimeout,
    TimeoutFired,
    VoteReceived,
)
from pocl.consensus.bft.messages import ProposalMessage, VoteMessage
from pocl.consensus.signing_state import SigningGuard
from pocl.ledger.block import NIL_HASH, VOTE_PREVOTE, Block, Commit, DuplicateVoteEvidence
from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey, address_of
from pocl.ledger.params import ChainParams
from pocl.ledger.tx import make_evidence
from pocl.node.chain import Chain, InvalidBlock
from pocl.node.mempool import Mempool
from pocl.p2p.gossip import Gossip
from pocl.p2p.host import Host

log = logging.getLogger("pocl.consensus")

TYPE_PROPOSAL = 64
TYPE_VOTE = 65
TYPE_GET_PROPOSAL_BLOCK = 66
TYPE_PROPOSAL_BLOCK = 67
MAX_VOTE_MSG_BYTES = 1024
RECENT_BLOCKS = 32
FETCH_TIMEOUT_S = 5.0
REBROADCAST_S = 1.0  # re-send our own votes for the current height (peers may have missed them)
PROPOSAL_REBROADCAST_EVERY = 3  # ... and our proposal every this many ticks (blocks are big)


@dataclasses.dataclass(frozen=True)
class GetProposalBlock(Struct):
    height: int
    block_hash: bytes


@dataclasses.dataclass(frozen=True)
class ProposalBlock(Struct):
    found: bool
    block: bytes  # canonical Block encoding, empty when not found


@dataclasses.dataclass
class DecidedBlock:
    """What listeners (RPC events, metrics, the miner) hear after each committed block."""

    block: Block
    commit: Commit
    result: object  # ledger.executor.BlockResult
    round: int
    interval_s: float


class ConsensusDriver:
    def __init__(
        self,
        *,
        chain: Chain,
        mempool: Mempool,
        host: Host,
        gossip: Gossip,
        params: ChainParams,
        signer: SigningGuard | None,
        account_key: PrivateKey | None,
        max_block_bytes: int,
        on_decided: Callable[[DecidedBlock], None] | None = None,
        submit_tx: Callable[[bytes], object] | None = None,
        double_sign: bool = False,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.chain = chain
        self.mempool = mempool
        self.host = host
        self.gossip = gossip
        self.params = params
        self.signer = signer
        self.account_key = account_key
        self.max_block_bytes = max_block_bytes
        self.on_decided = on_decided
        self.submit_tx = submit_tx
        self.double_sign = double_sign
        self._clock_ms = clock_ms
        self._timers: set[asyncio.TimerHandle] = set()
        self._recent_blocks: OrderedDict[bytes, Block] = OrderedDict()
        self._tasks: set[asyncio.Task[object]] = set()
        self._new_height_handle: asyncio.TimerHandle | None = None
        self._running = False
        self._own: list[ProposalMessage | VoteMessage] = []  # what we signed at the current height
        self._own_height = 0
        self._last_decided_at = time.monotonic()
        self.machine = ConsensusMachine(
            chain.state.chain_id, params, signer=signer, get_value=self._get_value, valid=self._valid
        )
        gossip.register(
            TYPE_PROPOSAL,
            "proposal",
            ProposalMessage,
            params.max_block_bytes + 64 * 1024,
            validate=self._on_proposal,
        )
        gossip.register(TYPE_VOTE, "vote", VoteMessage, MAX_VOTE_MSG_BYTES, validate=self._on_vote)
        host.register(TYPE_GET_PROPOSAL_BLOCK, "get_proposal_block", GetProposalBlock, 128, self._serve_block)
        host.register(
            TYPE_PROPOSAL_BLOCK, "proposal_block", ProposalBlock, params.max_block_bytes + 64 * 1024
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._running = True
        self.host.on_connect(self._send_own_to)
        self._spawn(self._rebroadcast_loop())
        self._enter_height()

    async def _rebroadcast_loop(self) -> None:
        """Gossip is fire-and-forget: a peer that connected late or dropped a message would never get our
        vote, and Tendermint's liveness needs every message delivered eventually. So, like CometBFT's vote
        gossip (simplified to our own messages), re-send what we signed at the current height."""
        tick = 0
        while self._running:
            await asyncio.sleep(REBROADCAST_S)  # a cadence, not a wait for a condition
            tick += 1
            for msg in list(self._own):
                if isinstance(msg, VoteMessage) or tick % PROPOSAL_REBROADCAST_EVERY == 0:
                    self.host.broadcast(msg)

    def _send_own_to(self, peer: object) -> None:
        for msg in list(self._own):
            self.host.send_to(peer.node_id, msg)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._running = False
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        if self._new_height_handle is not None:
            self._new_height_handle.cancel()
        for task in self._tasks:
            task.cancel()

    @property
    def height(self) -> int:
        return self.machine.height

    def summary(self) -> dict[str, object]:
        """Where consensus stands (RPC /status): enough to see why a height is stuck."""
        m = self.machine
        return {
            "height": m.height,
            "round": m.round,
            "step": m.step.name.lower(),
            "locked_round": m.locked_round,
            "valid_round": m.valid_round,
            "pending_timeouts": len(self._timers),
            "own_messages": len(self._own),
        }

    @property
    def round(self) -> int:
        return self.machine.round

    def _enter_height(self) -> None:
        self._new_height_handle = None
        if not self._running:
            return
        target = self.chain.height + 1
        if self.machine.height >= target:
            return
        vals = self.chain.validators()
        if vals is None:
            log.error("no validators at height %d: the chain cannot progress", target)
            return
        self._execute(self.machine.handle(NewHeight(target, vals)))

    # ------------------------------------------------------------------ injected callables

    def _get_value(self, height: int, round_: int) -> Block | None:
        if height != self.chain.height + 1 or self.signer is None:
            return None
        last_commit = self.chain.store.commit(self.chain.height) if self.chain.height >= 1 else None
        txs = self.mempool.reap(self.params.max_block_txs, self.max_block_bytes)
        block = self.chain.build_block(
            txs, self.signer_address, self._clock_ms(), last_commit, verified=self._verified()
        )
        log.info("proposing block height=%d round=%d txs=%d", height, round_, len(block.txs))
        return block

    def _valid(self, block: Block) -> bool:
        try:
            self.chain.check_block(block, verified=self._verified(), known_txs=self.mempool.by_raw)
        except InvalidBlock as exc:
            log.warning("invalid block %s at height %d: %s", block.hash.hex()[:12], block.height, exc)
            return False
        return True

    def _verified(self) -> set[bytes]:
        return self.mempool.verified  # type: ignore[return-value]  # supports `in`

    @property
    def signer_address(self) -> bytes:
        assert self.signer is not None
        return address_of(self.signer.pubkey)

    # ------------------------------------------------------------------ incoming

    def _on_proposal(self, msg: ProposalMessage, _sender: bytes) -> bool:
        self._remember_block(msg.block)
        return self._feed(ProposalReceived(msg))

    def _on_vote(self, msg: VoteMessage, _sender: bytes) -> bool:
        return self._feed(VoteReceived(msg.vote))

    def _feed(self, event: object) -> bool:
        """Hand a peer's message to the machine; False (=> gossip scores the peer) only if invalid.

        Always fed, even before `start()`: gossip marks the message seen, so one dropped here would be lost
        for good; the machine buffers early messages itself until its first NewHeight."""
        actions = self.machine.handle(event)  # type: ignore[arg-type]
        invalid = any(isinstance(a, InvalidMessage) for a in actions)
        self._execute(actions)
        return not invalid

    def _serve_block(self, _conn: object, req: GetProposalBlock) -> ProposalBlock:
        block = self._recent_blocks.get(req.block_hash) or self.chain.store.block_by_hash(req.block_hash)
        if block is None:
            return ProposalBlock(False, b"")
        return ProposalBlock(True, block.encode())

    def _remember_block(self, block: Block) -> None:
        self._recent_blocks[block.hash] = block
        while len(self._recent_blocks) > RECENT_BLOCKS:
            self._recent_blocks.popitem(last=False)

    # ------------------------------------------------------------------ actions

    def _execute(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self._broadcast(action.message)
            elif isinstance(action, Relay):
                pass  # gossip relays messages its validate hook accepted
            elif isinstance(action, ScheduleTimeout):
                self._schedule(action)
            elif isinstance(action, FetchBlock):
                self._spawn(self._fetch_block(action.height, action.block_hash))
            elif isinstance(action, EvidenceFound):
                self._submit_evidence(action.evidence)
            elif isinstance(action, Decide):
                self._decide(action)
            elif isinstance(action, InvalidMessage):
                log.info("rejected consensus message: %s", action.reason)

    def _broadcast(self, message: ProposalMessage | VoteMessage) -> None:
        height = message.proposal.height if isinstance(message, ProposalMessage) else message.vote.height
        if height != self._own_height:
            self._own, self._own_height = [], height
        self._own.append(message)
        if isinstance(message, ProposalMessage):
            self._remember_block(message.block)
        self.gossip.publish(message)
        if self.double_sign and isinstance(message, VoteMessage) and message.vote.vote_type == VOTE_PREVOTE:
            self._equivocate(message)

    def _equivocate(self, message: VoteMessage) -> None:
        """TEST-ONLY: also sign a conflicting prevote, so other validators can prove a double sign."""
        assert self.signer is not None
        vote = message.vote
        other = NIL_HASH if vote.block_hash != NIL_HASH else bytes(32)
        try:
            twin = self.signer.sign_vote(VOTE_PREVOTE, vote.height, vote.round, other)
        except Exception:  # the guard refused: double signing is disabled
            return
        log.warning("TEST-ONLY double sign at height=%d round=%d", vote.height, vote.round)
        self.gossip.publish(VoteMessage(twin))

    def _schedule(self, action: ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()
        event = TimeoutFired(action.kind, action.height, action.round)

        def fire() -> None:
            self._timers.discard(handle)
            if self._running:
                self._execute(self.machine.handle(event))

        handle = loop.call_later(action.duration_ms / 1000.0, fire)
        self._timers.add(handle)

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_block(self, height: int, block_hash: bytes) -> None:
        for peer in self.host.peers():
            try:
                resp = await self.host.request(
                    peer.node_id, GetProposalBlock(height, block_hash), FETCH_TIMEOUT_S
                )
            except Exception:  # a peer failing to answer is routine
                continue
            if not isinstance(resp, ProposalBlock) or not resp.found:
                continue
            try:
                block = Block.decode(resp.block)
            except Exception:
                self.host.punish(peer.node_id, 20.0, "undecodable proposal block")
                continue
            if block.hash != block_hash:
                self.host.punish(peer.node_id, 20.0, "proposal block with the wrong hash")
                continue
            if self._running:
                self._execute(self.machine.handle(BlockReceived(block)))
            return

    def _submit_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        log.warning(
            "double sign detected: validator %s at height %d",
            evidence.vote_a.validator.hex()[:12],
            evidence.vote_a.height,
        )
        if self.account_key is None or self.submit_tx is None:
            return
        nonce = self.mempool.pending_nonce(self.account_key.address) or 0
        stx = make_evidence(self.account_key, self.chain.state.chain_id, nonce, evidence, self.params.min_fee)
        self.submit_tx(stx.raw)

    def _decide(self, action: Decide) -> None:
        now = time.monotonic()
        if action.height == self.chain.height + 1:
            try:
                result = self.chain.commit_block(action.block, action.commit, verified=self._verified())
            except InvalidBlock as exc:  # +2/3 committed it, so this is our bug or disk trouble
                log.critical("cannot apply decided block %d: %s", action.height, exc)
                raise
            self.mempool.update(self.chain.state)
            interval = now - self._last_decided_at
            self._last_decided_at = now
            log.info(
                "committed block height=%d round=%d txs=%d hash=%s",
                action.height,
                action.round,
                len(action.block.txs),
                action.block.hash.hex()[:12],
            )
            if self.on_decided is not None:
                self.on_decided(DecidedBlock(action.block, action.commit, result, action.round, interval))
        loop = asyncio.get_running_loop()
        if self._new_height_handle is None:
            self._new_height_handle = loop.call_later(
                self.params.timeout_commit_ms / 1000.0, self._finish_height
            )

    def _finish_height(self) -> None:
        """After timeout_commit: keep the fullest commit we saw, then start the next height."""
        commit = self.machine.decided_commit()
        if commit is not None and commit.height == self.chain.height:
            self.chain.store.put_seen_commit(commit.height, commit)
        self._enter_height()

    def on_synced(self) -> None:
        """Block sync applied blocks behind consensus' back: jump to the new height now."""
        if self.machine.height <= self.chain.height:
            if self._new_height_handle is not None:
                self._new_height_handle.cancel()
                self._new_height_handle = None
            self._enter_height()
