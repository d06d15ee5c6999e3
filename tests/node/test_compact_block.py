"""Compact blocks, pure logic (`pocl.node.compact_block`): a block as header + tx hashes, rebuilt from the
txs a node holds, what it lacks, and the checks that catch a lying peer. Over real sockets:
test_compact_propagation.py."""

from __future__ import annotations

import pytest
from pocl.ledger.block import Block, Header, txs_root
from pocl.ledger.codec import CodecError
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import make_transfer
from pocl.node.compact_block import (
    MAX_COMPACT_TXS,
    CompactBlock,
    CompactBlockError,
    check_fetched,
    missing,
    rebuild,
    serve,
    tx_hash,
)

SENDER = PrivateKey.from_seed_text("compact-sender")
SINK = PrivateKey.from_seed_text("compact-sink").address


def txs(n: int, start: int = 0) -> list[bytes]:
    return [make_transfer(SENDER, "compact-test", start + i, SINK, 5, 1).raw for i in range(n)]


def block_of(raws: list[bytes]) -> Block:
    header = Header(7, 7000, bytes(32), SENDER.address, txs_root(raws), bytes(32), bytes(32), b"")
    return Block(header, raws, None)


def test_tx_hash_is_the_signed_tx_hash() -> None:
    stx = make_transfer(SENDER, "compact-test", 0, SINK, 5, 1)
    assert tx_hash(stx.raw) == stx.hash


def test_a_compact_block_is_the_header_and_tx_hashes_and_far_smaller() -> None:
    raws = txs(20)
    block = block_of(raws)
    compact = CompactBlock.of(block)
    assert compact.hash == block.hash and compact.height == 7
    assert compact.tx_hashes == [tx_hash(r) for r in raws]
    assert CompactBlock.decode(compact.encode()) == compact
    assert len(compact.encode()) < len(block.encode()) / 3


def test_rebuilt_from_held_txs_is_the_same_block() -> None:
    raws = txs(5)
    block = block_of(raws)
    pool = {tx_hash(r): r for r in raws}
    compact = CompactBlock.of(block)
    assert missing(compact, pool.get) == []
    assert rebuild(compact, pool.get) == block


def test_missing_lists_exactly_the_txs_not_held_in_block_order() -> None:
    raws = txs(6)
    pool = {tx_hash(r): r for i, r in enumerate(raws) if i not in (1, 4)}
    compact = CompactBlock.of(block_of(raws))
    assert missing(compact, pool.get) == [tx_hash(raws[1]), tx_hash(raws[4])]
    with pytest.raises(KeyError):
        rebuild(compact, pool.get)
    fetched = check_fetched([tx_hash(raws[1]), tx_hash(raws[4])], [raws[1], raws[4]])
    assert rebuild(compact, pool.get, fetched) == block_of(raws)


def test_an_answer_with_other_txs_is_a_lie() -> None:
    raws = txs(3)
    want = [tx_hash(raws[0]), tx_hash(raws[1])]
    with pytest.raises(CompactBlockError, match="another tx"):
        check_fetched(want, [raws[0], raws[2]])
    with pytest.raises(CompactBlockError, match="asked for 2"):
        check_fetched(want, [raws[0]])
    with pytest.raises(CompactBlockError):
        check_fetched(want, [raws[1], raws[0]])  # right txs, wrong order


def test_a_hash_list_that_does_not_rebuild_the_headers_txs_root_is_refused() -> None:
    raws = txs(4)
    other = txs(1, start=10)[0]
    pool = {tx_hash(r): r for r in [*raws, other]}
    good = CompactBlock.of(block_of(raws))
    for hashes in (
        [tx_hash(r) for r in raws[:3]] + [tx_hash(other)],  # a tx swapped
        [tx_hash(r) for r in raws[:3]],  # a tx left out
        [tx_hash(r) for r in reversed(raws)],  # reordered
    ):
        lying = CompactBlock(good.header, None, hashes)
        assert lying.hash == good.hash  # the header (what the proposal signs) is unchanged
        with pytest.raises(CompactBlockError, match="txs_root"):
            rebuild(lying, pool.get)


def test_shape_and_count_are_bounded() -> None:
    compact = CompactBlock.of(block_of(txs(1)))
    CompactBlock(compact.header, None, [bytes(32)]).check_shape()
    with pytest.raises(CompactBlockError):
        CompactBlock(compact.header, None, [bytes(31)]).check_shape()
    too_many = CompactBlock(compact.header, None, [bytes(32)] * (MAX_COMPACT_TXS + 1)).encode()
    with pytest.raises(CodecError):
        CompactBlock.decode(too_many)


def test_serve_answers_from_the_block_then_the_pool_or_not_at_all() -> None:
    raws = txs(4)
    block = block_of(raws[:2])
    pool = {tx_hash(raws[2]): raws[2]}
    asked = [tx_hash(raws[1]), tx_hash(raws[2])]
    assert serve(block, asked, pool.get, 1 << 20) == [raws[1], raws[2]]
    assert serve(None, asked, pool.get, 1 << 20) is None
    assert serve(block, [tx_hash(raws[3])], pool.get, 1 << 20) is None
    assert serve(block, asked, pool.get, len(raws[1]) + len(raws[2]) - 1) is None  # more than a block holds
