"""The state snapshot format and its checks: a manifest plus chunks of contiguous bucket ranges.

The state root is a hash over NUM_BUCKETS bucket hashes (`ledger.state_root`), and every entry belongs to
exactly one bucket. So a snapshot is:

    manifest = [format, height, state_root, bucket_hashes (NUM_BUCKETS x 32 bytes, concatenated),
                chunks: [[first_bucket, last_bucket, size, sha256], ...], models: [model hash, ...]]
    chunk    = canonical encoding of [[full_key, value], ...] for the buckets first..last, sorted by
               (bucket, key)

and each piece is checked exactly on arrival: the manifest's bucket hashes must combine to the state root
of a verified header (`check_manifest`), and a chunk's entries must lie in its bucket range and re-hash
to exactly the manifest's hashes for those buckets (`check_chunk`). A bad chunk is therefore caught
alone, blamed on the peer that served it, and refetched, without trusting anything else that peer said.

Chunking is deterministic (fixed target size, buckets in order), so honest nodes at the same height
produce byte-identical manifests: the manifest's sha256 names "the same snapshot" across peers.
`models` lists the global models the state references (the current one first); the client re-derives
that list from the restored state and fetches the current model by hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from typing import ClassVar

from pocl.ledger import codec
from pocl.ledger.codec import CodecError, Struct
from pocl.ledger.state_root import EMPTY_BUCKET_HASH, NUM_BUCKETS, bucket_hash, bucket_of, leaf_hash, root_of
from pocl.p2p.statesync_messages import MAX_CHUNK_BYTES, MAX_MANIFEST_BYTES

FORMAT_VERSION = 1
HASH_LEN = 32
DEFAULT_CHUNK_BYTES = 1024 * 1024  # target chunk size: small enough to spread over peers, few round trips
ENTRY_OVERHEAD = 8  # msgpack framing per [key, value] pair, for size estimates
MAX_MODELS = 1 << 20


class SnapshotFormatError(ValueError):
    """A manifest or chunk that is malformed or does not match what it must (the sender lied or erred)."""


@dataclasses.dataclass(frozen=True)
class ChunkInfo(Struct):
    first_bucket: int
    last_bucket: int  # inclusive
    size: int  # bytes of the chunk
    sha256: bytes  # of the chunk bytes (a quick integrity check; the bucket hashes are what bind)

    BYTES_LEN: ClassVar[dict[str, int]] = {"sha256": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class Manifest(Struct):
    format: int
    height: int
    state_root: bytes
    bucket_hashes: bytes  # NUM_BUCKETS x 32 bytes
    chunks: list[ChunkInfo]
    models: list[bytes]  # global model hashes the state references, the current one first

    BYTES_LEN: ClassVar[dict[str, int]] = {"state_root": HASH_LEN, "bucket_hashes": NUM_BUCKETS * HASH_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"chunks": NUM_BUCKETS, "models": MAX_MODELS}

    def bucket_hash(self, b: int) -> bytes:
        return self.bucket_hashes[b * HASH_LEN : (b + 1) * HASH_LEN]

    def bucket_hash_list(self) -> list[bytes]:
        return [self.bucket_hash(b) for b in range(NUM_BUCKETS)]

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def chunk_of_bucket(self, b: int) -> int:
        for i, c in enumerate(self.chunks):
            if c.first_bucket <= b <= c.last_bucket:
                return i
        raise KeyError(b)


# --------------------------------------------------------------------------- building


def build_chunks(
    entries: Iterable[tuple[bytes, bytes]], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[int, int, bytes]]:
    """(first_bucket, last_bucket, chunk bytes) covering all NUM_BUCKETS buckets in order.

    A chunk closes once it reaches `chunk_bytes`; a single bucket is never split (raises
    SnapshotFormatError if one bucket alone exceeds MAX_CHUNK_BYTES)."""
    by_bucket: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in entries:
        by_bucket.setdefault(bucket_of(key), []).append((key, value))
    first = 0
    pending: list[list[bytes]] = []
    size = 0
    for b in sorted(by_bucket):
        items = sorted(by_bucket.pop(b))
        pending.extend([k, v] for k, v in items)
        size += sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in items)
        if size >= chunk_bytes:
            yield first, b, _encode_chunk(pending, first, b)
            first, pending, size = b + 1, [], 0
    if first < NUM_BUCKETS:
        yield first, NUM_BUCKETS - 1, _encode_chunk(pending, first, NUM_BUCKETS - 1)


def _encode_chunk(pairs: list[list[bytes]], first: int, last: int) -> bytes:
    data = codec.encode(pairs)
    if len(data) > MAX_CHUNK_BYTES:
        raise SnapshotFormatError(f"buckets {first}..{last} take {len(data)} bytes, over {MAX_CHUNK_BYTES}")
    return data


def chunk_info(first: int, last: int, data: bytes) -> ChunkInfo:
    return ChunkInfo(first, last, len(data), hashlib.sha256(data).digest())


# --------------------------------------------------------------------------- checking


def decode_manifest(data: bytes) -> Manifest:
    """Decode and check the manifest's own structure (not yet its trust: see `check_manifest`)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise SnapshotFormatError("manifest too large")
    try:
        m = Manifest.decode(data, max_size=MAX_MANIFEST_BYTES)
    except CodecError as exc:
        raise SnapshotFormatError(f"manifest malformed: {exc}") from None
    if m.encode() != data:
        raise SnapshotFormatError("manifest encoding is not canonical")
    if m.format != FORMAT_VERSION:
        raise SnapshotFormatError(f"manifest format {m.format} is not supported (expected {FORMAT_VERSION})")
    if m.height < 1:
        raise SnapshotFormatError("manifest height must be >= 1")
    expected_first = 0
    for i, c in enumerate(m.chunks):
        if c.first_bucket != expected_first or c.last_bucket < c.first_bucket:
            raise SnapshotFormatError(f"chunk {i} does not continue the bucket ranges")
        if not 0 < c.size <= MAX_CHUNK_BYTES:
            raise SnapshotFormatError(f"chunk {i} size {c.size} out of range")
        expected_first = c.last_bucket + 1
    if expected_first != NUM_BUCKETS:
        raise SnapshotFormatError("chunks do not cover every bucket exactly once")
    if any(len(h) != HASH_LEN for h in m.models) or len(set(m.models)) != len(m.models):
        raise SnapshotFormatError("manifest model hashes malformed")
    if root_of(m.bucket_hash_list()) != m.state_root:
        raise SnapshotFormatError("manifest bucket hashes do not combine to its state root")
    return m


