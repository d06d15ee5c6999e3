"""What the BFT machine needs from whoever signs for it (DESIGN §5.1).

The machine only asks for signatures; whether a request is safe to sign is the signer's call. The node's
signer (`consensus.signing_state.SigningGuard`) persists what it signed and refuses a conflicting request
with `DoubleSignError`, on which the machine goes on without sending (never signing is safe).
"""

from __future__ import annotations

from typing import Protocol

from pocl.consensus.bft.messages import Proposal
from pocl.ledger.block import Vote


class DoubleSignError(Exception):
    """Signing this message could conflict with one already signed: refused."""


class Signer(Protocol):
    """Signs our votes and proposals; raises DoubleSignError to refuse."""

    @property
    def pubkey(self) -> bytes: ...

    def sign_vote(self, vote_type: int, height: int, round_: int, block_hash: bytes) -> Vote: ...

    def sign_proposal(self, height: int, round_: int, block_hash: bytes, pol_round: int) -> Proposal: ...
