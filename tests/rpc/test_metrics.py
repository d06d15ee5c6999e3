"""Prometheus metrics of an in-process node: scraped over HTTP from its own registry."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from pocl.consensus.pocl.events import PhaseStarted, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.ledger.events import Event
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import make_transfer
from pocl.node.events import BlockCommitted, NodeEvent, PoclPhaseEvent, PoclRoundEvent
from pocl.node.node import Node
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.support.rpc_node import FAUCET, make_node, wait_for


async def scrape(node: Node) -> dict[str, float]:
    assert node.metrics is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{node.metrics.port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def test_metrics_track_the_chain(node: Node, height_at_least) -> None:
    await height_at_least(3)
    assert node.mempool is not None and node.chain is not None
    tx = make_transfer(FAUCET, "rpc-test", 0, PrivateKey.from_seed_text("m").address, 1, 10)
    assert node.mempool.add(tx.raw).ok  # held locally: shows in the mempool gauges
    m = await scrape(node)
    assert m["pocl_height"] >= 3
    assert m["pocl_peers"] == 0
    assert m["pocl_syncing"] == 0
    assert m["pocl_mempool_txs"] in (0, 1)  # may already be in a block
    assert m["pocl_blocks_total"] >= 1
    assert m["pocl_block_interval_seconds_count"] >= 1
    assert m["pocl_block_interval_seconds_sum"] > 0
    assert m["pocl_rounds_per_height_count"] >= 1
    assert node.account_key is not None
    me = format_address(node.account_key.address)  # labelled by operator
    assert m[f"pocl_missed_blocks_total{{validator={me}}}"] == 0  # a lone validator signs everything
    await wait_for(lambda: node.chain.state.account(FAUCET.address).nonce == 1, 20, "tx committed")
    m = await scrape(node)
    assert m["pocl_txs_committed_total"] >= 1
    assert m["pocl_mempool_txs"] == 0 and m["pocl_mempool_bytes"] == 0
    # nothing leaked into the process-global registry
    assert REGISTRY.get_sample_value("pocl_height") is None


def committed(height: int, *events: Event, synced: bool = True) -> BlockCommitted:
    return BlockCommitted(height, bytes(32), 0, 0, 0, 0.0, synced, (), events)


async def test_pocl_events_feed_round_gauges(node: Node) -> None:
    assert node.metrics is not None
    seen: list[NodeEvent] = []
    node.metrics.add_handler(seen.append)
    a, b, c = (bytes([i]) * 20 for i in (1, 2, 3))
    opened = committed(3, RoundOpened(7, 3, (a, b, c)))
    node.metrics.observe_event(opened)
    m = await scrape(node)
    assert m["pocl_round"] == 7 and m["pocl_round_participants"] == 3
    assert m["pocl_round_phase{phase=commit}"] == 1 and m["pocl_round_phase{phase=vote}"] == 0
    phase = PoclPhaseEvent(4, 7, "vote")  # derived from a block's events: not folded twice
    node.metrics.observe_event(phase)
    finalized = committed(
        12,
        PhaseStarted(7, "predict", 5),
        RewardPaid(7, a, "winner", 40),
        Slashed(7, c, "bad_commit", 9, 9),
        RoundFinalized(7, False, (a, b), bytes(32), 20),
    )
    node.metrics.observe_event(finalized)
    node.metrics.observe_event(PoclRoundEvent(12, finalized.events[1]))  # repeats the block's reward
    m = await scrape(node)
    assert m["pocl_round_phase{phase=commit}"] == 0 and m["pocl_round_phase{phase=done}"] == 1
    assert m["pocl_round_winners"] == 2
    assert m["pocl_rewards_total{role=winner}"] == 40
    assert m["pocl_slashes_total{kind=bad_commit}"] == 1
    assert m["pocl_rounds_finalized_total{void=false}"] == 1
    assert m["pocl_round_duration_blocks"] == 10  # opened at 3, finalized at 12
    mine = [opened, phase, finalized]
    assert [e for e in seen if any(e is x for x in mine)] == mine  # the node's own blocks come too


async def test_two_nodes_in_one_process_have_separate_registries(tmp_path: Path) -> None:
    a, b = make_node(tmp_path / "a"), make_node(tmp_path / "b")
    await a.start()
    await b.start()
    try:
        await wait_for(lambda: a.chain.height >= 2 and b.chain.height >= 2, 30, "both chains")  # type: ignore[union-attr]
        ma, mb = await scrape(a), await scrape(b)
        assert a.metrics is not None and b.metrics is not None
        assert a.metrics.port != b.metrics.port
        assert ma["pocl_height"] >= 2 and mb["pocl_height"] >= 2
    finally:
        await a.stop()
        await b.stop()


async def test_busy_metrics_port_is_a_clear_error(node: Node) -> None:
    import pytest
    from pocl.node.errors import UserError
    from pocl.node.metrics import NodeMetrics

    assert node.metrics is not None
    other = NodeMetrics(node)
    with pytest.raises(UserError, match=r"metrics: cannot listen on 127\.0\.0\.1:\d+: .*in use"):
        await other.start(f"127.0.0.1:{node.metrics.port}")
    await other.stop()
