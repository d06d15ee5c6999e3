"""Incremental Merkle commitment over all state entries (DESIGN §4).

Layout (two levels, wide fan-out):

    leaf(key, value)   = tagged_hash(TAG_STATE_LEAF, len(key) as u16 BE || key || value)
    bucket_of(key)     = top 14 bits of SHA-256(key)                        -> 0 .. NUM_BUCKETS-1
    bucket_hash(b)     = tagged_hash(TAG_STATE_BUCKET, concat of leaf hashes of b's entries sorted by key)
    state_root         = tagged_hash(TAG_STATE_ROOT, concat of all NUM_BUCKETS bucket hashes)

Why: a block touches a few thousand keys, so only those keys' buckets are re-hashed (each holds
entries/NUM_BUCKETS entries), plus one SHA-256 over the 512 KiB bucket-hash vector — never O(all
accounts). `compute_root(entries)` recomputes from scratch (tests, store consistency checks).

Public API: NUM_BUCKETS, bucket_of, leaf_hash, bucket_hash, root_of, compute_root, EMPTY_BUCKET_HASH,
BucketTree (.root, .bucket_hashes, .preview(changes) -> TreeUpdate, .apply(update), .from_entries),
TreeUpdate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping

from pocl.ledger.hashing import TAG_STATE_BUCKET, TAG_STATE_LEAF, TAG_STATE_ROOT, tagged_hash

BUCKET_BITS = 14
NUM_BUCKETS = 1 << BUCKET_BITS
_SHIFT = 16 - BUCKET_BITS
MAX_KEY_LEN = 0xFFFF

_LEAF_PREFIX = bytes([len(TAG_STATE_LEAF)]) + TAG_STATE_LEAF
_BUCKET_PREFIX = bytes([len(TAG_STATE_BUCKET)]) + TAG_STATE_BUCKET
_sha256 = hashlib.sha256


def bucket_of(key: bytes) -> int:
    d = _sha256(key).digest()
    return ((d[0] << 8) | d[1]) >> _SHIFT


def leaf_hash(key: bytes, value: bytes) -> bytes:
    # Same bytes as tagged_hash(TAG_STATE_LEAF, ...), inlined: this runs once per dirty entry.
    return _sha256(_LEAF_PREFIX + len(key).to_bytes(2, "big") + key + value).digest()


def bucket_hash(leaves: Mapping[bytes, bytes]) -> bytes:
    """Hash of one bucket given key -> leaf hash."""
    if not leaves:
        return EMPTY_BUCKET_HASH
    return _sha256(_BUCKET_PREFIX + b"".join([leaves[k] for k in sorted(leaves)])).digest()


EMPTY_BUCKET_HASH = tagged_hash(TAG_STATE_BUCKET, b"")


def root_of(bucket_hashes: Iterable[bytes]) -> bytes:
    return tagged_hash(TAG_STATE_ROOT, b"".join(bucket_hashes))


def compute_root(entries: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> bytes:
    """From-scratch state root over (key, value) pairs."""
    items = entries.items() if isinstance(entries, Mapping) else entries
    buckets: dict[int, dict[bytes, bytes]] = {}
    for key, value in items:
        buckets.setdefault(bucket_of(key), {})[key] = leaf_hash(key, value)
    return root_of(bucket_hash(buckets[i]) if i in buckets else EMPTY_BUCKET_HASH for i in range(NUM_BUCKETS))


@dataclasses.dataclass
class TreeUpdate:
    """The effect of a set of changes on a BucketTree, computed without mutating it."""

    changes: dict[bytes, bytes | None]  # key -> new value (None = deleted)
    buckets: dict[int, dict[bytes, bytes]]  # dirty bucket -> its new contents (key -> leaf hash)
    bucket_hashes: dict[int, bytes]  # dirty bucket -> new hash
    root: bytes


class BucketTree:
    """Per bucket: key -> leaf hash, plus cached bucket hashes and root."""

    def __init__(self) -> None:
        self._buckets: list[dict[bytes, bytes] | None] = [None] * NUM_BUCKETS
        self._hashes: list[bytes] = [EMPTY_BUCKET_HASH] * NUM_BUCKETS
        self._root = root_of(self._hashes)

    @classmethod
    def from_entries(cls, entries: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> BucketTree:
        tree = cls()
        items = entries.items() if isinstance(entries, Mapping) else entries
        for key, value in items:
            b = bucket_of(key)
            bucket = tree._buckets[b]
            if bucket is None:
                bucket = tree._buckets[b] = {}
            bucket[key] = leaf_hash(key, value)
        for b, bucket in enumerate(tree._buckets):
            if bucket:
                tree._hashes[b] = bucket_hash(bucket)
        tree._root = root_of(tree._hashes)
        return tree

    @property
    def root(self) -> bytes:
        return self._root

    @property
    def bucket_hashes(self) -> list[bytes]:
        return list(self._hashes)

    def preview(self, changes: Mapping[bytes, bytes | None]) -> TreeUpdate:
        """Root after `changes` (key -> value or None to delete), re-hashing only dirty buckets."""
        # Hot path (runs for every block): leaf_hash/bucket_of/bucket_hash inlined.
        sha = _sha256
        leaf_prefix = _LEAF_PREFIX
        shift = _SHIFT
        buckets = self._buckets
        new_buckets: dict[int, dict[bytes, bytes]] = {}
        for key, value in changes.items():
            d = sha(key).digest()
            b = ((d[0] << 8) | d[1]) >> shift
            merged = new_buckets.get(b)
            if merged is None:
                base = buckets[b]
                merged = new_buckets[b] = dict(base) if base else {}
            if value is None:
                merged.pop(key, None)
            else:
                if len(key) > MAX_KEY_LEN:
                    raise ValueError("state key too long")
                merged[key] = sha(leaf_prefix + len(key).to_bytes(2, "big") + key + value).digest()
        new_hashes: dict[int, bytes] = {}
        bucket_prefix = _BUCKET_PREFIX
        for b, merged in new_buckets.items():
            n = len(merged)
            if n == 1:
                for lh in merged.values():
                    new_hashes[b] = sha(bucket_prefix + lh).digest()
            elif n == 0:
                new_hashes[b] = EMPTY_BUCKET_HASH
            else:
                new_hashes[b] = sha(bucket_prefix + b"".join([merged[k] for k in sorted(merged)])).digest()
        if new_hashes:
            hashes = list(self._hashes)
            for b, h in new_hashes.items():
                hashes[b] = h
            root = root_of(hashes)
        else:
            root = self._root
        return TreeUpdate(
            changes if isinstance(changes, dict) else dict(changes), new_buckets, new_hashes, root
        )

    def apply(self, update: TreeUpdate) -> None:
        """Commit a preview computed against this tree's current contents."""
        buckets = self._buckets
        hashes = self._hashes
        for b, contents in update.buckets.items():
            buckets[b] = contents or None
            hashes[b] = update.bucket_hashes[b]
        self._root = update.root
