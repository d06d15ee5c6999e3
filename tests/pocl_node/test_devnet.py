"""`devnet` end to end: exits cleanly, leaves no process, writes its report and plot, says where first and
removes the node homes unless --keep; the k-NN attack; MNIST-shaped data trains cnn-mnist on a chain whose
limits carry its ~4.8 MB predict txs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pocl.consensus.pocl.params import PoclParams
from pocl.genesis.schema import load_genesis
from pocl.ledger.params import ChainParams

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
    # where it writes is the first line; the node homes are gone at the end, the logs kept
    assert proc.stdout.splitlines()[0].startswith(f"devnet: output in {out} ")
    assert not (out / "net").exists()
    assert sorted(p.name for p in (out / "logs").iterdir()) == [f"node{i}.log" for i in range(4)]


def test_devnet_knn_attacker_is_caught_and_report_written(tmp_path: Path) -> None:
    out = tmp_path / "dn"
    extra = tmp_path / "copy.json"
    proc = run_devnet("--rounds", "3", "--adversary", "knn:1", "--out", str(out), "--report", str(extra))
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

    # the research report: Flower-style history, per-miner metrics, partition statistics, metadata
    h = report["history"]
    assert [r for r, _ in h["losses_centralized"]] == [0, 1, 2, 3]
    assert all(0 < loss < 50 for _, loss in h["losses_centralized"])
    assert [r for r, _ in h["metrics_distributed"]["score_mean_bps"]] == [1, 2, 3]
    assert [r for r, _ in h["losses_distributed"]] == [0, 1, 2, 3]
    per = {m["address"]: m for m in report["miner_metrics"]}
    assert per[attacker]["behavior"] == "knn" and per[attacker]["rounds"][0]["slashes"] == [
        "prediction_fraud"
    ]
    assert all(per[a]["rounds"][0]["train_s"] > 0 for a in honest)  # from each miner's /miner
    parts = report["partition_stats"]["miners"]
    assert len(parts) == 4 and all(sum(p["train_labels"]) == p["train_size"] > 0 for p in parts)
    meta = report["metadata"]
    assert (
        len(meta["genesis_hash"]) == 64
        and meta["versions"]["numpy"]
        and meta["adversaries"][0]["behavior"] == "knn"
    )
    # plain progress: a round's result line comes before the next round's first line
    out_lines = proc.stdout.splitlines()
    assert "devnet: starting nodes" in out_lines
    for n in (1, 2):
        done = next(i for i, line in enumerate(out_lines) if line.startswith(f"round {n} final"))
        assert done < next(i for i, line in enumerate(out_lines) if f": round {n + 1} " in line)


def write_mnist_like(data_dir: Path, train: int = 400, test: int = 100) -> None:
    """A tiny learnable stand-in for Keras' `mnist.npz` (28x28 uint8, class c is a bar at rows 2c..2c+8): the
    `mnist` loader reads it like the real file, so the whole 28x28 path runs without downloading MNIST."""
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 * c : 2 * c + 8, 4:24] += 200
        return x, y

    (x_train, y_train), (x_test, y_test) = images(train), images(test)
    data_dir.mkdir(parents=True, exist_ok=True)
    np.savez(data_dir / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def test_devnet_mnist_trains_cnn_mnist_with_the_limits_it_needs(tmp_path: Path) -> None:
    """The README's `devnet --dataset mnist --data-dir DIR`: the chain's model is cnn-mnist, its predict txs
    (bigger than the default max_pocl_tx_bytes) are carried, rounds finalize and the model learns. With
    --json the report is stdout (progress on stderr); --keep keeps the homes."""
    data = tmp_path / "data"
    write_mnist_like(data)
    out = tmp_path / "dn"
    proc = run_devnet(
        "--dataset", "mnist", "--data-dir", str(data), "--miners", "3", "--rounds", "2", "--epochs", "1",
        "--out", str(out), "--keep", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert proc.stderr.splitlines()[0].startswith(f"devnet: output in {out} ")
    assert "model cnn-mnist" in proc.stderr
    assert not [pid for pid in report["pids"] if alive(pid)]
    genesis = load_genesis(out / "net" / "node0" / "genesis.json")  # kept: --keep
    pocl = PoclParams.from_json(genesis.pocl)
    assert pocl.model == "cnn-mnist" and pocl.input_shape == (28, 28, 1)
    assert genesis.params.max_pocl_tx_bytes >= pocl.max_predict_tx_bytes() > ChainParams().max_pocl_tx_bytes
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(len(r["winners"]) == 2 and not r["slashes"] for r in rounds)
    assert rounds[-1]["accuracy"] > report["genesis_accuracy"]
