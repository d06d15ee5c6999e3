"""The core transaction kinds: transfer, stake, unstake, double-sign evidence and validator.create
(DESIGN §4, §5.1).

`default_registry()` holds them plus the reserved `pocl.*` and `miner.*` names (rejected with
`kind_not_enabled` until PoCL registers its kinds: registering as a miner needs PoCL's min_miner_stake).
Unbonded stake is queued and released at begin-block by the executor.

`validator.create` makes the sender an operator with one consensus key (`ledger.roles`); it needs no
stake (the validator set takes operators with enough bonded stake), but the key must be a separate
key (not the account's), held by the sender (proof of possession over the chain id and the operator
address), and unused; an operator cannot replace its key.
"""

from __future__ import annotations

from pocl.ledger import errors, roles
from pocl.ledger.block import DuplicateVoteEvidence
from pocl.ledger.errors import TxError
from pocl.ledger.events import DoubleSignSlashed
from pocl.ledger.evidence import check_evidence, punish_double_sign
from pocl.ledger.hashing import TAG_VALIDATOR_POP
from pocl.ledger.keys import address_of, verify
from pocl.ledger.state import MAX_AMOUNT, State
from pocl.ledger.tx import (
    KIND_EVIDENCE,
    KIND_STAKE,
    KIND_TRANSFER,
    KIND_UNSTAKE,
    KIND_VALIDATOR_CREATE,
    RESERVED_KINDS,
    CreateValidatorPayload,
    StakePayload,
    TransferPayload,
    UnstakePayload,
    proof_of_possession_message,
)
from pocl.ledger.tx_kinds import TxContext, TxKind, TxRegistry

MAX_UNBONDING_ENTRIES = 32


def _check_amount(amount: int) -> TxError | None:
    if amount <= 0:
        return TxError(errors.AMOUNT_NOT_POSITIVE, "amount must be positive")
    if amount > MAX_AMOUNT:
        return TxError(errors.AMOUNT_OVERFLOW, "amount must be below 2**63")
    return None


def _spendable(ctx: TxContext) -> int:
    acct = ctx.account
    return (acct.balance if acct is not None else 0) - ctx.stx.tx.fee


def validate_transfer(state: State, ctx: TxContext, p: TransferPayload) -> TxError | None:
    err = _check_amount(p.amount)
    if err:
        return err
    if p.to == ctx.sender:
        return TxError(errors.SELF_TRANSFER, "sender and recipient are the same account")
    if _spendable(ctx) < p.amount:
        return TxError(errors.INSUFFICIENT_BALANCE, "balance does not cover amount + fee")
    if state.balance(p.to) + p.amount > MAX_AMOUNT:
        return TxError(errors.AMOUNT_OVERFLOW, "recipient balance would reach 2**63")
    return None


def apply_transfer(state: State, ctx: TxContext, p: TransferPayload) -> None:
    ctx.account.balance -= p.amount  # type: ignore[union-attr]  # (mutable in apply)
    state.account_for_update(p.to).balance += p.amount


def validate_stake(state: State, ctx: TxContext, p: StakePayload) -> TxError | None:
    err = _check_amount(p.amount)
    if err:
        return err
    if _spendable(ctx) < p.amount:
        return TxError(errors.INSUFFICIENT_BALANCE, "balance does not cover amount + fee")
    acct = ctx.account
    if acct is not None and acct.stake + p.amount > MAX_AMOUNT:
        return TxError(errors.AMOUNT_OVERFLOW, "stake would reach 2**63")
    return None


def apply_stake(state: State, ctx: TxContext, p: StakePayload) -> None:
    acct = state.account_for_update(ctx.sender)  # == ctx.account
    acct.balance -= p.amount
    acct.stake += p.amount
    state.update_staker_index(ctx.sender)


