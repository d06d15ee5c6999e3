"""State-sync protocol on the P2P host: serves this node's snapshots, headers and models to peers.

Registered on every node (serving costs nothing when there is nothing to serve): peers ask for the list
of finished snapshots, a manifest, a chunk, a run of headers (to tie a snapshot's block to a trusted
hash) or a global model by hash; an empty answer means "not here". Disk reads run in a worker thread so
a 16 MiB chunk never stalls the event loop. The restoring side is `node.statesync.StateSyncClient`,
which sends these requests through the same host.
"""

from __future__ import annotations

import asyncio

from pocl.ledger.storage.store import PRUNED_MODEL, Store
from pocl.node.snapshots import SnapshotDir
from pocl.p2p import message_ids
from pocl.p2p.host import Host
from pocl.p2p.statesync_messages import (
    MAX_CHUNK_MESSAGE_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_HEADERS_MESSAGE_BYTES,
    MAX_MANIFEST_MESSAGE_BYTES,
    MAX_MODEL_BYTES,
    MAX_MODEL_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    MAX_SNAPSHOTS_MESSAGE_BYTES,
    ChunkData,
    GetChunk,
    GetHeaders,
    GetManifest,
    GetModel,
    GetSnapshots,
    Headers,
    ManifestData,
    ModelData,
    Snapshots,
)

HEADERS_SOFT_BYTES = MAX_HEADERS_MESSAGE_BYTES // 2


class StateSyncReactor:
    """Serves snapshots from `snapshots` (None: this node keeps none) and headers/models from `store`."""

    def __init__(self, host: Host, store: Store, snapshots: SnapshotDir | None) -> None:
        self.host = host
        self.store = store
        self.snapshots = snapshots
        host.register(message_ids.GET_SNAPSHOTS, GetSnapshots, MAX_REQUEST_BYTES, self._on_get_snapshots)
        host.register(message_ids.SNAPSHOTS, Snapshots, MAX_SNAPSHOTS_MESSAGE_BYTES)
        host.register(
            message_ids.GET_SNAPSHOT_MANIFEST, GetManifest, MAX_REQUEST_BYTES, self._on_get_manifest
        )
        host.register(message_ids.SNAPSHOT_MANIFEST, ManifestData, MAX_MANIFEST_MESSAGE_BYTES)
        host.register(message_ids.GET_SNAPSHOT_CHUNK, GetChunk, MAX_REQUEST_BYTES, self._on_get_chunk)
        host.register(message_ids.SNAPSHOT_CHUNK, ChunkData, MAX_CHUNK_MESSAGE_BYTES)
        host.register(message_ids.GET_HEADERS, GetHeaders, MAX_REQUEST_BYTES, self._on_get_headers)
        host.register(message_ids.HEADERS, Headers, MAX_HEADERS_MESSAGE_BYTES)
        host.register(message_ids.GET_MODEL, GetModel, MAX_REQUEST_BYTES, self._on_get_model)
        host.register(message_ids.MODEL, ModelData, MAX_MODEL_MESSAGE_BYTES)

    def _on_get_snapshots(self, _conn: object, _body: GetSnapshots) -> Snapshots:
        if self.snapshots is None:
            return Snapshots([])
        store = self.store
        earliest = store.earliest_height
        # Offer only snapshots whose block and commit we can also serve (the client verifies with them).
        return Snapshots(
            [o for o in self.snapshots.offers() if o.height >= earliest and store.commit(o.height)]
        )

    async def _on_get_manifest(self, _conn: object, body: GetManifest) -> ManifestData:
        data = None
        if self.snapshots is not None:
            data = await asyncio.to_thread(self.snapshots.manifest_bytes, body.height)
        return ManifestData(body.height, data or b"")

    async def _on_get_chunk(self, _conn: object, body: GetChunk) -> ChunkData:
        data = None
        if self.snapshots is not None:
            data = await asyncio.to_thread(self.snapshots.chunk_bytes, body.height, body.index)
        return ChunkData(body.height, body.index, data or b"")

    def _on_get_headers(self, _conn: object, body: GetHeaders) -> Headers:
        store = self.store
        items: list[bytes] = []
        size = 0
        if body.start >= 1:
            for height in range(body.start, body.start + min(max(body.count, 0), MAX_HEADERS)):
                block = store.block(height)
                if block is None:
                    break
                raw = block.header.encode()
                if len(raw) > MAX_HEADER_BYTES or size + len(raw) > HEADERS_SOFT_BYTES:
                    break
                items.append(raw)
                size += len(raw)
        return Headers(body.start, items)

    def _on_get_model(self, _conn: object, body: GetModel) -> ModelData:
        data = self.store.get_model(body.model_hash)
        if data is None or data == PRUNED_MODEL or len(data) > MAX_MODEL_BYTES:
            data = b""
        return ModelData(body.model_hash, data)
