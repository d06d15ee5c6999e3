"""The block pipeline: deterministic transaction and block execution (DESIGN §4, §5.1). Pure: no I/O,
no clock, no threads.

An `Executor` runs the tx kinds of a `TxRegistry` (`ledger.tx_kinds`; the core kinds and the default
registry are in `ledger.core_txs`) and begin/end-block hooks. The node's executor, with PoCL's kinds
and hooks, is assembled by `consensus.pocl.execution.build_executor`. Signature checks may be done ahead
by an injected `SignatureVerifier` (the node's checks a big block on all cores); by default each
signature is checked in-line.

Checks, in order (cheap first, signature last), each with a stable code from `ledger.errors`:
size (`tx_too_large`), decoding (`malformed_tx`), version, chain id, kind, per-kind size, fee/nonce
ranges, payload shape, nonce (`nonce_too_low`/`nonce_too_high`: must equal the account nonce),
fee balance, kind-specific `validate`, then the signature (`bad_signature`). A tx is applied only if
every check passed, so a failing tx never leaves partial writes: the sender pays `fee` (credited to the
block proposer at end of block), its nonce increments, then the kind's `apply` runs.

Block execution: `begin_block` (height, unbonding releases, the signing validator set recorded for the
next block's commit check, begin hooks), every tx (any invalid tx makes the whole block invalid:
`BlockError`), `end_block` (end hooks, e.g. PoCL finalization, then fees to the proposer's operator:
`header.proposer` is a consensus address, mapped by `ledger.roles.operator_of`; a proposer without an
operator, which consensus never accepts but a bare executor may be handed, has its fees burned). Hooks are
`Callable[[State, BlockContext], None]` and may append `ledger.events.Event`s to `ctx.events`.

Public API:
    Executor(registry=None, begin_block_hooks=(), end_block_hooks=(), verify_signatures=no_preverification)
        .decode_tx(raw, params) -> SignedTx                        (raises TxError)
        .check_tx(state, tx: SignedTx | bytes, params=None) -> TxError | None   (read-only verdict)
        .apply_tx(state, stx, ctx, index=0, verified=False) -> TxReceipt        (raises TxError)
        .execute_block(state, ctx, txs, verified_sigs=None, skip_invalid=False) -> BlockResult
              (with skip_invalid, invalid txs are dropped and overflow deferred: for proposers)
        .apply_block(state, block, params=None, verified_sigs=None) -> BlockResult (raises BlockError)
    TxReceipt, BlockResult, SignatureVerifier
`apply_block` checks height, tx count/bytes limits, txs_root, every tx and the header's state_root; it
does NOT check prev_hash, proposer, time or last_commit signatures: that is consensus / block sync's job.
Always execute on `state.copy()`: a BlockError leaves the overlay half-written (drop it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

from pocl.ledger import errors, roles
from pocl.ledger.block import Block, txs_root
from pocl.ledger.codec import CodecError
from pocl.ledger.core_txs import default_registry
from pocl.ledger.errors import BlockError, TxError
from pocl.ledger.events import Event, Unbonded
from pocl.ledger.params import ChainParams
from pocl.ledger.signing_validators import record_signing_validators
from pocl.ledger.state import MAX_AMOUNT, State
from pocl.ledger.tx import TX_VERSION, SignedTx
from pocl.ledger.tx_kinds import BlockContext, Hook, TxContext, TxKind, TxRegistry

NO_PROPOSER = b"\x00" * 20

SignatureVerifier = Callable[[Sequence[SignedTx]], Set[bytes]]
"""Given txs whose signatures are not known to be valid, the hashes of those whose signature verifies.
A tx left out is simply verified again, in-line, by `apply_tx`: a verifier only saves time."""


def no_preverification(_stxs: Sequence[SignedTx]) -> Set[bytes]:
    """The default verifier: verify nothing ahead, every signature is checked in-line by `apply_tx`."""
    return frozenset()


@dataclasses.dataclass(slots=True)
class TxReceipt:
    index: int
    tx_hash: bytes
    kind: str
    sender: bytes
    fee: int
    code: str = "ok"


@dataclasses.dataclass
class BlockResult:
    height: int
    state_root: bytes
    receipts: list[TxReceipt]
    fees: int
    events: list[Event]
    txs: list[bytes]  # canonical encodings of the executed txs (== block.txs unless skip_invalid)
    rejected: list[tuple[int, TxError]] = dataclasses.field(default_factory=list)  # skip_invalid only
    deferred: list[int] = dataclasses.field(default_factory=list)  # skip_invalid only: block was full

    @property
    def tx_hashes(self) -> list[bytes]:
        return [r.tx_hash for r in self.receipts]


class Executor:
    def __init__(
        self,
        registry: TxRegistry | None = None,
        begin_block_hooks: Sequence[Hook] = (),
        end_block_hooks: Sequence[Hook] = (),
        verify_signatures: SignatureVerifier = no_preverification,
    ) -> None:
        self.verify_signatures = verify_signatures
        self.registry = (registry or default_registry()).copy()  # snapshot: later edits don't leak in
        self._kinds = dict(self.registry._kinds)
        self.begin_block_hooks = tuple(begin_block_hooks)
        self.end_block_hooks = tuple(end_block_hooks)

    # ------------------------------------------------------------------ decoding

    @staticmethod
    def max_any_tx_bytes(params: ChainParams) -> int:
        return max(params.max_tx_bytes, params.max_pocl_tx_bytes)

    def decode_tx(self, raw: bytes, params: ChainParams) -> SignedTx:
        limit = self.max_any_tx_bytes(params)
        if len(raw) > limit:
            raise TxError(errors.TX_TOO_LARGE, f"transaction is {len(raw)} bytes, limit {limit}")
        try:
            return SignedTx.decode(raw, max_size=limit)
        except CodecError as exc:
            raise TxError(errors.MALFORMED_TX, str(exc)) from exc

    # ------------------------------------------------------------------ checks

    def _resolve_kind(self, name: str) -> TxKind:
        kind = self.registry.get(name)
        if kind is not None:
            return kind
        if self.registry.is_reserved(name):
            raise TxError(errors.KIND_NOT_ENABLED, f"tx kind {name!r} is reserved and not enabled yet")
        raise TxError(errors.UNKNOWN_KIND, f"unknown tx kind {name!r}")

    def _validate(self, state: State, ctx: TxContext, verified: bool) -> tuple[TxKind, Any]:
        """All checks for one tx against `state`; returns (kind, payload) or raises TxError."""
        stx = ctx.stx
        tx = stx.tx
        params = ctx.block.params
        if tx.version != TX_VERSION:
            raise TxError(errors.UNSUPPORTED_VERSION, f"tx version {tx.version} is not supported")
        if tx.chain_id != ctx.block.chain_id:
            raise TxError(errors.WRONG_CHAIN_ID, f"tx is for chain {tx.chain_id!r}")
        kind = self._kinds.get(tx.kind) or self._resolve_kind(tx.kind)
        size = len(stx.raw)
        limit = kind.max_bytes(params)
        if size > limit:
            raise TxError(errors.TX_TOO_LARGE, f"{tx.kind} tx is {size} bytes, limit {limit}")
        if tx.fee < 0 or tx.nonce < 0:
            raise TxError(errors.MALFORMED_TX, "fee and nonce must not be negative")
        if tx.fee > MAX_AMOUNT or tx.nonce >= MAX_AMOUNT:
            raise TxError(errors.AMOUNT_OVERFLOW, "fee and nonce must be below 2**63")
        if kind.requires_min_fee and tx.fee < params.min_fee:
            raise TxError(errors.FEE_TOO_LOW, f"fee {tx.fee} below minimum {params.min_fee}")
        try:
            payload = kind.payload_type.from_list(tx.payload)
        except CodecError as exc:
            raise TxError(errors.MALFORMED_TX, f"bad {tx.kind} payload: {exc}") from exc
        acct = ctx.account = state.account(ctx.sender)
        nonce = acct.nonce if acct is not None else 0
        if tx.nonce < nonce:
            raise TxError(errors.NONCE_TOO_LOW, f"nonce {tx.nonce} already used (account nonce {nonce})")
        if tx.nonce > nonce:
            raise TxError(errors.NONCE_TOO_HIGH, f"nonce {tx.nonce} is ahead of account nonce {nonce}")
        if (acct.balance if acct is not None else 0) < tx.fee:
            raise TxError(errors.INSUFFICIENT_BALANCE, "balance does not cover the fee")
        err = kind.validate(state, ctx, payload)
        if err is not None:
            raise err
        if not verified and not stx.verify_signature():
            raise TxError(errors.BAD_SIGNATURE, "signature does not verify for the sender key")
        return kind, payload

    def check_tx(
        self, state: State, tx: SignedTx | bytes, params: ChainParams | None = None
    ) -> TxError | None:
        """Full stateless + stateful check against `state` (as if in the next block). No writes."""
        params = params or state.params
        try:
            stx = self.decode_tx(tx, params) if isinstance(tx, (bytes, bytearray)) else tx
            ctx = BlockContext(state.height + 1, 0, NO_PROPOSER, state.chain_id, params)
            self._validate(state, TxContext(ctx, stx, stx.sender_address, 0), verified=False)
        except TxError as err:
            return err
        return None

    def apply_tx(
        self, state: State, stx: SignedTx, ctx: BlockContext, index: int = 0, verified: bool = False
    ) -> TxReceipt:
        """Validate and apply one tx inside block `ctx`; raises TxError and writes nothing if invalid."""
        txctx = TxContext(ctx, stx, stx.sender_address, index)
        kind, payload = self._validate(state, txctx, verified)
        tx = stx.tx
        acct = txctx.account = state.account_for_update(txctx.sender)
        acct.balance -= tx.fee
        acct.nonce += 1
        if not acct.pubkey:
            acct.pubkey = tx.sender
        ctx.fees += tx.fee
        kind.apply(state, txctx, payload)
        return TxReceipt(index, stx.hash, tx.kind, txctx.sender, tx.fee)

    # ------------------------------------------------------------------ blocks

    def begin_block(self, state: State, ctx: BlockContext) -> None:
        state._set_height(ctx.height)
        self._release_unbonding(state, ctx)
        record_signing_validators(state, ctx.height)
        for hook in self.begin_block_hooks:
            hook(state, ctx)

    @staticmethod
    def _release_unbonding(state: State, ctx: BlockContext) -> None:
        queue = state.unbonding_queue(ctx.height)
        if not queue:
            return
        for addr in queue:
            acct = state.account_for_update(addr)
            released = sum(e[0] for e in acct.unbonding if e[1] <= ctx.height)
            acct.unbonding = [e for e in acct.unbonding if e[1] > ctx.height]
            acct.balance += released
            ctx.events.append(Unbonded(addr, released))
        state.clear_unbonding_queue(ctx.height)

    def end_block(self, state: State, ctx: BlockContext) -> None:
        for hook in self.end_block_hooks:
            hook(state, ctx)
        if ctx.fees:
            operator = roles.operator_of(state, ctx.proposer)
            if operator is not None:  # else burned (deterministic: no account gets them)
                acct = state.account_for_update(operator)
                acct.balance = min(MAX_AMOUNT, acct.balance + ctx.fees)

    @staticmethod
    def _decode_item(item: bytes | SignedTx, limit: int) -> SignedTx | TxError:
        if not isinstance(item, (bytes, bytearray)):
            return item
        if len(item) > limit:
            return TxError(errors.TX_TOO_LARGE, f"transaction is {len(item)} bytes, limit {limit}")
        try:
            return SignedTx.decode(item, limit)
        except CodecError as exc:
            return TxError(errors.MALFORMED_TX, str(exc))

    def _preverify(
        self, decoded: Sequence[SignedTx | TxError], known: set[bytes] | frozenset[bytes] | None
    ) -> Set[bytes]:
        """Hashes of the txs not in `known` whose signature the verifier checked ahead."""
        todo = [
            stx for stx in decoded if isinstance(stx, SignedTx) and (known is None or stx.hash not in known)
        ]
        return self.verify_signatures(todo) if todo else frozenset()

    def execute_block(
        self,
        state: State,
        ctx: BlockContext,
        txs: Sequence[bytes | SignedTx],
        verified_sigs: set[bytes] | frozenset[bytes] | None = None,
        skip_invalid: bool = False,
    ) -> BlockResult:
        """Run begin_block, all txs, end_block on `state` (mutated). Raises BlockError for an invalid tx
        unless `skip_invalid` (for proposers): then invalid txs are dropped and listed in `rejected`,
        and txs that would exceed max_block_txs / max_block_bytes are left out and listed in `deferred`."""
        if ctx.height != state.height + 1:
            raise BlockError(errors.BLOCK_WRONG_HEIGHT, f"block {ctx.height} on state at {state.height}")
        self.begin_block(state, ctx)
        receipts: list[TxReceipt] = []
        included: list[bytes] = []
        rejected: list[tuple[int, TxError]] = []
        params = ctx.params
        apply_tx = self.apply_tx
        deferred: list[int] = []
        block_bytes = 0
        limit = self.max_any_tx_bytes(params)
        decoded = [self._decode_item(item, limit) for item in txs]
        # Verify ahead, all at once (a parallel verifier measured: executing while verifying loses to GIL
        # hand-offs).
        preverified = self._preverify(decoded, verified_sigs)
        for i, stx in enumerate(decoded):
            try:
                if isinstance(stx, TxError):
                    raise stx
                raw = stx.raw
                if skip_invalid and (
                    len(included) >= params.max_block_txs or block_bytes + len(raw) > params.max_block_bytes
                ):
                    deferred.append(i)
                    continue
                tx_hash = stx.hash
                verified = tx_hash in preverified or (verified_sigs is not None and tx_hash in verified_sigs)
                receipts.append(apply_tx(state, stx, ctx, len(included), verified))
                included.append(raw)
                block_bytes += len(raw)
            except TxError as err:
                if not skip_invalid:
                    raise BlockError(
                        errors.BLOCK_INVALID_TX, f"tx {i} invalid: {err}", tx_index=i, tx_error=err
                    ) from err
                rejected.append((i, err))
        self.end_block(state, ctx)
        root = state.state_root()
        return BlockResult(ctx.height, root, receipts, ctx.fees, ctx.events, included, rejected, deferred)

    def apply_block(
        self,
        state: State,
        block: Block,
        params: ChainParams | None = None,
        verified_sigs: set[bytes] | frozenset[bytes] | None = None,
        known_txs: Mapping[bytes, SignedTx] | None = None,
    ) -> BlockResult:
        """Execute a received block on `state` (pass a copy) and check its txs_root and state_root.
        `known_txs` (canonical bytes -> the SignedTx decoded from exactly those bytes, e.g. the mempool's)
        spares re-decoding txs this node already holds; the result is the same."""
        params = params or state.params
        h = block.header
        if h.height != state.height + 1:
            raise BlockError(errors.BLOCK_WRONG_HEIGHT, f"block {h.height} on state at {state.height}")
        if len(block.txs) > params.max_block_txs:
            raise BlockError(errors.BLOCK_TOO_MANY_TXS, f"{len(block.txs)} txs > {params.max_block_txs}")
        total = sum(len(t) for t in block.txs)
        if total > params.max_block_bytes:
            raise BlockError(errors.BLOCK_TOO_LARGE, f"{total} tx bytes > {params.max_block_bytes}")
        if txs_root(block.txs) != h.txs_root:
            raise BlockError(errors.BLOCK_TXS_ROOT_MISMATCH, "txs_root does not match the block's txs")
        ctx = BlockContext(h.height, h.time_ms, h.proposer, state.chain_id, params)
        txs: Sequence[bytes | SignedTx] = block.txs
        if known_txs:
            txs = [known_txs.get(raw, raw) for raw in block.txs]
        result = self.execute_block(state, ctx, txs, verified_sigs)
        if result.state_root != h.state_root:
            raise BlockError(
                errors.BLOCK_STATE_ROOT_MISMATCH,
                f"state root {result.state_root.hex()} != header {h.state_root.hex()}",
            )
        return result
