"""Real link faults between the validators' namespaces: every link loses 5 % of its packets (nftables
`numgen random`) on top of the harness's 50 ms ± 10 ms delay, and the chain keeps finalising, with every
transfer committed exactly once and no fork."""

from __future__ import annotations

import pytest
from pocl.node.cluster import LocalCluster

from tests.perturb.kit import TxLoad, assert_same_chain, wait_blocks, wait_recovered
from tests.support.netns import Network

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LOSS_PERCENT = 5
BASE_LOSS_PERCENT = 1  # WanSpec's default, restored after


def test_five_percent_loss_and_delay_keep_finalising(wan_cluster: LocalCluster, wan: Network) -> None:
    cluster = wan_cluster
    since = min(cluster.heights())
    before = sum(wan.drop_counts().values())
    wan.set_loss(LOSS_PERCENT)
    try:
        load = TxLoad(cluster, "loss")
        load.submit(8)
        wait_blocks(cluster, 10, cluster.nodes, timeout=90)
        load.wait_committed(cluster.nodes)
        dropped = sum(wan.drop_counts().values()) - before
    finally:
        wan.set_loss(BASE_LOSS_PERCENT)
    assert dropped > 0, "the loss rule dropped nothing"
    assert all(n > 0 for n in wan.relayed_counts().values())  # every host's links crossed the delay relay
    wait_recovered(cluster)
    assert_same_chain(cluster, since)
