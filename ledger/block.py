"""Block, header, vote and commit types (DESIGN §4, §5.1).

These are shared by the executor, the store, block sync and the BFT engine, so they live in the ledger
and depend on nothing above it. A header's `state_root` is the root *after* executing the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import ClassVar

from pocl.ledger.codec import Struct
from pocl.ledger.hashing import TAG_COMMIT, TAG_HEADER, TAG_TXS_ROOT, TAG_VOTE, tagged_hash
from pocl.ledger.keys import ADDRESS_LEN, PUBKEY_LEN, SIGNATURE_LEN, address_of, verify
from pocl.ledger.merkle import merkle_root

HASH_LEN = 32
NIL_HASH = b""  # a vote for nil carries an empty block hash

VOTE_PREVOTE = 1
VOTE_PRECOMMIT = 2
VOTE_TYPES = (VOTE_PREVOTE, VOTE_PRECOMMIT)


@dataclasses.dataclass(frozen=True)
class Header(Struct):
    height: int
    time_ms: int
    prev_hash: bytes  # empty at height 1
    proposer: bytes  # proposer's address
    txs_root: bytes
    state_root: bytes  # state root after applying this block
    last_commit_hash: bytes  # hash of the commit for height-1 (empty at height 1)
    round_info: bytes  # canonical PoCL round summary (empty until PoCL rounds are on chain)

    MAX_LEN: ClassVar[dict[str, int]] = {"prev_hash": HASH_LEN, "last_commit_hash": HASH_LEN, "round_info": 4096}
    BYTES_LEN: ClassVar[dict[str, int]] = {"proposer": ADDRESS_LEN, "txs_root": HASH_LEN, "state_root": HASH_LEN}

    @cached_property
    def hash(self) -> bytes:
        return tagged_hash(TAG_HEADER, self.encode())


@dataclasses.dataclass(frozen=True)
class Vote(Struct):
    """A signed prevote or precommit. `block_hash == NIL_HASH` is a vote for nil."""

    chain_id: str
    vote_type: int
    height: int
    round: int
    block_hash: bytes
    validator: bytes  # the validator's Ed25519 public key
    signature: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"validator": PUBKEY_LEN, "signature": SIGNATURE_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"block_hash": HASH_LEN, "chain_id": 64}

    def sign_bytes(self) -> bytes:
        return vote_sign_bytes(self.chain_id, self.vote_type, self.height, self.round, self.block_hash)

    @property
    def validator_address(self) -> bytes:
        return address_of(self.validator)

    def verify_signature(self) -> bool:
        return verify(self.validator, TAG_VOTE, self.sign_bytes(), self.signature)


def vote_sign_bytes(chain_id: str, vote_type: int, height: int, round_: int, block_hash: bytes) -> bytes:
    from pocl.ledger.codec import encode

    return encode([chain_id, vote_type, height, round_, block_hash])


@dataclasses.dataclass(frozen=True)
class CommitSig(Struct):
    validator: bytes  # public key
    signature: bytes  # over the precommit sign bytes for (height, round, block_hash)

    BYTES_LEN: ClassVar[dict[str, int]] = {"validator": PUBKEY_LEN, "signature": SIGNATURE_LEN}


@dataclasses.dataclass(frozen=True)
class Commit(Struct):
    """Precommits of > 2/3 of voting power for one block: its finality certificate."""

    height: int
    round: int
    block_hash: bytes
    signatures: list[CommitSig]

    BYTES_LEN: ClassVar[dict[str, int]] = {"block_hash": HASH_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"signatures": 10_000}

    @cached_property
    def hash(self) -> bytes:
        return tagged_hash(TAG_COMMIT, self.encode())

    def votes(self, chain_id: str) -> list[Vote]:
        return [
            Vote(chain_id, VOTE_PRECOMMIT, self.height, self.round, self.block_hash, s.validator, s.signature)
            for s in self.signatures
        ]


@dataclasses.dataclass(frozen=True)
class Block(Struct):
    header: Header
    txs: list[bytes]  # canonical encodings of signed transactions
    last_commit: Commit | None  # None only at height 1

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height


def txs_root(txs: Sequence[bytes]) -> bytes:
    """The header's commitment to the block's txs (canonical encodings, in block order)."""
    return tagged_hash(TAG_TXS_ROOT, merkle_root(txs))


@dataclasses.dataclass(frozen=True)
class DuplicateVoteEvidence(Struct):
    """Two conflicting votes signed by one validator for the same height, round and type."""

    vote_a: Vote
    vote_b: Vote
