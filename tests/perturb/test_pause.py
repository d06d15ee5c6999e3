"""A validator paused (SIGSTOP) for longer than the BFT timeouts and the peers' idle timeout, then
continued: the other three finalise meanwhile, and it comes back to the head, ready, signing again,
on the same chain. Like a VM paused by its host or a stop-the-world stall."""

from __future__ import annotations

import time

import pytest
from pocl.node.cluster import LocalCluster

from tests.perturb.kit import (
    LONGER_THAN_TIMEOUTS_S,
    RECOVER_TIMEOUT_S,
    TxLoad,
    assert_same_chain,
    no_bug_lines,
    wait_blocks,
    wait_recovered,
    wait_signing,
)
from tests.support.netns import pause, resume

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_paused_validator_rejoins_after_sigcont(wan_cluster: LocalCluster) -> None:
    cluster = wan_cluster
    since = min(cluster.heights())
    victim, others = cluster.nodes[2], [n for n in cluster.nodes if n.index != 2]
    load = TxLoad(cluster, "pause")
    assert victim.proc is not None
    pause(victim.proc)
    try:
        paused_at = time.monotonic()
        load.submit(6, via=others)
        wait_blocks(cluster, 3, others, timeout=60)  # 3 of 4 equal validators: > 2/3 of the power
        remaining = LONGER_THAN_TIMEOUTS_S - (time.monotonic() - paused_at)
        if remaining > 0:
            time.sleep(remaining)  # the fault itself: the pause must outlast the timeouts
    finally:
        resume(victim.proc)
    assert victim.running
    wait_recovered(cluster, RECOVER_TIMEOUT_S)
    wait_signing(cluster, victim, cluster.nodes[0], RECOVER_TIMEOUT_S)
    load.wait_committed(cluster.nodes)
    assert_same_chain(cluster, since)
    no_bug_lines(victim)
