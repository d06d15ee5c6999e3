"""Fixtures for PoCL cluster tests: devnet-style homes (mining enabled), logs shown on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.runner import create_devnet

from tests.integration.conftest import (  # noqa: F401 - the hook records failures for stop_clusters
    pytest_runtest_makereport,
    stop_clusters,
)


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
