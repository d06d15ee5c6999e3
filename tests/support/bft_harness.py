"""A deterministic in-memory network of BFT state machines for tests (virtual time, no I/O).

Each `SimNode` wraps a `ConsensusMachine`; `SimNetwork` delivers broadcasts FIFO to every other node
(optionally filtered, to model partitions and Byzantine behaviour), fires timeouts in virtual time,
serves `FetchBlock` from any node that has the block, and restarts a height after `Decide`.

With `pbts=True` every node has a clock (`clock_ms(name)`: virtual time plus `clock_skew_ms[name]`): its
blocks carry that time, and a new proposal is judged `is_timely` on the receiver's clock at delivery, as
`node/consensus_driver.py` does.

The nodes' keys are consensus keys (they sign proposals and votes); `validator_accounts` gives the
ledger accounts of their operators, for tests that judge the network's evidence against chain state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable
from pathlib import Path

from pocl.consensus.bft.machine import (
    Action,
    BlockReceived,
    Broadcast,
    ConsensusMachine,
    Decide,
    Event,
    EvidenceFound,
    FetchBlock,
    InvalidMessage,
    NewHeight,
    ProposalReceived,
    ScheduleTimeout,
    TimeoutFired,
    VoteReceived,
)
from pocl.consensus.bft.messages import NO_POL_ROUND, Proposal, ProposalMessage, VoteMessage, make_vote
from pocl.consensus.bft.timely import is_timely
from pocl.consensus.bft.votes import ValidatorSet
from pocl.consensus.signing_state import SigningGuard
from pocl.ledger.block import Block, Header, Vote, txs_root
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount

CHAIN_ID = "pocl-test"
PARAMS = ChainParams()
SIM_EPOCH_MS = 1_700_000_000_000  # wall-clock time at virtual time 0 (pbts mode)


class MemorySigner:
    """Signs anything (no guard): lets tests focus on the machine."""

    def __init__(self, key: PrivateKey, chain_id: str = CHAIN_ID) -> None:
        self.key = key
        self.chain_id = chain_id
        self._pubkey = key.pubkey

    @property
    def pubkey(self) -> bytes:
        return self._pubkey

    def sign_vote(self, vote_type: int, height: int, round_: int, block_hash: bytes) -> Vote:
        return make_vote(self.key, self.chain_id, vote_type, height, round_, block_hash)

    def sign_proposal(self, height: int, round_: int, block_hash: bytes, pol_round: int) -> Proposal:
        return Proposal.create(self.key, self.chain_id, height, round_, block_hash, pol_round)


def make_block(height: int, proposer_addr: bytes, tag: str, time_ms: int | None = None) -> Block:
    txs = [tag.encode()]
    t = 1_000 * height if time_ms is None else time_ms
    header = Header(height, t, b"", proposer_addr, txs_root(txs), bytes(32), b"", b"")
    return Block(header, txs, None)


def keys(n: int, prefix: str = "val") -> list[PrivateKey]:
    return [PrivateKey.from_seed_text(f"{prefix}-{i}") for i in range(n)]


def operator_key(consensus: PrivateKey) -> PrivateKey:
    """The operator account (stake, fees, slashing) behind a validator's consensus key, derived from it."""
    return PrivateKey(hashlib.sha256(b"pocl-test/operator/" + consensus.seed).digest())


def validator_accounts(
    ks: list[PrivateKey], stake: int = 1_000, balance: int = 1_000
) -> list[GenesisAccount]:
    """Genesis accounts of the operators whose consensus keys are `ks`."""
    out = []
    for k in ks:
        op = operator_key(k)
        out.append(GenesisAccount(op.address, balance, stake, op.pubkey, consensus_pubkey=k.pubkey))
    return out


