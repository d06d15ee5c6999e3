"""Memory that must stay flat in a long run (issue 16, soak): every structure a node keeps per round,
height or message is capped or pruned. Each test drives one of them through far more rounds or inserts
than its bound and checks it stays within it (without the bound it grows with the count)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT
from pocl.ledger.keys import PrivateKey
from pocl.node.heap_trim import FOLLOW_UP_S, HeapTrimmer, trim_periodically
from pocl.node.miner import Miner, MinerSettings
from pocl.node.miner_store import KEEP_ROUNDS
from pocl.p2p.gossip import DEFAULT_SEEN_TTL_S, Gossip, SeenCache

from tests.support.rpc_fixtures import node

__all__ = ["node"]  # the in-process node fixture

ROUNDS = 200


class _MinerNode:
    """Just what `Miner._step` reads: a PoCL head whose round the test moves on, no open record."""

    def __init__(self) -> None:
        self.round = 1
        self.pocl = SimpleNamespace(
            params=PoclParams(),
            head=lambda _state: SimpleNamespace(round=self.round, model_hash=b"\x00" * 32),
            open_record=lambda _state: None,
        )
        self.chain = SimpleNamespace(state=None, height=0)
        self.mempool = SimpleNamespace()
        self.syncing = False


def test_the_miner_forgets_rounds_older_than_the_ones_it_keeps_on_disk(tmp_path: Path) -> None:
    node = _MinerNode()
    miner = Miner(node, PrivateKey.generate(), MinerSettings(behavior="lazy"), tmp_path / "miner")  # type: ignore[arg-type]
    miner.data = object()
    miner.committing = False  # no training task: the test fills the per-round state itself
    held: Any = object()
    for r in range(1, ROUNDS + 1):
        node.round = r
        miner._secrets[r] = held
        miner._submitted[(r, KIND_POCL_COMMIT)] = (b"\x01" * 32, r)
        miner._said.add((r, "opened"))
        miner._no_fresh_shard.add((r, b"\x00" * 32))
        miner._step()
    assert sorted(miner._secrets) == list(range(ROUNDS - KEEP_ROUNDS + 1, ROUNDS + 1))
    for kept in (miner._submitted, miner._said, miner._no_fresh_shard):
        assert len(kept) == KEEP_ROUNDS


def test_gossip_forgets_message_ids_after_their_ttl_so_the_seen_cache_follows_the_rate() -> None:
    now = [0.0]
    host = SimpleNamespace(on_disconnect=lambda _cb: None)
    gossip = Gossip(host, clock=lambda: now[0])  # type: ignore[arg-type]
    per_s = 10  # ids per second: a busy devnet's votes, proposals and tx batches
    for i in range(20 * 60 * per_s):  # twenty minutes of gossip
        now[0] = i / per_s
        assert gossip.seen.add(i.to_bytes(32, "big"))
    assert len(gossip.seen) <= DEFAULT_SEEN_TTL_S * per_s + 1
    assert (20 * 60 * per_s - 1).to_bytes(32, "big") in gossip.seen  # recent ones still drop copies


def test_seen_cache_without_ttl_keeps_its_lru_cap() -> None:
    cache = SeenCache(100)
    for i in range(10_000):
        cache.add(i.to_bytes(32, "big"))
    assert len(cache) == 100


async def test_the_heap_is_trimmed_periodically() -> None:
    """Freed heap pages go back to the kernel every period (the soak's RSS slope was freed heap glibc kept:
    one malloc_trim(0) on a node at height 2,300 returned 6.9 MB)."""
    calls: list[int] = []
    task = asyncio.create_task(trim_periodically(0.01, malloc_trim=lambda pad: calls.append(pad) or 1))
    try:
        async with asyncio.timeout(5):
            while len(calls) < 3:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert calls[:3] == [0, 0, 0]


async def test_a_running_node_trims_its_heap(node: Any) -> None:
    assert any(t.get_name() == "heap-trim" and not t.done() for t in node._tasks)


async def test_a_burst_of_bodies_is_trimmed_then_trimmed_again_for_late_releases() -> None:
    trimmer = HeapTrimmer(trim_after_bytes=10, delay_s=0.01)
    calls: list[int] = []
    trimmer._malloc_trim = lambda pad: calls.append(pad) or 1
    trimmer.freed(6, idle=False)
    trimmer.freed(6, idle=True)  # 12 bytes freed, nothing in flight: a trim soon, and one follow-up
    async with asyncio.timeout(FOLLOW_UP_S + 3):
        while trimmer.trims < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(FOLLOW_UP_S + 0.2)  # no third trim: the follow-up does not schedule another
    assert calls == [0, 0] and trimmer._pending is None
