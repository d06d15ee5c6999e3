"""Transaction gossip: single txs (type 68) and batches (type 70), and whom a bad one gets punished.

One gossip message per transaction costs every node, per copy received, a decrypted frame, a decode,
a message-id hash and a socket write per relay, and counts against each peer's gossip rate limit
(2,000 messages/s): at 1,000 tx/s over a full mesh that framing costs more than verifying the
signatures. So newly admitted transactions wait in an outbox for at most `delay_s` (20
milliseconds, far below a block interval) or until the batch is full, then go out as one
`TxBatchMessage`. A received tx or batch is admitted tx by tx; gossip relays it whole
(validate-before-relay as for any topic) unless it carried a transaction that no honest node would
have admitted (`MALICIOUS_TX_CODES`): then the sender is scored by gossip. Large txs (PoCL weights)
do not flood: with an `announcer` set (`tx_announce.py`) they are announced by hash and fetched once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import msgpack
from pocl.ledger import errors
from pocl.ledger.codec import Struct
from pocl.node.mempool import AddResult
from pocl.node.reactors.tx_announce import TxAnnouncer
from pocl.p2p import message_ids
from pocl.p2p.gossip import Gossip

MAX_BATCH_TXS = 1_000
MAX_BATCH_BYTES = 1024 * 1024  # soft cap; one larger tx (PoCL) travels alone
BATCH_DELAY_S = 0.02  # well below a block interval; bounds batches to ~50/s per node
FRAME_OVERHEAD = 64 * 1024
TX_MESSAGE_OVERHEAD = 64
# Rejections no honest node forwards; stateful failures (nonce raced a block, balance spent) are not
# the peer's fault.
MALICIOUS_TX_CODES = frozenset(
    {errors.MALFORMED_TX, errors.BAD_SIGNATURE, errors.TX_TOO_LARGE, errors.UNSUPPORTED_VERSION}
)


def is_malicious(res: AddResult) -> bool:
    """A refusal no honest node would have caused by forwarding the tx."""
    return res.error is not None and res.error.code in MALICIOUS_TX_CODES


@dataclasses.dataclass(frozen=True)
class TxMessage(Struct):
    raw: bytes


@dataclasses.dataclass(frozen=True)
class TxBatchMessage(Struct):
    txs: list[bytes]

    MAX_LEN: ClassVar[dict[str, int]] = {"txs": MAX_BATCH_TXS}

    # Fast paths for the generic Struct conversions (every copy of every batch is decoded, re-encoded
    # for its gossip id and encoded per peer): same results, without per-element type dispatch.
    # Anything but a well-formed batch falls back to the generic code, which raises the usual errors.

    @classmethod
    def from_list(cls, value: Any) -> TxBatchMessage:
        if type(value) is list and len(value) == 1:
            txs = value[0]
            if type(txs) is list and len(txs) <= MAX_BATCH_TXS and all(type(t) is bytes for t in txs):
                return cls(txs)
        return super().from_list(value)

    def to_list(self) -> list[Any]:
        return [list(self.txs)]

    def encode(self) -> bytes:
        if type(self.txs) is list and all(type(t) is bytes for t in self.txs):
            return msgpack.packb([self.txs], use_bin_type=True)
        return super().encode()


class TxGossipReactor:
    """Registers both tx topics on `gossip`, admits what peers send through `add_tx` (the mempool's
    `add`), and batches what we `publish`."""

    def __init__(
        self,
        gossip: Gossip,
        add_tx: Callable[[bytes], AddResult],
        max_tx_bytes: int,
        *,
        delay_s: float = BATCH_DELAY_S,
        max_txs: int = MAX_BATCH_TXS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.gossip = gossip
        self.add_tx = add_tx
        self.delay_s = delay_s
        self.max_txs = min(max_txs, MAX_BATCH_TXS)
        self.max_bytes = max_bytes
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self.announcer: TxAnnouncer | None = None  # large txs go by announcement when set
        gossip.register(message_ids.TX, TxMessage, max_tx_bytes + TX_MESSAGE_OVERHEAD, validate=self._on_tx)
        gossip.register(
            message_ids.TX_BATCH,
            TxBatchMessage,
            max(max_bytes, max_tx_bytes) + FRAME_OVERHEAD,
            validate=self._on_batch,
        )

    # ------------------------------------------------------------------ sending

    def publish(self, raw: bytes) -> None:
        """Queue a newly admitted tx for the next batch (a large one is announced instead)."""
        if self.announcer is not None and self.announcer.wants(raw):
            self.announcer.publish(raw)
            return
        if self._outbox and self._outbox_bytes + len(raw) > self.max_bytes:
            self.flush()
        self._outbox.append(raw)
        self._outbox_bytes += len(raw)
        if len(self._outbox) >= self.max_txs:
            self.flush()
        elif self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (tools, unit tests): send at once
                self.flush()
                return
            self._flush_handle = loop.call_later(self.delay_s, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._outbox:
            return
        batch, self._outbox, self._outbox_bytes = self._outbox, [], 0
        self.gossip.publish(TxBatchMessage(batch))

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._outbox, self._outbox_bytes = [], 0

    # ------------------------------------------------------------------ receiving

    def admit(self, raw: bytes) -> bool:
        """Offer a peer's tx to the mempool; False only if no honest node would have forwarded it."""
        res = self.add_tx(raw)
        if res.error is not None:
            return res.error.code not in MALICIOUS_TX_CODES
        return True

    def _on_tx(self, msg: TxMessage, _sender: bytes) -> bool:
        return self.admit(msg.raw)

    def _on_batch(self, msg: TxBatchMessage, _sender: bytes) -> bool:
        honest = True
        for raw in msg.txs:
            if not self.admit(raw):
                honest = False
        return honest
