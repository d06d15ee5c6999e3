"""Fixtures for multi-process cluster tests: fast local timeouts and log tails on failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.runner import DEVNET_CHAIN_PARAMS

# The devnet's timeouts (a height takes ~0.5-1 s on a loaded 2-core machine) with a short unbonding
# period that still outlasts a PoCL round (stake stays slashable while unbonding).
FAST_PARAMS = dataclasses.replace(DEVNET_CHAIN_PARAMS, unbonding_blocks=40)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalCluster]]:
    """Factory: `make_cluster(validators=4, non_validators=0, **testnet_kwargs)`; all stopped at teardown,
    and on failure every node's log tail is printed (the full logs stay under tmp_path)."""
    clusters: list[LocalCluster] = []

    def factory(validators: int = 4, **kwargs: Any) -> LocalCluster:
        kwargs.setdefault("params", FAST_PARAMS)
        cluster = LocalCluster.create(tmp_path / f"cluster{len(clusters)}", validators, **kwargs)
        clusters.append(cluster)
        return cluster

    yield factory
    stop_clusters(clusters, request, log_lines=40)


def stop_clusters(clusters: list[LocalCluster], request: pytest.FixtureRequest, log_lines: int) -> None:
    """Stop every cluster a test made; if the test failed, print each one's log tail first."""
    failed = request.node.stash.get(_FAILED, False)
    for cluster in clusters:
        if failed:
            print(f"\n===== cluster logs ({cluster.testnet.out}) =====\n{cluster.logs(log_lines)}")
        cluster.stop_all()
