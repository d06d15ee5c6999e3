"""Partitions that send no RST: a one-way partition (everything one validator sends is dropped, what it
is sent still arrives) and a black hole (everything in and out dropped silently), each longer than the
timeouts, then healed. The other three finalise meanwhile; the victim is back at the head, ready and
signing, on the same chain, and every transfer submitted meanwhile commits exactly once."""

from __future__ import annotations

import time

import pytest
from pocl.node.cluster import LocalCluster

from tests.perturb.kit import (
    LONGER_THAN_TIMEOUTS_S,
    RECOVER_TIMEOUT_S,
    TxLoad,
    assert_same_chain,
    no_bug_lines,
    wait_blocks,
    wait_recovered,
    wait_signing,
)
from tests.support.netns import Network

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _isolated_then_healed(cluster: LocalCluster, wan: Network, victim_index: int, cut: str) -> None:
    victim = cluster.nodes[victim_index]
    others = [n for n in cluster.nodes if n is not victim]
    since = min(cluster.heights())
    load = TxLoad(cluster, cut)
    if cut == "one-way":
        for other in others:
            wan.drop(wan.hosts[victim_index], wan.hosts[other.index])  # victim -> other only
    else:
        wan.black_hole(wan.hosts[victim_index])
    started = time.monotonic()
    load.submit(6, via=others)
    wait_blocks(cluster, 5, others, timeout=90)
    behind = victim.height()
    remaining = LONGER_THAN_TIMEOUTS_S - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)  # the fault itself: it must outlast the idle timeout
    assert sum(wan.fault_drops().values()) > 0
    assert victim.height() < max(n.height() for n in others), "the victim kept up through the cut"
    wan.heal()
    assert victim.running, victim.failure()
    wait_recovered(cluster, RECOVER_TIMEOUT_S)
    assert victim.height() > behind
    wait_signing(cluster, victim, others[0], RECOVER_TIMEOUT_S)
    load.wait_committed(cluster.nodes)
    assert_same_chain(cluster, since)
    no_bug_lines(victim)


def test_one_way_partition_of_a_validator_then_heal(wan_cluster: LocalCluster, wan: Network) -> None:
    _isolated_then_healed(wan_cluster, wan, 3, "one-way")


def test_black_hole_of_a_validator_then_heal(wan_cluster: LocalCluster, wan: Network) -> None:
    _isolated_then_healed(wan_cluster, wan, 1, "black-hole")
