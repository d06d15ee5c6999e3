"""The round simulator end to end (real TF training, canonical inference, aggregation), kept tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.simulate import SimConfig, accuracy_bps, main, median_low, simulate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_smoke_run_writes_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_png = tmp_path / "r" / "sim.json", tmp_path / "sim.png"
    rc = main(
        [
            "--dataset", "digits", "--miners", "2", "--rounds", "2", "--epochs", "1",
            "--shard-size", "20", "--train-limit", "400", "--seed", "5",
            "--json", str(out_json), "--plot", str(out_png),
        ]
    )  # fmt: skip
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert len(report["accuracy"]) == 2 and len(report["winners"]) == 2
    assert all(0.0 <= a <= 1.0 for a in report["accuracy"])
    assert report["final_accuracy"] == report["accuracy"][-1]
    assert 0.0 <= report["centralised_accuracy"] <= 1.0
    assert len(report["centralised_accuracy_per_round"]) == 2
    assert report["config"]["miners"] == 2 and report["config"]["k"] == 1
    assert all(len(w) == 1 for w in report["winners"])
    assert out_png.read_bytes().startswith(PNG_MAGIC)
    printed = capsys.readouterr().out
    assert "round   1" in printed and "centralised" in printed


def test_cheaters_are_caught(tmp_path: Path) -> None:
    cfg = SimConfig(
        miners=5, rounds=1, epochs=1, shard_size=20, train_limit=600, winners=3,
        adversary="knn:1,vote-liar:1,withhold:1", centralised=False, seed=1,
    )  # fmt: skip
    report = simulate(cfg, log=lambda _m: None)
    assert report["behaviours"] == ["honest", "honest", "knn", "vote-liar", "withhold"]
    r1 = report["rounds"][0]
    assert r1["withheld"] == [4]
    assert r1["vote_fraud"] == [3]
    # the k-NN miner's predictions are the best, so it is a candidate, and verification rejects it
    assert r1["prediction_fraud"] == [2]
    assert 2 not in r1["winners"] and 4 not in r1["winners"]
    assert "4" not in r1["scores"]


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, match in [
        (["--partition", "bogus"], "unknown partition"),
        (["--aggregation", "nope"], "unknown aggregation"),
        (["--adversary", "evil:1"], "unknown adversary"),
        (["--miners", "2", "--adversary", "knn:3"], "only 2 miners"),
        (["--miners", "2", "--winners", "3"], "--winners"),
        (["--rounds", "0"], "--rounds"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert match in capsys.readouterr().err


def test_missing_dataset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--rounds", "1"]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


def test_scoring_helpers() -> None:
    assert accuracy_bps([1, 2, 3], [1, 2, 0]) == 6666
    assert accuracy_bps([], []) == 0
    assert median_low([5, 1, 9, 7]) == 5
    assert median_low([3]) == 3
