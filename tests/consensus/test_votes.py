"""Validator sets, thresholds and vote tallies."""

from __future__ import annotations

import pytest
from pocl.consensus.bft.messages import make_vote
from pocl.consensus.bft.votes import (
    MAX_FUTURE_ROUNDS_PER_VALIDATOR,
    HeightVoteSet,
    ValidatorSet,
    VoteError,
    VoteSet,
    is_one_third,
    is_quorum,
)
from pocl.ledger.block import NIL_HASH, VOTE_PRECOMMIT, VOTE_PREVOTE, Vote
from pocl.ledger.keys import PrivateKey

CHAIN = "pocl-test"
KEYS = [PrivateKey.from_seed_text(f"votes-{i}") for i in range(4)]
H1 = b"\x11" * 32
H2 = b"\x22" * 32


def vset(powers: list[int]) -> ValidatorSet:
    return ValidatorSet([(k.pubkey, p) for k, p in zip(KEYS, powers)])


def pv(i: int, value: bytes, round_: int = 0, height: int = 1, vtype: int = VOTE_PREVOTE) -> Vote:
    return make_vote(KEYS[i], CHAIN, vtype, height, round_, value)


def test_thresholds_are_strict_integer_fractions() -> None:
    assert not is_quorum(2, 3) and is_quorum(3, 3)
    assert not is_quorum(66, 99) and is_quorum(67, 99)
    assert not is_quorum(20, 30) and is_quorum(21, 30)
    assert not is_one_third(1, 3) and is_one_third(2, 3)
    assert not is_one_third(10, 30) and is_one_third(11, 30)
    big = 10**30  # no float rounding
    assert not is_quorum(2 * big, 3 * big) and is_quorum(2 * big + 1, 3 * big)


def test_validator_set_is_sorted_and_validated() -> None:
    a = ValidatorSet([(k.pubkey, 1) for k in KEYS])
    b = ValidatorSet([(k.pubkey, 1) for k in reversed(KEYS)])
    assert a == b and hash(a) == hash(b) and a.hash == b.hash
    addrs = [v.address for v in a]
    assert addrs == sorted(addrs)
    assert a.total_power == 4 and len(a) == 4 and KEYS[0].pubkey in a
    assert a.power_of(PrivateKey.from_seed_text("x").pubkey) == 0
    with pytest.raises(ValueError):
        ValidatorSet([])
    with pytest.raises(ValueError):
        ValidatorSet([(KEYS[0].pubkey, 0)])
    with pytest.raises(ValueError):
        ValidatorSet([(KEYS[0].pubkey, 1), (KEYS[0].pubkey, 2)])
    with pytest.raises(ValueError):
        ValidatorSet([(b"short", 1)])
    assert vset([1, 2, 3, 4]).hash != vset([1, 2, 3, 5]).hash


def test_vote_set_tallies_by_power_and_dedups() -> None:
    vs = VoteSet(CHAIN, 1, 0, VOTE_PREVOTE, vset([1, 1, 1, 4]))
    assert vs.add(pv(0, H1)).added
    assert not vs.add(pv(0, H1)).added  # repeat
    assert vs.power_for(H1) == 1 and not vs.has_quorum_for(H1)
    vs.add(pv(1, H1))
    vs.add(pv(2, NIL_HASH))
    assert vs.power_any == 3 and not vs.has_quorum_any()  # 3 of 7
    vs.add(pv(3, H1))
    assert vs.power_for(H1) == 6 and vs.has_quorum_for(H1) and vs.quorum_value() == H1
    assert vs.has_quorum_any() and len(vs) == 4


def test_quorum_of_any_values() -> None:
    vs = VoteSet(CHAIN, 1, 0, VOTE_PREVOTE, vset([1, 1, 1, 1]))
    vs.add(pv(0, NIL_HASH))
    vs.add(pv(1, H2))
    assert not vs.has_quorum_any()
    vs.add(pv(2, H1))
    assert vs.has_quorum_any() and vs.quorum_value() is None


