"""The state-sync client: restore the state of a recent height from peers' snapshots, then block-sync.

Steps (`StateSyncClient.run`):

1. **Discover.** Ask every connected peer for its snapshots (again every `REDISCOVER_S`). Peers offering
   the same manifest hash offer the same snapshot (chunking is deterministic). Pick the highest height
   (at most `trust_height` when one is given) that has not been refused yet. With no offer within
   `discovery_time_s`, give up: the node block-syncs from genesis as before.
2. **Verify the target** from one peer offering it: manifest (its sha256 must be the offered hash), the
   block at that height with its commit (block-sync's `get_blocks`), then the trust check of
   `node.statesync_trust` (a header chain to the operator's trusted hash, or the genesis validator set
   plus the signing set recorded in the snapshot's own state), and finally the manifest's bucket hashes
   against that block's `state_root`. Any lie is punished with a ban and the next peer is tried. Only a
   verified target is written to `HOME/data/statesync/target`.
3. **Fetch chunks** from every peer offering that manifest, `chunk_fetchers` at a time, least-busy peer
   first. Each chunk is checked on arrival against the manifest's bucket hashes (`check_chunk`): a bad
   chunk bans its sender and goes back in the queue for another peer; a timeout cools the peer down.
   Verified chunks are written to `HOME/data/statesync/chunks/` (temp file + rename), so a restore
   killed midway resumes with the chunks it has. If no peer serves the target for `discovery_time_s`,
   it is abandoned, its partial files deleted, and another snapshot is chosen.
4. **Finish.** Re-check every chunk, fetch the current global model by hash (verified: the hash is the
   tagged SHA-256 of its bytes), record the other global models the state references as known-but-
   absent (as pruning leaves them), and write everything with `Store.restore_state` in one batch. The
   node then reloads its chain from the store and block-syncs from height + 1, verifying every later
   block in full against the restored state.

Bounded memory: one manifest (<= 2 MiB), `chunk_fetchers` chunks in flight (<= 16 MiB each), a batch of
headers at a time; the full state is only assembled at the end, as the node holds it anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
from collections import deque
from pathlib import Path
from typing import Any

from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger import codec
from pocl.ledger.block import Block, Commit, Header
from pocl.ledger.codec import CodecError
from pocl.ledger.hashing import TAG_WEIGHTS, tagged_hash
from pocl.ledger.signing_validators import KEY_SIGNING_VALIDATORS, NS_CONSENSUS
from pocl.ledger.state import GLOBAL_MODEL, NS_GLOBAL, full_key
from pocl.ledger.state_root import bucket_of
from pocl.ledger.storage.store import PRUNED_MODEL, Store
from pocl.node.snapshot_format import (
    Manifest,
    SnapshotFormatError,
    check_chunk,
    check_manifest,
    decode_manifest,
)
from pocl.node.snapshots import referenced_models
from pocl.node.statesync_trust import (
    UntrustedHeader,
    check_header_chain,
    verify_commit_full,
    verify_commit_trusting,
)
from pocl.p2p.errors import P2PError
from pocl.p2p.host import Host
from pocl.p2p.statesync_messages import (
    MAX_HEADERS,
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
from pocl.p2p.sync import BadBatch, Blocks, GetBlocks, check_batch

log = logging.getLogger(__name__)

TARGET_FILE = "target"
CHUNKS_DIR = "chunks"
REDISCOVER_S = 1.0  # how often peers are asked again for their snapshots
OFFER_SETTLE_S = 0.5  # after the first offer, wait this long for more peers to answer before choosing
BAN_PENALTY = 1000.0  # a forged manifest, header or chunk is deliberate: ban at once
STALL_PENALTY = 10.0
COOLDOWN_S = 5.0
_SIGNERS_KEY = full_key(NS_CONSENSUS, KEY_SIGNING_VALIDATORS)
_GLOBAL_MODEL_KEY = full_key(NS_GLOBAL, GLOBAL_MODEL)


class StateSyncError(Exception):
    """State sync cannot go on (e.g. the current global model is nowhere to be had)."""


@dataclasses.dataclass
class StateSyncSettings:
    trust_height: int = 0  # 0 = trust the genesis validator set instead
    trust_hash: bytes = b""
    discovery_time_s: float = 15.0
    chunk_fetchers: int = 4
    chunk_timeout_s: float = 15.0
    request_timeout_s: float = 10.0


@dataclasses.dataclass
class RestoreResult:
    height: int
    block_hash: bytes
    chunks: int
    chunks_fetched: int  # in this run (the rest were resumed from disk)
    bad_peers: list[bytes]


@dataclasses.dataclass
class _Offer:
    height: int
    chunks: int
    manifest_hash: bytes
    peers: set[bytes] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class _Target:
    manifest: Manifest
    manifest_hash: bytes
    block: Block
    commit: Commit

    @property
    def height(self) -> int:
        return self.manifest.height


class _Rejected(Exception):
    """This peer cannot give us this snapshot (not its fault unless `ban`)."""

    def __init__(self, why: str, ban: bool) -> None:
        super().__init__(why)
        self.ban = ban


class StateSyncClient:
    """One restore attempt against the peers of `host`, into the genesis-only `store`."""

    def __init__(
        self,
        host: Host,
        store: Store,
        *,
        chain_id: str,
        genesis_validators: ValidatorSet,
        workdir: Path,
        settings: StateSyncSettings,
    ) -> None:
        self.host = host
        self.store = store
        self.chain_id = chain_id
        self.genesis_validators = genesis_validators
        self.workdir = Path(workdir)
        self.settings = settings
        self._offers: dict[bytes, _Offer] = {}
        self._offers_changed = asyncio.Event()
        self.refused: set[bytes] = set()  # manifest hashes found unusable (never tried again)
        self._bad: set[bytes] = set()
        self._cooldown: dict[bytes, float] = {}
        self._inflight: dict[bytes, int] = {}
        self._verified_chunk: tuple[int, bytes] | None = None  # fetched while verifying the target
        self.fetched: list[tuple[int, bytes]] = []  # (chunk index, peer) verified in this run

    # ------------------------------------------------------------------ entry point

    async def run(self) -> RestoreResult | None:
        """Restore a snapshot into the store; None when none could be had (block-sync instead)."""
        discovery = asyncio.ensure_future(self._discover_loop())
        try:
            return await self._run()
        finally:
            discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await discovery

    async def _run(self) -> RestoreResult | None:
        target = self._load_target()
        if target is not None:
            log.info(
                "state sync: resuming snapshot %d (%d chunks on disk)", target.height, len(self._stored())
            )
        while True:
            if target is None:
                offer = await self._choose()
                if offer is None:
                    log.info("state sync: no usable snapshot offered; falling back to block sync")
                    self.clear()
                    return None
                target = await self._prepare(offer)
                if target is None:
                    self.refused.add(offer.manifest_hash)
                    continue
                self._save_target(target)
            if not await self._fetch_chunks(target):
                log.warning("state sync: nobody serves snapshot %d any more; choosing another", target.height)
                self.refused.add(target.manifest_hash)
                self.clear()
                target = None
                continue
            result = await self._finish(target)
            if result is not None:
                return result

    def clear(self) -> None:
        """Forget any partial restore (switching snapshots, or giving up)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ peers

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _usable(self, nid: bytes) -> bool:
        return (
            nid not in self._bad
            and self._cooldown.get(nid, 0.0) <= self._now()
            and self.host.is_connected(nid)
        )

    def _punish(self, nid: bytes, why: str) -> None:
        if nid in self._bad:
            return
        self._bad.add(nid)
        for offer in self._offers.values():
            offer.peers.discard(nid)
        log.warning("state sync: peer %s %s", nid.hex()[:12], why)
        self.host.punish(nid, BAN_PENALTY, f"statesync: {why}")

    def _cool(self, nid: bytes, why: str) -> None:
        self._cooldown[nid] = self._now() + COOLDOWN_S
        self.host.punish(nid, STALL_PENALTY, f"statesync: {why}")

    async def _request(self, nid: bytes, body: Any, timeout: float | None = None) -> Any:
        return await self.host.request(nid, body, timeout or self.settings.request_timeout_s)

    async def _discover_loop(self) -> None:
        while True:
            peers = [p.node_id for p in self.host.peers() if p.node_id not in self._bad]
            if peers:
                await asyncio.gather(*(self._ask_snapshots(nid) for nid in peers))
            await asyncio.sleep(REDISCOVER_S)  # polling cadence for peers that connect later

    async def _ask_snapshots(self, nid: bytes) -> None:
        try:
            reply = await self._request(nid, GetSnapshots())
        except (P2PError, TimeoutError, ConnectionError):
            return
        if not isinstance(reply, Snapshots):
            self._punish(nid, "answered get_snapshots with something else")
            return
        offered = set()
        for o in reply.offers:
            if o.height < 1 or o.chunks < 1:
                continue
            offer = self._offers.setdefault(o.manifest_hash, _Offer(o.height, o.chunks, o.manifest_hash))
            if (offer.height, offer.chunks) != (o.height, o.chunks):
                continue  # the same manifest hash cannot name two snapshots: the first word stands
            offered.add(o.manifest_hash)
            if nid not in self._bad and nid not in offer.peers:
                offer.peers.add(nid)
                self._offers_changed.set()
        for mh, offer in self._offers.items():  # a peer that stopped offering one (pruned it)
            if mh not in offered:
                offer.peers.discard(nid)

    async def _wait_offers(self, timeout: float) -> None:
        self._offers_changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._offers_changed.wait(), max(0.0, timeout))

    # ------------------------------------------------------------------ choosing and verifying a target

    def _candidates(self) -> list[_Offer]:
        limit = self.settings.trust_height or None
        out = [
            o
            for o in self._offers.values()
            if o.manifest_hash not in self.refused
            and (limit is None or o.height <= limit)
            and any(self._usable(p) for p in o.peers)
        ]
        return sorted(out, key=lambda o: (o.height, len(o.peers)), reverse=True)

    async def _choose(self) -> _Offer | None:
        deadline = self._now() + self.settings.discovery_time_s
        first_seen: float | None = None
        while True:
            now = self._now()
            candidates = self._candidates()
            if candidates:
                first_seen = first_seen if first_seen is not None else now
                if now - first_seen >= OFFER_SETTLE_S or now >= deadline:
                    return candidates[0]
                await self._wait_offers(first_seen + OFFER_SETTLE_S - now)
                continue
            if now >= deadline:
                return None
            await self._wait_offers(deadline - now)

    async def _prepare(self, offer: _Offer) -> _Target | None:
        """Verify the snapshot with one of its peers after the other; None if nobody could."""
        for nid in sorted(offer.peers, key=lambda p: self._inflight.get(p, 0)):
            if not self._usable(nid):
                continue
            try:
                target = await self._verify_target(nid, offer)
            except _Rejected as exc:
                if exc.ban:
                    self._punish(nid, f"snapshot {offer.height}: {exc}")
                else:
                    log.info("state sync: snapshot %d from %s refused: %s", offer.height, nid.hex()[:12], exc)
                continue
            except (P2PError, TimeoutError, ConnectionError) as exc:
                self._cool(nid, f"snapshot {offer.height} verification request failed: {exc!r}")
                continue
            log.info(
                "state sync: snapshot %d verified (%d chunks)", target.height, len(target.manifest.chunks)
            )
            return target
        return None

    async def _verify_target(self, nid: bytes, offer: _Offer) -> _Target:
        h = offer.height
        self._verified_chunk = None
        reply = await self._request(nid, GetManifest(h))
        if not isinstance(reply, ManifestData) or reply.height != h:
            raise _Rejected("answered get_snapshot_manifest with something else", ban=True)
        if not reply.data:
            raise _Rejected("no longer has the manifest", ban=False)
        if hashlib.sha256(reply.data).digest() != offer.manifest_hash:
            raise _Rejected("manifest does not match the hash it offered", ban=True)
        try:
            manifest = decode_manifest(reply.data)
        except SnapshotFormatError as exc:
            raise _Rejected(str(exc), ban=True) from None
        if manifest.height != h or len(manifest.chunks) != offer.chunks:
            raise _Rejected("manifest differs from the offer", ban=True)
        blocks = await self._request(nid, GetBlocks(h, 1))
        if not isinstance(blocks, Blocks) or blocks.start != h or len(blocks.items) > 1:
            raise _Rejected("answered get_blocks with something else", ban=True)
        if not blocks.items:
            raise _Rejected(f"does not serve block {h}", ban=False)
        try:
            ((block, commit),) = check_batch(h, blocks.items)
        except BadBatch as exc:
            raise _Rejected(str(exc), ban=True) from None
        try:
            check_manifest(manifest, h, block.header.state_root)
        except SnapshotFormatError as exc:
            raise _Rejected(str(exc), ban=True) from None
        target = _Target(manifest, offer.manifest_hash, block, commit)
        if self.settings.trust_height:
            await self._verify_by_trusted_hash(nid, target)
        else:
            await self._verify_by_validators(nid, target)
        return target

    async def _verify_by_trusted_hash(self, nid: bytes, target: _Target) -> None:
        """Headers h+1..T from the top down, each batch linked to the one above, ending at our block."""
        top, trust_hash = self.settings.trust_height, self.settings.trust_hash
        h = target.height
        if h > top:
            raise _Rejected(f"snapshot {h} is above the trust height {top}", ban=False)
        expected_top = trust_hash
        end = top
        while end > h:
            start = max(h + 1, end - MAX_HEADERS + 1)
            reply = await self._request(nid, GetHeaders(start, end - start + 1))
            if not isinstance(reply, Headers) or reply.start != start or len(reply.items) > end - start + 1:
                raise _Rejected("answered get_headers with something else", ban=True)
            if len(reply.items) < end - start + 1:
                raise _Rejected(f"does not serve headers {start}..{end}", ban=False)
            try:
                headers = [Header.decode(raw) for raw in reply.items]
            except CodecError as exc:
                raise _Rejected(f"header malformed: {exc}", ban=True) from None
            if any(hd.height != start + i for i, hd in enumerate(headers)):
                raise _Rejected("headers out of order", ban=True)
            if headers[-1].hash != expected_top:
                # The first batch's top is the operator's hash: a mismatch may be a wrong trust_hash. Below
                # it, the peer contradicts headers it served itself.
                raise _Rejected(f"header {end} does not hash to the trusted hash", ban=end != top)
            bottom = target.block.hash if start == h + 1 else headers[0].prev_hash
            try:
                check_header_chain(headers, expected_top, bottom)
            except UntrustedHeader as exc:
                raise _Rejected(str(exc), ban=True) from None
            expected_top = headers[0].prev_hash
            end = start - 1
        if h == top and target.block.hash != trust_hash:
            raise _Rejected("block at the trust height does not have the trusted hash", ban=False)

    async def _verify_by_validators(self, nid: bytes, target: _Target) -> None:
        """The commit for h by > 2/3 of the signing set recorded in the snapshot's state, and by > 1/3 of
        the genesis validators."""
        index = target.manifest.chunk_of_bucket(bucket_of(_SIGNERS_KEY))
        reply = await self._request(nid, GetChunk(target.height, index), self.settings.chunk_timeout_s)
        if not isinstance(reply, ChunkData) or (reply.height, reply.index) != (target.height, index):
            raise _Rejected("answered get_snapshot_chunk with something else", ban=True)
        if not reply.data:
            raise _Rejected(f"does not serve chunk {index}", ban=False)
        try:
            entries = check_chunk(target.manifest, index, reply.data)
        except SnapshotFormatError as exc:
            raise _Rejected(str(exc), ban=True) from None
        raw = dict(entries).get(_SIGNERS_KEY)
        if raw is None:
            raise _Rejected("state records no signing validators", ban=True)
        try:
            signers = ValidatorSet((bytes(pk), int(p)) for pk, p in codec.decode(raw))
        except (CodecError, ValueError, TypeError) as exc:
            raise _Rejected(f"signing validator record malformed: {exc}", ban=True) from None
        try:
            verify_commit_full(self.chain_id, target.commit, signers, target.block.hash, target.height)
        except UntrustedHeader as exc:
            raise _Rejected(str(exc), ban=True) from None
        try:
            verify_commit_trusting(
                self.chain_id, target.commit, self.genesis_validators, target.block.hash, target.height
            )
        except UntrustedHeader as exc:
            raise _Rejected(f"{exc} (set [statesync] trust_height and trust_hash)", ban=False) from None
        self._verified_chunk = (index, reply.data)

    # ------------------------------------------------------------------ persistence (resume)

    def _load_target(self) -> _Target | None:
        path = self.workdir / TARGET_FILE
        if not path.exists():
            self.clear()  # stray partial files without a verified target
            return None
        try:
            manifest_raw, block_raw, commit_raw = codec.decode(path.read_bytes(), max_size=64 << 20)
            manifest = decode_manifest(manifest_raw)
            target = _Target(manifest, manifest.digest, Block.decode(block_raw), Commit.decode(commit_raw))
        except (OSError, CodecError, SnapshotFormatError, ValueError, TypeError) as exc:
            log.warning("state sync: discarding unreadable partial restore: %s", exc)
            self.clear()
            return None
        return target

    def _save_target(self, target: _Target) -> None:
        self.clear()
        (self.workdir / CHUNKS_DIR).mkdir(parents=True)
        data = codec.encode([target.manifest.encode(), target.block.encode(), target.commit.encode()])
        _atomic_write(self.workdir / TARGET_FILE, data)
        if self._verified_chunk is not None:
            self._store_chunk(*self._verified_chunk)
            self._verified_chunk = None

    def _chunk_path(self, index: int) -> Path:
        return self.workdir / CHUNKS_DIR / f"{index:05d}"

    def _store_chunk(self, index: int, data: bytes) -> None:
        _atomic_write(self._chunk_path(index), data)

    def _stored(self) -> set[int]:
        with contextlib.suppress(OSError):
            return {int(p.name) for p in (self.workdir / CHUNKS_DIR).iterdir() if p.name.isdigit()}
        return set()

    # ------------------------------------------------------------------ chunks

    def _peers_for(self, target: _Target) -> list[bytes]:
        offer = self._offers.get(target.manifest_hash)
        return [p for p in (offer.peers if offer else ()) if self._usable(p)]

    async def _fetch_chunks(self, target: _Target) -> bool:
        """Fetch every chunk not on disk yet; False if no peer served the target for discovery_time_s."""
        stored = self._stored()
        pending = deque(i for i in range(len(target.manifest.chunks)) if i not in stored)
        tasks: dict[asyncio.Task[Any], tuple[int, bytes]] = {}
        no_peer_since: float | None = None
        try:
            while pending or tasks:
                peers = self._peers_for(target)
                while pending and peers and len(tasks) < max(1, self.settings.chunk_fetchers):
                    nid = min(peers, key=lambda p: self._inflight.get(p, 0))
                    index = pending.popleft()
                    self._inflight[nid] = self._inflight.get(nid, 0) + 1
                    task = asyncio.ensure_future(
                        self._request(nid, GetChunk(target.height, index), self.settings.chunk_timeout_s)
                    )
                    tasks[task] = (index, nid)
                if not tasks:
                    now = self._now()
                    no_peer_since = no_peer_since if no_peer_since is not None else now
                    if now - no_peer_since >= self.settings.discovery_time_s:
                        return False
                    await self._wait_offers(
                        min(REDISCOVER_S, no_peer_since + self.settings.discovery_time_s - now)
                    )
                    continue
                no_peer_since = None
                done, _ = await asyncio.wait(list(tasks), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index, nid = tasks.pop(task)
                    self._inflight[nid] -= 1
                    if not await self._on_chunk(target, task, index, nid):
                        pending.append(index)
            return True
        finally:
            for task, (_index, nid) in tasks.items():
                task.cancel()
                self._inflight[nid] -= 1

    async def _on_chunk(self, target: _Target, task: asyncio.Task[Any], index: int, nid: bytes) -> bool:
        exc = task.exception()
        if isinstance(exc, TimeoutError):
            self._cool(nid, f"chunk {index} timed out")
            return False
        if exc is not None:
            if not isinstance(exc, (P2PError, ConnectionError)):
                log.warning("state sync: chunk request failed: %r", exc)
            return False
        reply = task.result()
        if not isinstance(reply, ChunkData) or (reply.height, reply.index) != (target.height, index):
            self._punish(nid, "answered get_snapshot_chunk with something else")
            return False
        if not reply.data:
            offer = self._offers.get(target.manifest_hash)
            if offer is not None:
                offer.peers.discard(nid)  # it no longer has this snapshot
            return False
        try:
            await asyncio.to_thread(check_chunk, target.manifest, index, reply.data)
        except SnapshotFormatError as exc:
            self._punish(nid, f"served a bad chunk: {exc}")
            return False
        await asyncio.to_thread(self._store_chunk, index, reply.data)
        self.fetched.append((index, nid))
        return True

    # ------------------------------------------------------------------ finishing

    async def _finish(self, target: _Target) -> RestoreResult | None:
        entries: list[tuple[bytes, bytes]] = []
        for index in range(len(target.manifest.chunks)):
            try:
                data = self._chunk_path(index).read_bytes()
                entries.extend(await asyncio.to_thread(check_chunk, target.manifest, index, data))
            except (OSError, SnapshotFormatError) as exc:
                log.warning("state sync: stored chunk %d unusable (%s); fetching it again", index, exc)
                with contextlib.suppress(OSError):
                    self._chunk_path(index).unlink()
                return None
        state = dict(entries)
        models: dict[bytes, bytes] = {h: PRUNED_MODEL for h in referenced_models(entries)}
        current = state.get(_GLOBAL_MODEL_KEY)
        if current is not None:
            models[current] = await self._fetch_model(target, current)
        await asyncio.to_thread(
            self.store.restore_state,
            target.block,
            target.commit,
            entries,
            target.manifest.bucket_hash_list(),
            models,
        )
        self.clear()
        log.info(
            "state sync: restored height %d (%d entries, %d chunks, %d fetched now)",
            target.height,
            len(entries),
            len(target.manifest.chunks),
            len(self.fetched),
        )
        return RestoreResult(
            target.height,
            target.block.hash,
            len(target.manifest.chunks),
            len(self.fetched),
            sorted(self._bad),
        )

    async def _fetch_model(self, target: _Target, model_hash: bytes) -> bytes:
        """The global model with this hash from any peer (its snapshot's peers first), checked by hash."""
        deadline = self._now() + self.settings.discovery_time_s
        tried: set[bytes] = set()
        while self._now() < deadline:
            order = self._peers_for(target) + [p.node_id for p in self.host.peers()]
            nid = next((p for p in order if p not in tried and self._usable(p)), None)
            if nid is None:
                tried.clear()
                await self._wait_offers(REDISCOVER_S)
                continue
            tried.add(nid)
            try:
                reply = await self._request(nid, GetModel(model_hash), self.settings.chunk_timeout_s)
            except (P2PError, TimeoutError, ConnectionError):
                continue
            if not isinstance(reply, ModelData) or reply.model_hash != model_hash:
                self._punish(nid, "answered get_model with something else")
            elif reply.data and tagged_hash(TAG_WEIGHTS, reply.data) == model_hash:
                return reply.data
            elif reply.data:
                self._punish(nid, f"served a model that does not hash to {model_hash.hex()[:12]}")
        raise StateSyncError(f"no peer served the current global model {model_hash.hex()}")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
