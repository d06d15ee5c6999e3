"""File-descriptor limits (EMFILE). A validator started with a soft `RLIMIT_NOFILE` of 64 raises it to
its hard limit and keeps validating. One whose hard limit is only 128, flooded with 400 idle RPC
connections for longer than the BFT timeouts, keeps signing: the RPC holds at most a quarter of the
open-file limit (`[rpc] max_connections` is lowered to 32 and it says so), so a remote client cannot
take the descriptors P2P, LevelDB and the signing state need. (Before that cap, the flood stopped the
validator with EMFILE: loud, but any client could do it.) Afterwards it runs again with its normal
limit and catches up on the same chain."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess, wait_until

from tests.perturb.kit import (
    LONGER_THAN_TIMEOUTS_S,
    RECOVER_TIMEOUT_S,
    assert_same_chain,
    no_bug_lines,
    wait_recovered,
    wait_signing,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LOW_SOFT, HIGH_HARD = 64, 4096
TIGHT = 128
FLOOD = 400


def restart_with_nofile(node: NodeProcess, soft: int, hard: int) -> None:
    node.stop()
    node.command_prefix = ["prlimit", f"--nofile={soft}:{hard}", "--"]
    try:
        node.start()
    finally:
        node.command_prefix = []  # the next start is a normal one
    wait_until(lambda: node.status() is not None or not node.running, 60, f"node{node.index} RPC up")


def flood(node: NodeProcess, count: int) -> list[socket.socket]:
    host, port = node.rpc_url.removeprefix("http://").rsplit(":", 1)
    conns = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            conns.append(socket.create_connection((host, int(port)), timeout=2))
    return conns


def test_a_low_soft_fd_limit_is_raised(loop_cluster: LocalCluster) -> None:
    cluster = loop_cluster
    victim = cluster.nodes[1]
    restart_with_nofile(victim, LOW_SOFT, HIGH_HARD)
    assert victim.running, victim.failure("at start")
    wait_until(
        lambda: f"raised the open-file limit from {LOW_SOFT} to {HIGH_HARD}" in victim.log_path.read_text(),
        30,
        "the node to say it raised its open-file limit",
    )
    wait_recovered(cluster)
    wait_signing(cluster, victim, cluster.nodes[0], RECOVER_TIMEOUT_S)


def test_fd_exhaustion_never_wedges_a_validator_silently(loop_cluster: LocalCluster) -> None:
    cluster = loop_cluster
    since = min(cluster.heights())
    victim = cluster.nodes[1]
    restart_with_nofile(victim, TIGHT, TIGHT)
    assert victim.running, victim.failure("at start")
    log_text = victim.log_path.read_text()
    assert "open-file limit is 128" in log_text  # the low hard limit is named
    assert "max_connections 256 lowered to 32" in log_text
    wait_recovered(cluster)
    conns = flood(victim, FLOOD)
    try:
        time.sleep(LONGER_THAN_TIMEOUTS_S)  # the fault itself: held for longer than the timeouts
        assert victim.running, victim.failure("under the connection flood")
        wait_signing(cluster, victim, cluster.nodes[0], RECOVER_TIMEOUT_S)  # still validating
    finally:
        for c in conns:
            c.close()
    no_bug_lines(victim)
    victim.stop()
    victim.start()
    wait_recovered(cluster)
    assert_same_chain(cluster, since)
