"""Validator sets and vote tallies for the BFT engine (DESIGN §5.1).

Voting power is bonded stake. All thresholds use integer arithmetic on power:

- quorum ("2f+1"): `3 * power > 2 * total` — more than two thirds;
- one third ("f+1"): `3 * power > total` — more than one third (at least one honest sender).

`ValidatorSet` is plain, immutable data (the node builds it from `ledger.state`), sorted by address so it
has one canonical order. `VoteSet` tallies the votes of one (height, round, type): it verifies each vote,
counts a validator once, and reports a second, different vote by the same validator as
`DuplicateVoteEvidence`. `HeightVoteSet` keeps the prevote/precommit sets of every round of one height
and bounds what a Byzantine validator can make it store.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from functools import cached_property

from pocl.consensus.bft.messages import MAX_ROUND
from pocl.ledger.block import (
    NIL_HASH,
    VOTE_PRECOMMIT,
    VOTE_PREVOTE,
    VOTE_TYPES,
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Vote,
)
from pocl.ledger.codec import encode
from pocl.ledger.evidence import make_duplicate_vote_evidence
from pocl.ledger.hashing import tagged_hash
from pocl.ledger.keys import PUBKEY_LEN, address_of

TAG_VALIDATOR_SET = b"pocl/validator-set"

# A validator may have votes stored in at most this many rounds above our current round; anything
# further is dropped (honest validators re-gossip, and f+1 of these rounds is enough to skip ahead).
MAX_FUTURE_ROUNDS_PER_VALIDATOR = 2
# Distinct values one validator can have counted in one vote set: its vote and one conflicting vote
# (enough to prove and tolerate equivocation; more would let it make us store unbounded votes).
MAX_VALUES_PER_VALIDATOR = 2


def is_quorum(power: int, total: int) -> bool:
    """More than two thirds of the total power (the paper's 2f+1)."""
    return 3 * power > 2 * total


def is_one_third(power: int, total: int) -> bool:
    """More than one third of the total power (the paper's f+1)."""
    return 3 * power > total


class VoteError(ValueError):
    """A vote that can never count: bad signature, unknown validator, wrong height/round/type/chain."""


# --------------------------------------------------------------------------- validator set


@dataclasses.dataclass(frozen=True)
class Validator:
    pubkey: bytes
    power: int

    @cached_property
    def address(self) -> bytes:
        return address_of(self.pubkey)


class ValidatorSet:
    """An immutable set of (pubkey, power) sorted by address; power > 0, no duplicates."""

    def __init__(self, validators: Iterable[tuple[bytes, int]]) -> None:
        vals = [Validator(bytes(pk), int(power)) for pk, power in validators]
        if not vals:
            raise ValueError("validator set is empty")
        for v in vals:
            if len(v.pubkey) != PUBKEY_LEN:
                raise ValueError("validator public key must be 32 bytes")
            if isinstance(v.power, bool) or v.power <= 0:
                raise ValueError("validator power must be a positive integer")
        vals.sort(key=lambda v: v.address)
        for a, b in itertools.pairwise(vals):
            if a.address == b.address:
                raise ValueError("duplicate validator in set")
        self._validators: tuple[Validator, ...] = tuple(vals)
        self._index = {v.pubkey: i for i, v in enumerate(vals)}
        self.total_power: int = sum(v.power for v in vals)

    @property
    def validators(self) -> tuple[Validator, ...]:
        return self._validators

    def __len__(self) -> int:
        return len(self._validators)

    def __iter__(self) -> Iterator[Validator]:
        return iter(self._validators)

    def __contains__(self, pubkey: object) -> bool:
        return pubkey in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and self._validators == other._validators

    def __hash__(self) -> int:
        return hash(self._validators)

    def __repr__(self) -> str:
        return f"ValidatorSet(n={len(self)}, total_power={self.total_power})"

    def power_of(self, pubkey: bytes) -> int:
        """Voting power of `pubkey`, 0 for a non-validator."""
        i = self._index.get(pubkey)
        return 0 if i is None else self._validators[i].power

    def pairs(self) -> list[tuple[bytes, int]]:
        return [(v.pubkey, v.power) for v in self._validators]

    @cached_property
    def hash(self) -> bytes:
        return tagged_hash(TAG_VALIDATOR_SET, encode([[v.pubkey, v.power] for v in self._validators]))

    def has_quorum(self, power: int) -> bool:
        return is_quorum(power, self.total_power)

    def has_one_third(self, power: int) -> bool:
        return is_one_third(power, self.total_power)


# --------------------------------------------------------------------------- vote sets


@dataclasses.dataclass(frozen=True)
class AddResult:
    added: bool  # the vote is new and now counts (relay it)
    evidence: DuplicateVoteEvidence | None = None  # set when it conflicts with the validator's first vote


class VoteSet:
    """Votes of one (height, round, type), tallied by power.

    Each value's tally counts every validator that signed a vote for it, so an equivocating validator
    counts once for each value it signed (up to MAX_VALUES_PER_VALIDATOR values; the paper counts
    messages per value the same way). This is safe: a value with > 2/3 of the power was signed by
    > 2/3 of the power, whatever else those validators signed. `power_any` counts each validator once.
    """

    def __init__(self, chain_id: str, height: int, round_: int, vote_type: int, validators: ValidatorSet) -> None:
        if vote_type not in VOTE_TYPES:
            raise ValueError(f"unknown vote type {vote_type}")
        self.chain_id = chain_id
        self.height = height
        self.round = round_
        self.vote_type = vote_type
        self.validators = validators
        self._first: dict[bytes, Vote] = {}  # by validator pubkey: its first vote
        self._by_value: dict[bytes, dict[bytes, Vote]] = {}  # block hash -> validator -> vote
        self._values_of: dict[bytes, list[bytes]] = {}  # validator -> values it voted for
        self._power_by_value: dict[bytes, int] = {}
        self.power_any = 0  # power of all validators with a vote here, each counted once

    def check(self, vote: Vote, *, verify_signature: bool = True) -> None:
        """Raise VoteError unless `vote` belongs in this set and is correctly signed."""
        if vote.chain_id != self.chain_id:
            raise VoteError("vote for another chain")
        if (vote.height, vote.round, vote.vote_type) != (self.height, self.round, self.vote_type):
            raise VoteError("vote for another height, round or type")
        if vote.validator not in self.validators:
            raise VoteError("vote from a non-validator")
        if vote.block_hash != NIL_HASH and len(vote.block_hash) != 32:
            raise VoteError("vote block hash must be 32 bytes or empty")
        if verify_signature and not vote.verify_signature():
            raise VoteError("bad vote signature")

    def add(self, vote: Vote, *, verify_signature: bool = True) -> AddResult:
        """Count `vote`; raise VoteError if it is invalid. A repeat is ignored (added=False); a vote
        conflicting with the validator's first one is counted for its value and returned as evidence."""
        values = self._values_of.get(vote.validator, [])
        if vote.block_hash in values:
            return AddResult(False)
        if len(values) >= MAX_VALUES_PER_VALIDATOR:
            return AddResult(False)
        self.check(vote, verify_signature=verify_signature)
        power = self.validators.power_of(vote.validator)
        evidence = None
        first = self._first.get(vote.validator)
        if first is None:
            self._first[vote.validator] = vote
            self.power_any += power
        elif len(values) == 1:
            evidence = make_duplicate_vote_evidence(first, vote)
        self._values_of.setdefault(vote.validator, []).append(vote.block_hash)
        self._by_value.setdefault(vote.block_hash, {})[vote.validator] = vote
        self._power_by_value[vote.block_hash] = self._power_by_value.get(vote.block_hash, 0) + power
        return AddResult(True, evidence)

    def __len__(self) -> int:
        return len(self._first)

    def get(self, pubkey: bytes) -> Vote | None:
        """The first vote counted from `pubkey`."""
        return self._first.get(pubkey)

    def votes(self) -> list[Vote]:
        """Each validator's first vote, in validator-set order."""
        return [self._first[v.pubkey] for v in self.validators if v.pubkey in self._first]

    def votes_for(self, block_hash: bytes) -> list[Vote]:
        """Votes for `block_hash` (NIL_HASH: nil), in validator-set order."""
        by = self._by_value.get(block_hash, {})
        return [by[v.pubkey] for v in self.validators if v.pubkey in by]

    def power_for(self, block_hash: bytes) -> int:
        return self._power_by_value.get(block_hash, 0)

    def has_quorum_for(self, block_hash: bytes) -> bool:
        return self.validators.has_quorum(self.power_for(block_hash))

    def has_quorum_any(self) -> bool:
        return self.validators.has_quorum(self.power_any)

    def quorum_value(self) -> bytes | None:
        """The value (block hash, or NIL_HASH for nil) with +2/3 of the power, if any."""
        for value, power in self._power_by_value.items():
            if self.validators.has_quorum(power):
                return value
        return None

    def make_commit(self, block_hash: bytes) -> Commit:
        """The commit certificate from the precommits for `block_hash`; requires +2/3 of the power."""
        if self.vote_type != VOTE_PRECOMMIT:
            raise ValueError("a commit is built from precommits")
        if block_hash == NIL_HASH or not self.has_quorum_for(block_hash):
            raise ValueError("no +2/3 precommits for this block")
        sigs = [CommitSig(v.validator, v.signature) for v in self.votes_for(block_hash)]
        return Commit(self.height, self.round, block_hash, sigs)


class HeightVoteSet:
    """Prevote and precommit sets for every round of one height.

    Votes from rounds above `current_round` are kept for at most MAX_FUTURE_ROUNDS_PER_VALIDATOR
    distinct rounds per validator, so a Byzantine validator cannot make us allocate unbounded rounds.
    """

    def __init__(self, chain_id: str, height: int, validators: ValidatorSet) -> None:
        self.chain_id = chain_id
        self.height = height
        self.validators = validators
        self.current_round = 0
        self._sets: dict[tuple[int, int], VoteSet] = {}
        self._rounds_of: dict[bytes, set[int]] = {}  # validator -> rounds it has votes in
        self._senders: dict[int, set[bytes]] = {}  # round -> validators with any message in it
        self._sender_power: dict[int, int] = {}

    def vote_set(self, round_: int, vote_type: int) -> VoteSet:
        key = (round_, vote_type)
        vs = self._sets.get(key)
        if vs is None:
            vs = VoteSet(self.chain_id, self.height, round_, vote_type, self.validators)
            self._sets[key] = vs
        return vs

    def existing(self, round_: int, vote_type: int) -> VoteSet | None:
        return self._sets.get((round_, vote_type))

    def prevotes(self, round_: int) -> VoteSet:
        return self.vote_set(round_, VOTE_PREVOTE)

    def precommits(self, round_: int) -> VoteSet:
        return self.vote_set(round_, VOTE_PRECOMMIT)

    def rounds(self) -> list[int]:
        return sorted({r for r, _t in self._sets})

    def add(self, vote: Vote, *, verify_signature: bool = True) -> AddResult:
        """Add a vote of this height; VoteError if invalid. Returns AddResult(False) when dropped."""
        if vote.height != self.height:
            raise VoteError("vote for another height")
        if vote.vote_type not in VOTE_TYPES:
            raise VoteError("unknown vote type")
        if not 0 <= vote.round <= MAX_ROUND:
            raise VoteError("round out of range")
        if vote.validator not in self.validators:
            raise VoteError("vote from a non-validator")
        rounds = self._rounds_of.setdefault(vote.validator, set())
        if vote.round > self.current_round and vote.round not in rounds:
            future = sum(1 for r in rounds if r > self.current_round)
            if future >= MAX_FUTURE_ROUNDS_PER_VALIDATOR:
                return AddResult(False)
        result = self.vote_set(vote.round, vote.vote_type).add(vote, verify_signature=verify_signature)
        if result.added:
            rounds.add(vote.round)
            self.note_sender(vote.round, vote.validator)
        return result

    def note_sender(self, round_: int, pubkey: bytes) -> None:
        """Record that `pubkey` sent some message (vote or proposal) in `round_` (for round skipping)."""
        senders = self._senders.setdefault(round_, set())
        if pubkey not in senders and pubkey in self.validators:
            senders.add(pubkey)
            self._sender_power[round_] = self._sender_power.get(round_, 0) + self.validators.power_of(pubkey)

    def rounds_with_one_third_above(self, round_: int) -> list[int]:
        """Rounds > round_ in which senders of > 1/3 of the power sent messages (Algorithm 1, line 55)."""
        return sorted(
            r for r, p in self._sender_power.items() if r > round_ and self.validators.has_one_third(p)
        )
