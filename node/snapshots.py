"""Taking state snapshots in the background, and the on-disk set of finished ones that peers may fetch.

Every `snapshot_interval` blocks the node takes a LevelDB snapshot of its store right after committing
that height (`Store.state_view`: a consistent view at exactly that height, however many blocks commit
meanwhile) and hands it to a writer thread, which splits the state into chunks (`node.snapshot_format`)
and writes them under `HOME/data/snapshots/.tmp-<height>/`. Only when every file is written and synced is
that directory renamed to `HOME/data/snapshots/<height>/`: a snapshot the node offers is always complete,
and a crash mid-write leaves a `.tmp-*` directory that the next start removes. The newest
`snapshot_keep_recent` snapshots are kept; older ones are deleted after a new one lands.

One writer at a time: if a snapshot is still being written when the next interval comes, that height is
skipped (logged), so a slow disk never queues up work or memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from pocl.consensus.pocl.execution import NS_POCL
from pocl.consensus.pocl.records import RoundRecord
from pocl.ledger.codec import CodecError
from pocl.ledger.state import GLOBAL_MODEL, NS_GLOBAL, full_key
from pocl.ledger.storage.store import StateView, Store
from pocl.node.events import BlockCommitted, NodeEvent
from pocl.node.snapshot_format import (
    DEFAULT_CHUNK_BYTES,
    FORMAT_VERSION,
    Manifest,
    SnapshotFormatError,
    build_chunks,
    chunk_info,
    decode_manifest,
)
from pocl.p2p.statesync_messages import MAX_OFFERS, SnapshotOffer

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest"
TMP_PREFIX = ".tmp-"
_GLOBAL_MODEL_KEY = full_key(NS_GLOBAL, GLOBAL_MODEL)
_ROUND_PREFIX = full_key(NS_POCL, b"r")
_ROUND_KEY_LEN = len(_ROUND_PREFIX) + 8


def chunk_file(index: int) -> str:
    return f"chunk-{index:05d}"


def referenced_models(entries: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """Global model hashes the state refers to: the current one first, then every round's previous and
    aggregated model (sorted). These are exactly the models a node that executed every block holds."""
    current: bytes | None = None
    others: set[bytes] = set()
    for key, value in entries:
        if key == _GLOBAL_MODEL_KEY:
            current = value
        elif len(key) == _ROUND_KEY_LEN and key.startswith(_ROUND_PREFIX):
            try:
                rec = RoundRecord.decode(value)
            except CodecError:
                continue  # not a round record after all (state is verified; nothing else to do)
            others.add(rec.prev_model_hash)
            if rec.outcome is not None:
                others.add(rec.outcome.model_hash)
    if current is not None:
        others.discard(current)
        return [current, *sorted(others)]
    return sorted(others)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class SnapshotDir:
    """The finished snapshots under one directory: listing (cached), manifest and chunk bytes, pruning.

    Thread-safe: the writer thread adds snapshots while the event loop serves them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._offers: dict[int, SnapshotOffer] = {}
        for entry in self.root.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)  # unfinished: never offered, never resumed
            elif entry.name.isdigit():
                self._load(int(entry.name))

    def _load(self, height: int) -> None:
        try:
            data = (self.root / str(height) / MANIFEST_FILE).read_bytes()
            m = decode_manifest(data)
        except (OSError, SnapshotFormatError) as exc:
            log.warning("ignoring snapshot %d: %s", height, exc)
            return
        if m.height == height:
            with self._lock:
                self._offers[height] = SnapshotOffer(height, m.format, len(m.chunks), m.digest)

    def heights(self) -> list[int]:
        with self._lock:
            return sorted(self._offers)

    def offers(self) -> list[SnapshotOffer]:
        """Newest first, at most MAX_OFFERS."""
        with self._lock:
            return [self._offers[h] for h in sorted(self._offers, reverse=True)[:MAX_OFFERS]]

    def oldest_height(self) -> int | None:
        """The oldest snapshot offered (pruning must keep the blocks from there on)."""
        heights = self.heights()
        return heights[0] if heights else None

    def manifest_bytes(self, height: int) -> bytes | None:
        if height not in self.heights():
            return None
        with contextlib.suppress(OSError):
            return (self.root / str(height) / MANIFEST_FILE).read_bytes()
        return None

    def chunk_bytes(self, height: int, index: int) -> bytes | None:
        offers = {o.height: o for o in self.offers()}
        offer = offers.get(height)
        if offer is None or not 0 <= index < offer.chunks:
            return None
        with contextlib.suppress(OSError):
            return (self.root / str(height) / chunk_file(index)).read_bytes()
        return None

    def publish(self, tmp: Path, height: int, offer: SnapshotOffer, keep_recent: int) -> None:
        """Rename a completely written snapshot into place, then drop all but the newest `keep_recent`."""
        final = self.root / str(height)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.root)
        with self._lock:
            self._offers[height] = offer
            doomed = sorted(self._offers)[: max(0, len(self._offers) - max(1, keep_recent))]
            for h in doomed:
                del self._offers[h]
        for h in doomed:  # no longer offered first, then deleted
            shutil.rmtree(self.root / str(h), ignore_errors=True)


