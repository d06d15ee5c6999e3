"""A validator-miner killed (SIGKILL) during each PoCL phase (COMMIT, SHARD, PREDICT, VOTE), then started
again at once (the kill during block sync is in test_crash.py). The miners are `lazy` (they reveal G_{r-1}
unchanged: one block per phase, no TensorFlow to start). After each kill the round still ends, the
victim is back at the head and ready, and every node holds the same blocks and state roots."""

from __future__ import annotations

from typing import Any

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess, RpcError, wait_until

from tests.perturb.kit import assert_same_chain, no_bug_lines, wait_recovered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

POLL_S = 0.02
ROUND_TIMEOUT_S = 90.0  # a round with a restarted miner: its phase may wait for the miner's start-up
PHASES = ("commit", "shard", "predict", "vote")


def latest(node: NodeProcess) -> dict[str, Any] | None:
    try:
        return node.get("/rounds/latest")
    except (OSError, RpcError):
        return None


def final_round(node: NodeProcess, r: int) -> bool:
    try:
        return bool(node.get(f"/rounds/{r}")["final"])
    except (OSError, RpcError):
        return False


@pytest.mark.parametrize("phase", PHASES)
def test_kill_during_a_pocl_phase(mining_cluster_shared: LocalCluster, phase: str) -> None:
    cluster = mining_cluster_shared
    since = min(cluster.heights())
    victim = cluster.nodes[1 + PHASES.index(phase) % 3]
    observer = cluster.nodes[0]

    def in_phase() -> int | None:
        rec = latest(observer)
        return rec["round"] if rec and not rec["final"] and rec["phase"] == phase else None

    r = wait_until(in_phase, ROUND_TIMEOUT_S, f"a round in its {phase} phase", interval=POLL_S)
    victim.kill()
    victim.start()
    wait_until(lambda: final_round(observer, r), ROUND_TIMEOUT_S, f"round {r} to end")
    wait_until(lambda: final_round(observer, r + 1), ROUND_TIMEOUT_S, f"round {r + 1} to end")
    wait_recovered(cluster)
    assert_same_chain(cluster, since)
    no_bug_lines(victim)
