"""Deterministic transaction and block execution (DESIGN §4, §5.1). Pure: no I/O, no clock.

Transaction kinds are looked up in a `TxRegistry` held by an `Executor` (no global mutable registry):
each `TxKind` gives the payload `Struct`, a read-only `validate` and a mutating `apply`, its size limit
and whether the minimum fee applies. The core kinds are `transfer`, `stake`, `unstake`, `evidence`;
`pocl.commit`, `pocl.predict`, `pocl.vote` are RESERVED (rejected with `kind_not_enabled`) until a
registry registers them:

    reg = default_registry()
    reg.register(TxKind("pocl.commit", CommitPayload, validate_commit, apply_commit,
                        max_bytes=lambda p: p.max_pocl_tx_bytes))
    executor = Executor(reg, end_block_hooks=[finalize_round])

Checks, in order (cheap first, signature last), each with a stable code from `ledger.errors`:
size (`tx_too_large`), decoding (`malformed_tx`), version, chain id, kind, per-kind size, fee/nonce
ranges, payload shape, nonce (`nonce_too_low`/`nonce_too_high`: must equal the account nonce),
fee balance, kind-specific `validate`, then the signature (`bad_signature`). A tx is applied only if
every check passed, so a failing tx never leaves partial writes: the sender pays `fee` (credited to the
block proposer at end of block), its nonce increments, then the kind's `apply` runs.

Block execution: `begin_block` (height, unbonding releases, begin hooks), every tx (any invalid tx makes
the whole block invalid: `BlockError`), `end_block` (end hooks, e.g. PoCL finalization, then fees to the
proposer). Hooks are `Callable[[State, BlockContext], None]` and may append `Event`s to `ctx.events`.

Public API:
    Executor(registry=None, begin_block_hooks=(), end_block_hooks=())
        .decode_tx(raw, params) -> SignedTx                        (raises TxError)
        .check_tx(state, tx: SignedTx | bytes, params=None) -> TxError | None   (mempool; no writes)
        .check_and_apply_tx(check_state, tx, params=None) -> TxError | None
              (mempool: validate against an overlay and apply on success, so a sender's queued txs
               with consecutive nonces validate one after another; fees go nowhere in that overlay)
        .apply_tx(state, stx, ctx, index=0, verified=False) -> TxReceipt        (raises TxError)
        .execute_block(state, ctx, txs, verified_sigs=None, skip_invalid=False) -> BlockResult
              (with skip_invalid, invalid txs are dropped and overflow deferred: for proposers)
        .propose_block(state, *, time_ms, proposer, prev_hash, last_commit, candidate_txs,
                       round_info=b"", verified_sigs=None) -> (Block, BlockResult, work_state)
        .apply_block(state, block, params=None, verified_sigs=None) -> BlockResult (raises BlockError)
    check_tx(state, tx, params) / apply_block(state, block, params, verified_sigs=None): default executor
    TxKind, TxRegistry, default_registry(), BlockContext, TxContext, TxReceipt, BlockResult, Event,
    fast_txs_root(txs) (== ledger.block.txs_root, faster)
`apply_block` checks height, tx count/bytes limits, txs_root, every tx and the header's state_root; it
does NOT check prev_hash, proposer, time or last_commit signatures: that is consensus / block sync's job.
Always execute on `state.copy()`: a BlockError leaves the overlay half-written (drop it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pocl.ledger import errors
from pocl.ledger.block import Block, Commit, DuplicateVoteEvidence, Header, txs_root
from pocl.ledger.codec import CodecError, Struct
from pocl.ledger.errors import BlockError, TxError
from pocl.ledger.evidence import check_evidence, punish_double_sign
from pocl.ledger.hashing import TAG_MERKLE_LEAF, TAG_MERKLE_NODE, TAG_TXS_ROOT
from pocl.ledger.params import ChainParams
from pocl.ledger.state import MAX_AMOUNT, Account, State
from pocl.ledger.tx import (
    KIND_EVIDENCE,
    KIND_STAKE,
    KIND_TRANSFER,
    KIND_UNSTAKE,
    RESERVED_KINDS,
    TX_VERSION,
    SignedTx,
    StakePayload,
    TransferPayload,
    UnstakePayload,
)

MAX_UNBONDING_ENTRIES = 32
PARALLEL_VERIFY_MIN = 64  # below this many unverified txs, threads cost more than they save
VERIFY_WORKERS = min(os.cpu_count() or 1, 8)


def _verified_hashes(stxs: Sequence[SignedTx]) -> list[bytes]:
    return [stx.hash for stx in stxs if stx.verify_signature()]

_LEAF_PREFIX = bytes([len(TAG_MERKLE_LEAF)]) + TAG_MERKLE_LEAF
_NODE_PREFIX = bytes([len(TAG_MERKLE_NODE)]) + TAG_MERKLE_NODE
_ROOT_PREFIX = bytes([len(TAG_TXS_ROOT)]) + TAG_TXS_ROOT


def fast_txs_root(txs: Sequence[bytes]) -> bytes:
    """Same value as `ledger.block.txs_root` (tested), with the tagged hashes inlined: it runs over
    every tx of every block and the generic version costs more than executing a transfer."""
    sha = hashlib.sha256
    if not txs:
        return txs_root([])
    level = [sha(_LEAF_PREFIX + t).digest() for t in txs]
    while len(level) > 1:
        nxt = [sha(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return sha(_ROOT_PREFIX + level[0]).digest()


NO_PROPOSER = b"\x00" * 20


@dataclasses.dataclass(frozen=True)
class Event:
    """Something a block did that clients may want to see (slash, unbond release, round finalized...)."""

    kind: str
    data: dict[str, Any]


@dataclasses.dataclass
class BlockContext:
    height: int
    time_ms: int
    proposer: bytes  # address credited with the block's fees
    chain_id: str
    params: ChainParams
    fees: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)


class TxContext:
    """Per-tx view handed to a kind's validate/apply. `account` is the sender's account as validated
    (read-only; None if it does not exist yet); in `apply` the fee is already paid and nonce bumped."""

    __slots__ = ("account", "block", "index", "sender", "stx")

    def __init__(self, block: BlockContext, stx: SignedTx, sender: bytes, index: int) -> None:
        self.block = block
        self.stx = stx
        self.sender = sender  # address
        self.index = index
        self.account: Account | None = None

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def params(self) -> ChainParams:
        return self.block.params


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


Validate = Callable[[State, TxContext, Any], "TxError | None"]
Apply = Callable[[State, TxContext, Any], None]
Hook = Callable[[State, BlockContext], None]


def _default_max_bytes(params: ChainParams) -> int:
    return params.max_tx_bytes


@dataclasses.dataclass(frozen=True)
class TxKind:
    name: str
    payload_type: type[Struct]
    validate: Validate  # read-only; return a TxError to reject
    apply: Apply  # runs only after validate passed; must not fail
    max_bytes: Callable[[ChainParams], int] = _default_max_bytes
    requires_min_fee: bool = True


class TxRegistry:
    """Kind name -> TxKind, plus reserved names that are rejected with `kind_not_enabled`."""

    def __init__(self, kinds: Iterable[TxKind] = (), reserved: Iterable[str] = ()) -> None:
        self._kinds: dict[str, TxKind] = {}
        self._reserved: set[str] = set(reserved)
        for k in kinds:
            self.register(k)

    def register(self, kind: TxKind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"tx kind {kind.name!r} already registered")
        self._kinds[kind.name] = kind
        self._reserved.discard(kind.name)

    def get(self, name: str) -> TxKind | None:
        return self._kinds.get(name)

    def is_reserved(self, name: str) -> bool:
        return name in self._reserved

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def copy(self) -> TxRegistry:
        reg = TxRegistry(reserved=self._reserved)
        reg._kinds = dict(self._kinds)
        return reg


# --------------------------------------------------------------------------- core kinds


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
        Event(
            "double_sign_slashed",
            {
                "validator": ev.vote_a.validator_address,
                "height": ev.vote_a.height,
                "round": ev.vote_a.round,
                "slashed": slashed,
                "jailed_until_height": ctx.height + ctx.params.double_sign_jail_blocks,
                "reporter": ctx.sender,
            },
        )
    )


def default_registry() -> TxRegistry:
    """A fresh registry with the core kinds and the reserved pocl.* names."""
    return TxRegistry(
        [
            TxKind(KIND_TRANSFER, TransferPayload, validate_transfer, apply_transfer),
            TxKind(KIND_STAKE, StakePayload, validate_stake, apply_stake),
            TxKind(KIND_UNSTAKE, UnstakePayload, validate_unstake, apply_unstake),
            TxKind(KIND_EVIDENCE, DuplicateVoteEvidence, validate_evidence, apply_evidence),
        ],
        reserved=RESERVED_KINDS,
    )


# --------------------------------------------------------------------------- executor


class Executor:
    def __init__(
        self,
        registry: TxRegistry | None = None,
        begin_block_hooks: Sequence[Hook] = (),
        end_block_hooks: Sequence[Hook] = (),
    ) -> None:
        self._verify_pool: ThreadPoolExecutor | None = None
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

    def check_and_apply_tx(
        self, state: State, tx: SignedTx | bytes, params: ChainParams | None = None
    ) -> TxError | None:
        """Like check_tx, but on success also applies the tx to `state` (a mempool's "check state"
        overlay), so the sender's next nonce and remaining balance are checked against it."""
        params = params or state.params
        try:
            stx = self.decode_tx(tx, params) if isinstance(tx, (bytes, bytearray)) else tx
            ctx = BlockContext(state.height + 1, 0, NO_PROPOSER, state.chain_id, params)
            self.apply_tx(state, stx, ctx)
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
            ctx.events.append(Event("unbonded", {"address": addr, "amount": released}))
        state.clear_unbonding_queue(ctx.height)

    def end_block(self, state: State, ctx: BlockContext) -> None:
        for hook in self.end_block_hooks:
            hook(state, ctx)
        if ctx.fees:
            state.account_for_update(ctx.proposer).balance += ctx.fees

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

    def _start_verification(
        self, decoded: Sequence[SignedTx | TxError], known: set[bytes] | frozenset[bytes] | None
    ) -> list[tuple[Future[list[bytes]], list[SignedTx]]]:
        """Check signatures not yet known to be valid on all cores; returns (future, txs) per chunk.

        Ed25519 verification dominates block cost and PyNaCl releases the GIL, so the signatures of a
        block synced from peers (or not seen by our mempool) are checked ~cores times faster. Pure: a tx
        missing from the result is simply verified again, sequentially, by `apply_tx`."""
        todo = [
            stx for stx in decoded
            if isinstance(stx, SignedTx) and (known is None or stx.hash not in known)
        ]
        if len(todo) < PARALLEL_VERIFY_MIN or VERIFY_WORKERS < 2:
            return []
        if self._verify_pool is None:
            self._verify_pool = ThreadPoolExecutor(VERIFY_WORKERS, thread_name_prefix="sigverify")
        chunk = -(-len(todo) // VERIFY_WORKERS)
        parts = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
        return [(self._verify_pool.submit(_verified_hashes, part), part) for part in parts]

    @staticmethod
    def _collect(pending: list[tuple[Future[list[bytes]], list[SignedTx]]]) -> frozenset[bytes]:
        ok: set[bytes] = set()
        for future, _part in pending:
            ok.update(future.result())
        return frozenset(ok)

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
        # Verify first, on all cores (measured: executing while verifying loses to GIL hand-offs).
        preverified = self._collect(self._start_verification(decoded, verified_sigs))
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

    def propose_block(
        self,
        state: State,
        *,
        time_ms: int,
        proposer: bytes,
        prev_hash: bytes,
        last_commit: Commit | None,
        candidate_txs: Sequence[bytes | SignedTx],
        round_info: bytes = b"",
        verified_sigs: set[bytes] | frozenset[bytes] | None = None,
    ) -> tuple[Block, BlockResult, State]:
        """Build the next block from candidate txs (invalid ones dropped, overflow deferred).

        Returns (block, result, work) where `work` is the executed overlay on `state`: commit it with
        `store.commit_block(block, work.delta(), ...)` + `work.commit()` once the block is final, or drop it.
        """
        work = state.copy()
        height = state.height + 1
        ctx = BlockContext(height, time_ms, proposer, state.chain_id, state.params)
        result = self.execute_block(work, ctx, candidate_txs, verified_sigs, skip_invalid=True)
        header = Header(
            height=height,
            time_ms=time_ms,
            prev_hash=prev_hash,
            proposer=proposer,
            txs_root=fast_txs_root(result.txs),
            state_root=result.state_root,
            last_commit_hash=last_commit.hash if last_commit is not None else b"",
            round_info=round_info,
        )
        return Block(header, result.txs, last_commit), result, work

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
        if fast_txs_root(block.txs) != h.txs_root:
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


DEFAULT_EXECUTOR = Executor()


def check_tx(state: State, tx: SignedTx | bytes, params: ChainParams | None = None) -> TxError | None:
    return DEFAULT_EXECUTOR.check_tx(state, tx, params)


def apply_block(
    state: State,
    block: Block,
    params: ChainParams | None = None,
    verified_sigs: set[bytes] | frozenset[bytes] | None = None,
) -> BlockResult:
    return DEFAULT_EXECUTOR.apply_block(state, block, params, verified_sigs)
