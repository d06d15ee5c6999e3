"""Fixtures shared by every test folder: local multi-process clusters (plain validators, or devnet-style
homes with mining enabled), stopped at teardown with each node's log tail printed on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.network import create_devnet

from tests.support.clusters import FAST_PARAMS, record_outcome, stop_clusters


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    record_outcome(item, outcome.get_result())


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
    stop_clusters(clusters, request, log_lines=60)
