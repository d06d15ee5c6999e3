"""Duplicate-vote evidence: detection, canonical form, checking."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.bft.evidence import (
    EvidenceError,
    check_duplicate_vote_evidence,
    evidence_hash,
    make_duplicate_vote_evidence,
    offender,
    votes_conflict,
)
from pocl.consensus.bft.machine import ConsensusMachine, EvidenceFound, NewHeight, VoteReceived
from pocl.consensus.bft.messages import make_vote
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.block import NIL_HASH, VOTE_PRECOMMIT, VOTE_PREVOTE, DuplicateVoteEvidence
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams

CHAIN = "pocl-test"
KEYS = [PrivateKey.from_seed_text(f"ev-{i}") for i in range(4)]
A = b"\xaa" * 32
B = b"\xbb" * 32


def test_make_and_check_canonical_evidence() -> None:
    va = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, B)
    vb = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, A)
    ev1 = make_duplicate_vote_evidence(va, vb)
    ev2 = make_duplicate_vote_evidence(vb, va)
    assert ev1 == ev2 and ev1.vote_a.block_hash == A  # canonical order
    assert evidence_hash(ev1) == evidence_hash(ev2) and offender(ev1) == KEYS[0].pubkey
    check_duplicate_vote_evidence(CHAIN, ev1)
    assert DuplicateVoteEvidence.decode(ev1.encode()) == ev1
    nil = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, NIL_HASH)
    check_duplicate_vote_evidence(CHAIN, make_duplicate_vote_evidence(nil, va))  # nil vs block conflicts


def test_non_conflicting_votes_are_not_evidence() -> None:
    base = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, A)
    for other in (
        make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, A),  # same value
        make_vote(KEYS[1], CHAIN, VOTE_PREVOTE, 3, 1, B),  # other validator
        make_vote(KEYS[0], CHAIN, VOTE_PRECOMMIT, 3, 1, B),  # other type
        make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 2, B),  # other round
        make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 4, 1, B),  # other height
        make_vote(KEYS[0], "x", VOTE_PREVOTE, 3, 1, B),  # other chain
    ):
        assert not votes_conflict(base, other)
        with pytest.raises(ValueError):
            make_duplicate_vote_evidence(base, other)
        with pytest.raises(EvidenceError):
            check_duplicate_vote_evidence(CHAIN, DuplicateVoteEvidence(base, other))


def test_bad_evidence_is_rejected() -> None:
    va = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, A)
    vb = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, B)
    with pytest.raises(EvidenceError, match="canonical"):
        check_duplicate_vote_evidence(CHAIN, DuplicateVoteEvidence(vb, va))
    forged = dataclasses.replace(vb, signature=bytes(64))
    with pytest.raises(EvidenceError, match="signature"):
        check_duplicate_vote_evidence(CHAIN, DuplicateVoteEvidence(va, forged))
    with pytest.raises(EvidenceError, match="chain"):
        check_duplicate_vote_evidence("other", DuplicateVoteEvidence(va, vb))


def test_machine_reports_conflicting_votes_once() -> None:
    vals = ValidatorSet([(k.pubkey, 1) for k in KEYS])
    m = ConsensusMachine(CHAIN, ChainParams(), signer=None, get_value=lambda h, r: None, valid=lambda b: True)
    m.handle(NewHeight(3, vals))
    first = m.handle(VoteReceived(make_vote(KEYS[2], CHAIN, VOTE_PRECOMMIT, 3, 0, A)))
    assert not [a for a in first if isinstance(a, EvidenceFound)]
    second = m.handle(VoteReceived(make_vote(KEYS[2], CHAIN, VOTE_PRECOMMIT, 3, 0, B)))
    found = [a.evidence for a in second if isinstance(a, EvidenceFound)]
    assert len(found) == 1
    check_duplicate_vote_evidence(CHAIN, found[0])
    third = m.handle(VoteReceived(make_vote(KEYS[2], CHAIN, VOTE_PRECOMMIT, 3, 0, NIL_HASH)))
    assert not [a for a in third if isinstance(a, EvidenceFound)]
