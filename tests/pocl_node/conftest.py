"""Fixtures for PoCL cluster tests: devnet-style homes (mining enabled), logs shown on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.cluster import LocalCluster
from scripts.devnet import create_devnet

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


@pytest.fixture
def mining_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalCluster]]:
    """Factory: `mining_cluster(miners=4, behaviours=None, non_validators=0)`; stopped at teardown."""
    clusters: list[LocalCluster] = []

    def factory(
        miners: int = 4, behaviours: list[str] | None = None, non_validators: int = 0
    ) -> LocalCluster:
        cluster = create_devnet(
            tmp_path / f"net{len(clusters)}",
            miners,
            dataset="digits",
            data_dir=None,
            partition="iid",
            behaviours=behaviours or ["honest"] * miners,
            epochs=2,
            batch_size=32,
            non_validators=non_validators,
        )
        clusters.append(cluster)
        return cluster

    yield factory
    failed = request.node.stash.get(_FAILED, False)
    for cluster in clusters:
        if failed:
            print(f"\n===== cluster logs ({cluster.testnet.out}) =====\n{cluster.logs(60)}")
        cluster.stop_all()
