"""Commit verification: is this certificate > 2/3 of the power's precommits for this block? (DESIGN §5.1)

Used by block sync (each fetched block's commit against the replayed validator set), by block
validation (`last_commit` of the next block) and by the node. Every signature is verified.
"""

from __future__ import annotations

from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.block import NIL_HASH, Commit


class CommitError(ValueError):
    """The commit does not prove finality of the block; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_commit(
    chain_id: str, commit: Commit, validator_set: ValidatorSet, block_hash: bytes, height: int | None = None
) -> None:
    """Return None if `commit` carries valid precommits of > 2/3 of `validator_set`'s power for
    `block_hash` (and for `height` when given); raise CommitError(reason) otherwise."""
    power = _signed_power(chain_id, commit, validator_set, block_hash, height, others_allowed=False)
    if not validator_set.has_quorum(power):
        raise CommitError(f"commit power {power} is not more than 2/3 of {validator_set.total_power}")


def verify_commit_trusting(
    chain_id: str, commit: Commit, trusted: ValidatorSet, block_hash: bytes, height: int
) -> None:
    """More than 1/3 of a *trusted* (possibly older) set's power signed valid precommits for the block:
    at least one honest trusted validator vouches for it (CometBFT's light-client trust level 1/3).
    Signers outside `trusted` are skipped, since the set may have changed since. Raises CommitError."""
    power = _signed_power(chain_id, commit, trusted, block_hash, height, others_allowed=True)
    if 3 * power <= trusted.total_power:
        raise CommitError(
            f"trusted validators signed {power} of {trusted.total_power} power, not more than 1/3"
        )


def _signed_power(
    chain_id: str,
    commit: Commit,
    validator_set: ValidatorSet,
    block_hash: bytes,
    height: int | None,
    *,
    others_allowed: bool,
) -> int:
    """The power of `validator_set` behind valid precommits for `block_hash`; every counted signature is
    verified. A signer outside the set is an error unless `others_allowed`."""
    if commit.block_hash == NIL_HASH or commit.block_hash != block_hash:
        raise CommitError("commit is for another block")
    if height is not None and commit.height != height:
        raise CommitError(f"commit is for height {commit.height}, expected {height}")
    if commit.round < 0:
        raise CommitError("commit has a negative round")
    seen: set[bytes] = set()
    power = 0
    for vote in commit.votes(chain_id):
        if vote.validator in seen:
            raise CommitError("duplicate signer in commit")
        seen.add(vote.validator)
        p = validator_set.power_of(vote.validator)
        if p == 0:
            if others_allowed:
                continue
            raise CommitError("commit signed by a non-validator")
        if not vote.verify_signature():
            raise CommitError("bad precommit signature in commit")
        power += p
    return power
