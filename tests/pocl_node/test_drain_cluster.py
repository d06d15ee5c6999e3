"""Stopping a miner safely on a live 4-process chain: SIGTERM between its commit and its reveal finishes the
round unpenalised; a second signal stops at once and says what it costs; `miner off` then `on` loses no
round. The miners are `lazy` (they reveal G_{r-1} unchanged: never penalised, and no TensorFlow to start),
which is all that stopping safely needs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess, RpcError, wait_until

pytestmark = pytest.mark.slow

ROUND_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 90.0  # a drain (≤ one round) plus the node's shutdown
FORCED_EXIT_S = 20.0


def latest(node: NodeProcess) -> dict[str, Any] | None:
    try:
        return node.get("/rounds/latest")
    except (OSError, RpcError):
        return None


def final_round(node: NodeProcess, r: int) -> dict[str, Any] | None:
    try:
        rec = node.get(f"/rounds/{r}")
    except (OSError, RpcError):
        return None
    return rec if rec["final"] else None


def log_of(node: NodeProcess) -> str:
    return node.log_path.read_text(errors="replace")


def signal_after_commit(cluster: LocalCluster, victim: int, observer: int, sig: signal.Signals) -> int:
    """Send `sig` to `victim` once it has committed in the open round and not revealed yet, and it says it is
    draining; returns the round. A miner that revealed meanwhile stops at once: start it again, next round."""
    node = cluster.nodes[victim]
    addr = cluster.testnet.nodes[victim].address
    deadline = time.monotonic() + ROUND_TIMEOUT_S * 3
    while time.monotonic() < deadline:
        rec = latest(cluster.nodes[observer])
        parts = rec["participants"] if rec else None
        if parts and not rec["final"] and addr in parts["committers"] and addr not in parts["predictors"]:  # type: ignore[index]
            assert node.proc is not None
            node.proc.send_signal(sig)
            marker = f"draining: finishing round {rec['round']} "  # type: ignore[index]
            wait_until(
                lambda m=marker: m in log_of(node) or not node.running, 30, f"node{victim} to drain or stop"
            )
            if marker in log_of(node):
                return rec["round"]  # type: ignore[index]
            node.stop()
            node.start()
        time.sleep(0.05)
    raise AssertionError(f"never caught node{victim} between its commit and its reveal")


def slashes_of(rec: dict[str, Any], addr: str) -> list[dict[str, Any]]:
    return [s for s in rec["slashes"] if s["address"] == addr]


def test_sigterm_between_commit_and_reveal_finishes_the_round_and_a_second_signal_stops_now(
    mining_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = mining_cluster(4, behaviours=["lazy"] * 4)
    cluster.start()
    observer = cluster.nodes[0]

    # SIGTERM after the commit: the node keeps going until its vote is in, then exits 0, unpenalised
    drained = cluster.nodes[1]
    addr = cluster.testnet.nodes[1].address
    r = signal_after_commit(cluster, 1, observer=0, sig=signal.SIGTERM)
    assert drained.proc is not None
    assert drained.proc.wait(EXIT_TIMEOUT_S) == 0
    text = log_of(drained)
    line = next(x for x in text.splitlines() if f"draining: finishing round {r} (phase " in x)
    assert "send the signal again or run `pocl-node stop --force` to stop now (costs: slash 100 bps" in line
    assert f"drained: round {r} duties done" in text
    rec = wait_until(lambda: final_round(observer, r), ROUND_TIMEOUT_S, f"round {r} to finalize")
    assert addr in rec["participants"]["voters"] and slashes_of(rec, addr) == []
    drained.start()

    # a second signal while draining: stops at once and says what it costs, which the chain then charges
    forced = cluster.nodes[2]
    addr2 = cluster.testnet.nodes[2].address
    r2 = signal_after_commit(cluster, 2, observer=0, sig=signal.SIGTERM)
    assert forced.proc is not None
    t0 = time.monotonic()
    forced.proc.send_signal(signal.SIGTERM)
    assert forced.proc.wait(FORCED_EXIT_S) == 0
    assert time.monotonic() - t0 < FORCED_EXIT_S
    text = log_of(forced)
    assert f"SIGTERM: stopping now with round {r2} (phase " in text
    assert "this costs slash 100 bps" in text and "and jail for 3 rounds" in text
    rec2 = wait_until(lambda: final_round(observer, r2), ROUND_TIMEOUT_S, f"round {r2} to finalize")
    assert [s["kind"] for s in slashes_of(rec2, addr2)] == ["withhold"]


def miner_cli(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pocl.node.cli", "miner", *args, "--home", str(node.home), "--json"],
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_miner_off_then_on_loses_no_round(mining_cluster: Callable[..., LocalCluster]) -> None:
    cluster = mining_cluster(4, behaviours=["lazy"] * 4)
    cluster.start()
    observer, node = cluster.nodes[0], cluster.nodes[3]
    addr = cluster.testnet.nodes[3].address

    def committed_round() -> int | None:
        rec = latest(observer)
        parts = rec["participants"] if rec else None
        if parts and not rec["final"] and addr in parts["committers"] and addr not in parts["voters"]:  # type: ignore[index]
            return rec["round"]  # type: ignore[index]
        return None

    r = wait_until(committed_round, ROUND_TIMEOUT_S * 2, "node3 to commit to a round")
    res = miner_cli(node, "off")
    assert res.returncode == 0, res.stderr
    # it finishes the round it committed to, then unregisters, and commits to nothing after
    rec = wait_until(lambda: final_round(observer, r), ROUND_TIMEOUT_S, f"round {r} to finalize")
    assert addr in rec["participants"]["voters"] and slashes_of(rec, addr) == []
    wait_until(
        lambda: node.get("/miner/mining")["registered"] is False, ROUND_TIMEOUT_S, "node3 to unregister"
    )
    off_at = latest(observer)["round"]  # type: ignore[index]
    later = wait_until(lambda: final_round(observer, off_at + 1), ROUND_TIMEOUT_S, f"round {off_at + 1}")
    assert addr not in later["participants"]["eligible"] and addr not in later["participants"]["committers"]

    res = miner_cli(node, "on")
    assert res.returncode == 0, res.stderr
    back = wait_until(
        lambda: (rec := latest(observer)) and addr in rec["participants"]["committers"] and rec["round"],
        ROUND_TIMEOUT_S * 2,
        "node3 to commit again after `miner on`",
    )
    assert back > off_at + 1
    acct = observer.get(f"/accounts/{addr}")
    assert acct["jailed_until_round"] == 0 and acct["slashed_total"] == 0
    for n in range(1, back):
        done = final_round(observer, n)
        assert done is not None and slashes_of(done, addr) == []
