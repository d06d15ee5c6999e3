"""Runs the pure BFT machine inside the asyncio node (DESIGN §5.1).

The machine decides; this module only carries out its actions: publish our signed messages and fetch
blocks that +2/3 voted for (through the `ConsensusNetwork`, the consensus reactor in
`node/reactors/consensus.py`, which also feeds peers' messages in), arm timers, submit evidence, and on
`Decide` persist the block through `Chain`, re-base the mempool and start the next height after
`timeout_commit`. Everything runs on the event loop thread: `machine.handle` is synchronous, so events
never interleave.

A storage or signing-state failure (`StoreError`, `SigningStateError`: a full disk, EIO, EMFILE) is never
left to a timer callback or to gossip's validate hook, which would swallow it and leave consensus wedged
while the process lives on: the driver stops and hands it to `on_fatal` (`node.fatal`), which stops the
node loudly.

The driver is where the clock enters consensus (proposer-based timestamps, `consensus.bft.timely`): our
block's time is our clock when we build it, and a peer's new proposal is judged `is_timely` on our clock
when it arrives; the verdict travels with the `ProposalReceived` event, so the machine stays deterministic.
`node/clock_watch.py` turns untimely proposals and our own rejected ones into log lines for the operator.
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
from pocl.consensus.bft.messages import NO_POL_ROUND, ProposalMessage, VoteMessage
from pocl.consensus.bft.timely import is_timely
from pocl.consensus.signing_state import SigningGuard, SigningStateError
from pocl.ledger.block import NIL_HASH, VOTE_PREVOTE, Block, Commit, DuplicateVoteEvidence
from pocl.ledger.executor import BlockResult
from pocl.ledger.keys import PrivateKey, address_of
from pocl.ledger.params import ChainParams
from pocl.ledger.storage.store import StoreError
from pocl.ledger.tx import make_evidence
from pocl.node.chain import Chain, InvalidBlock
from pocl.node.clock_watch import ClockWatch
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
        on_fatal: Callable[[BaseException, str], None] | None = None,
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
        self.on_fatal = on_fatal  # a storage/signing failure: stop the node (None: raise it)
        self.failed: BaseException | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._new_height_handle: asyncio.TimerHandle | None = None
        self._running = False
        self._own: list[ProposalMessage | VoteMessage] = []  # what we signed at the current height
        self._own_height = 0
        self._last_decided_at = time.monotonic()
        self.clock_watch = ClockWatch(params)
        self._own_fresh: tuple[int, int, int] | None = None  # (height, round, block time) of our new proposal
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
        self._execute(self._handle(NewHeight(target, vals)))

    # ------------------------------------------------------------------ injected callables

    def _get_value(self, height: int, round_: int) -> Block | None:
        if height != self.chain.height + 1 or self.signer is None:
            return None
        last_commit = self.chain.store.commit(self.chain.height) if self.chain.height >= 1 else None
        txs = self.mempool.reap(self.params.max_block_txs, self.max_block_bytes)
        now = self._clock_ms()
        if now <= self.chain.head_time_ms:  # Chain.build_block stamps parent + 1 ms (see docs/architecture.md)
            log.warning(
                "our clock is %d ms behind the last block's time: proposing height=%d with parent time + 1 ms",
                self.chain.head_time_ms - now, height,
            )
        block = self.chain.build_block(txs, self.signer_address, now, last_commit, verified=self._verified())
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
        if isinstance(event, ProposalReceived):
            return self._feed_proposal(event)
        return self._feed(event)

    def _feed(self, event: ProposalReceived | VoteReceived) -> bool:
        actions = self._handle(event)
        invalid = any(isinstance(a, InvalidMessage) for a in actions)
        self._execute(actions)
        return not invalid

    def _feed_proposal(self, event: ProposalReceived) -> bool:
        """Judge a new proposal's time on our clock now, at receipt (a re-proposal, valid round >= 0, keeps the
        time +2/3 judged timely in its first round: not judged again), then feed it with the verdict."""
        p, block = event.message.proposal, event.message.block
        if p.pol_round != NO_POL_ROUND:
            return self._feed(event)
        now = self._clock_ms()
        timely = is_timely(block.header.time_ms, now, self.params, p.round)
        current = p.height == self.machine.height and self.machine.round_proposal(p.round) is None
        ok = self._feed(dataclasses.replace(event, timely=timely))
        if current and p.height == self.machine.height and self.machine.round_proposal(p.round) == p:
            # the machine took it as the round's proposal: from the right proposer, signature checked
            self.clock_watch.observe(p.height, p.round, p.proposer, timely, block.header.time_ms - now)
        return ok

    def _handle(self, event: object) -> list:
        """`machine.handle`, with a failing signer (its state could not be persisted) made fatal."""
        if self.failed is not None:
            return []
        try:
            return self.machine.handle(event)  # type: ignore[arg-type]
        except (SigningStateError, StoreError) as exc:
            self._fail(exc, f"consensus at height {self.machine.height}")
            return []

    def _fail(self, exc: BaseException, where: str) -> None:
        """Stop consensus for good and hand the fault to the node (re-raised without `on_fatal`)."""
        self.failed = exc
        self.stop()
        if self.on_fatal is None:
            raise exc
        self.on_fatal(exc, where)

    # ------------------------------------------------------------------ actions

    def _execute(self, actions: list) -> None:
        self._execute_actions(actions)
        self._check_own_proposal()

    def _execute_actions(self, actions: list) -> None:
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
        if isinstance(message, ProposalMessage) and message.proposal.pol_round == NO_POL_ROUND:
            self._own_fresh = (height, message.proposal.round, message.block.header.time_ms)
        self.network.publish(message)
        if self.double_sign and isinstance(message, VoteMessage) and message.vote.vote_type == VOTE_PREVOTE:
            self._equivocate(message)

    def _check_own_proposal(self) -> None:
        """Once our new proposal's round has +2/3 prevotes for one value: warn if that value is nil."""
        if self._own_fresh is None:
            return
        height, round_, block_time = self._own_fresh
        votes = self.machine.votes
        if self.machine.height != height or votes is None:
            self._own_fresh = None
            return
        prevotes = votes.existing(round_, VOTE_PREVOTE)
        value = prevotes.quorum_value() if prevotes is not None else None
        if value is None:
            return
        self._own_fresh = None
        if value == NIL_HASH:
            self.clock_watch.own_proposal_rejected(height, round_, block_time)

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
                self._execute(self._handle(event))

        handle = loop.call_later(action.duration_ms / 1000.0, fire)
        self._timers.add(handle)

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_block(self, height: int, block_hash: bytes) -> None:
        block = await self.network.fetch_block(height, block_hash)
        if block is not None and self._running:
            self._execute(self._handle(BlockReceived(block)))

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
            except StoreError as exc:
                self._fail(exc, f"committing block {action.height}")
                return
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
            try:
                self.chain.store.put_seen_commit(commit.height, commit)
            except StoreError as exc:
                self._fail(exc, f"writing the seen commit of block {commit.height}")
                return
        self._enter_height()

    def on_synced(self) -> None:
        """Block sync applied blocks behind consensus' back: jump to the new height now."""
        if self.machine.height <= self.chain.height:
            if self._new_height_handle is not None:
                self._new_height_handle.cancel()
                self._new_height_handle = None
            self._enter_height()
