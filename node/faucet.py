"""The testnet faucet: transfers from a funded key to whoever asks, rate-limited (`[faucet]`, issue 14).

Each grant is a transfer signed here and admitted by the node's own path for local txs
(`TxSubmitter.submit_tx`, the one `POST /txs` uses: mempool admission, then gossip). Its nonce is the
mempool's pending nonce of the faucet account, read and used with no `await` in between: grants run on
the event-loop thread one at a time, so concurrent requests never share a nonce, and a grant that the
mempool later drops (a block spent the balance) frees its nonce without a local counter to resync.

Limits: one grant per recipient address per `per_address_interval_s`, one per client IP per
`per_source_interval_s`, and at most `max_in_flight` faucet txs pending at once. A limit is recorded only
when a grant succeeds (a refused or failed request costs the client nothing). The tables are cachetools
`TTLCache`s bounded by `MAX_TRACKED` entries: an entry lives exactly one interval, and a flood of new
addresses or sources evicts the oldest entries instead of growing memory (the per-source limit is what
keeps one client from cycling through addresses).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from cachetools import TTLCache
from pocl.ledger import errors
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import make_transfer
from pocl.node.config import FaucetSection
from pocl.node.interfaces import TxNode
from pocl.node.mempool import MEMPOOL_FULL

log = logging.getLogger("pocl.faucet")

MAX_TRACKED = 100_000  # entries per rate-limit table (~10 MB at most)

# Stable error codes of `POST /faucet` (the RPC maps them to HTTP statuses).
FAUCET_DISABLED = "faucet_disabled"
FAUCET_RATE_LIMITED = "faucet_rate_limited"
FAUCET_EMPTY = "faucet_empty"
FAUCET_BUSY = "faucet_busy"
FAUCET_NOT_READY = "not_ready"


class FaucetSetupError(Exception):
    """The faucet cannot be started as configured; the message is for the operator."""


class FaucetRefused(Exception):
    """A grant was refused: `code` is stable (above, or the mempool's rejection code of the transfer)."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclasses.dataclass(frozen=True)
class FaucetSettings:
    amount: int
    fee: int
    per_address_interval_s: float
    per_source_interval_s: float
    max_in_flight: int

    @classmethod
    def from_config(cls, section: FaucetSection, min_fee: int) -> FaucetSettings:
        """The `[faucet]` section, checked against the chain's minimum fee (every grant would fail)."""
        if section.fee < min_fee:
            raise FaucetSetupError(
                f"config faucet.fee = {section.fee} is below the chain's min_fee {min_fee}"
            )
        return cls(
            amount=section.amount,
            fee=section.fee,
            per_address_interval_s=section.per_address_interval_s,
            per_source_interval_s=section.per_source_interval_s,
            max_in_flight=section.max_in_flight,
        )


@dataclasses.dataclass(frozen=True)
class Grant:
    tx_hash: bytes
    address: bytes
    amount: int
    nonce: int


class RateLimit:
    """At most one use per key per `interval_s` (0: unlimited), in a table of at most `max_keys` keys."""

    def __init__(self, interval_s: float, max_keys: int, timer: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self._timer = timer
        self._last: TTLCache[object, float] | None = (
            TTLCache(max_keys, ttl=interval_s, timer=timer) if interval_s > 0 else None
        )

    def retry_after(self, key: object) -> float | None:
        """Seconds until `key` may be used again, None if it may now."""
        if self._last is None:
            return None
        last = self._last.get(key)
        if last is None:
            return None
        return max(0.0, last + self.interval_s - self._timer())

    def record(self, key: object) -> None:
        if self._last is not None:
            self._last[key] = self._timer()

    def __len__(self) -> int:
        return 0 if self._last is None else len(self._last)


class Faucet:
    def __init__(
        self,
        node: TxNode,
        key: PrivateKey,
        settings: FaucetSettings,
        *,
        max_tracked: int = MAX_TRACKED,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.key = key
        self.settings = settings
        self.by_address = RateLimit(settings.per_address_interval_s, max_tracked, timer)
        self.by_source = RateLimit(settings.per_source_interval_s, max_tracked, timer)

    @property
    def address(self) -> bytes:
        return self.key.address

    def in_flight(self) -> int:
        """Faucet txs admitted to the mempool and not yet committed."""
        chain, pool = self.node.chain, self.node.mempool
        if chain is None or pool is None:
            return 0
        account = chain.state.account(self.address)
        pending = pool.pending_nonce(self.address)
        return 0 if account is None or pending is None else pending - account.nonce

    def grant(self, address: bytes, source: str) -> Grant:
        """Sign and submit a transfer of `amount` to `address`, or raise `FaucetRefused`. Synchronous on
        purpose: nonce read, admission and the rate-limit records happen with no other grant in between."""
        chain, pool = self.node.chain, self.node.mempool
        if chain is None or pool is None:
            raise FaucetRefused(FAUCET_NOT_READY, "node is starting")
        s = self.settings
        limits = (
            (self.by_address, address, f"address {format_address(address)}"),
            (self.by_source, source, f"client {source}"),
        )
        for limit, key, what in limits:
            wait = limit.retry_after(key)
            if wait is not None:
                raise FaucetRefused(
                    FAUCET_RATE_LIMITED,
                    f"the faucet already served {what} within {limit.interval_s:g}s; try again in {wait:.0f}s",
                    retry_after_s=wait,
                )
        if self.in_flight() >= s.max_in_flight:
            raise FaucetRefused(
                FAUCET_BUSY, f"{s.max_in_flight} faucet transfers are waiting for a block; try again shortly"
            )
        nonce = pool.pending_nonce(self.address)
        if nonce is None:
            raise FaucetRefused(
                FAUCET_EMPTY, f"the faucet account {format_address(self.address)} has no funds"
            )
        stx = make_transfer(self.key, chain.state.chain_id, nonce, address, s.amount, s.fee)
        res = self.node.submit_tx(stx.raw)
        if res.error is not None:
            if res.error.code == errors.INSUFFICIENT_BALANCE:
                raise FaucetRefused(
                    FAUCET_EMPTY,
                    f"the faucet's balance ({chain.state.balance(self.address)} committed, less pending "
                    f"grants) cannot cover {s.amount} + fee {s.fee}",
                )
            if res.error.code == MEMPOOL_FULL:
                raise FaucetRefused(FAUCET_BUSY, res.error.message)
            raise FaucetRefused(res.error.code, res.error.message)
        self.by_address.record(address)
        self.by_source.record(source)
        log.info(
            "faucet grant to=%s amount=%d source=%s nonce=%d tx=%s",
            format_address(address),
            s.amount,
            source,
            nonce,
            res.tx_hash.hex()[:16],
        )
        return Grant(res.tx_hash, address, s.amount, nonce)
