"""Tendermint BFT consensus as a pure state machine (Algorithm 1 of "The latest gossip on BFT consensus",
Buchman, Kwon, Milosevic, 2018; DESIGN §5.1).

The machine does no I/O and reads no clock. The node feeds it **events** and carries out the **actions**
it returns, in order::

    machine = ConsensusMachine(chain_id, params, signer=guard_or_None, get_value=build_block, valid=check_block)
    actions = machine.handle(NewHeight(height, validator_set))     # start (or restart) a height
    actions = machine.handle(ProposalReceived(ProposalMessage, timely=...))  # from a peer (see below)
    actions = machine.handle(VoteReceived(vote))                   # from a peer
    actions = machine.handle(BlockReceived(block))                 # answer to FetchBlock
    actions = machine.handle(CommitReceived(block, commit))        # block + commit of this height (sync)
    actions = machine.handle(TimeoutFired(kind, height, round))    # a ScheduleTimeout expired

Actions (dataclasses below):

- `Broadcast(message)`: our own signed `ProposalMessage`/`VoteMessage`: send to all peers.
- `Relay(message)`: a peer's message that was valid and new: gossip to the other peers.
- `InvalidMessage(reason, message)`: a peer's message was invalid (bad signature, wrong proposer, ...):
  score/disconnect the sender. Stale or duplicate messages are silently ignored instead.
- `ScheduleTimeout(kind, height, round, duration_ms)`: call back with `TimeoutFired(kind, height, round)`
  after `duration_ms`. Stale timeouts are harmless (the machine checks height/round/step).
- `FetchBlock(height, block_hash)`: +2/3 of the power voted for a block we do not have: fetch it from
  peers and feed it back as `BlockReceived`.
- `EvidenceFound(evidence)`: a validator signed two conflicting votes: submit an `evidence` tx.
- `Decide(height, round, block, commit)`: the block is final (`commit` = its +2/3 precommits). Persist
  block and commit, apply the block, wait `params.timeout_commit_ms` (late precommits keep arriving:
  `machine.decided_commit()` returns the fullest commit so far), then send `NewHeight(height + 1, ...)`
  with the validator set after the block.

Injected callables (synchronous, deterministic for a given block):

- `get_value(height, round) -> Block | None`: build a new block to propose (the paper's getValue());
  None means "nothing to propose now" (others will time out).
- `valid(block) -> bool`: the paper's valid(v): execute the block on a copy of the state and check the
  header. Note that a re-proposed block (validValue, lines 15-16) keeps the header of the round it was
  first proposed in, so `valid` must not require `header.proposer` to be this round's proposer — only a
  validator of the height. Results are cached per block hash for the height.
- `signer`: a `Signer` (normally `consensus.signing_state.SigningGuard`) or None for an observer
  (a full node). Observers run the same rules, never sign, and still emit `Decide`. A signer whose key is
  not in the height's validator set also acts as an observer. If the signer refuses (`DoubleSignError`,
  e.g. after a restart), the machine moves on without sending that message: never signing is safe.

Proposer-based timestamps (CometBFT's PBTS, `consensus.bft.timely`): `ProposalReceived.timely` is the
node's verdict, on its clock at receipt, on the block's time. The rule on line 22 (a proposal with valid
round -1) prevotes the value only if it was timely; a re-proposal (line 28) keeps its original time and
is not judged again. Our own proposal is timely: its time is our clock when we built it.

Read-only state for RPC/metrics: `height`, `round`, `step`, `locked_round`/`locked_value`,
`valid_round`/`valid_value`, `decision`, `proposer(round)`, `round_proposal(round)`, `is_validator`.
Lost messages are expected: the machine drops proposals more than PROPOSAL_FUTURE_ROUNDS ahead and votes
beyond MAX_FUTURE_ROUNDS_PER_VALIDATOR future rounds per validator (memory bounds against Byzantine spam);
the node re-sends its own messages of the current height, which makes that harmless.

Line numbers in comments refer to Algorithm 1. Deviations, all taken from CometBFT: the propose timeout
is scheduled also when we are the proposer (so a proposer that cannot build a block still moves on);
rules 36/49 accept the value's block from any source (a proposal of another round, or a fetched block)
once its hash has +2/3 votes; rule 55 jumps to the highest round with f+1 senders; a verified commit
(`CommitReceived`) decides like line 49. Messages for the next height are buffered (bounded) and
replayed at `NewHeight`. Tallies count an equivocating validator once per value it signed, as the
paper counts messages (see consensus.bft.votes).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable

from pocl.consensus.bft.commit import CommitError, verify_commit
from pocl.consensus.bft.messages import NO_POL_ROUND, Proposal, ProposalMessage, VoteMessage
from pocl.consensus.bft.proposer import proposer_for
from pocl.consensus.bft.signer import DoubleSignError, Signer
from pocl.consensus.bft.votes import HeightVoteSet, ValidatorSet, VoteError
from pocl.ledger.block import (
    NIL_HASH,
    VOTE_PRECOMMIT,
    VOTE_PREVOTE,
    Block,
    Commit,
    DuplicateVoteEvidence,
    Vote,
)
from pocl.ledger.params import ChainParams

log = logging.getLogger(__name__)

TIMEOUT_PROPOSE = "propose"
TIMEOUT_PREVOTE = "prevote"
TIMEOUT_PRECOMMIT = "precommit"

MAX_PROPOSALS_PER_ROUND = 4  # distinct proposals kept from an equivocating proposer; more are dropped
PROPOSAL_FUTURE_ROUNDS = 10  # proposals for rounds beyond round_p + this are dropped (re-gossiped later)
MAX_BUFFERED_VOTES = 10_000  # next-height votes held until NewHeight
MAX_BUFFERED_PROPOSALS = 8


class Step(enum.IntEnum):
    NEW = 0  # before the first NewHeight
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMITTED = 4  # decided; waiting for NewHeight(height + 1)


# --------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True)
class NewHeight:
    height: int
    validators: ValidatorSet


@dataclasses.dataclass(frozen=True)
class ProposalReceived:
    """A peer's proposal. `timely`: the node's `is_timely(block time, its clock at receipt)` verdict
    (`consensus.bft.timely`); only a proposal of valid round -1 needs it (line 22)."""

    message: ProposalMessage
    timely: bool = True


@dataclasses.dataclass(frozen=True)
class VoteReceived:
    vote: Vote


@dataclasses.dataclass(frozen=True)
class BlockReceived:
    block: Block


@dataclasses.dataclass(frozen=True)
class CommitReceived:
    """A block of the current height with its commit (from block sync / a peer ahead of us)."""

    block: Block
    commit: Commit


@dataclasses.dataclass(frozen=True)
class TimeoutFired:
    kind: str
    height: int
    round: int


Event = NewHeight | ProposalReceived | VoteReceived | BlockReceived | CommitReceived | TimeoutFired

# --------------------------------------------------------------------------- actions

Message = ProposalMessage | VoteMessage


@dataclasses.dataclass(frozen=True)
class Broadcast:
    message: Message


@dataclasses.dataclass(frozen=True)
class Relay:
    message: Message


@dataclasses.dataclass(frozen=True)
class InvalidMessage:
    reason: str
    message: Message | CommitReceived


@dataclasses.dataclass(frozen=True)
class ScheduleTimeout:
    kind: str
    height: int
    round: int
    duration_ms: int


@dataclasses.dataclass(frozen=True)
class FetchBlock:
    height: int
    block_hash: bytes


@dataclasses.dataclass(frozen=True)
class EvidenceFound:
    evidence: DuplicateVoteEvidence


@dataclasses.dataclass(frozen=True)
class Decide:
    height: int
    round: int
    block: Block
    commit: Commit


Action = Broadcast | Relay | InvalidMessage | ScheduleTimeout | FetchBlock | EvidenceFound | Decide


def timeout_duration_ms(params: ChainParams, kind: str, round_: int) -> int:
    """Timeouts grow linearly with the round so that eventually they exceed the network delay."""
    if kind == TIMEOUT_PROPOSE:
        return params.timeout_propose_ms + round_ * params.timeout_propose_delta_ms
    if kind == TIMEOUT_PREVOTE:
        return params.timeout_prevote_ms + round_ * params.timeout_prevote_delta_ms
    if kind == TIMEOUT_PRECOMMIT:
        return params.timeout_precommit_ms + round_ * params.timeout_precommit_delta_ms
    raise ValueError(f"unknown timeout kind {kind!r}")


# --------------------------------------------------------------------------- the machine


class ConsensusMachine:
    """One node's view of Tendermint consensus, height by height (see the module docstring)."""

    def __init__(
        self,
        chain_id: str,
        params: ChainParams,
        *,
        signer: Signer | None,
        get_value: Callable[[int, int], Block | None],
        valid: Callable[[Block], bool],
    ) -> None:
        self.chain_id = chain_id
        self.params = params
        self.signer = signer
        self._get_value = get_value
        self._valid_fn = valid
        # Algorithm 1 state
        self.height = 0
        self.round = 0
        self.step = Step.NEW
        self.locked_value: Block | None = None
        self.locked_round = -1
        self.valid_value: Block | None = None
        self.valid_round = -1
        self.decision: tuple[int, Block] | None = None  # (round, block) once decided at this height
        self.validators: ValidatorSet | None = None
        self.votes: HeightVoteSet | None = None
        self._reset_height_state()
        self._next_votes: list[Vote] = []
        self._next_proposals: list[ProposalReceived] = []
        self._out: list[Action] = []

    # ------------------------------------------------------------------ public API

    @property
    def is_validator(self) -> bool:
        return self.signer is not None and self.validators is not None and self.signer.pubkey in self.validators

    def proposer(self, round_: int) -> bytes:
        """Public key of the proposer of `round_` at the current height."""
        assert self.validators is not None
        return proposer_for(self.validators, self.height, round_).pubkey

    def round_proposal(self, round_: int) -> Proposal | None:
        """The first proposal from the proposer of `round_` at the current height, once accepted."""
        return self._proposal.get(round_)

    def decided_commit(self) -> Commit | None:
        """After Decide: the commit with every precommit for the decided block received so far."""
        if self.decision is None or self.votes is None:
            return None
        r, block = self.decision
        precommits = self.votes.precommits(r)
        if precommits.has_quorum_for(block.hash):
            ours = precommits.make_commit(block.hash)
            if len(ours.signatures) >= len(self._decided_commit.signatures):
                return ours
        return self._decided_commit

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return the actions to carry out, in order."""
        self._out = []
        if isinstance(event, NewHeight):
            self._on_new_height(event.height, event.validators)
        elif self.step == Step.NEW:
            self._buffer_for_later(event)
        elif isinstance(event, VoteReceived):
            self._on_vote(event.vote)
        elif isinstance(event, ProposalReceived):
            self._on_proposal(event.message, own=False, timely=event.timely)
        elif isinstance(event, BlockReceived):
            self._on_block(event.block)
        elif isinstance(event, CommitReceived):
            self._on_commit(event)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event.kind, event.height, event.round)
        else:
            raise TypeError(f"unknown event {event!r}")
        self._process()
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ height lifecycle

    def _reset_height_state(self) -> None:
        self._proposal: dict[int, Proposal] = {}  # round -> first proposal from its proposer
        self._untimely_rounds: set[int] = set()  # rounds whose first proposal was not timely at receipt
        self._proposals_seen: dict[int, dict[bytes, Proposal]] = {}  # round -> block hash -> proposal
        self._blocks: dict[bytes, Block] = {}
        self._valid_cache: dict[bytes, bool] = {}
        self._fetching: set[bytes] = set()
        self._prevote_timeout_rounds: set[int] = set()  # line 34 "for the first time"
        self._precommit_timeout_rounds: set[int] = set()  # line 47 "for the first time"
        self._polka_rounds: set[int] = set()  # line 36 "for the first time"
        self._decided_commit: Commit | None = None

    def _on_new_height(self, height: int, validators: ValidatorSet) -> None:
        if height < 1:
            raise ValueError("height starts at 1")
        if self.step != Step.NEW and height <= self.height:
            raise ValueError(f"NewHeight({height}) does not advance from height {self.height}")
        self.height = height
        self.validators = validators
        self.votes = HeightVoteSet(self.chain_id, height, validators)
        self.locked_value, self.locked_round = None, -1
        self.valid_value, self.valid_round = None, -1
        self.decision = None
        self._reset_height_state()
        buffered_votes, self._next_votes = self._next_votes, []
        buffered_props, self._next_proposals = self._next_proposals, []
        self._start_round(0)
        for ev in buffered_props:
            if ev.message.proposal.height == height:
                self._on_proposal(ev.message, own=False, timely=ev.timely)
        for vote in buffered_votes:
            if vote.height == height:
                self._on_vote(vote)

    def _buffer_for_later(self, event: Event) -> None:
        if isinstance(event, VoteReceived) and len(self._next_votes) < MAX_BUFFERED_VOTES:
            self._next_votes.append(event.vote)
        elif isinstance(event, ProposalReceived) and len(self._next_proposals) < MAX_BUFFERED_PROPOSALS:
            self._next_proposals.append(event)

    # ------------------------------------------------------------------ rounds (StartRound, line 11)

    def _start_round(self, round_: int) -> None:
        assert self.votes is not None
        self.round = round_
        self.step = Step.PROPOSE
        self.votes.current_round = round_
        if self.is_validator and self.proposer(round_) == self.signer.pubkey:  # type: ignore[union-attr]
            if self.valid_value is not None:  # lines 14-15
                value: Block | None = self.valid_value
            else:  # line 17
                value = self._get_value(self.height, round_)
            if value is not None:
                self._propose(value, self.valid_round if self.valid_value is not None else NO_POL_ROUND)
        # line 21 (scheduled for the proposer too; see the module docstring)
        self._schedule(TIMEOUT_PROPOSE, round_)

    def _propose(self, block: Block, pol_round: int) -> None:
        assert self.signer is not None
        try:
            proposal = self.signer.sign_proposal(self.height, self.round, block.hash, pol_round)
        except DoubleSignError as exc:
            log.warning("not proposing at height=%d round=%d: %s", self.height, self.round, exc)
            return
        msg = ProposalMessage(proposal, block)
        self._out.append(Broadcast(msg))  # line 19
        self._on_proposal(msg, own=True)

    def _schedule(self, kind: str, round_: int) -> None:
        self._out.append(
            ScheduleTimeout(kind, self.height, round_, timeout_duration_ms(self.params, kind, round_))
        )

    # ------------------------------------------------------------------ incoming messages

    def _on_proposal(self, msg: ProposalMessage, *, own: bool, timely: bool = True) -> None:
        p = msg.proposal
        if p.height == self.height + 1:
            if len(self._next_proposals) < MAX_BUFFERED_PROPOSALS:
                self._next_proposals.append(ProposalReceived(msg, timely))
            return
        if p.height != self.height or self.step == Step.COMMITTED:
            return  # stale or far ahead: block sync handles other heights
        if p.chain_id != self.chain_id:
            self._out.append(InvalidMessage("proposal for another chain", msg))
            return
        if not p.is_well_formed() or not msg.is_consistent():
            self._out.append(InvalidMessage("malformed proposal", msg))
            return
        if p.round > self.round + PROPOSAL_FUTURE_ROUNDS:
            return
        seen = self._proposals_seen.setdefault(p.round, {})
        if p.block_hash in seen:
            return  # duplicate
        if p.proposer != self.proposer(p.round):
            self._out.append(InvalidMessage("proposal from the wrong proposer", msg))
            return
        if len(seen) >= MAX_PROPOSALS_PER_ROUND:
            return
        if not own and not p.verify_signature():
            self._out.append(InvalidMessage("bad proposal signature", msg))
            return
        seen[p.block_hash] = p
        self._blocks.setdefault(p.block_hash, msg.block)
        assert self.votes is not None
        self.votes.note_sender(p.round, p.proposer)
        if p.round not in self._proposal:
            self._proposal[p.round] = p
            if not timely:
                self._untimely_rounds.add(p.round)
            if not own:
                self._out.append(Relay(msg))
        elif not own:
            log.warning("proposer %s sent a second proposal at height=%d round=%d",
                        p.proposer.hex()[:16], p.height, p.round)

    def _on_vote(self, vote: Vote, *, own: bool = False) -> None:
        if vote.height == self.height + 1:
            if len(self._next_votes) < MAX_BUFFERED_VOTES:
                self._next_votes.append(vote)
            return
        if vote.height != self.height:
            return
        assert self.votes is not None
        try:
            result = self.votes.add(vote, verify_signature=not own)
        except VoteError as exc:
            if vote.chain_id == self.chain_id or own:
                self._out.append(InvalidMessage(str(exc), VoteMessage(vote)))
            return
        if result.evidence is not None:
            self._out.append(EvidenceFound(result.evidence))
        if result.added and not own:
            self._out.append(Relay(VoteMessage(vote)))

    def _on_block(self, block: Block) -> None:
        if block.height != self.height or block.hash not in self._fetching:
            return  # only blocks we asked for are kept
        self._blocks.setdefault(block.hash, block)

    def _on_commit(self, event: CommitReceived) -> None:
        block, commit = event.block, event.commit
        if block.height != self.height or self.step == Step.COMMITTED:
            return
        assert self.validators is not None
        try:
            verify_commit(self.chain_id, commit, self.validators, block.hash, self.height)
        except CommitError as exc:
            self._out.append(InvalidMessage(f"bad commit: {exc.reason}", event))
            return
        self._blocks.setdefault(block.hash, block)
        if self._is_valid(block):
            self._decide(commit.round, block, commit)

    # ------------------------------------------------------------------ our votes

    def _vote(self, vote_type: int, block_hash: bytes) -> None:
        """Broadcast our prevote/precommit (lines 24/26/30/32/40/45/58/62). Observers only change step."""
        if not self.is_validator:
            return
        assert self.signer is not None
        try:
            vote = self.signer.sign_vote(vote_type, self.height, self.round, block_hash)
        except DoubleSignError as exc:
            log.warning("not voting at height=%d round=%d: %s", self.height, self.round, exc)
            return
        self._out.append(Broadcast(VoteMessage(vote)))
        self._on_vote(vote, own=True)

    def _is_valid(self, block: Block) -> bool:
        h = block.hash
        cached = self._valid_cache.get(h)
        if cached is None:
            try:
                cached = bool(block.height == self.height and self._valid_fn(block))
            except Exception:  # a peer's block must never crash consensus
                log.exception("valid() raised on block %s; treating it as invalid", h.hex()[:16])
                cached = False
            self._valid_cache[h] = cached
        return cached

    def _block_or_fetch(self, block_hash: bytes) -> Block | None:
        block = self._blocks.get(block_hash)
        if block is None and block_hash not in self._fetching:
            self._fetching.add(block_hash)
            self._out.append(FetchBlock(self.height, block_hash))
        return block

    # ------------------------------------------------------------------ timeouts (lines 57-67)

    def _on_timeout(self, kind: str, height: int, round_: int) -> None:
        if height != self.height or round_ != self.round or self.step == Step.COMMITTED:
            return
        if kind == TIMEOUT_PROPOSE:
            if self.step == Step.PROPOSE:  # line 57
                self._vote(VOTE_PREVOTE, NIL_HASH)
                self.step = Step.PREVOTE
        elif kind == TIMEOUT_PREVOTE:
            if self.step == Step.PREVOTE:  # line 61
                self._vote(VOTE_PRECOMMIT, NIL_HASH)
                self.step = Step.PRECOMMIT
        elif kind == TIMEOUT_PRECOMMIT:  # line 65
            self._start_round(self.round + 1)
        else:
            raise ValueError(f"unknown timeout kind {kind!r}")

    # ------------------------------------------------------------------ the upon rules

    def _process(self) -> None:
        """Fire enabled upon-rules until none is (every firing changes a step, a flag or the round)."""
        if self.step in (Step.NEW, Step.COMMITTED):
            return
        while self._fire_one():
            if self.step == Step.COMMITTED:
                return

    def _fire_one(self) -> bool:
        assert self.votes is not None
        # line 49: decide on a value with +2/3 precommits in any round
        for r in self.votes.rounds():
            precommits = self.votes.existing(r, VOTE_PRECOMMIT)
            if precommits is None:
                continue
            value = precommits.quorum_value()
            if value is None or value == NIL_HASH:
                continue
            block = self._block_or_fetch(value)
            if block is not None and self._is_valid(block):
                self._decide(r, block)
                return True
        # line 55: f+1 senders in a higher round -> skip to it
        higher = self.votes.rounds_with_one_third_above(self.round)
        if higher:
            self._start_round(higher[-1])
            return True
        return self._fire_current_round()

    def _fire_current_round(self) -> bool:
        assert self.votes is not None
        r = self.round
        prevotes = self.votes.prevotes(r)
        proposal = self._proposal.get(r)
        if self.step == Step.PROPOSE and proposal is not None:
            v = self._blocks[proposal.block_hash]
            vr = proposal.pol_round
            if vr == NO_POL_ROUND:  # line 22, with PBTS: timely(v.time) as well [PBTS-ALG-UPON-PROP.1]
                ok = (
                    r not in self._untimely_rounds
                    and self._is_valid(v)
                    and (self.locked_round == -1 or self._is_locked_on(v))
                )
                self._vote(VOTE_PREVOTE, v.hash if ok else NIL_HASH)
                self.step = Step.PREVOTE
                return True
            if 0 <= vr < r and self.votes.prevotes(vr).has_quorum_for(v.hash):  # line 28
                ok = self._is_valid(v) and (self.locked_round <= vr or self._is_locked_on(v))
                self._vote(VOTE_PREVOTE, v.hash if ok else NIL_HASH)
                self.step = Step.PREVOTE
                return True
        if self.step == Step.PREVOTE and r not in self._prevote_timeout_rounds and prevotes.has_quorum_any():
            self._prevote_timeout_rounds.add(r)  # line 34
            self._schedule(TIMEOUT_PREVOTE, r)
            return True
        if self.step >= Step.PREVOTE and r not in self._polka_rounds:  # line 36
            value = prevotes.quorum_value()
            if value is not None and value != NIL_HASH:
                block = self._block_or_fetch(value)
                if block is not None and self._is_valid(block):
                    self._polka_rounds.add(r)
                    if self.step == Step.PREVOTE:
                        self.locked_value, self.locked_round = block, r
                        self._vote(VOTE_PRECOMMIT, block.hash)
                        self.step = Step.PRECOMMIT
                    self.valid_value, self.valid_round = block, r
                    return True
        if self.step == Step.PREVOTE and prevotes.has_quorum_for(NIL_HASH):  # line 44
            self._vote(VOTE_PRECOMMIT, NIL_HASH)
            self.step = Step.PRECOMMIT
            return True
        if r not in self._precommit_timeout_rounds and self.votes.precommits(r).has_quorum_any():
            self._precommit_timeout_rounds.add(r)  # line 47
            self._schedule(TIMEOUT_PRECOMMIT, r)
            return True
        return False

    def _is_locked_on(self, block: Block) -> bool:
        return self.locked_value is not None and self.locked_value.hash == block.hash

    def _decide(self, round_: int, block: Block, commit: Commit | None = None) -> None:
        assert self.votes is not None
        self.decision = (round_, block)  # line 51
        self.step = Step.COMMITTED
        if commit is None:
            commit = self.votes.precommits(round_).make_commit(block.hash)
        self._decided_commit = commit
        self._out.append(Decide(self.height, round_, block, commit))