def validator_set(ks: list[PrivateKey], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [10] * len(ks)
    return ValidatorSet([(k.pubkey, p) for k, p in zip(ks, powers)])


@dataclasses.dataclass
class SimNode:
    name: str
    key: PrivateKey | None
    machine: ConsensusMachine
    invalid_blocks: set[bytes]
    decisions: dict[int, Decide] = dataclasses.field(default_factory=dict)
    evidence: list[EvidenceFound] = dataclasses.field(default_factory=list)
    invalid_messages: list[InvalidMessage] = dataclasses.field(default_factory=list)
    fetches: list[FetchBlock] = dataclasses.field(default_factory=list)
    sent: list[Action] = dataclasses.field(default_factory=list)
    down: bool = False


Filter = Callable[[str, str, object], bool]  # (src, dst, message) -> deliver?


class SimNetwork:
    def __init__(
        self,
        n: int = 4,
        powers: list[int] | None = None,
        *,
        observers: int = 0,
        guard_dir: Path | None = None,
        params: ChainParams = PARAMS,
        latency_ms: int = 10,
        jitter_seed: int | None = None,
        pbts: bool = False,
    ) -> None:
        self.keys = keys(n)
        self.validators = validator_set(self.keys, powers)
        self.params = params
        self.latency_ms = latency_ms
        self.now = 0
        self._seq = 0
        self.queue: deque[tuple[str, Event]] = deque()
        self.timers: list[tuple[int, int, str, Event]] = []
        self.nodes: dict[str, SimNode] = {}
        self.filters: list[Filter] = []
        self.values: dict[str, Callable[[int, int], Block | None]] = {}
        self.guard_dir = guard_dir
        self.fetch_blocked: set[str] = set()  # nodes whose FetchBlock is never answered
        self.rng = random.Random(jitter_seed) if jitter_seed is not None else None
        # (src, dst, message) -> delivery delay in ms; overrides FIFO/jitter when set
        self.delay: Callable[[str, str, object], int] | None = None
        self.pbts = pbts
        self.clock_skew_ms: dict[str, int] = {}  # pbts mode: a node's clock minus true (virtual) time
        for i, k in enumerate(self.keys):
            self.add_node(f"v{i}", k)
        for j in range(observers):
            self.add_node(f"o{j}", None)

    # -- construction
    def _signer(self, name: str, key: PrivateKey):
        if self.guard_dir is not None:
            return SigningGuard(self.guard_dir / f"{name}.state", key, CHAIN_ID)
        return MemorySigner(key)

    def add_node(self, name: str, key: PrivateKey | None) -> SimNode:
        invalid: set[bytes] = set()

        def get_value(height: int, round_: int, _name: str = name) -> Block | None:
            custom = self.values.get(_name)
            if custom is not None:
                return custom(height, round_)
            assert key is not None
            t = self.clock_ms(_name) if self.pbts else None
            return make_block(height, key.address, f"{_name}/h{height}/r{round_}", t)

        def valid(block: Block, _invalid: set[bytes] = invalid) -> bool:
            return block.hash not in _invalid

        machine = ConsensusMachine(
            CHAIN_ID,
            self.params,
            signer=self._signer(name, key) if key else None,
            get_value=get_value,
            valid=valid,
        )
        node = SimNode(name, key, machine, invalid)
        self.nodes[name] = node
        return node

    def node_of(self, pubkey: bytes) -> SimNode:
        return next(n for n in self.nodes.values() if n.key is not None and n.key.pubkey == pubkey)

    # -- running
    def start(self, height: int = 1) -> None:
        for name in self.nodes:
            self.deliver(name, NewHeight(height, self.validators))

    def clock_ms(self, name: str) -> int:
        """Node `name`'s wall clock (pbts mode)."""
        return SIM_EPOCH_MS + self.now + self.clock_skew_ms.get(name, 0)

    def deliver(self, name: str, event: Event) -> None:
        node = self.nodes[name]
        if node.down:
            return
        if self.pbts and isinstance(event, ProposalReceived) and event.message.proposal.pol_round == NO_POL_ROUND:
            p, block = event.message.proposal, event.message.block
            timely = is_timely(block.header.time_ms, self.clock_ms(name), self.params, p.round)
            event = dataclasses.replace(event, timely=timely)
        for action in node.machine.handle(event):
            self._apply(node, action)

    def _timer(self, delay: int, name: str, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (self.now + delay, self._seq, name, event))

    def _apply(self, node: SimNode, action: Action) -> None:
        node.sent.append(action)
        if isinstance(action, Broadcast):
            msg = action.message
            event: Event = (
                ProposalReceived(msg) if isinstance(msg, ProposalMessage) else VoteReceived(msg.vote)
            )
            for other in self.nodes:
                if other != node.name and all(f(node.name, other, msg) for f in self.filters):
                    if self.delay is not None:
                        self._timer(self.delay(node.name, other, msg), other, event)
                    elif self.rng is not None:  # random latency: messages reorder
                        self._timer(self.rng.randint(0, 3 * self.latency_ms), other, event)
                    else:
                        self.queue.append((other, event))
        elif isinstance(action, ScheduleTimeout):
            self._timer(action.duration_ms, node.name, TimeoutFired(action.kind, action.height, action.round))
        elif isinstance(action, Decide):
            assert action.height not in node.decisions, "decided twice"
            node.decisions[action.height] = action
            self._timer(
                self.params.timeout_commit_ms, node.name, NewHeight(action.height + 1, self.validators)
            )
        elif isinstance(action, FetchBlock):
            node.fetches.append(action)
            block = self.find_block(action.block_hash)
            if block is not None and node.name not in self.fetch_blocked:
                self._timer(self.latency_ms, node.name, BlockReceived(block))
        elif isinstance(action, EvidenceFound):
            node.evidence.append(action)
        elif isinstance(action, InvalidMessage):
            node.invalid_messages.append(action)

    def find_block(self, block_hash: bytes) -> Block | None:
        for n in self.nodes.values():
            for a in n.sent:
                if (
                    isinstance(a, Broadcast)
                    and isinstance(a.message, ProposalMessage)
                    and a.message.block.hash == block_hash
                ):
                    return a.message.block
        return None

    def inject(self, name: str, message: ProposalMessage | VoteMessage | Vote) -> None:
        """Queue a message (e.g. a Byzantine one) for `name`."""
        if isinstance(message, ProposalMessage):
            self.queue.append((name, ProposalReceived(message)))
        else:
            vote = message.vote if isinstance(message, VoteMessage) else message
            self.queue.append((name, VoteReceived(vote)))

    def step(self) -> bool:
        if self.queue:
            name, event = self.queue.popleft()
            self.deliver(name, event)
            return True
        if self.timers:
            t, _s, name, event = heapq.heappop(self.timers)
            self.now = max(self.now, t)
            self.deliver(name, event)
            return True
        return False

    def run_until(self, cond: Callable[[], bool], max_steps: int = 200_000) -> None:
        for _ in range(max_steps):
            if cond():
                return
            if not self.step():
                break
        assert cond(), "condition not reached"

    def run_until_height(self, height: int, names: list[str] | None = None, max_steps: int = 200_000) -> None:
        names = names or [n for n, node in self.nodes.items() if not node.down]
        self.run_until(lambda: all(height in self.nodes[n].decisions for n in names), max_steps)

    def decided_hashes(self, height: int) -> set[bytes]:
        return {n.decisions[height].block.hash for n in self.nodes.values() if height in n.decisions}


def make_equivocator(net: SimNetwork, name: str, targets: list[str]) -> None:
    """Make `name` Byzantine: besides its normal messages, every vote it casts is doubled by a
    conflicting vote for another block, sent only to `targets` (before the real one can arrive)."""
    node = net.nodes[name]
    key = node.key
    assert key is not None
    honest_handle = node.machine.handle

    def handle(event: Event) -> list[Action]:
        actions = honest_handle(event)
        for a in actions:
            if isinstance(a, Broadcast) and isinstance(a.message, VoteMessage):
                v = a.message.vote
                alt = make_block(v.height, key.address, f"{name}-alt/h{v.height}/r{v.round}")
                twin = make_vote(key, CHAIN_ID, v.vote_type, v.height, v.round, alt.hash)
                for t in targets:
                    net.queue.appendleft((t, VoteReceived(twin)))
        return actions

    node.machine.handle = handle  # type: ignore[method-assign]
