"""The tx gossip reactor: both tx topics registered under their table ids, batching of what we publish,
and the verdict on what peers send (only txs no honest node forwards count against the peer)."""

from __future__ import annotations

import asyncio
from typing import Any

from pocl.ledger import codec, errors
from pocl.ledger.codec import CodecError, Struct
from pocl.ledger.errors import TxError
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import make_transfer
from pocl.node.mempool import AddResult
from pocl.node.reactors.tx_gossip import (
    MALICIOUS_TX_CODES,
    MAX_BATCH_TXS,
    TxBatchMessage,
    TxGossipReactor,
    TxMessage,
)
from pocl.p2p import message_ids
from pocl.p2p.message_ids import MessageId

CHAIN = "tx-gossip-test"
KEY = PrivateKey.from_seed_text("tx-gossip-0")
SINK = PrivateKey.from_seed_text("tx-gossip-sink").address


def transfer(nonce: int) -> bytes:
    return make_transfer(KEY, CHAIN, nonce, SINK, 5, 1).raw


class FakeGossip:
    """Records registrations and published messages (the unit under test is the reactor)."""

    def __init__(self) -> None:
        self.registered: dict[MessageId, tuple[type, int, Any]] = {}
        self.published: list[Any] = []

    def register(self, message: MessageId, cls: type, max_bytes: int, *, validate: Any = None) -> None:
        self.registered[message] = (cls, max_bytes, validate)

    def publish(self, body: Any) -> bool:
        self.published.append(body)
        return True


def accept_all(raw: bytes) -> AddResult:
    return AddResult(raw[:32], is_new=True)


def test_registers_single_and_batched_topics_under_their_table_ids() -> None:
    gossip = FakeGossip()
    TxGossipReactor(gossip, accept_all, max_tx_bytes=4096)  # type: ignore[arg-type]
    assert gossip.registered[message_ids.TX][:2] == (TxMessage, 4096 + 64)
    assert gossip.registered[message_ids.TX_BATCH][0] is TxBatchMessage


async def test_batches_until_delay_or_count() -> None:
    gossip = FakeGossip()
    txg = TxGossipReactor(gossip, accept_all, max_tx_bytes=4096, delay_s=0.01, max_txs=3)  # type: ignore[arg-type]
    raws = [transfer(n) for n in range(4)]
    for raw in raws:
        txg.publish(raw)
    assert [m.txs for m in gossip.published] == [raws[:3]]  # full batch goes at once
    deadline = asyncio.get_running_loop().time() + 2.0
    while len(gossip.published) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)  # waiting for the flush timer (condition with a deadline)
    assert [m.txs for m in gossip.published] == [raws[:3], raws[3:]]
    batch = gossip.published[0]
    assert TxBatchMessage.decode(batch.encode()) == batch


async def test_byte_cap_and_close() -> None:
    gossip = FakeGossip()
    txg = TxGossipReactor(gossip, accept_all, max_tx_bytes=4096, delay_s=10.0, max_bytes=500)  # type: ignore[arg-type]
    raws = [transfer(n) for n in range(5)]
    for raw in raws:
        txg.publish(raw)
    per_batch = 500 // len(raws[0])
    assert gossip.published and all(len(m.txs) == per_batch for m in gossip.published)
    txg.close()  # the rest is dropped with the pending timer
    assert sum(len(m.txs) for m in gossip.published) < len(raws)


def test_only_txs_no_honest_node_forwards_count_against_the_peer() -> None:
    gossip = FakeGossip()
    seen: list[bytes] = []
    verdicts = {b"bad": errors.BAD_SIGNATURE, b"late": errors.INSUFFICIENT_BALANCE}
    assert errors.BAD_SIGNATURE in MALICIOUS_TX_CODES and errors.INSUFFICIENT_BALANCE not in MALICIOUS_TX_CODES

    def add_tx(raw: bytes) -> AddResult:
        seen.append(raw)
        code = verdicts.get(raw)
        return AddResult(b"h", TxError(code, "") if code else None)

    TxGossipReactor(gossip, add_tx, max_tx_bytes=4096)  # type: ignore[arg-type]
    on_batch = gossip.registered[message_ids.TX_BATCH][2]
    on_tx = gossip.registered[message_ids.TX][2]
    assert on_batch(TxBatchMessage([b"a", b"late"]), b"peer") is True  # a stateful failure: not the peer's fault
    assert on_batch(TxBatchMessage([b"a", b"bad", b"c"]), b"peer") is False
    assert on_tx(TxMessage(b"late"), b"peer") is True
    assert on_tx(TxMessage(b"bad"), b"peer") is False
    assert seen == [b"a", b"late", b"a", b"bad", b"c", b"late", b"bad"]  # every tx is offered to the mempool


def test_batch_message_fast_paths_match_the_generic_codec() -> None:
    msg = TxBatchMessage([transfer(0), b"", b"\x00" * 300])
    assert msg.encode() == codec.encode(Struct.to_list(msg))
    assert TxBatchMessage.decode(msg.encode()) == msg
    for bad in ([["text"]], [[1]], [b"x"], [[b"a"], [b"b"]], "x", [[b"a"] * (MAX_BATCH_TXS + 1)]):
        try:
            TxBatchMessage.from_list(bad)
        except CodecError:
            continue
        raise AssertionError(f"accepted {bad!r:.40}")