def check_manifest(manifest: Manifest, height: int, header_state_root: bytes) -> None:
    """The manifest describes the state committed by a header the caller verified."""
    if manifest.height != height:
        raise SnapshotFormatError(f"manifest is for height {manifest.height}, not {height}")
    if manifest.state_root != header_state_root or root_of(manifest.bucket_hash_list()) != header_state_root:
        raise SnapshotFormatError("manifest state root differs from the verified header's")


def check_chunk(manifest: Manifest, index: int, data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunk's entries, once they lie in its bucket range, are sorted canonically and re-hash to the
    manifest's bucket hashes for exactly that range; SnapshotFormatError otherwise."""
    if not 0 <= index < len(manifest.chunks):
        raise SnapshotFormatError(f"no chunk {index}")
    info = manifest.chunks[index]
    if len(data) != info.size or hashlib.sha256(data).digest() != info.sha256:
        raise SnapshotFormatError(f"chunk {index} bytes do not match the manifest's size/sha256")
    try:
        raw = codec.decode(data, max_size=MAX_CHUNK_BYTES)
    except CodecError as exc:
        raise SnapshotFormatError(f"chunk {index} malformed: {exc}") from None
    if type(raw) is not list:
        raise SnapshotFormatError(f"chunk {index}: expected a list of entries")
    entries: list[tuple[bytes, bytes]] = []
    leaves: dict[int, dict[bytes, bytes]] = {}
    last: tuple[int, bytes] | None = None
    for item in raw:
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not bytes
            or type(item[1]) is not bytes
        ):
            raise SnapshotFormatError(f"chunk {index}: entries must be [key, value] byte pairs")
        key, value = item
        b = bucket_of(key)
        if not info.first_bucket <= b <= info.last_bucket:
            raise SnapshotFormatError(f"chunk {index}: a key of bucket {b} lies outside its range")
        if last is not None and (b, key) <= last:
            raise SnapshotFormatError(f"chunk {index}: entries not sorted by (bucket, key) or duplicated")
        last = (b, key)
        leaves.setdefault(b, {})[key] = leaf_hash(key, value)
        entries.append((key, value))
    for b in range(info.first_bucket, info.last_bucket + 1):
        got = bucket_hash(leaves[b]) if b in leaves else EMPTY_BUCKET_HASH
        if got != manifest.bucket_hash(b):
            raise SnapshotFormatError(f"chunk {index}: bucket {b} does not hash to the manifest's")
    return entries