def test_vote_set_rejects_invalid_votes() -> None:
    vs = VoteSet(CHAIN, 1, 0, VOTE_PREVOTE, vset([1, 1, 1, 1]))
    good = pv(0, H1)
    with pytest.raises(VoteError, match="signature"):
        vs.add(Vote(CHAIN, VOTE_PREVOTE, 1, 0, H1, good.validator, bytes(64)))
    with pytest.raises(VoteError, match="signature"):  # signature from another vote
        vs.add(Vote(CHAIN, VOTE_PREVOTE, 1, 0, H2, good.validator, good.signature))
    with pytest.raises(VoteError, match="non-validator"):
        vs.add(make_vote(PrivateKey.from_seed_text("outsider"), CHAIN, VOTE_PREVOTE, 1, 0, H1))
    with pytest.raises(VoteError, match="another height"):
        vs.add(pv(0, H1, round_=1))
    with pytest.raises(VoteError, match="another height"):
        vs.add(pv(0, H1, vtype=VOTE_PRECOMMIT))
    with pytest.raises(VoteError, match="another chain"):
        vs.add(make_vote(KEYS[0], "other", VOTE_PREVOTE, 1, 0, H1))
    with pytest.raises(VoteError, match="32 bytes"):
        vs.add(make_vote(KEYS[0], CHAIN, VOTE_PREVOTE, 1, 0, b"\x01" * 5))
    assert vs.power_any == 0


def test_conflicting_votes_are_evidence_and_count_per_value() -> None:
    vs = VoteSet(CHAIN, 1, 0, VOTE_PREVOTE, vset([1, 1, 1, 1]))
    assert vs.add(pv(0, H1)).evidence is None
    r = vs.add(pv(0, H2))
    assert r.added and r.evidence is not None
    assert {r.evidence.vote_a.block_hash, r.evidence.vote_b.block_hash} == {H1, H2}
    assert vs.power_any == 1 and vs.power_for(H1) == 1 and vs.power_for(H2) == 1
    third = vs.add(pv(0, NIL_HASH))  # a third value is not stored
    assert not third.added and third.evidence is None
    assert vs.get(KEYS[0].pubkey).block_hash == H1


def test_make_commit() -> None:
    vals = vset([1, 1, 1, 1])
    vs = VoteSet(CHAIN, 5, 2, VOTE_PRECOMMIT, vals)
    for i in range(3):
        vs.add(pv(i, H1, round_=2, height=5, vtype=VOTE_PRECOMMIT))
    vs.add(pv(3, NIL_HASH, round_=2, height=5, vtype=VOTE_PRECOMMIT))
    c = vs.make_commit(H1)
    assert (c.height, c.round, c.block_hash) == (5, 2, H1) and len(c.signatures) == 3
    assert all(v.verify_signature() for v in c.votes(CHAIN))
    with pytest.raises(ValueError):
        vs.make_commit(NIL_HASH)
    with pytest.raises(ValueError):
        VoteSet(CHAIN, 5, 2, VOTE_PREVOTE, vals).make_commit(H1)


def test_height_vote_set_bounds_future_rounds() -> None:
    hvs = HeightVoteSet(CHAIN, 1, vset([1, 1, 1, 1]))
    for r in range(1, MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1):
        assert hvs.add(pv(0, H1, round_=r)).added
    assert not hvs.add(pv(0, H1, round_=50)).added  # too many future rounds for this validator
    assert hvs.add(pv(0, H1, round_=1, vtype=VOTE_PRECOMMIT)).added  # an already-used round is fine
    assert hvs.add(pv(1, H1, round_=50)).added  # other validators are unaffected
    hvs.current_round = 2
    assert hvs.add(pv(0, H1, round_=50)).added  # rounds <= current no longer count as future
    with pytest.raises(VoteError):
        hvs.add(pv(0, H1, height=2))


def test_height_vote_set_round_skip_power() -> None:
    hvs = HeightVoteSet(CHAIN, 1, vset([1, 1, 1, 1]))
    hvs.add(pv(0, H1, round_=3))
    hvs.add(pv(0, H1, round_=3, vtype=VOTE_PRECOMMIT))
    assert hvs.rounds_with_one_third_above(0) == []
    hvs.note_sender(3, KEYS[1].pubkey)  # e.g. the round's proposal
    assert hvs.rounds_with_one_third_above(0) == [3]
    assert hvs.rounds_with_one_third_above(3) == []


def test_height_vote_set_rejects_absurd_rounds() -> None:
    from pocl.consensus.bft.messages import MAX_ROUND

    hvs = HeightVoteSet(CHAIN, 1, vset([1, 1, 1, 1]))
    with pytest.raises(VoteError, match="round out of range"):
        hvs.add(pv(0, H1, round_=MAX_ROUND + 1))
    with pytest.raises(VoteError, match="round out of range"):
        hvs.add(pv(0, H1, round_=-1))
    hvs.current_round = MAX_ROUND - 1
    assert hvs.add(pv(0, H1, round_=MAX_ROUND)).added
