"""Duplicate-vote evidence as the BFT engine builds it, judged by the chain's predicate."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.bft.machine import ConsensusMachine, EvidenceFound, NewHeight, VoteReceived
from pocl.consensus.bft.messages import make_vote
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.block import NIL_HASH, VOTE_PRECOMMIT, VOTE_PREVOTE, DuplicateVoteEvidence
from pocl.ledger.evidence import check_evidence, make_duplicate_vote_evidence
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State

from tests.support.bft_harness import validator_accounts

CHAIN = "pocl-test"
KEYS = [PrivateKey.from_seed_text(f"ev-{i}") for i in range(4)]  # consensus keys (sign the votes)
A = b"\xaa" * 32
B = b"\xbb" * 32
HEIGHT = 5  # the block the evidence would be included in


def chain_state() -> State:
    return State.from_genesis(ChainParams(), validator_accounts(KEYS), CHAIN)


def reason(ev: DuplicateVoteEvidence, chain_id: str = CHAIN) -> str | None:
    err = check_evidence(chain_state(), ev, chain_id, HEIGHT, ChainParams())
    return None if err is None else err.message


def test_engine_evidence_is_canonical_and_punishable() -> None:
    va = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, B)
    vb = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, A)
    ev1 = make_duplicate_vote_evidence(va, vb)
    ev2 = make_duplicate_vote_evidence(vb, va)
    assert ev1 == ev2 and ev1.vote_a.block_hash == A  # one double sign, one encoding
    assert reason(ev1) is None and reason(DuplicateVoteEvidence(va, vb)) is None  # chain: either order
    assert DuplicateVoteEvidence.decode(ev1.encode()) == ev1
    nil = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, NIL_HASH)
    assert reason(make_duplicate_vote_evidence(nil, va)) is None  # nil vs block conflicts


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
        with pytest.raises(ValueError):
            make_duplicate_vote_evidence(base, other)
        assert reason(DuplicateVoteEvidence(base, other)) is not None


def test_bad_evidence_is_rejected() -> None:
    va = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, A)
    vb = make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 3, 1, B)
    forged = dataclasses.replace(vb, signature=bytes(64))
    assert "signature" in (reason(DuplicateVoteEvidence(va, forged)) or "")
    assert "chain" in (reason(DuplicateVoteEvidence(va, vb), "other") or "")
    future = make_duplicate_vote_evidence(
        make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, HEIGHT + 1, 0, A),
        make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, HEIGHT + 1, 0, B),
    )
    assert "future" in (reason(future) or "")


def test_machine_reports_conflicting_votes_once() -> None:
    vals = ValidatorSet([(k.pubkey, 1) for k in KEYS])
    m = ConsensusMachine(CHAIN, ChainParams(), signer=None, get_value=lambda h, r: None, valid=lambda b: True)
    m.handle(NewHeight(3, vals))
    first = m.handle(VoteReceived(make_vote(KEYS[2], CHAIN, VOTE_PRECOMMIT, 3, 0, A)))
    assert not [a for a in first if isinstance(a, EvidenceFound)]
    second = m.handle(VoteReceived(make_vote(KEYS[2], CHAIN, VOTE_PRECOMMIT, 3, 0, B)))
    found = [a.evidence for a in second if isinstance(a, EvidenceFound)]
    assert len(found) == 1
    assert reason(found[0]) is None
    third = m.handle(VoteReceived(make_vote(KEYS[2], CHAIN, VOTE_PRECOMMIT, 3, 0, NIL_HASH)))
    assert not [a for a in third if isinstance(a, EvidenceFound)]
