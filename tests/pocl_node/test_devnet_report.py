"""The devnet's report, plot and live view, driven by a fake chain (no process, no TensorFlow): the
Flower-style history (centralised accuracy and loss, distributed metrics), per-miner metrics, partition
statistics computed as nodes do, run metadata, the annotated plot, the live view's start-up stages, newest
accuracy and adversary marks, and the order of the plain progress lines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pocl.node.cluster import RpcError
from pocl.node.devnet import follower as follower_mod
from pocl.node.devnet.follower import Evaluation, Follower, Progress, cross_entropy
from pocl.node.devnet.params import build_parser, parse_params

A = ["0x" + f"{i:02x}" * 20 for i in (0xA1, 0xB2, 0xC3, 0xD4)]  # miner addresses, node i = A[i]
KNN = A[3]
BEHAVIOURS = ("honest", "honest", "honest", "knn")


def participants(eligible: list[str], committers: list[str]) -> dict[str, list[str]]:
    return {
        "eligible": eligible,
        "committers": committers,
        "shard_owners": committers,
        "predictors": committers,
        "revealed": committers,
        "voters": committers,
    }


def open_round(n: int, phase: str, committers: list[str], start: int = 2) -> dict[str, Any]:
    return {
        "round": n,
        "phase": phase,
        "final": False,
        "start_height": start,
        "end_height": 0,
        "global_model_hash": "00" * 32,
        "participants": participants(A if n == 1 else A[:3], committers),
        "void": None,
        "reason": "",
        "scores": {},
        "score_matrix": None,
        "gains": {},
        "winners": [],
        "rewards": [],
        "slashes": [],
    }


def final_round(n: int, start: int, end: int) -> dict[str, Any]:
    """Round 1: the k-NN miner is caught (prediction_fraud); round 2: it is jailed (3 eligible)."""
    eligible = A if n == 1 else A[:3]
    scores = {A[0]: 8000 + n * 100, A[1]: 7000 + n * 100, A[2]: 6000}
    if n == 1:
        scores[KNN] = 9900
    winners = [A[0], A[1]]
    return {
        **open_round(n, "DONE", eligible, start),
        "participants": participants(eligible, eligible),
        "final": True,
        "end_height": end,
        "void": False,
        "seed": f"{n:02x}" * 32,
        "global_model_hash": f"{n:02x}" * 32,
        "scores": scores,
        "score_matrix": {
            "rows": list(scores),
            "columns": A[:3],
            "accuracy_bps": [[s, s, None] for s in scores.values()],
            "valid_voters": A[:3],
            "baseline_bps": [5000, 5200, None],
            "information": [100, 200, 300],
        },
        "gains": {A[0]: 900, A[1]: 500},
        "ranking": winners,
        "winners": winners,
        "rewards": [{"address": a, "role": "winner", "amount": 1000} for a in winners]
        + [{"address": A[2], "role": "voter", "amount": 10}],
        "slashes": [
            {
                "address": KNN,
                "kind": "prediction_fraud",
                "slash_bps": 5000,
                "jail_rounds": 2,
                "evidence": ["prediction_fraud", 1],
                "evidence_hex": "aa",
            }
        ]
        if n == 1
        else [],
    }


class FakeNode:
    """A node's RPC: the chain's state is the `chain` dict the test mutates."""

    def __init__(self, index: int, chain: dict[str, Any]) -> None:
        self.index = index
        self.address = A[index]
        self.chain = chain
        self.running = True
        self.rpc_url = f"http://fake{index}"
        self.asked: list[str] = []

    def get(self, path: str) -> Any:
        self.asked.append(path)
        c = self.chain
        if path == "/status":
            return {"height": c["height"], "peers": 3}
        if path.startswith("/blocks/"):
            h = int(path.rsplit("/", 1)[1])
            return {"header": {"time_ms": 1_000 * h}, "num_txs": 1 if h == 1 else 0}
        if path == "/rounds/latest":
            if c["latest"] is None:
                raise RpcError(404, "not_found", "no round yet")
            return c["latest"]
        if path.startswith("/rounds/"):
            return c["rounds"][int(path.rsplit("/", 1)[1])]
        if path == "/miner":
            return {
                "address": self.address,
                "worker_ready": c["ready"] > self.index,
                "rounds": [
                    {"round": r, "train_s": 2.0 + self.index + r / 10, "reward": 0} for r in c["trained"]
                ],
            }
        raise RpcError(404, "not_found", path)


def fake_cluster(chain: dict[str, Any]) -> Any:
    nodes = [FakeNode(i, chain) for i in range(4)]
    testnet = argparse.Namespace(
        nodes=[argparse.Namespace(index=n.index, address=n.address, rpc_url=n.rpc_url) for n in nodes],
        chain_id="pocl-devnet-test",
        genesis=argparse.Namespace(hash=b"\x11" * 32, pocl={"model": "cnn-digits"}),
        out=Path("/nonexistent/net"),
    )
    return argparse.Namespace(nodes=nodes, testnet=testnet)


class FakeEvaluator:
    """G_r's accuracy and loss on the test split, and (a little worse) on each miner's pool."""

    ACC: ClassVar = {0: 0.1, 1: 0.4, 2: 0.7}
    LOSS: ClassVar = {0: 2.3, 1: 1.8, 2: 1.3}
    POOL_ACC: ClassVar = {0: 0.05, 1: 0.35, 2: 0.65}
    POOL_LOSS: ClassVar = {0: 2.4, 1: 1.9, 2: 1.4}

    def __init__(self) -> None:
        self.shares: list[Any] = []

    def evaluate(self, npz: bytes) -> Evaluation:
        r = int(npz.decode())
        return Evaluation(
            self.ACC[r], self.LOSS[r], [(self.POOL_ACC[r], self.POOL_LOSS[r], 10 + i) for i in range(4)]
        )


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(follower_mod, "fetch_bytes", lambda _node, path: path.split("round=")[1][0].encode())
    return {"height": 0, "latest": None, "rounds": {}, "ready": 0, "trained": []}


def run_rounds(chain: dict[str, Any], f: Follower) -> list[str]:
    """Start-up, then rounds 1 and 2 finalize; each step is one poll. Returns every line, in order."""
    lines: list[str] = []
    lines += f.poll()  # height 0: no block yet
    chain.update(height=3, latest=open_round(1, "TRAIN", []))
    f._miner_polled = float("-inf")
    lines += f.poll()  # TensorFlow is loading in every miner
    chain["ready"] = 4
    f._miner_polled = float("-inf")
    lines += f.poll()  # ready, training
    chain["trained"] = [1]
    chain.update(height=20, latest=open_round(1, "COMMIT", A[:2]))
    lines += f.poll()
    # round 1 finalizes and round 2 opens between two polls: round 1's result must come first
    chain["rounds"][1] = final_round(1, 2, 30)
    chain["trained"] = [1, 2]
    chain["rounds"][2] = final_round(2, 31, 50)
    chain.update(height=31, latest=open_round(2, "TRAIN", []))
    lines += f.poll()
    chain.update(height=50, latest=chain["rounds"][2])
    lines += f.poll()
    return lines


def params(**kw: Any) -> Any:
    args = ["--miners", "4", "--adversary", "knn:1", "--rounds", "2"]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    return parse_params(build_parser().parse_args(args))


# ------------------------------------------------------------------------------------------ loss


def test_cross_entropy_is_a_stable_log_softmax_of_the_exact_logits() -> None:
    rng = np.random.default_rng(1)
    z = rng.integers(-3 * 4096, 3 * 4096, size=(50, 10))
    y = rng.integers(0, 10, 50)
    real = z / 4096.0
    naive = -np.mean(np.log(np.exp(real)[np.arange(50), y] / np.exp(real).sum(axis=1)))
    assert cross_entropy(z, y) == pytest.approx(naive, rel=1e-12)
    # saturated logits (±1024 real) overflow a naive softmax; the stable one is exact: -log(1) and 2048
    big = np.array([[1024 * 4096, -1024 * 4096], [1024 * 4096, -1024 * 4096]])
    assert cross_entropy(big, np.array([0, 1])) == pytest.approx(1024.0)
    assert np.isfinite(cross_entropy(big, np.array([0, 1])))


def test_the_evaluator_measures_accuracy_and_loss_from_canonical_inference() -> None:
    """On digits (bundled: no download) the loss is the cross-entropy of `predict`'s exact logits, and the
    accuracy its labels'; once partitioned, each miner's pool is measured the same way."""
    from pocl.ml.model.inference import predict
    from pocl.ml.model.registry import get_model
    from pocl.ml.model.weights import initial_weights
    from pocl.node.devnet.follower import Evaluator
    from pocl.node.rpc.model_npz import model_arrays, npz_bytes

    ev = Evaluator("digits", None)
    spec = get_model(ev.ds.model_name)
    w = initial_weights(spec, 3)
    ev.set_partition(3, "iid", 0)
    got = ev.evaluate(npz_bytes(model_arrays(spec, w, 0, b"\0" * 32)))
    labels, logits = predict(spec, w, ev.ds.x_test)
    assert got.accuracy == float(np.mean(labels == ev.ds.y_test))
    assert got.loss == cross_entropy(logits, ev.ds.y_test) and got.loss > 0
    assert [n for _, _, n in got.pools] == [len(s.pool_y) for s in ev.shares] and len(got.pools) == 3
    assert 0 <= got.pool_accuracy <= 1 and got.pool_loss > 0


# ------------------------------------------------------------------------------- follower, order


def test_a_rounds_result_line_comes_before_the_next_rounds_first_line(chain: dict[str, Any]) -> None:
    f = Follower(fake_cluster(chain), FakeEvaluator(), BEHAVIOURS)  # type: ignore[arg-type]
    lines = run_rounds(chain, f)
    r1 = next(i for i, s in enumerate(lines) if s.startswith("round 1 final"))
    r2_open = next(i for i, s in enumerate(lines) if "round 2 TRAIN" in s)
    assert r1 < r2_open, lines
    # the result line names the adversary by its behaviour and carries the loss
    assert f"{KNN[:8]}…{KNN[-4:]} [knn] prediction_fraud" in lines[r1]
    assert "accuracy 0.4000 loss 1.8000" in lines[r1]
    assert [r.round for r in f.p.rounds] == [1, 2]


def test_start_up_stages_are_said_while_no_commit_has_landed(chain: dict[str, Any]) -> None:
    f = Follower(fake_cluster(chain), FakeEvaluator(), BEHAVIOURS)  # type: ignore[arg-type]
    assert f.poll() == ["genesis model accuracy 0.1000 loss 2.3000", "devnet: waiting for the first block"]
    chain.update(height=3, latest=open_round(1, "TRAIN", []))
    chain["ready"] = 1
    lines = f.poll()
    assert "devnet: miners loading TensorFlow (1/4 ready)" in lines
    assert f.p.stage == "miners loading TensorFlow (1/4 ready)"
    chain["ready"] = 4
    f._miner_polled = float("-inf")
    assert f.poll() == ["devnet: miners training round 1"]
    chain.update(latest=open_round(1, "COMMIT", A[:1]))
    f.poll()
    assert f.p.stage == ""


# ------------------------------------------------------------------------------------- report


def build(chain: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    from pocl.ml.datasets import load_dataset
    from pocl.node.devnet.report import build_report, write_report

    cluster = fake_cluster(chain)
    f = Follower(cluster, FakeEvaluator(), BEHAVIOURS)  # type: ignore[arg-type]
    run_rounds(chain, f)
    report = build_report(params(), cluster, f.p, "rounds", [1, 2], ds=load_dataset("digits", None))  # type: ignore[arg-type]
    write_report(tmp_path / "report.json", report)
    return json.loads((tmp_path / "report.json").read_text())


def test_report_has_a_flower_style_history(chain: dict[str, Any], tmp_path: Path) -> None:
    h = build(chain, tmp_path)["history"]
    assert h["metrics_centralized"]["accuracy"] == [[0, 0.1], [1, 0.4], [2, pytest.approx(0.7)]]
    assert h["losses_centralized"] == [[0, 2.3], [1, 1.8], [2, 1.3]]
    # distributed: G_r on the miners' pools (sample-weighted) and the round's score matrix
    assert h["losses_distributed"][1][0] == 1 and h["losses_distributed"][1][1] == pytest.approx(1.9)
    d = h["metrics_distributed"]
    assert d["accuracy"][0] == [0, pytest.approx(0.05)]
    assert d["score_mean_bps"] == [[1, (8100 + 7100 + 6000 + 9900) / 4], [2, (8200 + 7200 + 6000) / 3]]
    assert d["score_median_bps"][1] == [2, 7200]
    assert d["baseline_mean_bps"] == [[1, 5100], [2, 5100]]
    assert d["winner_gain_mean_bps"] == [[1, 700], [2, 700]]
    fit = h["metrics_distributed_fit"]
    assert fit["slashes"] == [[1, 1], [2, 0]] and fit["participants"] == [[1, 4], [2, 3]]
    assert fit["train_s_max"][0] == [1, pytest.approx(5.1)]


def test_report_has_per_miner_metrics(chain: dict[str, Any], tmp_path: Path) -> None:
    report = build(chain, tmp_path)
    per = {m["address"]: m for m in report["miner_metrics"]}
    knn = per[KNN]
    assert knn["behavior"] == "knn"
    r1, r2 = knn["rounds"]
    assert (r1["round"], r1["score_bps"], r1["winner"], r1["slashes"], r1["committed"]) == (
        1, 9900, False, ["prediction_fraud"], True,
    )  # fmt: skip
    assert not r2["eligible"] and r2["score_bps"] is None
    assert knn["totals"]["slashes"] == ["round 1: prediction_fraud"] and knn["totals"]["rewards"] == 0
    top = per[A[0]]
    assert [(m["winner"], m["reward"], m["gain_bps"]) for m in top["rounds"]] == [(True, 1000, 900)] * 2
    assert top["rounds"][0]["train_s"] == pytest.approx(2.1)  # from its /miner
    assert top["rounds"][0]["pool_accuracy"] == pytest.approx(0.35)
    assert top["totals"]["rounds_won"] == 2
    # the per-round records carry the same, plus the raw score matrix and the round's seed
    rnd = report["rounds"][0]
    assert rnd["loss"] == 1.8 and rnd["score_matrix"]["baseline_bps"] == [5000, 5200, None]
    assert rnd["seed"] == "01" * 32 and len(rnd["miners"]) == 4


def test_partition_stats_are_the_nodes_own_split(chain: dict[str, Any], tmp_path: Path) -> None:
    from pocl.ml.datasets import load_dataset
    from pocl.ml.shards import miner_data

    report = build(chain, tmp_path)
    ds = load_dataset("digits", None)
    stats = report["partition_stats"]
    assert stats["scheme"] == "iid" and stats["seed"] == 0 and stats["holdout_fraction"] == 0.2
    for i, s in enumerate(stats["miners"]):
        md = miner_data(ds, 4, i, scheme="iid", seed=0)  # what node i's miner loads
        assert s["train_size"] == len(md.y_train) and s["pool_size"] == len(md.pool_y)
        assert s["train_labels"] == np.bincount(md.y_train, minlength=10).tolist()
        assert s["pool_labels"] == np.bincount(md.pool_y, minlength=10).tolist()
    assert sum(s["train_size"] + s["pool_size"] for s in stats["miners"]) == len(ds.y_train)
    assert report["miner_metrics"][3]["partition"]["pool_size"] == stats["miners"][3]["pool_size"]


def test_report_has_run_metadata(chain: dict[str, Any], tmp_path: Path) -> None:
    report = build(chain, tmp_path)
    meta = report["metadata"]
    assert meta["chain_id"] == "pocl-devnet-test" and meta["genesis_hash"] == "11" * 32
    assert (meta["dataset"], meta["model"], meta["partition"], meta["miners"]) == (
        "digits",
        "cnn-digits",
        "iid",
        4,
    )
    assert meta["behaviours"] == list(BEHAVIOURS)
    assert meta["adversaries"] == [{"address": KNN, "behavior": "knn"}]
    assert meta["seeds"] == {"mining": 0, "rounds": {"1": "01" * 32, "2": "02" * 32}}
    v = meta["versions"]
    assert v["python"].count(".") == 2 and v["numpy"] == np.__version__ and "tensorflow" in v and "pocl" in v
    assert meta["git_commit"] is None or len(meta["git_commit"].split("+")[0]) == 40
    assert report["final_loss"] == 1.3 and report["genesis_loss"] == 2.3


def test_a_nan_duration_is_written_as_null(tmp_path: Path) -> None:
    from pocl.node.devnet.report import to_json_text

    assert json.loads(to_json_text({"d": float("nan"), "x": [np.float64(1.5)]})) == {"d": None, "x": [1.5]}


# ------------------------------------------------------------------------------------- plot


def test_the_plot_marks_slashes_and_names_the_adversaries(chain: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from pocl.node.devnet.plot import make_figure, write_plot

    report = build(chain, tmp_path)
    fig = make_figure(report)
    try:
        ax_acc, ax_loss = fig.axes
        knn = f"{KNN[:8]}…{KNN[-4:]}"
        assert f"adversaries: {knn} (knn)" in ax_acc.get_title()
        legend = [t.get_text() for t in ax_acc.get_legend().get_texts()]
        assert f"adversary {knn}: knn" in legend and "round with slashes" in legend
        assert "accuracy, test split (centralised)" in legend
        for ax in (ax_acc, ax_loss):  # the slashed round is marked on both axes, and only it
            assert [ln.get_gid() for ln in ax.get_lines() if (ln.get_gid() or "").startswith("slash")] == [
                "slash-round-1"
            ]
        notes = [t.get_text() for t in ax_acc.texts]
        assert notes == [f"slashed: {knn} (knn): prediction_fraud"]
        (loss,) = [ln for ln in ax_loss.get_lines() if ln.get_label() == "loss, test split (centralised)"]
        assert list(loss.get_xdata()) == [0, 1, 2] and list(loss.get_ydata()) == [2.3, 1.8, 1.3]
        assert ax_loss.get_ylabel() == "cross-entropy loss"
    finally:
        plt.close(fig)
    assert write_plot(tmp_path / "accuracy.png", report)
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_can_be_redrawn_from_a_saved_report(chain: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pocl.node.devnet.plot import main

    build(chain, tmp_path)
    assert main([str(tmp_path / "report.json"), str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").stat().st_size > 0


# --------------------------------------------------------------------------------- live view


def test_the_live_view_says_what_is_happening_while_starting() -> None:
    from pocl.node.devnet.live_view import render_text

    p = Progress(stage="starting nodes")
    assert "starting nodes…" in render_text(p)
    p.stage = "miners loading TensorFlow (1/4 ready)"
    assert "miners loading TensorFlow (1/4 ready)…" in render_text(p)


def test_the_live_view_shows_the_newest_accuracy_and_marks_adversaries(chain: dict[str, Any]) -> None:
    from pocl.node.devnet.live_view import render_text

    f = Follower(fake_cluster(chain), FakeEvaluator(), BEHAVIOURS)  # type: ignore[arg-type]
    f.poll()
    assert "global acc (genesis) 0.1000" in render_text(f.p)
    run_rounds(chain, f)
    text = render_text(f.p)
    assert "global acc (round 2) 0.7000" in text and "genesis" not in text
    knn = f"{KNN[:8]}…{KNN[-4:]}"
    assert f"adversaries: {knn} [knn]" in text
    assert f"{knn} [knn] prediction_fraud" in text
    honest = f"{A[0][:8]}…{A[0][-4:]}"
    assert f"{honest} 8100" in text and f"{honest} [" not in text
    assert "1.8000" in text  # the loss column
    assert "miners loading" not in text  # the stage is gone once rounds run
