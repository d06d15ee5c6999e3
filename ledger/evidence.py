"""Double-sign evidence: validity predicate and punishment (DESIGN §5.1).

Two votes signed by one validator for the same (chain, height, round, type) but different block hashes
prove equivocation. Anyone may submit them in an `evidence` transaction; the executor calls
`check_evidence` (read-only) and then `punish_double_sign`.

Rules (all must hold): both signatures valid; same chain id as the transaction, validator, height,
round and vote type; different block hashes; `vote.height <= current height` and
`current height - vote.height <= evidence_max_age_blocks`; the votes' consensus key belongs to an
operator (`ledger.roles.operator_of`) that has slashable stake (bonded or unbonding); the same offence
(consensus address, height, round, type) was not punished before.
Punishment (of the operator account: votes are signed by its consensus key, stake sits on its account):
slash `double_sign_slash_bps` of bonded stake and of each unbonding entry (burned), jail until
`current height + double_sign_jail_blocks`, and record the offence.

Public API: evidence_key(ev), make_duplicate_vote_evidence(a, b) (the BFT engine's constructor),
check_evidence(state, ev, chain_id, height, params) -> TxError | None,
punish_double_sign(state, ev, height, params) -> int (amount slashed),
slash_stake(state, address, bps) -> int (generic slashing, also for PoCL penalties).
"""

from __future__ import annotations

from pocl.ledger import errors, roles
from pocl.ledger.block import VOTE_TYPES, DuplicateVoteEvidence, Vote
from pocl.ledger.errors import TxError
from pocl.ledger.params import BPS, ChainParams
from pocl.ledger.state import MAX_AMOUNT, State


def evidence_key(ev: DuplicateVoteEvidence) -> bytes:
    """Identity of the offence: one punishment per (validator, height, round, vote type)."""
    a = ev.vote_a
    return (
        a.validator_address
        + a.height.to_bytes(8, "big")
        + a.round.to_bytes(8, "big")
        + a.vote_type.to_bytes(1, "big")
    )


def _bad(message: str) -> TxError:
    return TxError(errors.INVALID_EVIDENCE, message)


def conflict_error(a: Vote, b: Vote) -> str | None:
    """Why two votes of one chain do not prove a double sign, or None if they do (either order)."""
    if a.validator != b.validator:
        return "votes are from different validators"
    if a.vote_type not in VOTE_TYPES or a.vote_type != b.vote_type:
        return "votes have different or unknown types"
    if a.height != b.height or a.round != b.round:
        return "votes are for different heights or rounds"
    if a.round < 0 or a.height < 1 or a.round >= 2**63 or a.height >= 2**63:
        return "vote height/round out of range"
    if a.block_hash == b.block_hash:
        return "votes are for the same block: not a double sign"
    return None


def make_duplicate_vote_evidence(a: Vote, b: Vote) -> DuplicateVoteEvidence:
    """Evidence from two conflicting votes (ValueError if they do not conflict). The vote with the
    smaller block hash goes first, so one double sign always yields the same evidence bytes."""
    reason = "votes are for different chains" if a.chain_id != b.chain_id else conflict_error(a, b)
    if reason is not None:
        raise ValueError(reason)
    if b.block_hash < a.block_hash:
        a, b = b, a
    return DuplicateVoteEvidence(a, b)


def check_evidence(
    state: State, ev: DuplicateVoteEvidence, chain_id: str, height: int, params: ChainParams
) -> TxError | None:
    """None if `ev` is punishable in the block at `height`, else the reason. Accepts either vote order:
    `evidence_key` identifies the offence, so a swapped pair cannot be punished twice."""
    a, b = ev.vote_a, ev.vote_b
    if a.chain_id != chain_id or b.chain_id != chain_id:
        return _bad("votes are for another chain")
    reason = conflict_error(a, b)
    if reason is not None:
        return _bad(reason)
    if a.height > height:
        return _bad("evidence is for a future height")
    if height - a.height > params.evidence_max_age_blocks:
        return TxError(
            errors.EVIDENCE_TOO_OLD, f"evidence older than {params.evidence_max_age_blocks} blocks"
        )
    operator = roles.operator_of(state, a.validator_address)
    if operator is None:
        return _bad("the votes' key is not a registered consensus key")
    acct = state.account(operator)
    if acct is None or acct.slashable <= 0:
        return _bad("validator has no slashable stake")
    if state.evidence_seen(evidence_key(ev)):
        return TxError(errors.DUPLICATE_EVIDENCE, "this double sign was already punished")
    if not a.verify_signature() or not b.verify_signature():
        return _bad("a vote signature is invalid")
    return None


def slash_stake(state: State, address: bytes, bps: int) -> int:
    """Burn `bps`/10,000 of an account's bonded stake and of each unbonding entry (floor, per part).

    Shared by double-sign punishment and PoCL penalties. Returns the burned amount; keeps the staker
    index exact and adds to `slashed_total`.
    """
    if not 0 <= bps <= BPS:
        raise ValueError("slash fraction must be within 0..10000 basis points")
    acct = state.account_for_update(address)
    slashed = acct.stake * bps // BPS
    acct.stake -= slashed
    for entry in acct.unbonding:
        cut = entry[0] * bps // BPS
        entry[0] -= cut
        slashed += cut
    acct.slashed_total = min(acct.slashed_total + slashed, MAX_AMOUNT)
    state.update_staker_index(address)
    return slashed


def punish_double_sign(state: State, ev: DuplicateVoteEvidence, height: int, params: ChainParams) -> int:
    """Slash and jail the operator, record the offence. Returns the burned amount. Assumes
    `check_evidence` passed (so the consensus key has an operator)."""
    addr = roles.operator_of(state, ev.vote_a.validator_address)
    if addr is None:
        raise ValueError("evidence names a consensus key without an operator (check_evidence first)")
    slashed = slash_stake(state, addr, params.double_sign_slash_bps)
    acct = state.account_for_update(addr)
    acct.jailed_until_height = max(acct.jailed_until_height, height + params.double_sign_jail_blocks)
    state.mark_evidence(evidence_key(ev), height)
    return slashed
