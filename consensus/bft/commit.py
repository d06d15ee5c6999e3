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
            raise CommitError("commit signed by a non-validator")
        if not vote.verify_signature():
            raise CommitError("bad precommit signature in commit")
        power += p
    if not validator_set.has_quorum(power):
        raise CommitError(f"commit power {power} is not more than 2/3 of {validator_set.total_power}")
