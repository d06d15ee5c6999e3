"""`devnet` end to end: exits cleanly, leaves no process, writes its report and plot; the k-NN attack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run_devnet(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pocl.node.cli", "devnet", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    """Whether the process, or anything in the process group it led, still exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_devnet_blocks_exits_cleanly_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "dn"
    proc = run_devnet("--blocks", "10", "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopped (blocks)" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["height"] >= 10 and report["stopped_by"] == "blocks"
    assert len(report["pids"]) == 4
    assert not [pid for pid in report["pids"] if alive(pid)]
    assert (out / "accuracy.png").stat().st_size > 0


def test_devnet_knn_attacker_is_caught_and_report_written(tmp_path: Path) -> None:
    out = tmp_path / "dn"
    extra = tmp_path / "copy.json"
    proc = run_devnet("--rounds", "3", "--adversary", "knn:1", "--out", str(out), "--json", str(extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert json.loads(extra.read_text()) == report
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [pid for pid in report["pids"] if alive(pid)]
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["accuracy"] is not None and 0 <= r["accuracy"] <= 1 for r in rounds)

    knn = [n["address"] for n in report["nodes"] if n["behavior"] == "knn"]
    honest = [n["address"] for n in report["nodes"] if n["behavior"] == "honest"]
    assert len(knn) == 1 and len(honest) == 3
    (attacker,) = knn
    # its k-NN predictions score best, so it is verified at once and caught: slashed, then jailed
    first = rounds[0]
    assert [(s["address"], s["kind"]) for s in first["slashes"]] == [(attacker, "prediction_fraud")]
    assert first["slashes"][0]["evidence"][0] == "prediction_fraud"
    for r in rounds:
        assert attacker not in [w["address"] for w in r["winners"]]
        assert attacker not in [x["address"] for x in r["rewards"]]
        assert not [s for s in r["slashes"] if s["address"] in honest]
    assert all(r["eligible"] == 3 for r in rounds[1:])  # jailed for the next rounds
    assert not first["void"] and len(first["winners"]) == 2
