"""A validator whose clock runs an hour ahead (libfaketime preloaded into its process only): the chain
keeps finalising and chain time stays with real time (proposer-based timestamps: its proposals are
prevoted nil), every node on the same chain; with its clock fixed it is ready and signing again."""

from __future__ import annotations

import time

import pytest
from pocl.node.cluster import LocalCluster

from tests.perturb.kit import RECOVER_TIMEOUT_S, assert_same_chain, wait_blocks, wait_recovered, wait_signing
from tests.support.faketime import SLACK_MS, faketime_lib, skew_clock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SKEW = "+1h"
HEIGHTS = 8  # two turns of the skewed proposer among four


def test_a_skewed_clock_cannot_move_chain_time(loop_cluster: LocalCluster) -> None:
    lib = faketime_lib()
    if lib is None:
        pytest.skip("needs libfaketime: the Debian package `faketime` (.ci/run installs it)")
    cluster = loop_cluster
    skewed = cluster.nodes[0]
    others = cluster.nodes[1:]
    skewed.stop()
    skew_clock(skewed, lib, SKEW)
    started_ms = int(time.time() * 1000)
    from_height = max(cluster.heights(others)) + 1
    try:
        skewed.start()
        cluster.wait_for_height(from_height, nodes=[skewed], timeout=60)  # it follows the chain
        top = wait_blocks(cluster, HEIGHTS, others, timeout=120)
        checked_ms = int(time.time() * 1000)
        for h in range(from_height, top + 1):
            header = others[0].get(f"/blocks/{h}")["header"]
            assert started_ms - SLACK_MS <= header["time_ms"] <= checked_ms + SLACK_MS, (h, header)
            assert header["proposer"].lower() != skewed.spec.consensus_address.lower(), (h, header)
        assert "our clock is probably wrong" in skewed.log_path.read_text(errors="replace")
        assert_same_chain(cluster, from_height)
    finally:
        skewed.stop()
        skewed.env = None
    skewed.start()
    wait_recovered(cluster)
    wait_signing(cluster, skewed, others[0], RECOVER_TIMEOUT_S)
