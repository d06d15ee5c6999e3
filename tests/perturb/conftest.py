"""Shared clusters of the perturbation suite: each kind is made once and handed from test to test, so one
cluster hosts several perturbations in sequence (the suite must stay within a few minutes on 2 cores).

- `wan_cluster`: 4 validators, one per network namespace, over 50 ms ± 10 ms links losing 1 % of the
  packets (tests/support/netns.py); skipped with the reason where namespaces are not permitted.
- `loop_cluster`: 4 validators on loopback (disk, fd, schema and clock faults, which need no network).
- `mining_cluster_shared`: 4 lazy validator-miners on loopback (PoCL rounds of one block per phase, no
  TensorFlow), for kills during block sync and during each PoCL phase.

At most one of them runs at a time (`ClusterSlot`: asking for another kind stops the current one), and
the tests are ordered by the kind they use. Before each test every node is started again and the
cluster must be at one head and ready; on failure every node's log tail is printed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.network import create_devnet

from tests.perturb.kit import local_cluster, netns_cluster, revive, wait_recovered
from tests.support.clusters import TEST_FAILED
from tests.support.netns import Network, create_network, netns_unavailable_reason

SHARED_KINDS = ("wan_cluster", "loop_cluster", "mining_cluster_shared")  # the order tests run in
LOG_LINES = 50


@dataclasses.dataclass
class ClusterSlot:
    """Holds the one shared cluster that is running, and what must be closed with it."""

    root: Path
    kind: str = ""
    cluster: LocalCluster | None = None
    network: Network | None = None
    made: int = 0

    def get(self, kind: str, make: Callable[[Path], tuple[LocalCluster, Network | None]]) -> LocalCluster:
        if self.kind != kind:
            self.release()
            self.made += 1
            self.cluster, self.network = make(self.root / f"{kind}{self.made}")
            self.kind = kind
            self.cluster.start()
        assert self.cluster is not None
        return self.cluster

    def release(self) -> None:
        if self.cluster is not None:  # killed: a miner's graceful stop would first finish its round
            for node in self.cluster.nodes:
                node.kill()
        if self.network is not None:
            self.network.close()
        self.kind, self.cluster, self.network = "", None, None


@pytest.fixture(scope="package")
def cluster_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSlot]:
    slot = ClusterSlot(tmp_path_factory.mktemp("perturb"))
    try:
        yield slot
    finally:
        slot.release()


def _guard(slot: ClusterSlot, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """Every node up, one head, ready; the log tails printed if the test failed; faults lifted."""
    cluster = slot.cluster
    assert cluster is not None
    revive(cluster)
    wait_recovered(cluster)
    yield cluster
    if request.node.stash.get(TEST_FAILED, False):
        print(f"\n===== cluster logs ({cluster.testnet.out}) =====\n{cluster.logs(LOG_LINES)}")
    if slot.network is not None:
        slot.network.heal()


def _make_wan(out: Path) -> tuple[LocalCluster, Network | None]:
    net = create_network(4)
    try:
        return netns_cluster(net, out, 4), net
    except BaseException:
        net.close()
        raise


def _make_loop(out: Path) -> tuple[LocalCluster, Network | None]:
    return local_cluster(out, 4), None


def _make_mining(out: Path) -> tuple[LocalCluster, Network | None]:
    cluster = create_devnet(
        out,
        4,
        dataset="digits",
        data_dir=None,
        partition="iid",
        behaviours=["lazy"] * 4,  # reveal G_{r-1} unchanged: rounds of one block per phase, no TensorFlow
        epochs=1,
        batch_size=32,
    )
    return cluster, None


@pytest.fixture
def wan(cluster_slot: ClusterSlot) -> Network:
    """The namespaces under `wan_cluster` (request after it)."""
    assert cluster_slot.network is not None
    return cluster_slot.network


@pytest.fixture
def wan_cluster(cluster_slot: ClusterSlot, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster_slot.get("wan_cluster", _make_wan)
    yield from _guard(cluster_slot, request)


@pytest.fixture
def loop_cluster(cluster_slot: ClusterSlot, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    cluster_slot.get("loop_cluster", _make_loop)
    yield from _guard(cluster_slot, request)


@pytest.fixture
def mining_cluster_shared(
    cluster_slot: ClusterSlot, request: pytest.FixtureRequest
) -> Iterator[LocalCluster]:
    cluster_slot.get("mining_cluster_shared", _make_mining)
    yield from _guard(cluster_slot, request)


@pytest.fixture
def own_cluster_only(cluster_slot: ClusterSlot) -> None:
    """For a test that makes its own cluster: the shared one is stopped first (2 cores)."""
    cluster_slot.release()


def _kind(item: pytest.Item) -> int:
    names = getattr(item, "fixturenames", ())
    return next((i for i, kind in enumerate(SHARED_KINDS) if kind in names), len(SHARED_KINDS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    """Run this package's tests grouped by the shared cluster they use (each is made once); the other
    tests keep their places."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(str(item.fspath)).is_relative_to(here)]
    ordered = sorted((items[i] for i in slots), key=_kind)
    for i, item in zip(slots, ordered):
        items[i] = item
