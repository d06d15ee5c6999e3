"""Compact blocks (Bitcoin's BIP 152, simplified): a block on the wire as its header, last commit and the
hashes of its txs, rebuilt by the receiver from the txs it already holds.

Every tx of a proposal has almost always reached each peer by tx gossip first; sending the block with
the tx bodies again (≈ 153 KB per cnn-digits `pocl.predict`) doubles what crosses each link. A
`CompactBlock` names the txs by hash instead; the receiver looks each one up (its mempool), fetches
only the ones it lacks, and checks that the rebuilt txs hash to the header's `txs_root` before the
block goes anywhere: the header is covered by the proposer's signature (the proposal signs its hash),
the hash list is not, so a mismatch means whoever sent the list lied. Pure logic, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from pocl.ledger.block import HASH_LEN, Block, Commit, Header, txs_root
from pocl.ledger.codec import Struct
from pocl.ledger.hashing import TAG_TX, tagged_hash

MAX_COMPACT_TXS = 10_000  # hashes in one compact block: above any chain's max_block_txs (5,000 default)

TxLookup = Callable[[bytes], bytes | None]  # tx hash -> its canonical bytes, if held locally


class CompactBlockError(ValueError):
    """A compact block or a fetched tx list that does not match what it claims (the sender's fault)."""


def tx_hash(raw: bytes) -> bytes:
    """The id of a tx (`SignedTx.hash`), from its canonical bytes."""
    return tagged_hash(TAG_TX, raw)


@dataclasses.dataclass(frozen=True)
class CompactBlock(Struct):
    header: Header
    last_commit: Commit | None
    tx_hashes: list[bytes]  # in block order

    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hashes": MAX_COMPACT_TXS}

    @classmethod
    def of(cls, block: Block) -> CompactBlock:
        return cls(block.header, block.last_commit, [tx_hash(raw) for raw in block.txs])

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def check_shape(self) -> None:
        """Raise CompactBlockError unless every hash has the right length (the codec bounds the count)."""
        if any(len(h) != HASH_LEN for h in self.tx_hashes):
            raise CompactBlockError("a tx hash of the wrong length")


def missing(compact: CompactBlock, lookup: TxLookup) -> list[bytes]:
    """The hashes `lookup` cannot resolve, once each, in block order: what to fetch from the sender."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    for h in compact.tx_hashes:
        if h not in seen and lookup(h) is None:
            seen.add(h)
            out.append(h)
    return out


def check_fetched(requested: Sequence[bytes], raws: Sequence[bytes]) -> dict[bytes, bytes]:
    """Match a peer's answer to the hashes we asked for: exactly one tx per hash, in order, each hashing
    to its name. Anything else is a lie (CompactBlockError)."""
    if len(raws) != len(requested):
        raise CompactBlockError(f"asked for {len(requested)} txs, got {len(raws)}")
    out: dict[bytes, bytes] = {}
    for want, raw in zip(requested, raws):
        if tx_hash(raw) != want:
            raise CompactBlockError(f"tx {want.hex()[:12]} answered with another tx")
        out[want] = raw
    return out


def rebuild(compact: CompactBlock, lookup: TxLookup, fetched: Mapping[bytes, bytes] | None = None) -> Block:
    """The full block: each tx from `fetched` or `lookup`. Raises KeyError naming a hash neither holds,
    and CompactBlockError if the txs do not hash to the header's `txs_root` (the hash list lied)."""
    fetched = fetched or {}
    txs: list[bytes] = []
    for h in compact.tx_hashes:
        raw = fetched.get(h)
        if raw is None:
            raw = lookup(h)
        if raw is None:
            raise KeyError(h)
        txs.append(raw)
    if txs_root(txs) != compact.header.txs_root:
        raise CompactBlockError("rebuilt txs do not match the header's txs_root")
    return Block(compact.header, txs, compact.last_commit)


def serve(
    block: Block | None, requested: Sequence[bytes], lookup: TxLookup, max_bytes: int
) -> list[bytes] | None:
    """Answer a fetch for `requested` hashes of `block` (the txs of the block we hold, else `lookup`):
    every tx in order, or None if any is unknown here or they add up to more than `max_bytes` (no block
    holds that much: the asker is not rebuilding one). The asker then falls back to the full block."""
    in_block = {tx_hash(raw): raw for raw in block.txs} if block is not None else {}
    out: list[bytes] = []
    total = 0
    for h in requested:
        raw = in_block.get(h) or lookup(h)
        if raw is None:
            return None
        total += len(raw)
        if total > max_bytes:
            return None
        out.append(raw)
    return out