def validate_unstake(state: State, ctx: TxContext, p: UnstakePayload) -> TxError | None:
    err = _check_amount(p.amount)
    if err:
        return err
    acct = ctx.account
    if acct is None or acct.stake < p.amount:
        return TxError(errors.INSUFFICIENT_STAKE, "bonded stake is smaller than amount")
    release = release_height(ctx)
    if len(acct.unbonding) >= MAX_UNBONDING_ENTRIES and all(e[1] != release for e in acct.unbonding):
        return TxError(errors.TOO_MANY_UNBONDING, f"at most {MAX_UNBONDING_ENTRIES} unbonding entries")
    return None


def release_height(ctx: TxContext) -> int:
    """Unbonded stake returns to the balance at the start of this block (at least the next one)."""
    return ctx.height + max(1, ctx.params.unbonding_blocks)


def apply_unstake(state: State, ctx: TxContext, p: UnstakePayload) -> None:
    acct = state.account_for_update(ctx.sender)
    release = release_height(ctx)
    acct.stake -= p.amount
    for entry in acct.unbonding:
        if entry[1] == release:
            entry[0] += p.amount
            break
    else:
        acct.unbonding.append([p.amount, release])
    state.add_to_unbonding_queue(release, ctx.sender)
    state.update_staker_index(ctx.sender)


def validate_evidence(state: State, ctx: TxContext, ev: DuplicateVoteEvidence) -> TxError | None:
    return check_evidence(state, ev, ctx.stx.tx.chain_id, ctx.height, ctx.params)


def apply_evidence(state: State, ctx: TxContext, ev: DuplicateVoteEvidence) -> None:
    slashed = punish_double_sign(state, ev, ctx.height, ctx.params)
    ctx.block.events.append(
        DoubleSignSlashed(
            validator=ev.vote_a.validator_address,
            operator=roles.operator_of(state, ev.vote_a.validator_address) or b"",
            height=ev.vote_a.height,
            round=ev.vote_a.round,
            slashed=slashed,
            jailed_until_height=ctx.height + ctx.params.double_sign_jail_blocks,
            reporter=ctx.sender,
        )
    )


def validate_create_validator(state: State, ctx: TxContext, p: CreateValidatorPayload) -> TxError | None:
    if p.consensus_pubkey == ctx.stx.tx.sender:
        return TxError(
            errors.CONSENSUS_KEY_IS_ACCOUNT_KEY,
            "the consensus key must be a separate key, not the account key",
        )
    if roles.consensus_pubkey_of(state, ctx.sender) is not None:
        return TxError(
            errors.VALIDATOR_EXISTS, "this operator already has a consensus key (it cannot be changed)"
        )
    if roles.operator_of(state, address_of(p.consensus_pubkey)) is not None:
        return TxError(errors.CONSENSUS_KEY_IN_USE, "this consensus key is already registered by an operator")
    message = proof_of_possession_message(ctx.stx.tx.chain_id, ctx.sender)
    if not verify(p.consensus_pubkey, TAG_VALIDATOR_POP, message, p.proof):
        return TxError(
            errors.BAD_PROOF_OF_POSSESSION,
            "proof is not the consensus key's signature over (chain id, operator address)",
        )
    return None


def apply_create_validator(state: State, ctx: TxContext, p: CreateValidatorPayload) -> None:
    roles.set_validator_key(state, ctx.sender, p.consensus_pubkey)


def default_registry() -> TxRegistry:
    """A fresh registry with the core kinds and the reserved pocl.* and miner.* names."""
    return TxRegistry(
        [
            TxKind(KIND_TRANSFER, TransferPayload, validate_transfer, apply_transfer),
            TxKind(KIND_STAKE, StakePayload, validate_stake, apply_stake),
            TxKind(KIND_UNSTAKE, UnstakePayload, validate_unstake, apply_unstake),
            TxKind(KIND_EVIDENCE, DuplicateVoteEvidence, validate_evidence, apply_evidence),
            TxKind(
                KIND_VALIDATOR_CREATE,
                CreateValidatorPayload,
                validate_create_validator,
                apply_create_validator,
            ),
        ],
        reserved=RESERVED_KINDS,
    )
