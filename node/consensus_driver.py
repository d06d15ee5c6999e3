"""Runs the pure BFT machine inside the asyncio node (DESIGN §5.1).

The machine decides; this module only carries out its actions: publish our signed messages and fetch
blocks that +2/3 voted for (through the `ConsensusNetwork`, the consensus reactor in
`node/reactors/consensus.py`, which also feeds peers' messages in), arm timers, submit evidence, and on
`Decide` persist the block through `Chain`, re-base the mempool and start the next height after
`timeout_commit`. Everything runs on the event loop thread: `machine.handle` is synchronous, so events
never interleave.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

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
from pocl.ledger.executor import BlockResult
from pocl.ledger.keys import PrivateKey, address_of
from pocl.ledger.params import ChainParams
from pocl.ledger.tx import make_evidence
from pocl.node.chain import Chain, InvalidBlock
from pocl.node.mempool import Mempool

log = logging.getLogger("pocl.consensus")


class ConsensusNetwork(Protocol):
    """The consensus reactor, as the driver sees it."""

    def publish(self, message: ProposalMessage | VoteMessage) -> None:
        """Gossip a message we signed."""
        ...

    def fetch_block(self, height: int, block_hash: bytes) -> Awaitable[Block | None]:
        """The block `block_hash` from some peer, or None if none serves it."""
        ...


@dataclasses.dataclass
class DecidedBlock:
    """What listeners (RPC events, metrics, the miner) hear after each committed block."""

    block: Block
    commit: Commit
    result: BlockResult
    round: int
    interval_s: float


class ConsensusDriver:
    def __init__(
        self,
        *,
        chain: Chain,
        mempool: Mempool,
        network: ConsensusNetwork,
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
        self.network = network
        self.params = params
        self.signer = signer
        self.account_key = account_key
        self.max_block_bytes = max_block_bytes
        self.on_decided = on_decided
        self.submit_tx = submit_tx
        self.double_sign = double_sign
        self._clock_ms = clock_ms
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._new_height_handle: asyncio.TimerHandle | None = None
        self._running = False
        self._own: list[ProposalMessage | VoteMessage] = []  # what we signed at the current height
        self._own_height = 0
        self._last_decided_at = time.monotonic()
        self.machine = ConsensusMachine(
            chain.state.chain_id, params, signer=signer, get_value=self._get_value, valid=self._valid
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._running = True
        self._enter_height()

    def own_messages(self) -> list[ProposalMessage | VoteMessage]:
        """What we signed at the current height (the reactor re-sends it until the height ends)."""
        return list(self._own)

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

    def feed(self, event: ProposalReceived | VoteReceived) -> bool:
        """Hand a peer's message to the machine; False (=> gossip scores the peer) only if invalid.

        Always fed, even before `start()`: gossip marks the message seen, so one dropped here would be lost
        for good; the machine buffers early messages itself until its first NewHeight."""
        actions = self.machine.handle(event)
        invalid = any(isinstance(a, InvalidMessage) for a in actions)
        self._execute(actions)
        return not invalid

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
        self.network.publish(message)
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
        self.network.publish(VoteMessage(twin))

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
        block = await self.network.fetch_block(height, block_hash)
        if block is not None and self._running:
            self._execute(self.machine.handle(BlockReceived(block)))

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
