"""The validator set that signs the block being executed, kept in state (DESIGN §5.1).

A block's `last_commit` carries the precommits for its parent, signed by the validator set of the
parent's height. Every block's execution records that set in state (the executor runs
`record_signing_validators` at begin-block), so the next block's commit can be checked from the
committed state alone, also after a restart, without replaying history. The entry is part of the
state root like any other.
"""

from __future__ import annotations

from pocl.ledger.codec import CodecError, decode, encode
from pocl.ledger.state import State

NS_CONSENSUS = "consensus"
KEY_SIGNING_VALIDATORS = b"signing-validators"  # validator set of the block being executed


def record_signing_validators(state: State, height: int) -> None:
    """Store the validator set of `height` as (pubkey, power) pairs; rewritten only when it changed."""
    raw = encode([[v.pubkey, v.power] for v in state.validator_set(height)])
    if state.get_raw(NS_CONSENSUS, KEY_SIGNING_VALIDATORS) != raw:
        state.set_raw(NS_CONSENSUS, KEY_SIGNING_VALIDATORS, raw)


def signing_validators(state: State) -> list[tuple[bytes, int]] | None:
    """(pubkey, power) of the validators that signed the block at `state.height` (None at genesis)."""
    raw = state.get_raw(NS_CONSENSUS, KEY_SIGNING_VALIDATORS)
    if raw is None:
        return None
    try:
        return [(bytes(pk), int(power)) for pk, power in decode(raw)]
    except (CodecError, ValueError, TypeError) as exc:  # state is ours: corruption is a bug
        raise RuntimeError(f"corrupt signing-validator record: {exc}") from exc
