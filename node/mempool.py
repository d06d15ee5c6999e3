"""Mempool: admitted transactions waiting for a block (DESIGN §4, issue "BFT node" item 3).

Admission runs the executor's full check against a *pending overlay*: the committed state with every
admitted tx already applied in per-sender nonce order. That one mechanism gives nonce ordering, cumulative
balance checks and "one signature verification per node": a tx admitted here has a verified signature,
its hash goes into `verified`, and block execution skips re-verifying it.

Block proposals take txs by fee priority across senders while keeping each sender's nonce order.
After every committed block `update()` rebuilds the overlay from the new state and drops what no longer
applies (committed, stale nonce, balance spent elsewhere).

An application rule may raise something other than `TxError` for a tx that was valid against an older
state (e.g. PoCL's `pocl_no_round` for a queued commit whose round closed while a partition healed).
Such a tx is dropped with a logged reason and the overlay rebuilt (the exception may come after the fee
and nonce were written): never the caller, which is block sync or the consensus driver right after a
commit.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging

from pocl.ledger import errors
from pocl.ledger.errors import TxError
from pocl.ledger.executor import NO_PROPOSER, Executor
from pocl.ledger.state import State
from pocl.ledger.tx import SignedTx
from pocl.ledger.tx_kinds import BlockContext
from pocl.p2p.gossip import SeenCache

log = logging.getLogger("pocl.mempool")

MEMPOOL_FULL = "mempool_full"
MAX_NONCE_GAP = 64  # future-nonce txs held per sender until the gap fills (gossip can reorder)


@dataclasses.dataclass(frozen=True)
class MempoolConfig:
    max_txs: int = 20_000
    max_bytes: int = 64 * 1024 * 1024
    verified_cache_size: int = 200_000


@dataclasses.dataclass(frozen=True)
class AddResult:
    tx_hash: bytes
    error: TxError | None = None
    is_new: bool = False
    queued: bool = False  # held for a missing lower nonce, not yet executable

    @property
    def ok(self) -> bool:
        return self.error is None


class _RuleFailure(Exception):
    """An application rule raised something other than `TxError`; `error` is what the sender is told.
    The overlay may hold part of that tx's writes: the caller rebuilds it."""

    def __init__(self, error: TxError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclasses.dataclass
class _Entry:
    stx: SignedTx
    arrival: int


class Mempool:
    def __init__(self, executor: Executor, state: State, config: MempoolConfig | None = None) -> None:
        self.executor = executor
        self.config = config or MempoolConfig()
        self.verified = SeenCache(self.config.verified_cache_size)
        self._by_sender: dict[bytes, list[_Entry]] = {}  # sender address -> entries in nonce order
        self._by_hash: dict[bytes, _Entry] = {}
        self.by_raw: dict[bytes, SignedTx] = {}  # canonical bytes -> decoded tx (block checks skip decoding)
        self._queued: dict[bytes, dict[int, SignedTx]] = {}  # sender -> nonce -> tx waiting for a gap
        self._queued_hashes: set[bytes] = set()
        self._bytes = 0
        self._arrivals = 0
        self._reset_overlay(state)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash or tx_hash in self._queued_hashes

    @property
    def queued_count(self) -> int:
        return len(self._queued_hashes)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> SignedTx | None:
        entry = self._by_hash.get(tx_hash)
        return entry.stx if entry else None

    def txs(self) -> list[SignedTx]:
        """All pending txs in arrival order (for RPC)."""
        return [e.stx for e in sorted(self._by_hash.values(), key=lambda e: e.arrival)]

    def pending_nonce(self, sender: bytes) -> int | None:
        """Next nonce a new tx from `sender` should use, counting pending txs (None if no account)."""
        acct = self._overlay.account(sender)
        return acct.nonce if acct is not None else None

    # ------------------------------------------------------------------ admission

    def add(self, raw: bytes | SignedTx) -> AddResult:
        """Admit a tx if it applies on top of everything pending; never raises for bad input."""
        params = self._state.params
        try:
            stx = raw if isinstance(raw, SignedTx) else self.executor.decode_tx(raw, params)
        except TxError as err:
            return AddResult(b"", err)
        tx_hash = stx.hash
        if tx_hash in self._by_hash or tx_hash in self._queued_hashes:
            return AddResult(tx_hash, None, is_new=False)
        size = len(stx.raw)
        if (
            len(self._by_hash) + len(self._queued_hashes) >= self.config.max_txs
            or self._bytes + size > self.config.max_bytes
        ):
            return AddResult(tx_hash, TxError(MEMPOOL_FULL, "mempool is full, try again later"))
        try:  # apply_tx validates fully before writing, so a rejected tx leaves the overlay untouched
            self._apply(stx, verified=tx_hash in self.verified)
        except TxError as err:
            if err.code == errors.NONCE_TOO_HIGH:
                return self._queue(stx, err)
            return AddResult(tx_hash, err)
        except _RuleFailure as failure:
            self._rebuild()
            return AddResult(tx_hash, failure.error)
        self.verified.add(tx_hash)
        self._insert(stx)
        self._promote(stx.sender_address)
        return AddResult(tx_hash, None, is_new=True)

    def _queue(self, stx: SignedTx, err: TxError) -> AddResult:
        """Hold a tx whose nonce is slightly ahead; only its signature and chain can be checked now."""
        sender = stx.sender_address
        expected = self.pending_nonce(sender) or 0
        waiting = self._queued.setdefault(sender, {})
        if stx.tx.nonce - expected > MAX_NONCE_GAP or stx.tx.nonce in waiting:
            if not waiting:
                del self._queued[sender]
            return AddResult(stx.hash, err)
        if stx.tx.chain_id != self._state.chain_id:
            return AddResult(stx.hash, TxError(errors.WRONG_CHAIN_ID, f"tx is for chain {stx.tx.chain_id!r}"))
        if not stx.verify_signature():
            return AddResult(stx.hash, TxError(errors.BAD_SIGNATURE, "signature does not verify"))
        self.verified.add(stx.hash)
        waiting[stx.tx.nonce] = stx
        self._queued_hashes.add(stx.hash)
        return AddResult(stx.hash, None, is_new=True, queued=True)

    def _promote(self, sender: bytes) -> None:
        """Move queued txs of `sender` whose turn has come into the executable pool."""
        waiting = self._queued.get(sender)
        while waiting:
            nxt = waiting.pop(self.pending_nonce(sender) or 0, None)
            if nxt is None:
                break
            self._queued_hashes.discard(nxt.hash)
            try:
                self._apply(nxt, verified=True)
            except TxError:
                continue  # e.g. balance no longer covers it: drop it; later nonces stay queued
            except _RuleFailure:
                self._rebuild()
                continue
            self._insert(nxt)
        if waiting is not None and not waiting:
            self._queued.pop(sender, None)

    def _apply(self, stx: SignedTx, *, verified: bool) -> None:
        """Apply on the overlay; `TxError` as the executor raises it, any other exception of an
        application rule as `_RuleFailure` (logged once, with the tx and the reason)."""
        try:
            self.executor.apply_tx(self._overlay, stx, self._ctx, verified=verified)
        except TxError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("mempool: dropped tx %s (%s): %s", stx.hash.hex()[:12], stx.tx.kind, reason)
            raise _RuleFailure(
                TxError(errors.TX_REJECTED, f"rejected by the {stx.tx.kind} rules: {reason}")
            ) from exc

    def _rebuild(self) -> None:
        """Re-apply every pending tx on a fresh overlay (after a `_RuleFailure` left part of a tx in it)."""
        self.update(self._state)

    def _insert(self, stx: SignedTx) -> None:
        self._arrivals += 1
        entry = _Entry(stx, self._arrivals)
        self._by_sender.setdefault(stx.sender_address, []).append(entry)
        self._by_hash[stx.hash] = entry
        self.by_raw[stx.raw] = stx
        self._bytes += len(stx.raw)

    # ------------------------------------------------------------------ block building

    def reap(self, max_txs: int, max_bytes: int) -> list[SignedTx]:
        """Highest-fee-first across senders, nonce order within a sender, within the block caps."""
        heap: list[tuple[int, int, bytes, int]] = []
        for sender, entries in self._by_sender.items():
            first = entries[0]
            heap.append((-first.stx.tx.fee, first.arrival, sender, 0))
        heapq.heapify(heap)
        out: list[SignedTx] = []
        total = 0
        while heap and len(out) < max_txs:
            _fee, _arr, sender, idx = heapq.heappop(heap)
            stx = self._by_sender[sender][idx].stx
            size = len(stx.raw)
            if total + size > max_bytes:
                continue  # this sender's later txs depend on this one: skip the sender entirely
            out.append(stx)
            total += size
            entries = self._by_sender[sender]
            if idx + 1 < len(entries):
                nxt = entries[idx + 1]
                heapq.heappush(heap, (-nxt.stx.tx.fee, nxt.arrival, sender, idx + 1))
        return out

    # ------------------------------------------------------------------ after a block

    def update(self, state: State) -> list[bytes]:
        """Re-base on the newly committed `state`; returns the hashes dropped (committed or invalid)."""
        old = sorted(self._by_hash.values(), key=lambda e: (e.stx.sender_address, e.stx.tx.nonce))
        dropped: dict[bytes, None] = {}  # ordered set: committed or invalid hashes
        broken: set[bytes] = set()
        self._clear_entries(state)
        while not self._reapply(old, state, dropped, broken):
            self._clear_entries(state)  # a rule failed midway: start over without the txs dropped so far
        for sender in list(self._queued):
            base = self.pending_nonce(sender) or 0
            waiting = self._queued[sender]
            for nonce in [n for n in waiting if n < base]:  # committed elsewhere or superseded
                self._queued_hashes.discard(waiting.pop(nonce).hash)
            self._promote(sender)
        for tx_hash in dropped:
            # Committed or no longer applicable: no block can need the cached verification again (a
            # committed tx fails on its nonce before the signature check), so free the memory now
            # instead of keeping up to verified_cache_size hashes (~25 MB at 150k) until eviction.
            self.verified.discard(tx_hash)
        return list(dropped)

    def _clear_entries(self, state: State) -> None:
        self._by_sender.clear()
        self._by_hash.clear()
        self.by_raw.clear()
        self._bytes = 0
        self._reset_overlay(state)

    def _reapply(
        self, old: list[_Entry], state: State, dropped: dict[bytes, None], broken: set[bytes]
    ) -> bool:
        """One pass of `update` over the previous entries; False when a rule failed midway (the overlay
        may hold part of that tx: the caller starts over, `dropped`/`broken` now name it)."""
        base_sender, base_nonce = b"", 0
        for entry in old:
            stx = entry.stx
            if stx.hash in dropped:
                continue
            sender = stx.sender_address
            if sender in broken:
                dropped[stx.hash] = None
                continue
            if sender != base_sender:  # `old` is grouped by sender
                acct = state.account(sender)
                base_sender, base_nonce = sender, acct.nonce if acct is not None else 0
            if stx.tx.nonce < base_nonce:
                # Committed (or superseded): apply_tx would fail with nonce_too_low, as every check
                # before the nonce is static and passed at admission; skip the work and the exception.
                dropped[stx.hash] = None
                continue
            try:
                self._apply(stx, verified=True)
            except TxError as err:
                dropped[stx.hash] = None
                if err.code != errors.NONCE_TOO_LOW:
                    broken.add(sender)  # later nonces of this sender can no longer apply
                continue
            except _RuleFailure:
                dropped[stx.hash] = None
                broken.add(sender)
                return False
            entry = _Entry(stx, entry.arrival)
            self._by_sender.setdefault(sender, []).append(entry)
            self._by_hash[stx.hash] = entry
            self.by_raw[stx.raw] = stx
            self._bytes += len(stx.raw)
        return True

    def _reset_overlay(self, state: State) -> None:
        self._state = state
        self._overlay = state.copy()
        self._ctx = BlockContext(state.height + 1, 0, NO_PROPOSER, state.chain_id, state.params)
