"""Double-sign evidence: two conflicting votes signed by one validator (DESIGN §5.1).

Two votes conflict when they share chain, validator, height, round and type but name different
values (a nil vote conflicts with a block vote too). Evidence is canonical: `vote_a` is the vote with
the smaller block hash, so the same double sign always yields the same bytes (and the executor can
deduplicate it). Anyone may submit it; whether the signer was a validator at that height, and how old
the evidence may be, is checked by the executor against its state.
"""

from __future__ import annotations

from pocl.ledger.block import VOTE_TYPES, DuplicateVoteEvidence, Vote
from pocl.ledger.hashing import tagged_hash

TAG_EVIDENCE = b"pocl/evidence"


class EvidenceError(ValueError):
    """Evidence that proves nothing (not conflicting, bad signature, non-canonical)."""


def votes_conflict(a: Vote, b: Vote) -> bool:
    return (
        a.chain_id == b.chain_id
        and a.validator == b.validator
        and a.vote_type == b.vote_type
        and a.height == b.height
        and a.round == b.round
        and a.block_hash != b.block_hash
    )


def make_duplicate_vote_evidence(a: Vote, b: Vote) -> DuplicateVoteEvidence:
    """Canonical evidence from two conflicting votes (ValueError if they do not conflict)."""
    if not votes_conflict(a, b):
        raise ValueError("votes do not conflict")
    if b.block_hash < a.block_hash:
        a, b = b, a
    return DuplicateVoteEvidence(a, b)


def check_duplicate_vote_evidence(chain_id: str, evidence: DuplicateVoteEvidence) -> None:
    """Raise EvidenceError unless `evidence` proves a double sign on `chain_id`.

    Checks: same validator/height/round/type, different values, canonical order, both signatures valid.
    The caller checks that the signer was a validator at `evidence.vote_a.height` and the age limit.
    """
    a, b = evidence.vote_a, evidence.vote_b
    if a.chain_id != chain_id or b.chain_id != chain_id:
        raise EvidenceError("evidence for another chain")
    if a.vote_type not in VOTE_TYPES:
        raise EvidenceError("unknown vote type")
    if a.height < 1 or a.round < 0:
        raise EvidenceError("bad height or round")
    if not votes_conflict(a, b):
        raise EvidenceError("votes do not conflict")
    if not a.block_hash < b.block_hash:
        raise EvidenceError("evidence votes not in canonical order")
    if not a.verify_signature() or not b.verify_signature():
        raise EvidenceError("bad vote signature in evidence")


def evidence_hash(evidence: DuplicateVoteEvidence) -> bytes:
    return tagged_hash(TAG_EVIDENCE, evidence.encode())


def offender(evidence: DuplicateVoteEvidence) -> bytes:
    """Public key of the validator that double-signed."""
    return evidence.vote_a.validator
