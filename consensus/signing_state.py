"""Double-sign guard: a validator never signs two conflicting messages, even across crashes (DESIGN §5.1).

Like CometBFT's `priv_validator_state.json`: the last signed (height, round, step), its sign bytes and
signature are persisted with fsync (temp file, fsync, rename, fsync of the directory) *before* the
signed message is returned, so it cannot leave the node unrecorded. A request is refused with
`DoubleSignError` when it is below the last signed (height, round, step), or at the same HRS with
different sign bytes; at the same HRS with the same bytes the stored signature is returned again, so a
restarted validator may re-broadcast its last vote.

Steps order a round: proposal < prevote < precommit.

A failed write (ENOSPC, EIO, EMFILE, a read-only filesystem) raises `SigningStateWriteError` naming the
file and the errno, and the guard refuses every later request with the same error: the signature was
never returned, and what the disk now holds is unknown, so signing on could double-sign after a restart.
The node stops on it (`node.fatal`).

`allow_double_sign=True` turns the checks off. It exists only so integration tests can build an
equivocating validator; it logs a warning on every use. Never set it on a real node.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path

from pocl.consensus.bft.messages import Proposal, proposal_sign_bytes
from pocl.consensus.bft.signer import DoubleSignError
from pocl.ledger.block import VOTE_PRECOMMIT, VOTE_PREVOTE, Vote, vote_sign_bytes
from pocl.ledger.codec import CodecError, Struct
from pocl.ledger.hashing import TAG_PROPOSAL, TAG_VOTE
from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.durable_file import replace_durably

log = logging.getLogger(__name__)

STEP_NONE = 0
STEP_PROPOSE = 1
STEP_PREVOTE = 2
STEP_PRECOMMIT = 3
STEP_OF_VOTE = {VOTE_PREVOTE: STEP_PREVOTE, VOTE_PRECOMMIT: STEP_PRECOMMIT}
STATE_FORMAT_VERSION = 1


class SigningStateError(Exception):
    """The persisted signing state is unreadable or belongs to another chain/key: refuse to sign."""


class SigningStateWriteError(SigningStateError):
    """Persisting the signing state failed: nothing may be signed any more (`path`, `errno`)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        self.errno = exc.errno
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        super().__init__(f"cannot persist signing state {path}: {name} ({exc.strerror or exc}); refusing to sign")


@dataclasses.dataclass(frozen=True)
class LastSigned(Struct):
    version: int
    chain_id: str
    pubkey: bytes
    height: int
    round: int
    step: int
    sign_bytes: bytes
    signature: bytes

    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


class SigningGuard:
    """Signs votes and proposals for one validator key, never conflicting with what it signed before.

    It implements the `consensus.bft.signer.Signer` protocol used by the BFT machine.
    """

    def __init__(self, path: str | os.PathLike[str], key: PrivateKey, chain_id: str, *,
                 allow_double_sign: bool = False) -> None:
        self.path = Path(path)
        self.key = key
        self._pubkey = key.pubkey
        self.chain_id = chain_id
        self.allow_double_sign = allow_double_sign
        if allow_double_sign:
            log.warning("DOUBLE-SIGN GUARD DISABLED (allow_double_sign=True): test use only, this "
                        "validator can be slashed")
        self.last: LastSigned | None = self._load()
        self.failed: SigningStateWriteError | None = None  # a write failed: refuse everything from now on

    @property
    def pubkey(self) -> bytes:
        return self._pubkey

    def _load(self) -> LastSigned | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SigningStateError(f"cannot read signing state {self.path}: {exc}") from exc
        try:
            last = LastSigned.decode(raw)
        except CodecError as exc:
            raise SigningStateError(f"signing state {self.path} is corrupt ({exc}); refusing to sign. "
                                    "Restore it, or remove it only if this key never signed on this chain") from exc
        if last.version != STATE_FORMAT_VERSION:
            raise SigningStateError(f"signing state {self.path}: unknown format version {last.version}")
        if last.chain_id != self.chain_id:
            raise SigningStateError(f"signing state {self.path} belongs to chain {last.chain_id!r}, "
                                    f"not {self.chain_id!r}")
        if last.pubkey != self._pubkey:
            raise SigningStateError(f"signing state {self.path} belongs to another validator key")
        return last

    @property
    def last_hrs(self) -> tuple[int, int, int]:
        return self.last.hrs() if self.last is not None else (0, 0, STEP_NONE)

    def check(self, height: int, round_: int, step: int, sign_bytes: bytes) -> bytes | None:
        """Raise DoubleSignError if signing would conflict; return the stored signature for an identical
        re-sign, else None (a new message may be signed)."""
        last = self.last
        if last is None:
            return None
        hrs = (height, round_, step)
        if hrs == last.hrs():
            if sign_bytes == last.sign_bytes:
                return last.signature
            if self.allow_double_sign:
                log.warning("DOUBLE SIGNING at height=%d round=%d step=%d (allow_double_sign)", *hrs)
                return None
            raise DoubleSignError(f"conflicting message at height={height} round={round_} step={step}")
        if hrs < last.hrs():
            if self.allow_double_sign:
                log.warning("SIGNING BELOW LAST HRS at height=%d round=%d step=%d (allow_double_sign)", *hrs)
                return None
            raise DoubleSignError(
                f"height/round/step ({height}, {round_}, {step}) is below the last signed {last.hrs()}"
            )
        return None

    def _sign(self, tag: bytes, height: int, round_: int, step: int, sign_bytes: bytes) -> bytes:
        if self.failed is not None:
            raise self.failed
        previous = self.check(height, round_, step, sign_bytes)
        if previous is not None:
            return previous
        signature = self.key.sign(tag, sign_bytes)
        record = LastSigned(STATE_FORMAT_VERSION, self.chain_id, self._pubkey, height, round_, step,
                            sign_bytes, signature)
        if self.allow_double_sign and self.last is not None and record.hrs() < self.last.hrs():
            return signature  # never move the persisted state backwards, even in test mode
        try:
            replace_durably(self.path, record.encode())
        except OSError as exc:
            self.failed = SigningStateWriteError(self.path, exc)
            raise self.failed from exc
        self.last = record
        return signature

    def sign_vote(self, vote_type: int, height: int, round_: int, block_hash: bytes) -> Vote:
        """A signed prevote/precommit, persisted before it is returned. Raises DoubleSignError."""
        step = STEP_OF_VOTE.get(vote_type)
        if step is None:
            raise ValueError(f"unknown vote type {vote_type}")
        sb = vote_sign_bytes(self.chain_id, vote_type, height, round_, block_hash)
        sig = self._sign(TAG_VOTE, height, round_, step, sb)
        return Vote(self.chain_id, vote_type, height, round_, block_hash, self._pubkey, sig)

    def sign_proposal(self, height: int, round_: int, block_hash: bytes, pol_round: int) -> Proposal:
        """A signed proposal, persisted before it is returned. Raises DoubleSignError."""
        sb = proposal_sign_bytes(self.chain_id, height, round_, block_hash, pol_round, self._pubkey)
        sig = self._sign(TAG_PROPOSAL, height, round_, STEP_PROPOSE, sb)
        return Proposal(self.chain_id, height, round_, block_hash, pol_round, self._pubkey, sig)