def write_snapshot(
    view: StateView,
    snapshots: SnapshotDir,
    keep_recent: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    should_stop: threading.Event | None = None,
) -> SnapshotOffer | None:
    """Write the state of `view` as a snapshot (temp dir, then rename). None if stopped midway."""
    height = view.height
    tmp = snapshots.root / f"{TMP_PREFIX}{height}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        entries = list(view.iter_state_entries())
        bucket_hashes = view.bucket_hashes()
        chunks = []
        for first, last, data in build_chunks(entries, chunk_bytes):
            if should_stop is not None and should_stop.is_set():
                shutil.rmtree(tmp, ignore_errors=True)
                return None
            _write_file(tmp / chunk_file(len(chunks)), data)
            chunks.append(chunk_info(first, last, data))
        manifest = Manifest(
            FORMAT_VERSION,
            height,
            view.state_root,
            b"".join(bucket_hashes),
            chunks,
            referenced_models(entries),
        )
        raw = manifest.encode()
        _write_file(tmp / MANIFEST_FILE, raw)
        _fsync_dir(tmp)
        offer = SnapshotOffer(height, FORMAT_VERSION, len(chunks), manifest.digest)
        snapshots.publish(tmp, height, offer, keep_recent)
        return offer
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclasses.dataclass
class SnapshotSettings:
    interval: int  # take one every this many blocks (0 = never)
    keep_recent: int
    chunk_bytes: int = DEFAULT_CHUNK_BYTES


class Snapshotter:
    """Listens for committed blocks and writes a snapshot every `interval` heights in a worker thread."""

    def __init__(self, store: Store, snapshots: SnapshotDir, settings: SnapshotSettings) -> None:
        self.store = store
        self.snapshots = snapshots
        self.settings = settings
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.taken: list[int] = []  # heights written (tests, logs)

    def on_event(self, event: NodeEvent) -> None:
        if isinstance(event, BlockCommitted):
            self.maybe_take(event.height)

    def maybe_take(self, height: int) -> bool:
        """Start a snapshot of the store's head if `height` is a snapshot height (call right after it
        committed, from the thread that commits blocks). False when not due, busy or stopped."""
        interval = self.settings.interval
        if interval <= 0 or height % interval != 0 or self._stop.is_set():
            return False
        if self._thread is not None and self._thread.is_alive():
            log.warning("snapshot %d skipped: snapshot still being written", height)
            return False
        view = self.store.state_view()
        if view.height != height:  # the head moved on already: a snapshot must be of exactly `height`
            view.release()
            return False
        self._thread = threading.Thread(
            target=self._write, args=(view,), name=f"snapshot-{height}", daemon=True
        )
        self._thread.start()
        return True

    def _write(self, view: StateView) -> None:
        try:
            offer = write_snapshot(
                view, self.snapshots, self.settings.keep_recent, self.settings.chunk_bytes, self._stop
            )
            if offer is not None:
                self.taken.append(offer.height)
                log.info("snapshot %d written: %d chunks", offer.height, offer.chunks)
        except Exception:  # a snapshot failing must not take the node down
            log.exception("snapshot %d failed", view.height)
        finally:
            view.release()

    def wait_idle(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Stop writing (an unfinished snapshot is discarded) and wait for the thread: call before the
        store closes."""
        self._stop.set()
        self.wait_idle()
