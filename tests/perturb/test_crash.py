"""Crashes (SIGKILL) in the namespace cluster.

All four validators killed at once (a power cut) and started again: the chain resumes where it stopped,
on the same blocks and state roots, no validator double-signs, and every transfer that had committed
before the cut is still committed exactly once. A validator killed in the middle of block sync (it had
fallen behind by 20 blocks with 60 transfers; killed while `/status` says it is syncing and it is still
behind, which is as soon as its RPC answers: block sync is fast, ~30 blocks per 0.5 s, so a kill between
two applied batches cannot be aimed at reliably): started again, it keeps what it applied and syncs on
from there. The test reports which of the two it hit."""

from __future__ import annotations

import time

import pytest
from pocl.node.cluster import LocalCluster, wait_until

from tests.perturb.kit import (
    TxLoad,
    assert_same_chain,
    kill_all_at_once,
    no_bug_lines,
    wait_blocks,
    wait_recovered,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LAG_TXS = 60  # transfers committed while the victim is down (in the blocks it must sync)
LAG_BLOCKS = 20
SYNC_ATTEMPTS = 3  # each with twice the lag, if sync finished before the kill could land
POLL_S = 0.01


def test_all_validators_killed_at_once_then_restarted(wan_cluster: LocalCluster) -> None:
    cluster = wan_cluster
    since = min(cluster.heights())
    load = TxLoad(cluster, "power-cut")
    load.submit(6)
    load.wait_committed(cluster.nodes)
    before = {n.index: (n.height(), n.block_hash(n.height())) for n in cluster.nodes}
    kill_all_at_once(cluster.nodes)
    assert not cluster.running()
    cluster.start()
    for node in cluster.nodes:  # nothing decided was lost: each node still holds its head
        height, block = before[node.index]
        assert node.height() >= height and node.block_hash(height) == block
    wait_blocks(cluster, 5, cluster.nodes, timeout=90)
    wait_recovered(cluster)
    load.wait_committed(cluster.nodes)
    assert_same_chain(cluster, since)
    for node in cluster.nodes:
        no_bug_lines(node)


def test_kill_during_block_sync(wan_cluster: LocalCluster) -> None:
    cluster = wan_cluster
    since = min(cluster.heights())
    victim, observer = cluster.nodes[3], cluster.nodes[0]
    others = cluster.nodes[:3]
    load = TxLoad(cluster, "sync-kill")
    lag, killed_at = LAG_TXS, None
    for _ in range(SYNC_ATTEMPTS):
        own = victim.height()
        victim.kill()
        load.submit(lag, via=others)
        wait_blocks(cluster, LAG_BLOCKS, others, timeout=90)
        load.wait_committed(others)
        victim.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and victim.running:
            st = victim.status()
            if st is not None and st["syncing"] and st["height"] < observer.height() - 2:
                victim.kill()  # in block sync, behind: fetching, or some batches applied and more to fetch
                killed_at = st["height"]
                print(f"killed in block sync at height {killed_at} ({killed_at - own} blocks applied)")
                break
            if st is not None and not st["syncing"]:
                break  # caught up before the kill could land: again, with a longer lag
            time.sleep(POLL_S)
        if killed_at is not None:
            break
        lag *= 2
    assert killed_at is not None, (
        f"block sync always finished before a kill could land ({SYNC_ATTEMPTS} tries)"
    )
    victim.start()
    wait_until(lambda: victim.height() >= killed_at, 30, f"node{victim.index} back at height {killed_at}")
    wait_recovered(cluster)
    load.wait_committed(cluster.nodes)
    assert_same_chain(cluster, since)
    no_bug_lines(victim)
