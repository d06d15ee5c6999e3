"""Multi-process clusters in tests: fast local BFT timeouts, and log tails printed when a test fails.

The failure flag is recorded by the `pytest_runtest_makereport` hook in `tests/conftest.py` (hooks only
run from conftest files) and read back by `stop_clusters` at fixture teardown.
"""

from __future__ import annotations

import dataclasses

import pytest
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.params import DEVNET_CHAIN_PARAMS

# The devnet's timeouts (a height takes ~0.5-1 s on a loaded 2-core machine) with a short unbonding
# period that still outlasts a PoCL round (stake stays slashable while unbonding).
FAST_PARAMS = dataclasses.replace(DEVNET_CHAIN_PARAMS, unbonding_blocks=40)

TEST_FAILED = pytest.StashKey[bool]()


def record_outcome(item: pytest.Item, report: pytest.TestReport) -> None:
    """Remember whether the test body failed, for `stop_clusters`."""
    if report.when == "call":
        item.stash[TEST_FAILED] = report.failed


def stop_clusters(clusters: list[LocalCluster], request: pytest.FixtureRequest, log_lines: int) -> None:
    """Stop every cluster a test made; if the test failed, print each one's log tail first."""
    failed = request.node.stash.get(TEST_FAILED, False)
    for cluster in clusters:
        if failed:
            print(f"\n===== cluster logs ({cluster.testnet.out}) =====\n{cluster.logs(log_lines)}")
        cluster.stop_all(force=True)  # no miner drains a round at teardown
