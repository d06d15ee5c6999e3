"""State-sync protocol messages: list snapshots, fetch a manifest, a chunk, headers, a model by hash.

Every message is a request answered by one response; an empty payload means "I do not have it". Sizes
are bounded twice: by the `MAX_LEN` of each field (checked on decode) and by the per-message byte limit
registered with the host (`MAX_*_MESSAGE_BYTES`), so a peer can never make us buffer more than that.
What the bytes mean (manifest and chunk formats, their verification) is the node's business
(`node/snapshot_format.py`); this module only frames them.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pocl.ledger.codec import Struct

HASH_LEN = 32
MAX_OFFERS = 16  # snapshots listed per answer (a node keeps only a few)
MAX_MANIFEST_BYTES = 2 * 1024 * 1024  # 16384 bucket hashes (512 KiB) plus chunk descriptors
MAX_CHUNK_BYTES = 16 * 1024 * 1024  # hard cap on one chunk (the writer aims far lower)
MAX_HEADERS = 512
MAX_HEADER_BYTES = 8 * 1024  # a header is ~200 B plus round_info (<= 4 KiB)
MAX_MODEL_BYTES = 64 * 1024 * 1024 - 4096  # the codec's message cap, less framing
ENVELOPE = 4096  # room for the message envelope and the other fields

MAX_SNAPSHOTS_MESSAGE_BYTES = ENVELOPE + MAX_OFFERS * 128
MAX_MANIFEST_MESSAGE_BYTES = ENVELOPE + MAX_MANIFEST_BYTES
MAX_CHUNK_MESSAGE_BYTES = ENVELOPE + MAX_CHUNK_BYTES
MAX_HEADERS_MESSAGE_BYTES = ENVELOPE + MAX_HEADERS * (MAX_HEADER_BYTES + 16)
MAX_MODEL_MESSAGE_BYTES = ENVELOPE + MAX_MODEL_BYTES
MAX_REQUEST_BYTES = 256


@dataclasses.dataclass(frozen=True)
class GetSnapshots(Struct):
    pass


@dataclasses.dataclass(frozen=True)
class SnapshotOffer(Struct):
    height: int
    format: int
    chunks: int
    manifest_hash: bytes  # sha256 of the manifest bytes: peers with the same hash serve the same chunks

    BYTES_LEN: ClassVar[dict[str, int]] = {"manifest_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class Snapshots(Struct):
    offers: list[SnapshotOffer]

    MAX_LEN: ClassVar[dict[str, int]] = {"offers": MAX_OFFERS}


@dataclasses.dataclass(frozen=True)
class GetManifest(Struct):
    height: int


@dataclasses.dataclass(frozen=True)
class ManifestData(Struct):
    height: int
    data: bytes  # the manifest's canonical bytes; empty = not available

    MAX_LEN: ClassVar[dict[str, int]] = {"data": MAX_MANIFEST_BYTES}


@dataclasses.dataclass(frozen=True)
class GetChunk(Struct):
    height: int
    index: int


@dataclasses.dataclass(frozen=True)
class ChunkData(Struct):
    height: int
    index: int
    data: bytes  # the chunk's canonical bytes; empty = not available

    MAX_LEN: ClassVar[dict[str, int]] = {"data": MAX_CHUNK_BYTES}


@dataclasses.dataclass(frozen=True)
class GetHeaders(Struct):
    start: int
    count: int


@dataclasses.dataclass(frozen=True)
class Headers(Struct):
    start: int
    items: list[bytes]  # canonical Header encodings of start, start+1, ... (fewer when not stored)

    MAX_LEN: ClassVar[dict[str, int]] = {"items": MAX_HEADERS}


@dataclasses.dataclass(frozen=True)
class GetModel(Struct):
    model_hash: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"model_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class ModelData(Struct):
    model_hash: bytes
    data: bytes  # the model's canonical bytes; empty = not available (unknown or pruned)

    BYTES_LEN: ClassVar[dict[str, int]] = {"model_hash": HASH_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"data": MAX_MODEL_BYTES}
