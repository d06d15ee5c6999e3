"""Fixtures for multi-process cluster tests: fast local timeouts and log tails on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.params import ChainParams
from node.cluster import LocalCluster

# Fast but safe on a loaded 2-core machine: a height takes ~0.5-1 s.
FAST_PARAMS = ChainParams(
    timeout_propose_ms=1_500,
    timeout_propose_delta_ms=500,
    timeout_prevote_ms=500,
    timeout_prevote_delta_ms=250,
    timeout_precommit_ms=500,
    timeout_precommit_delta_ms=250,
    timeout_commit_ms=300,
    unbonding_blocks=40,  # must outlast a PoCL round (slashable while unbonding)
)


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
    failed = request.node.stash.get(_FAILED, False)
    for cluster in clusters:
        if failed:
            print(f"\n===== cluster logs ({cluster.testnet.out}) =====\n{cluster.logs(40)}")
        cluster.stop_all()
