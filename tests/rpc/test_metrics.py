"""Prometheus metrics of an in-process node: scraped over HTTP from its own registry."""

from __future__ import annotations

from pathlib import Path

from pocl.consensus.pocl.events import Jailed, PhaseStarted, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.consensus.pocl.records import PENALTY_SEVERITY, PHASE_NAMES, ROLE_VOTER, ROLE_WINNER
from pocl.ledger.events import Event
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import make_transfer
from pocl.node.events import BlockCommitted, NodeEvent, PoclPhaseEvent, PoclRoundEvent
from pocl.node.node import Node
from prometheus_client import REGISTRY

from tests.support.metrics_scrape import flat_samples, metrics_text
from tests.support.rpc_node import FAUCET, make_node, wait_for


async def scrape(node: Node) -> dict[str, float]:
    assert node.metrics is not None
    return flat_samples(await metrics_text(node.metrics.port))


async def test_metrics_track_the_chain(node: Node, height_at_least) -> None:
    await height_at_least(3)
    assert node.mempool is not None and node.chain is not None
    tx = make_transfer(FAUCET, "rpc-test", 0, PrivateKey.from_seed_text("m").address, 1, 10)
    assert node.mempool.add(tx.raw).ok  # held locally: shows in the mempool gauges
    m = await scrape(node)
    assert m["pocl_consensus_height"] >= 3
    assert m["pocl_p2p_peers"] == 0
    assert m["pocl_blocksync_syncing"] == 0
    assert m["pocl_mempool_size"] in (0, 1)  # may already be in a block
    assert m["pocl_consensus_blocks_total"] >= 1
    assert m["pocl_consensus_block_interval_seconds_count"] >= 1
    assert m["pocl_consensus_block_interval_seconds_sum"] > 0
    assert m["pocl_consensus_rounds_per_height_count"] >= 1
    assert m["pocl_consensus_validators"] == 1 and m["pocl_consensus_validators_power"] > 0
    # the standard process and platform collectors, on the node's own registry
    assert m["process_resident_memory_bytes"] > 0 and m["process_open_fds"] >= 1
    assert "process_cpu_seconds_total" in m and "process_max_fds" in m
    assert any(k.startswith("python_info{") for k in m)
    assert node.account_key is not None
    me = format_address(node.account_key.address)  # labelled by operator
    assert (
        m[f"pocl_consensus_missed_blocks_total{{validator={me}}}"] == 0
    )  # a lone validator signs everything
    await wait_for(lambda: node.chain.state.account(FAUCET.address).nonce == 1, 20, "tx committed")
    m = await scrape(node)
    assert m["pocl_consensus_txs_total"] >= 1
    assert m["pocl_mempool_size"] == 0 and m["pocl_mempool_size_bytes"] == 0
    # nothing leaked into the process-global registry
    assert REGISTRY.get_sample_value("pocl_consensus_height") is None
    assert not [f.name for f in REGISTRY.collect() if f.name.startswith("pocl_")]


async def test_bft_round_and_pocl_round_are_distinct_metrics(node: Node) -> None:
    """A PoCL (learning) round number never shows up as the BFT round, nor the reverse."""
    assert node.metrics is not None and node.driver is not None
    helps = {f.name: f.documentation for f in node.metrics.registry.collect()}
    assert helps["pocl_consensus_rounds"].startswith("BFT round")
    assert helps["pocl_learning_round"].startswith("Current PoCL (learning) round")
    assert not {"pocl_round", "pocl_rounds", "pocl_consensus_round"} & helps.keys()  # the ambiguous old names
    node.metrics.observe_event(committed(3, RoundOpened(41, 3, (bytes(20),))))
    m = await scrape(node)
    assert m["pocl_learning_round"] == 41
    assert m["pocl_consensus_rounds"] == node.driver.round < 41


async def test_known_labels_are_exported_at_zero(node: Node) -> None:
    """Phases, reward roles, penalty kinds and void/non-void show as 0 before their first event."""
    m = await scrape(node)
    for phase in PHASE_NAMES.values():
        assert m[f"pocl_learning_phase{{phase={phase}}}"] == 0
    for role in (ROLE_WINNER, ROLE_VOTER):
        assert m[f"pocl_learning_rewards_total{{role={role}}}"] == 0
    for kind in PENALTY_SEVERITY:
        assert m[f"pocl_learning_slashes_total{{kind={kind}}}"] == 0
    for void in ("true", "false"):
        assert m[f"pocl_learning_rounds_finalized_total{{void={void}}}"] == 0
    assert m["pocl_learning_jails_total"] == 0


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
    assert m["pocl_learning_round"] == 7 and m["pocl_learning_round_participants"] == 3
    assert m["pocl_learning_phase{phase=commit}"] == 1 and m["pocl_learning_phase{phase=vote}"] == 0
    phase = PoclPhaseEvent(4, 7, "vote")  # derived from a block's events: not folded twice
    node.metrics.observe_event(phase)
    finalized = committed(
        12,
        PhaseStarted(7, "predict", 5),
        RewardPaid(7, a, "winner", 40),
        Slashed(7, c, "bad_commit", 9, 9),
        Jailed(7, b, 3, 8),
        RoundFinalized(7, False, (a, b), bytes(32), 20),
    )
    node.metrics.observe_event(finalized)
    node.metrics.observe_event(PoclRoundEvent(12, finalized.events[1]))  # repeats the block's reward
    m = await scrape(node)
    assert m["pocl_learning_phase{phase=commit}"] == 0 and m["pocl_learning_phase{phase=done}"] == 1
    assert m["pocl_learning_round_winners"] == 2
    assert m["pocl_learning_rewards_total{role=winner}"] == 40
    assert m["pocl_learning_slashes_total{kind=bad_commit}"] == 1
    assert m["pocl_learning_jails_total"] == 1
    assert m["pocl_learning_rounds_finalized_total{void=false}"] == 1
    assert m["pocl_learning_round_duration_blocks"] == 10  # opened at 3, finalized at 12
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
        assert ma["pocl_consensus_height"] >= 2 and mb["pocl_consensus_height"] >= 2
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
