"""Commit verification: the finality certificate used by block sync and block validation."""

from __future__ import annotations

import pytest
from pocl.consensus.bft.commit import CommitError, verify_commit
from pocl.consensus.bft.messages import make_vote
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.block import VOTE_PRECOMMIT, VOTE_PREVOTE, Commit, CommitSig
from pocl.ledger.keys import PrivateKey

CHAIN = "pocl-test"
KEYS = [PrivateKey.from_seed_text(f"commit-{i}") for i in range(4)]
BLOCK = b"\xab" * 32
OTHER = b"\xcd" * 32


def vset(powers: list[int] = [10, 10, 10, 10]) -> ValidatorSet:  # noqa: B006
    return ValidatorSet([(k.pubkey, p) for k, p in zip(KEYS, powers)])


def sig(k: PrivateKey, height: int = 7, round_: int = 1, block: bytes = BLOCK, vtype: int = VOTE_PRECOMMIT) -> CommitSig:
    v = make_vote(k, CHAIN, vtype, height, round_, block)
    return CommitSig(v.validator, v.signature)


def commit(sigs: list[CommitSig], height: int = 7, round_: int = 1, block: bytes = BLOCK) -> Commit:
    return Commit(height, round_, block, sigs)


def test_valid_commit_passes() -> None:
    verify_commit(CHAIN, commit([sig(k) for k in KEYS[:3]]), vset(), BLOCK)
    verify_commit(CHAIN, commit([sig(k) for k in KEYS]), vset(), BLOCK, height=7)
    c = commit([sig(k) for k in KEYS[:3]])
    verify_commit(CHAIN, Commit.decode(c.encode()), vset(), BLOCK)


def reason(c: Commit, vals: ValidatorSet | None = None, block: bytes = BLOCK, **kw: int) -> str:
    with pytest.raises(CommitError) as exc:
        verify_commit(CHAIN, c, vals or vset(), block, **kw)
    return exc.value.reason


def test_not_enough_power() -> None:
    assert "not more than 2/3" in reason(commit([sig(k) for k in KEYS[:2]]))
    assert "not more than 2/3" in reason(commit([]))
    # unequal powers: 3 validators but only 60 of 100
    assert "not more than 2/3" in reason(commit([sig(k) for k in KEYS[1:]]), vset([40, 20, 20, 20]))
    verify_commit(CHAIN, commit([sig(KEYS[0]), sig(KEYS[1]), sig(KEYS[2])]), vset([40, 20, 20, 20]), BLOCK)


def test_bad_signature() -> None:
    sigs = [sig(k) for k in KEYS[:3]]
    sigs[1] = CommitSig(sigs[1].validator, bytes(64))
    assert reason(commit(sigs)) == "bad precommit signature in commit"
    # a signature over another block, round, height or a prevote does not count
    for bad in (sig(KEYS[2], block=OTHER), sig(KEYS[2], round_=2), sig(KEYS[2], height=8),
                sig(KEYS[2], vtype=VOTE_PREVOTE)):
        assert reason(commit([sig(KEYS[0]), sig(KEYS[1]), bad])) == "bad precommit signature in commit"
    # the right signatures under another chain id
    with pytest.raises(CommitError, match="bad precommit signature"):
        verify_commit("other-chain", commit([sig(k) for k in KEYS]), vset(), BLOCK)


def test_duplicate_signer() -> None:
    s = sig(KEYS[0])
    assert reason(commit([s, s, sig(KEYS[1])])) == "duplicate signer in commit"


def test_non_validator() -> None:
    outsider = PrivateKey.from_seed_text("outsider")
    assert reason(commit([sig(KEYS[0]), sig(KEYS[1]), sig(KEYS[2]), sig(outsider)])) == (
        "commit signed by a non-validator"
    )


def test_wrong_block_or_height() -> None:
    c = commit([sig(k) for k in KEYS])
    assert reason(c, block=OTHER) == "commit is for another block"
    assert "expected 8" in reason(c, height=8)
