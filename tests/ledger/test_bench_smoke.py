"""The ledger benchmark script runs end to end on a tiny input (not timed: just that it works)."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.bench import ledger as bench


def test_bench_ledger_smoke(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ledger.json"
    assert bench.main(["--blocks", "2", "--txs-per-block", "5", "--accounts", "12", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["blocks"] == 2 and data["txs_per_block"] == 5
    for key in ("tx_per_s", "raw_verify_per_s", "ratio_to_verify", "cpu_ratio_to_verify"):
        assert data[key] > 0
    assert abs(data["ratio_to_verify"] - data["tx_per_s"] / data["raw_verify_per_s"]) < 1e-9
    assert "ratio" in capsys.readouterr().out
