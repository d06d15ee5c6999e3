"""Is the header at a snapshot's height BFT-committed? What a state-syncing node trusts, exactly.

A snapshot is only as good as the header whose `state_root` it is checked against. Two anchors:

1. **A trusted height and hash** (`[statesync] trust_height`, `trust_hash`, as CometBFT's light client):
   the operator got the hash of block T from a source they trust. A snapshot at height H <= T is
   accepted when the headers H+1..T, fetched from peers, chain by `prev_hash` from T's trusted hash down
   to the snapshot block's hash (`check_header_chain`). This relies on SHA-256 alone: no validator
   set, no signatures, no trusting period. Snapshots above T are not used.

2. **The genesis validator set** (no trust height given): CometBFT's skipping verification with trust
   level 1/3. The commit for block H must carry valid precommits of
   (a) more than 2/3 of the power of the set that signed H, which the state at H records
   (`ledger.signing_validators`) and which is read from the snapshot's own chunk after that chunk was
   checked against the manifest and the manifest against H's state root (`verify_commit`); and
   (b) more than 1/3 of the power of the genesis validator set (`verify_commit_trusting`).
   (b) is the anchor: if fewer than 1/3 of the genesis power is faulty, at least one honest genesis
   validator signed H, so H is on the real chain. Residual risk, as in any light client without a
   trusting period: validators of genesis who have since unbonded could sign a fake chain at no cost
   (a long-range attack). Give a trust height and hash on a network whose validators have changed, and
   whenever (b) fails the snapshot is refused (the node then block-syncs from genesis).

Either way the block at H and its commit must match (`commit.block_hash == block.hash`), and the block's
body must match its header.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pocl.consensus.bft import commit as bft_commit
from pocl.consensus.bft.commit import CommitError, verify_commit
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.block import Commit, Header


class UntrustedHeader(ValueError):
    """The header cannot be tied to the trust anchor."""


def check_header_chain(headers: Sequence[Header], top_hash: bytes, bottom_hash: bytes) -> None:
    """`headers` are consecutive (ascending heights) and link by prev_hash, the last one hashes to
    `top_hash` (trusted) and the first one's parent is `bottom_hash` (the block being vouched for)."""
    if not headers:
        if bottom_hash != top_hash:
            raise UntrustedHeader("block hash differs from the trusted hash")
        return
    if headers[-1].hash != top_hash:
        raise UntrustedHeader("the top header does not hash to the trusted hash")
    for lower, upper in itertools.pairwise(headers):
        if upper.height != lower.height + 1 or upper.prev_hash != lower.hash:
            raise UntrustedHeader(f"header {upper.height} does not link to header {lower.height}")
    if headers[0].prev_hash != bottom_hash:
        raise UntrustedHeader(f"header {headers[0].height} does not link to the snapshot block")


def verify_commit_trusting(
    chain_id: str, commit: Commit, trusted: ValidatorSet, block_hash: bytes, height: int
) -> None:
    """More than 1/3 of `trusted`'s power signed valid precommits for `block_hash` at `height`
    (`consensus.bft.commit.verify_commit_trusting`). Raises UntrustedHeader."""
    try:
        bft_commit.verify_commit_trusting(chain_id, commit, trusted, block_hash, height)
    except CommitError as exc:
        raise UntrustedHeader(exc.reason) from None


def verify_commit_full(
    chain_id: str, commit: Commit, signers: ValidatorSet, block_hash: bytes, height: int
) -> None:
    """More than 2/3 of the set that signed `height` (as recorded in its state) committed the block."""
    try:
        verify_commit(chain_id, commit, signers, block_hash, height)
    except CommitError as exc:
        raise UntrustedHeader(f"commit does not verify: {exc.reason}") from None
