"""Double-sign guard: persisted before signing, survives restarts, refuses conflicts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pocl.consensus.bft.signer import DoubleSignError
from pocl.consensus.signing_state import (
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    LastSigned,
    SigningGuard,
    SigningStateError,
)
from pocl.ledger.block import VOTE_PRECOMMIT, VOTE_PREVOTE
from pocl.ledger.keys import PrivateKey

CHAIN = "pocl-test"
KEY = PrivateKey.from_seed_text("guard")
A = b"\xaa" * 32
B = b"\xbb" * 32


def guard(path: Path, **kw: bool) -> SigningGuard:
    return SigningGuard(path / "state", KEY, CHAIN, **kw)


def test_signs_and_persists_before_returning(tmp_path: Path) -> None:
    g = guard(tmp_path)
    v = g.sign_vote(VOTE_PREVOTE, 5, 0, A)
    assert v.verify_signature() and v.block_hash == A and v.validator == KEY.pubkey
    stored = LastSigned.decode((tmp_path / "state").read_bytes())
    assert stored.hrs() == (5, 0, STEP_PREVOTE) and stored.signature == v.signature
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["state"]  # no temp file left behind


def test_refuses_conflicts_after_restart(tmp_path: Path) -> None:
    g = guard(tmp_path)
    first = g.sign_vote(VOTE_PRECOMMIT, 5, 2, A)
    g2 = guard(tmp_path)  # restart
    assert g2.last_hrs == (5, 2, STEP_PRECOMMIT)
    with pytest.raises(DoubleSignError):
        g2.sign_vote(VOTE_PRECOMMIT, 5, 2, B)  # same HRS, different value
    with pytest.raises(DoubleSignError):
        g2.sign_vote(VOTE_PRECOMMIT, 5, 2, b"")  # nil conflicts too
    with pytest.raises(DoubleSignError):
        g2.sign_vote(VOTE_PREVOTE, 5, 2, A)  # lower step
    with pytest.raises(DoubleSignError):
        g2.sign_vote(VOTE_PRECOMMIT, 5, 1, A)  # lower round
    with pytest.raises(DoubleSignError):
        g2.sign_vote(VOTE_PREVOTE, 4, 9, A)  # lower height
    with pytest.raises(DoubleSignError):
        g2.sign_proposal(5, 2, A, -1)
    again = g2.sign_vote(VOTE_PRECOMMIT, 5, 2, A)  # identical re-sign is fine
    assert again == first
    nxt = g2.sign_vote(VOTE_PREVOTE, 5, 3, B)  # higher round
    assert nxt.round == 3 and guard(tmp_path).last_hrs == (5, 3, STEP_PREVOTE)
    assert guard(tmp_path).sign_vote(VOTE_PREVOTE, 6, 0, A).height == 6


def test_proposals_are_guarded(tmp_path: Path) -> None:
    g = guard(tmp_path)
    p = g.sign_proposal(3, 1, A, 0)
    assert p.verify_signature() and p.pol_round == 0
    with pytest.raises(DoubleSignError):
        guard(tmp_path).sign_proposal(3, 1, B, -1)
    assert guard(tmp_path).sign_proposal(3, 1, A, 0) == p
    assert g.sign_vote(VOTE_PREVOTE, 3, 1, A).round == 1  # prevote after own proposal


def test_refused_request_leaves_state_unchanged(tmp_path: Path) -> None:
    g = guard(tmp_path)
    g.sign_vote(VOTE_PREVOTE, 2, 0, A)
    before = (tmp_path / "state").read_bytes()
    with pytest.raises(DoubleSignError):
        g.sign_vote(VOTE_PREVOTE, 2, 0, B)
    assert (tmp_path / "state").read_bytes() == before


def test_corrupt_or_foreign_state_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(b"\x93garbage")
    with pytest.raises(SigningStateError, match="corrupt"):
        guard(tmp_path)
    (tmp_path / "state").write_bytes(b"")
    with pytest.raises(SigningStateError):
        guard(tmp_path)
    (tmp_path / "state").unlink()
    guard(tmp_path).sign_vote(VOTE_PREVOTE, 1, 0, A)
    with pytest.raises(SigningStateError, match="chain"):
        SigningGuard(tmp_path / "state", KEY, "another-chain")
    with pytest.raises(SigningStateError, match="key"):
        SigningGuard(tmp_path / "state", PrivateKey.from_seed_text("other"), CHAIN)


def test_allow_double_sign_is_off_by_default_and_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert guard(tmp_path).allow_double_sign is False
    g = guard(tmp_path, allow_double_sign=True)
    assert "DOUBLE-SIGN GUARD DISABLED" in caplog.text
    a = g.sign_vote(VOTE_PREVOTE, 9, 0, A)
    b = g.sign_vote(VOTE_PREVOTE, 9, 0, B)
    assert a.block_hash != b.block_hash and a.verify_signature() and b.verify_signature()
    g.sign_vote(VOTE_PREVOTE, 8, 0, A)  # even lower HRS, but the persisted state never goes back
    assert guard(tmp_path).last_hrs == (9, 0, STEP_PREVOTE)
    assert "DOUBLE SIGNING" in caplog.text
