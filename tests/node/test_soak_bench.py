"""The soak benchmark runs end to end on a tiny duration (not a measurement: that it samples every node,
fits the slopes and writes the keys docs/benchmarks.md and the issue name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench import soak as bench


@pytest.mark.slow
def test_bench_soak_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "soak.json"
    args = ["--minutes", "0.75", "--warmup-blocks", "5", "--sample-s", "1", "--rate", "4", "--json", str(out)]
    assert bench.main(args) == 0
    data = json.loads(out.read_text())
    for key in ("rss_growth_mb_per_1000_blocks", "fds_growth", "db_growth_kb_per_block", "heights_per_min"):
        assert isinstance(data[key], int | float), key
    assert set(data["nodes"]) == {"node0", "node1", "node2", "node3"}
    for node in data["nodes"].values():
        assert node["samples_fitted"] >= 10 and node["measured_blocks"] > 0
        assert node["rows"][0]["rss_kb"] > 0 and node["rows"][-1]["fds"] > 0
    assert data["heights"][1] > data["heights"][0] and data["committed_txs"] > 0
    assert data["db_growth_kb_per_block"] > 0  # blocks are kept: the store grows
    assert "RSS growth, max" in capsys.readouterr().out


def test_slope_is_least_squares() -> None:
    assert bench.slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert bench.slope([5], [1]) == 0.0


def test_summary_leaves_the_warm_up_out_of_the_fit() -> None:
    samples = [
        {"height": h, "rss_kb": (50_000 if h < 100 else 60_000) + h, "fds": 20, "db_bytes": 1024 * h}
        for h in range(0, 2_001, 10)
    ]
    got = bench.summarize(samples, warmup_blocks=100)
    assert got["warmup_end_height"] == 100
    assert got["rss_growth_mb_per_1000_blocks"] == pytest.approx(1000 / 1024, abs=1e-3)
    assert got["db_growth_kb_per_block"] == pytest.approx(1.0)
    assert got["fds_growth"] == 0
    assert [r["height"] for r in got["rows"]] == [0, 1000, 2000]
