"""State sync on a live 4-process chain: a validator-miner whose home was wiped (`unsafe-reset-all`, the
damaged-node recovery of docs/operators.md) comes back with `run --state-sync` from its peers'
snapshots instead of replaying from genesis, agrees with its peers at every later height, and goes on
to sign commits and to mine. The miners are `lazy` (no TensorFlow needed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess, RpcError, wait_until
from pocl.node.home import NodeHome

pytestmark = pytest.mark.slow

INTERVAL = 4  # a snapshot every 4 blocks
ROUND_TIMEOUT_S = 180.0


def try_get(node: NodeProcess, path: str) -> Any:
    try:
        return node.get(path)
    except (OSError, RpcError):
        return None


def test_a_wiped_validator_state_syncs_back_then_validates_and_mines(
    mining_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = mining_cluster(4, behaviours=["lazy"] * 4)
    for spec in cluster.testnet.nodes:
        home = NodeHome.at(spec.home)
        config = home.load_config().replace("statesync", snapshot_interval=INTERVAL, discovery_time_s=60.0)
        home.config_path.write_text(config.to_toml())
    cluster.start()
    observer, victim = cluster.nodes[0], cluster.nodes[3]
    spec = cluster.testnet.nodes[3]
    wait_until(lambda: observer.height() >= 3 * INTERVAL + 1, ROUND_TIMEOUT_S, "a few snapshots")

    victim.stop()
    subprocess.run(
        [sys.executable, "-m", "pocl.node.cli", "unsafe-reset-all", "--home", str(victim.home), "--yes"],
        check=True,
        capture_output=True,
    )
    victim.start(["--state-sync"])
    log = victim.log_path
    wait_until(lambda: "state sync: restored height" in log.read_text(errors="replace"), 120, "the restore")
    status = victim.status()
    assert status is not None and status["earliest_block_height"] > 1  # restored, not replayed
    restored_at = status["earliest_block_height"]
    assert restored_at % INTERVAL == 0

    # Later heights: same blocks (so the same state roots, which it computed itself) and global model.
    start = observer.height()
    wait_until(lambda: victim.height() >= start + 3, 120, "the restored node to follow the chain")
    for h in range(start, start + 3):
        assert victim.block_hash(h) == observer.block_hash(h)

    def same_state() -> bool:
        a, b = observer.status(), victim.status()
        return (
            a is not None
            and b is not None
            and a["height"] == b["height"]
            and a["state_root"] == b["state_root"]
        )

    wait_until(same_state, 60, "both nodes at one height with one state root")

    def global_model(node: NodeProcess) -> str | None:
        rec = try_get(node, "/rounds/latest")
        return rec.get("global_model_hash") if rec else None

    wait_until(
        lambda: global_model(victim) is not None and global_model(victim) == global_model(observer),
        60,
        "same model",
    )

    # It validates: its consensus key signs commits again ...
    def signed_by_victim() -> bool:
        h = victim.height() - 1
        commit = try_get(observer, f"/blocks/{h}/commit")
        return bool(commit) and any(s["validator"] == spec.consensus_address for s in commit["signatures"])

    wait_until(signed_by_victim, 60, "a commit signed by the restored validator")

    # ... and mines: it commits in a round that opens after the restore.
    def mined_after_restore() -> bool:
        rec = try_get(observer, "/rounds/latest")
        if not rec or rec.get("start_height", 0) <= restored_at:
            return False
        return spec.address in (rec.get("participants") or {}).get("committers", [])

    wait_until(mined_after_restore, ROUND_TIMEOUT_S * 2, "the restored node to commit in a new round")
    top = min(cluster.heights())
    for h in range(restored_at, top + 1):  # no fork on any height the restored node holds
        assert len({n.block_hash(h) for n in cluster.nodes}) == 1, f"fork at height {h}"
