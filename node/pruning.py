"""Pruning policy and the background pruner: keep disk bounded on a node that is not an archive.

`[pruning] retain_blocks = N` keeps the last N blocks (with their commits and tx index entries) and
deletes older ones; `model_history = K` keeps the last K rounds' global models (and always the current
and the genesis one) and tombstones older ones (`Store.prune_models`); `interval_blocks` is how often it
runs. All zero (the default) is an archive node: nothing is ever deleted.

The retain height never goes above what the chain still needs (`retain_height`): the last
`evidence_max_age_blocks` heights (double-sign evidence about them is still valid), the last
`unbonding_blocks` heights (stake unbonded then is still slashable), and the oldest snapshot this node
serves (a state-syncing peer verifies that snapshot's header and block-syncs on from it). Pruning never
changes state or validity: a pruned node computes the same state roots as an archive node.

The pruner runs after committed blocks, at most one run at a time: models are tombstoned on the event
loop (the thread that commits blocks, so no model written by a concurrent commit is touched), blocks are
deleted and compacted in a worker thread (`Store.prune_blocks`) so consensus is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pocl.consensus.pocl.execution import PoclExecution
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State
from pocl.ledger.storage.store import PruneResult, Store

log = logging.getLogger("pocl.pruning")

DEFAULT_INTERVAL_BLOCKS = 100
SNAPSHOTS_DIR = Path("data") / "snapshots"  # under the home: where the snapshot manager keeps them
_HEIGHT_IN_NAME = re.compile(r"\d+")
MB = 1024 * 1024


class PruningSection(Protocol):
    """The `[pruning]` config section (node.config.PruningSection)."""

    retain_blocks: int
    model_history: int
    interval_blocks: int


@dataclasses.dataclass(frozen=True)
class PruningPolicy:
    retain_blocks: int = 0  # 0 = keep every block (archive)
    model_history: int = 0  # 0 = keep every global model
    interval_blocks: int = DEFAULT_INTERVAL_BLOCKS

    @classmethod
    def from_config(cls, section: PruningSection) -> PruningPolicy:
        return cls(section.retain_blocks, section.model_history, max(1, section.interval_blocks))

    @property
    def archive(self) -> bool:
        return self.retain_blocks == 0 and self.model_history == 0


def required_window(params: ChainParams) -> int:
    """Heights back from the head that must stay: evidence about them is still valid, stake unbonded
    during them is still slashable."""
    return max(params.evidence_max_age_blocks, params.unbonding_blocks, 1)


def retain_height(
    head: int, retain_blocks: int, params: ChainParams, oldest_snapshot: int | None = None
) -> int:
    """The lowest height to keep at `head` (1 = keep everything): the last `retain_blocks` heights, never
    fewer than the evidence and unbonding windows (`required_window`), never above the oldest snapshot
    served, never above the head."""
    if retain_blocks <= 0 or head <= 0:
        return 1
    keep = max(retain_blocks, required_window(params))
    retain = head + 1 - keep
    if oldest_snapshot is not None:
        retain = min(retain, oldest_snapshot)
    return max(1, min(retain, head))


def models_to_keep(state: State, pocl: PoclExecution, model_history: int) -> set[bytes] | None:
    """Global models to keep: the current and the genesis one, and those of the last `model_history`
    rounds that produced a model. None when `model_history` is 0 (keep all)."""
    if model_history <= 0:
        return None
    keep = {pocl.genesis_model()[0]}
    if state.global_model_hash is not None:
        keep.add(state.global_model_hash)
    head = pocl.head(state)
    if head is None:
        return keep
    keep.add(head.model_hash)
    found: list[bytes] = []
    n = head.round
    while n >= 1 and len(found) < model_history:
        rec = pocl.record(state, n)
        if rec is not None and rec.outcome is not None and rec.outcome.model_hash not in found:
            found.append(rec.outcome.model_hash)
        n -= 1
    return keep | set(found)


def oldest_snapshot_on_disk(directory: Path) -> int | None:
    """The lowest height among the snapshots in `directory` (each entry's name holds its height;
    unfinished ones count too, which only ever keeps more). None if there are none."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    heights = [int(m.group()) for name in names if (m := _HEIGHT_IN_NAME.search(name)) is not None]
    return min(heights) if heights else None


def dir_bytes(path: Path | str) -> int:
    """Bytes of the files under `path` (what the database takes on disk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


@dataclasses.dataclass(frozen=True)
class PruneRun:
    """One background run: the policy's target and what the store did, with the disk before/after."""

    head: int
    retain_height: int
    result: PruneResult
    disk_before: int
    disk_after: int


class Pruner:
    """Prunes `store` every `interval_blocks` committed heights, in the background."""

    def __init__(
        self,
        store: Store,
        policy: PruningPolicy,
        params: ChainParams,
        pocl: PoclExecution,
        state: Callable[[], State],
        oldest_snapshot_height: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.params = params
        self.pocl = pocl
        self._state = state
        self._oldest_snapshot = oldest_snapshot_height
        self._task: asyncio.Task[PruneRun | None] | None = None
        self._last_height = 0
        self._stopping = False
        self.last_run: PruneRun | None = None
        self.runs = 0

    def on_block(self, height: int) -> None:
        """A block was committed: start a run if one is due and none is going."""
        if self.policy.archive or self._stopping or (self._task is not None and not self._task.done()):
            return
        if self._last_height and height - self._last_height < self.policy.interval_blocks:
            return
        self._last_height = height
        self._task = asyncio.get_running_loop().create_task(self._run_logged(), name="prune")

    async def _run_logged(self) -> PruneRun | None:
        try:
            return await self.run_once()
        except Exception:  # a pruning failure must not stop the node; the next interval retries
            log.exception("pruning failed")
            return None

    async def run_once(self) -> PruneRun | None:
        """Prune now to the policy's retain height; None when there is nothing to do."""
        if self.policy.archive:
            return None
        state = self._state()
        head = state.height
        retain = retain_height(head, self.policy.retain_blocks, self.params, self._oldest_snapshot())
        keep = models_to_keep(state, self.pocl, self.policy.model_history)
        if retain <= self.store.earliest_height and keep is None:
            return None
        disk_before = dir_bytes(self.store.path)
        # On the loop, like commits: `keep` and the stored models are read at the same height.
        models, model_bytes = self.store.prune_models(keep) if keep is not None else (0, 0)
        result = await asyncio.to_thread(
            self.store.prune_blocks,
            retain,
            compact_models=models > 0,
            should_stop=lambda: self._stopping,
        )
        result = dataclasses.replace(
            result, models_pruned=models, bytes_deleted=result.bytes_deleted + model_bytes
        )
        run = PruneRun(head, retain, result, disk_before, dir_bytes(self.store.path))
        self.last_run = run
        self.runs += 1
        if result.blocks_deleted or result.models_pruned:
            log.info(
                "pruned heights %d..%d (%d txs) and %d global models: earliest=%d, disk %.1f -> %.1f MB "
                "in %.2fs",
                result.earliest_before,
                result.earliest_after - 1,
                result.txs_deleted,
                result.models_pruned,
                result.earliest_after,
                run.disk_before / MB,
                run.disk_after / MB,
                result.seconds,
            )
        return run

    async def stop(self) -> None:
        """Stop between batches and wait for the worker thread (before the store is closed)."""
        self._stopping = True
        if self._task is not None:
            await asyncio.wait([self._task])
