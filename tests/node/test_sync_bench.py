"""The sync benchmark end to end at a tiny size (slow: three P2P hosts and two joining nodes in one
process): a fresh node restored from a snapshot reaches the tip sooner, and with fewer bytes, than one
replaying every block from genesis; both end on the chain's state root (the script checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench import sync as bench

RUN_KEYS = (
    "model",
    "state_sync_s",
    "block_sync_s",
    "speedup",
    "state_sync_bytes",
    "block_sync_bytes",
    "disk_mb_per_1000_blocks",
    "disk_mb_per_1000_blocks_pruned",
    "p2p_bytes_ratio",
)


@pytest.mark.slow
def test_state_sync_beats_block_sync_on_a_small_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sync.json"
    args = ["--heights", "400", "--snapshot-interval", "200", "--no-p2p", "--workdir", str(tmp_path)]
    assert bench.main([*args, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["heights"] == 400
    (run,) = data["runs"]
    assert all(key in run for key in RUN_KEYS), run
    assert run["model"] == "cnn-digits" and run["rounds"] >= 50  # PoCL rounds back to back
    assert run["predict_tx_bytes"] > 100_000  # a predict tx carries cnn-digits' weights
    assert run["snapshot_height"] == 300  # restored half an interval behind the tip, not replayed
    assert run["state_sync_s"] < run["block_sync_s"]
    assert run["speedup"] > 1
    assert run["state_sync_bytes"] < run["block_sync_bytes"] / 2
    assert run["disk_mb_per_1000_blocks"] > 0 and run["p2p_bytes_ratio"] is None
    assert "speedup" in capsys.readouterr().out
