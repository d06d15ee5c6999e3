"""The chain benchmark script runs end to end on a tiny load (not timed: just that it works)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench import chain as bench


@pytest.mark.slow
def test_bench_chain_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "chain.json"
    args = ["--duration", "6", "--warmup", "2", "--rate", "40", "--accounts", "16", "--batch", "8",
            "--timeout-commit-ms", "300", "--json", str(out)]  # fmt: skip
    assert bench.main(args) == 0
    data = json.loads(out.read_text())
    assert data["sent_txs"] == 240 and data["finalized_txs"] == 240 and data["rejected"] == {}
    assert len(set(data["final_heights"])) == 1
    for key in ("finalized_tx_per_s", "latency_p50_s", "latency_p99_s", "block_interval_s",
                "verify_floor_tx_per_s", "node_cpu_us_per_tx"):  # fmt: skip
        assert data[key] > 0, key
    assert set(data["rss_mb_max"]) == {"node0", "node1", "node2", "node3"}
    assert not any(data["tensorflow_loaded"].values())
    assert "verify floor" in capsys.readouterr().out
