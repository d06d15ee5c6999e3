"""Block time no single validator can move (issue 16, row 4): one of four validators runs with its clock
an hour, then a year, ahead (libfaketime preloaded into that node's process only). Proposer-based
timestamps make the others prevote nil for its proposals, so its rounds time out, the next proposer's
block is decided, and chain time stays with real time while the chain keeps finalising."""

from __future__ import annotations

import time

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess

from tests.support.faketime import SLACK_MS, faketime_lib, skew_clock

pytestmark = pytest.mark.slow

HEIGHTS = 16  # four turns of the skewed proposer among four validators


def log_text(node: NodeProcess) -> str:
    return node.log_path.read_text(errors="replace")


@pytest.mark.parametrize("offset", ["+1h", "+365d"])
def test_a_validator_with_a_skewed_clock_cannot_move_chain_time(make_cluster, offset: str) -> None:
    lib = faketime_lib()
    if lib is None:
        pytest.skip(
            "needs libfaketime: the Debian package `faketime` (apt-get install faketime; .ci/run installs it)"
        )
    cluster: LocalCluster = make_cluster(4)
    skewed = cluster.nodes[3]
    skew_clock(skewed, lib, offset)
    started_ms = int(time.time() * 1000)
    cluster.start()
    cluster.wait_for_height(HEIGHTS, timeout=180)
    checked_ms = int(time.time() * 1000)
    top = cluster.sync_blocks(timeout=60)
    cluster.assert_no_fork(up_to=top)

    honest = cluster.nodes[0]
    skewed_address = skewed.spec.consensus_address.lower()
    proposers = set()
    for h in range(1, HEIGHTS + 1):
        header = honest.get(f"/blocks/{h}")["header"]
        proposers.add(header["proposer"].lower())
        # chain time follows real time: never the skewed clock (an hour or a year ahead)
        assert started_ms - SLACK_MS <= header["time_ms"] <= checked_ms + SLACK_MS, (h, header, offset)
    assert skewed_address not in proposers  # its proposals were never decided
    assert len(proposers) == 3  # every honest validator proposed

    # the skewed node's clock really is ahead (its log timestamps come from it), and it says why it is ignored
    skewed_log = log_text(skewed)
    assert "our clock is probably wrong" in skewed_log
    assert "was rejected: +2/3 of the power prevoted nil" in skewed_log
    # the honest ones say whose proposals they refuse
    honest_logs = "".join(log_text(n) for n in cluster.nodes[:3])
    assert "untimely proposal" in honest_logs and "prevoting nil" in honest_logs
