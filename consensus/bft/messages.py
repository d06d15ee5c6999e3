"""Signed proposals and the consensus messages the node gossips (DESIGN §5.1).

A `Proposal` signs `[chain_id, height, round, block_hash, pol_round, proposer]` under TAG_PROPOSAL;
`pol_round` is the paper's `validRound` (-1 for none). The block travels next to the signed proposal
in a `ProposalMessage` (the signature covers only its hash). Votes travel as `VoteMessage`.
All are canonical `Struct`s: `X.decode(raw)` rejects anything malformed with `CodecError`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pocl.ledger.block import HASH_LEN, Block, Vote
from pocl.ledger.codec import Struct, encode
from pocl.ledger.hashing import TAG_PROPOSAL
from pocl.ledger.keys import PUBKEY_LEN, SIGNATURE_LEN, PrivateKey, verify

NO_POL_ROUND = -1  # a proposal with no proof-of-lock round (the paper's validRound = -1)
# Rounds beyond this are rejected: honest validators never get near it (timeouts grow per round), and
# it keeps round + 1 and timeout arithmetic far inside the codec's integer range.
MAX_ROUND = 2**31 - 1


def proposal_sign_bytes(
    chain_id: str, height: int, round_: int, block_hash: bytes, pol_round: int, proposer: bytes
) -> bytes:
    return encode([chain_id, height, round_, block_hash, pol_round, proposer])


@dataclasses.dataclass(frozen=True)
class Proposal(Struct):
    chain_id: str
    height: int
    round: int
    block_hash: bytes
    pol_round: int  # -1, or the round < `round` in which +2/3 prevoted block_hash
    proposer: bytes  # the proposer's Ed25519 public key
    signature: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"block_hash": HASH_LEN, "proposer": PUBKEY_LEN, "signature": SIGNATURE_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"chain_id": 64}

    def sign_bytes(self) -> bytes:
        return proposal_sign_bytes(
            self.chain_id, self.height, self.round, self.block_hash, self.pol_round, self.proposer
        )

    def verify_signature(self) -> bool:
        return verify(self.proposer, TAG_PROPOSAL, self.sign_bytes(), self.signature)

    def is_well_formed(self) -> bool:
        """Field ranges a signature cannot vouch for."""
        return (
            self.height >= 1
            and 0 <= self.round <= MAX_ROUND
            and NO_POL_ROUND <= self.pol_round < self.round
            and len(self.block_hash) == HASH_LEN
        )

    @classmethod
    def create(
        cls, key: PrivateKey, chain_id: str, height: int, round_: int, block_hash: bytes, pol_round: int
    ) -> Proposal:
        """Sign a proposal directly (no double-sign guard): for tests and tools; validators go through
        consensus.signing_state.SigningGuard."""
        sb = proposal_sign_bytes(chain_id, height, round_, block_hash, pol_round, key.pubkey)
        return cls(chain_id, height, round_, block_hash, pol_round, key.pubkey, key.sign(TAG_PROPOSAL, sb))


@dataclasses.dataclass(frozen=True)
class ProposalMessage(Struct):
    """What a proposer gossips: the signed proposal and the full block it names."""

    proposal: Proposal
    block: Block

    def is_consistent(self) -> bool:
        return self.block.hash == self.proposal.block_hash and self.block.height == self.proposal.height


@dataclasses.dataclass(frozen=True)
class VoteMessage(Struct):
    vote: Vote


def make_vote(key: PrivateKey, chain_id: str, vote_type: int, height: int, round_: int, block_hash: bytes) -> Vote:
    """Sign a vote directly (no double-sign guard): for tests and tools; validators go through
    consensus.signing_state.SigningGuard."""
    from pocl.ledger.block import vote_sign_bytes
    from pocl.ledger.hashing import TAG_VOTE

    sig = key.sign(TAG_VOTE, vote_sign_bytes(chain_id, vote_type, height, round_, block_hash))
    return Vote(chain_id, vote_type, height, round_, block_hash, key.pubkey, sig)
