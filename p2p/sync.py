"""Block-sync protocol: a node behind its peers fetches blocks with their commits (DESIGN §6).

Server side: `status` answers the lowest height it serves (`base_height`: history below it is pruned)
and the best height/hash; `get_blocks(start, count)` answers consecutive blocks from `start`, capped by
count and by bytes, served from the node's `get_block_with_commit(height)` callback (raw canonical
bytes, straight from the store). Asked for a pruned height it answers the error `block_pruned` whose
detail names the earliest height it has, never an empty silence.

Client side: `BlockSyncer` keeps a window of heights in flight as pipelined batches spread over
several peers, checks each batch statelessly on arrival (decodes, heights, commit ↔ block hash, hash
chain inside the batch), and hands blocks to `apply(block, commit)` strictly in height order after the
node's `verify(block, commit)` (commit signatures against the validator set it has replayed) accepts
them. A peer that does not answer in time is put on cooldown and its range fetched elsewhere; a peer
that serves a block failing any check is punished (banned by default) and its ranges refetched. Heights
below a peer's `base_height` are never asked of it; when every peer ahead of us has pruned the next
height we need, the syncer stops and says so (`SyncResult.history_starts_at`): this node needs state
sync, or an archive peer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import inspect
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pocl.ledger.block import Block, Commit, txs_root
from pocl.ledger.codec import CodecError, Struct

from . import message_ids
from .errors import P2PError, RemoteError
from .host import Host
from .messages import ErrorResponse

log = logging.getLogger(__name__)

HASH_LEN = 32
MAX_BLOCKS_PER_RESPONSE = 128
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_BLOCKS_MESSAGE_BYTES = 32 * 1024 * 1024  # one oversized block may exceed the soft byte cap
ENVELOPE_OVERHEAD = 64
ITEM_OVERHEAD = 16
BLOCK_PRUNED = "block_pruned"  # the ErrorResponse code for a request below the server's base height
_EARLIEST_IN_DETAIL = re.compile(r"earliest available height is (\d+)")


def pruned_detail(start: int, base: int) -> str:
    return f"block {start} is pruned: the earliest available height is {base}"


@dataclasses.dataclass(frozen=True)
class GetStatus(Struct):
    pass


@dataclasses.dataclass(frozen=True)
class Status(Struct):
    base_height: int  # lowest height this node can serve
    best_height: int
    best_hash: bytes

    MAX_LEN: ClassVar[dict[str, int]] = {"best_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class GetBlocks(Struct):
    start: int
    count: int


@dataclasses.dataclass(frozen=True)
class BlockWithCommit(Struct):
    block: bytes  # canonical Block encoding
    commit: bytes  # canonical Commit encoding: the commit for this block


@dataclasses.dataclass(frozen=True)
class Blocks(Struct):
    start: int
    items: list[BlockWithCommit]

    MAX_LEN: ClassVar[dict[str, int]] = {"items": MAX_BLOCKS_PER_RESPONSE}


ChainStatus = Callable[[], tuple[int, bytes]]
BlockSource = Callable[[int], "tuple[bytes, bytes] | Awaitable[tuple[bytes, bytes] | None] | None"]
Verify = Callable[[Block, Commit], "bool | Awaitable[bool]"]
Apply = Callable[[Block, Commit], Awaitable[None]]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class SyncService:
    """Registers the sync messages on `host`, serves peers, and creates `BlockSyncer`s."""

    def __init__(
        self,
        host: Host,
        *,
        status: ChainStatus,
        get_block_with_commit: BlockSource,
        base_height: Callable[[], int] | None = None,
        max_blocks_per_response: int = 64,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.host = host
        self._status = status
        self._get = get_block_with_commit
        self._base = base_height or (lambda: 1)
        self.max_blocks = max(1, min(max_blocks_per_response, MAX_BLOCKS_PER_RESPONSE))
        self.max_bytes = min(max_response_bytes, MAX_BLOCKS_MESSAGE_BYTES - ENVELOPE_OVERHEAD)
        host.register(message_ids.GET_STATUS, GetStatus, 64, self._on_get_status)
        host.register(message_ids.STATUS, Status, 128)
        host.register(message_ids.GET_BLOCKS, GetBlocks, 64, self._on_get_blocks)
        host.register(message_ids.BLOCKS, Blocks, MAX_BLOCKS_MESSAGE_BYTES)

    def _on_get_status(self, _conn: object, _body: GetStatus) -> Status:
        height, best_hash = self._status()
        return Status(self._base(), height, best_hash)

    async def _on_get_blocks(self, _conn: object, body: GetBlocks) -> Blocks | ErrorResponse:
        items: list[BlockWithCommit] = []
        if body.start < 1:
            return Blocks(body.start, items)
        base = self._base()
        if body.start < base:
            return ErrorResponse(BLOCK_PRUNED, pruned_detail(body.start, base))
        size = ENVELOPE_OVERHEAD
        count = min(max(body.count, 0), self.max_blocks)
        for height in range(body.start, body.start + count):
            found = await _maybe_await(self._get(height))
            if found is None:
                break
            block, commit = found
            item_size = len(block) + len(commit) + ITEM_OVERHEAD
            too_big = size + item_size > (self.max_bytes if items else MAX_BLOCKS_MESSAGE_BYTES)
            if too_big:
                break
            items.append(BlockWithCommit(block, commit))
            size += item_size
        return Blocks(body.start, items)

    def syncer(
        self, *, start_height: int, apply: Apply, verify: Verify | None = None, **kwargs: Any
    ) -> BlockSyncer:
        return BlockSyncer(self.host, start_height=start_height, apply=apply, verify=verify, **kwargs)


@dataclasses.dataclass
class SyncConfig:
    batch_size: int = 32
    window: int = 512  # heights fetched ahead of the next one to apply (bounds memory)
    max_inflight_per_peer: int = 2
    request_timeout: float = 10.0
    status_interval: float = 2.0  # how stale a peer's status may get before asking again
    cooldown: float = 30.0  # a peer that timed out is not asked again for this long
    stall_penalty: float = 10.0
    bad_block_penalty: float = 1000.0  # a forged block is deliberate: ban at once
    peer_wait: float = 5.0  # with no usable peer for this long, give up (the node retries later)


@dataclasses.dataclass
class _Peer:
    node_id: bytes
    height: int = 0
    base: int = 1  # lowest height it serves (its status' base_height; raised by a block_pruned answer)
    status_at: float = float("-inf")
    status_pending: bool = False
    inflight: int = 0
    cooldown_until: float = 0.0


@dataclasses.dataclass
class SyncResult:
    height: int  # last applied height (start_height - 1 if nothing was applied)
    applied: int
    bad_peers: list[bytes]
    stalled_peers: list[bytes]
    # set when peers are ahead but all have pruned the next height: the lowest height any of them has
    history_starts_at: int | None = None
    best_peer_height: int = 0  # the highest height a usable peer reported (readiness: our lag)


class BlockSyncer:
    """Fetches and applies blocks from `start_height` until no usable peer is ahead of us."""

    def __init__(
        self,
        host: Host,
        *,
        start_height: int,
        apply: Apply,
        verify: Verify | None = None,
        prev_hash: bytes | None = None,
        config: SyncConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if start_height < 1:
            raise ValueError("start_height must be >= 1")
        self.host = host
        self.config = config or SyncConfig()
        self._apply = apply
        self._verify = verify
        self._rng = rng or random.Random()
        self._next = start_height  # next height to apply
        self._start = start_height
        self._prev_hash = prev_hash  # hash of block next-1 once known
        self._scheduled_to = start_height - 1  # every height <= this was scheduled at least once
        self._pending: list[tuple[int, int]] = []  # heap of (start, count) ranges to (re)fetch
        self._buffer: dict[int, tuple[Block, Commit, bytes]] = {}
        self._peers: dict[bytes, _Peer] = {}
        self._bad: set[bytes] = set()
        self._stalled: set[bytes] = set()
        self._tasks: dict[asyncio.Task[Any], tuple[str, bytes, int, int]] = {}

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ public

    async def run(self) -> SyncResult:
        try:
            return await self._run()
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()

    async def _run(self) -> SyncResult:
        caught_up_at: float | None = None
        idle_since: float | None = None
        while True:
            self._refresh_peers(force_since=caught_up_at)
            await self._apply_ready()
            usable = self._usable_peers()
            starts_at = self._history_gap(usable)
            if starts_at is not None:
                log.warning(
                    "block sync: height %d is pruned on every peer ahead of us (their history starts at "
                    "%d): this node needs state sync or an archive peer",
                    self._next,
                    starts_at,
                )
                return dataclasses.replace(self._result(), history_starts_at=starts_at)
            target = max((p.height for p in usable), default=0)
            if usable and self._next > target and not self._buffer:
                if caught_up_at is None:
                    caught_up_at = self._now()  # re-ask everyone before declaring victory
                    continue
                statuses_fresh = all(p.status_at >= caught_up_at for p in usable)
                if statuses_fresh and not any(k == "status" for k, *_ in self._tasks.values()):
                    return self._result()
            else:
                caught_up_at = None
            self._schedule(target)
            if not self._tasks:
                # Nothing in flight and nobody to ask (no peers, or only banned / cooling-down ones):
                # wait a while for peers to appear, then give up and let the node decide.
                idle_since = idle_since if idle_since is not None else self._now()
                if self._now() - idle_since >= self.config.peer_wait:
                    log.info("block sync: no usable peer, stopping at height %d", self._next - 1)
                    return self._result()
                await asyncio.sleep(min(0.1 * self.config.peer_wait, 0.25))
                continue
            idle_since = None
            done, _ = await asyncio.wait(
                list(self._tasks), timeout=self.config.status_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                self._on_task_done(task)

    def _history_gap(self, usable: list[_Peer]) -> int | None:
        """The lowest base height when peers ahead of us all pruned our next height (and we know every
        usable peer's status and have nothing in flight); else None."""
        if self._buffer or self._tasks or not usable:
            return None
        if any(p.status_at == float("-inf") for p in usable):
            return None
        ahead = [p for p in usable if p.height >= self._next]
        if not ahead or any(p.base <= self._next for p in ahead):
            return None
        return min(p.base for p in ahead)

    def _result(self) -> SyncResult:
        best = max((p.height for nid, p in self._peers.items() if nid not in self._bad), default=0)
        return SyncResult(
            self._next - 1,
            self._next - self._start,
            sorted(self._bad),
            sorted(self._stalled),
            best_peer_height=best,
        )

    # ------------------------------------------------------------------ peers and status

    def _usable_peers(self) -> list[_Peer]:
        now = self._now()
        return [
            p
            for p in self._peers.values()
            if p.node_id not in self._bad and p.cooldown_until <= now and self.host.is_connected(p.node_id)
        ]

    def _refresh_peers(self, force_since: float | None) -> None:
        now = self._now()
        connected = {info.node_id for info in self.host.peers()}
        for nid in list(self._peers):
            if nid not in connected:
                del self._peers[nid]
        for nid in connected:
            if nid in self._bad:
                continue
            peer = self._peers.setdefault(nid, _Peer(nid))
            if peer.status_pending or peer.cooldown_until > now:
                continue
            stale = now - peer.status_at >= self.config.status_interval
            if stale or (force_since is not None and peer.status_at < force_since):
                peer.status_pending = True
                task = asyncio.ensure_future(self.host.request(nid, GetStatus(), self.config.request_timeout))
                self._tasks[task] = ("status", nid, 0, 0)

    def _cool_down(self, nid: bytes, why: str) -> None:
        peer = self._peers.get(nid)
        if peer is not None:
            peer.cooldown_until = self._now() + self.config.cooldown
        self._stalled.add(nid)
        log.info("block sync: peer %s %s; trying others", nid.hex()[:12], why)
        self.host.punish(nid, self.config.stall_penalty, f"sync: {why}")

    def _mark_bad(self, nid: bytes, why: str) -> None:
        if nid in self._bad:
            return
        self._bad.add(nid)
        log.warning("block sync: peer %s served a bad block: %s", nid.hex()[:12], why)
        self.host.punish(nid, self.config.bad_block_penalty, f"sync: {why}")
        # Whatever else it sent us is suspect: refetch those heights elsewhere.
        dropped = sorted(h for h, (_b, _c, src) in self._buffer.items() if src == nid)
        for h in dropped:
            del self._buffer[h]
        self._requeue_heights(dropped)

    # ------------------------------------------------------------------ scheduling

    def _requeue(self, start: int, count: int) -> None:
        if count > 0:
            heapq.heappush(self._pending, (start, count))

    def _requeue_heights(self, heights: list[int]) -> None:
        run_start = prev = None
        for h in heights:
            if run_start is None:
                run_start = prev = h
            elif h == prev + 1:
                prev = h
            else:
                self._requeue(run_start, prev - run_start + 1)
                run_start = prev = h
        if run_start is not None:
            self._requeue(run_start, prev - run_start + 1)

    def _next_range(self, target: int) -> tuple[int, int] | None:
        while self._pending:
            start, count = heapq.heappop(self._pending)
            end = start + count - 1
            start = max(start, self._next)  # heights already applied need no fetch
            if start <= end:
                return start, end - start + 1
        limit = min(target, self._next + self.config.window - 1)
        if self._scheduled_to >= limit:
            return None
        start = max(self._scheduled_to + 1, self._next)
        count = min(self.config.batch_size, limit - start + 1)
        self._scheduled_to = start + count - 1
        return start, count

    def _schedule(self, target: int) -> None:
        while True:
            candidates = [
                p
                for p in self._usable_peers()
                if p.inflight < self.config.max_inflight_per_peer and p.base <= self._next <= p.height
            ]
            if not candidates:
                return
            rng = self._next_range(target)
            if rng is None:
                return
            start, count = rng
            able = [p for p in candidates if p.base <= start <= p.height]
            if not able:
                self._requeue(start, count)
                return
            low = min(p.inflight for p in able)
            peer = self._rng.choice([p for p in able if p.inflight == low])
            count_here = min(count, peer.height - start + 1)
            self._requeue(start + count_here, count - count_here)
            peer.inflight += 1
            task = asyncio.ensure_future(
                self.host.request(peer.node_id, GetBlocks(start, count_here), self.config.request_timeout)
            )
            self._tasks[task] = ("blocks", peer.node_id, start, count_here)

    # ------------------------------------------------------------------ responses

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        kind, nid, start, count = self._tasks.pop(task)
        peer = self._peers.get(nid)
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if kind == "status":
            if peer is None:
                return
            peer.status_pending = False
            if exc is None and isinstance(task.result(), Status):
                status = task.result()
                peer.height = status.best_height
                peer.base = max(1, min(status.base_height, status.best_height + 1))
                peer.status_at = self._now()
            elif isinstance(exc, TimeoutError):
                self._cool_down(nid, "did not answer status")
            else:  # refused or closed: not worth a penalty, but do not ask again right away
                peer.cooldown_until = self._now() + self.config.cooldown
            return
        if peer is not None:
            peer.inflight -= 1
        if exc is not None:
            self._requeue(start, count)
            if isinstance(exc, RemoteError) and exc.code == BLOCK_PRUNED:
                if peer is not None:  # ask it only from where its history starts
                    match = _EARLIEST_IN_DETAIL.search(exc.detail)
                    peer.base = max(peer.base, int(match.group(1)) if match else start + 1, start + 1)
                log.info("block sync: peer %s %s", nid.hex()[:12], exc.detail)
            elif isinstance(exc, TimeoutError):
                self._cool_down(nid, f"stalled on blocks {start}..{start + count - 1}")
            elif not isinstance(exc, (P2PError, asyncio.CancelledError, ConnectionError)):
                log.warning("block sync request failed: %r", exc)
            return
        reply = task.result()
        if nid in self._bad:
            self._requeue(start, count)
            return
        if not isinstance(reply, Blocks) or reply.start != start or len(reply.items) > count:
            self._requeue(start, count)
            self._mark_bad(nid, "response does not match the request")
            return
        if not reply.items:
            # It claimed the height but has nothing: lower our idea of its height, fetch elsewhere.
            if peer is not None:
                peer.height = min(peer.height, start - 1)
            self._requeue(start, count)
            return
        try:
            decoded = check_batch(start, reply.items)
        except BadBatch as err:
            self._requeue(start, count)
            self._mark_bad(nid, str(err))
            return
        for i, (block, commit) in enumerate(decoded):
            h = start + i
            if h >= self._next and h not in self._buffer:
                self._buffer[h] = (block, commit, nid)
        self._requeue(start + len(decoded), count - len(decoded))

    async def _apply_ready(self) -> None:
        while self._next in self._buffer:
            block, commit, src = self._buffer.pop(self._next)
            problem = None
            if self._prev_hash is not None and block.header.prev_hash != self._prev_hash:
                problem = f"block {self._next} does not extend the chain"
            elif self._verify is not None and not await _maybe_await(self._verify(block, commit)):
                problem = f"block {self._next} failed verification"
            if problem is not None:
                self._requeue(self._next, 1)
                self._mark_bad(src, problem)
                continue
            await self._apply(block, commit)
            self._prev_hash = block.hash
            self._next += 1


class BadBatch(ValueError):
    """A get_blocks response that no honest peer could have sent."""


def body_matches_header(block: Block) -> bool:
    """The parts of a block the header hash does not cover (txs, last commit) match the header's roots."""
    if txs_root(block.txs) != block.header.txs_root:
        return False
    expected = block.last_commit.hash if block.last_commit is not None else b""
    return block.header.last_commit_hash == expected


def check_batch(start: int, items: list[BlockWithCommit]) -> list[tuple[Block, Commit]]:
    """Stateless checks of a batch: decodes, consecutive heights, commit matches block, hash chain.

    A commit signs only the header hash, so the body is checked against the header's roots too;
    otherwise a peer could pair a genuine header and commit with forged transactions.
    """
    out: list[tuple[Block, Commit]] = []
    for i, item in enumerate(items):
        height = start + i
        try:
            block = Block.decode(item.block)
            commit = Commit.decode(item.commit)
        except CodecError as exc:
            raise BadBatch(f"block {height} malformed: {exc}") from None
        if block.height != height:
            raise BadBatch(f"asked for height {height}, got {block.height}")
        if commit.height != height or commit.block_hash != block.hash:
            raise BadBatch(f"commit does not match block {height}")
        if not body_matches_header(block):
            raise BadBatch(f"block {height} body does not match its header")
        if out and block.header.prev_hash != out[-1][0].hash:
            raise BadBatch(f"block {height} does not extend block {height - 1}")
        out.append((block, commit))
    return out
