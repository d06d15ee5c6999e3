"""PoCL rounds on a live local chain: round time vs the slowest miner's training, and final accuracy.

    python -m scripts.bench.rounds [--miners 4,10] [--rounds 10] [--epochs 4] [--json PATH]

For each miner count n, a devnet of n validator-miners (separate `pocl-node run` processes, digits,
IID shares, `pocl.node.devnet` genesis settings) runs `--rounds` rounds. Per round r:

- `round_s`: chain time from the block that finalized round r-1 (for r = 1: the block before s_1)
  to the block that finalized round r (header timestamps). Miners start training as soon as G_{r-1}
  is final, so this is one full cycle: training + commit + predict + vote blocks + finalization.
- `train_s_max`: the slowest miner's local training time for round r, as each miner reports it on
  `/miner` (measured in its training worker).
- `overhead_s = round_s - train_s_max`: what the protocol adds on top of training.
- `accuracy`: G_r on the held-out digits test split (canonical inference).

Round 1 also pays every miner's TensorFlow start-up; the summary (`overhead_s_median`, `_max`) leaves
it out and says so. `centralised_accuracy` trains the same architecture from G_0 on the union of the
miners' training parts for `rounds × epochs` epochs (same batch size and learning rate) in this process,
after the chain is stopped. Prints a table; `--json` writes everything.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pocl.node.cluster import ClusterError, RpcError
from pocl.node.devnet.follower import Evaluator, Follower
from pocl.node.devnet.network import create_devnet, kill_leftovers, stop_nodes
from pocl.node.miner import DEFAULT_LR

from scripts.bench.report import write_json

POLL_S = 0.5
START_TIMEOUT_S = 180.0


def run_chain(n: int, rounds: int, epochs: int, batch: int, timeout_s: float) -> dict[str, Any]:
    evaluator = Evaluator("digits", None)
    with tempfile.TemporaryDirectory(prefix=f"pocl-bench-rounds-{n}-") as tmp:
        cluster = create_devnet(
            Path(tmp) / "net",
            n,
            dataset="digits",
            data_dir=None,
            partition="iid",
            behaviours=["honest"] * n,
            epochs=epochs,
            batch_size=batch,
        )
        pids: list[int] = []
        follower = Follower(cluster, evaluator)
        try:
            cluster.start(wait=False)
            pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
            deadline = time.monotonic() + timeout_s
            while len(follower.p.rounds) < rounds:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"{n} miners: only {len(follower.p.rounds)} rounds in {timeout_s:.0f}s"
                    )
                dead = [node.index for node in cluster.nodes if not node.running]
                if dead:
                    raise ClusterError(f"nodes {dead} died:\n{cluster.logs(20)}")
                with contextlib.suppress(OSError, RpcError, ValueError, KeyError, ClusterError):
                    for line in follower.poll():
                        print(f"  [{n} miners] {line}", flush=True)
                time.sleep(POLL_S)
            train: dict[int, list[float]] = {}
            for node in cluster.nodes:
                for st in node.get("/miner")["rounds"]:
                    train.setdefault(int(st["round"]), []).append(float(st["train_s"]))
            blocks = follower.p.height
        finally:
            stop_nodes(cluster)
            kill_leftovers(pids)
    reports = follower.p.rounds[:rounds]
    round_s = [round(r.duration_s, 3) for r in reports]
    train_max = [round(max(train.get(r.round, [0.0])), 3) for r in reports]
    return {
        "miners": n,
        "rounds": len(reports),
        "blocks": blocks,
        "round_s": round_s,
        "train_s_max": train_max,
        "overhead_s": [round(a - b, 3) for a, b in zip(round_s, train_max, strict=True)],
        "participants": [r.participants for r in reports],
        "void": [r.void for r in reports],
        "winners": [len(r.winners) for r in reports],
        "accuracy": [r.accuracy for r in reports],
        "genesis_accuracy": follower.p.genesis_accuracy,
        "final_accuracy": reports[-1].accuracy if reports else None,
    }


def centralised_accuracy(n: int, rounds: int, epochs: int, batch: int) -> float:
    """Same architecture from G_0 on the union of the n miners' training parts, rounds × epochs epochs."""
    from pocl.ml.datasets import load_dataset
    from pocl.ml.model.registry import get_model
    from pocl.ml.model.weights import initial_weights
    from pocl.ml.shards import miner_data
    from pocl.ml.training import Trainer, TrainJob, accuracy

    ds = load_dataset("digits")
    parts = [miner_data(ds, n, i, scheme="iid", seed=0) for i in range(n)]
    x = np.concatenate([p.x_train for p in parts])
    y = np.concatenate([p.y_train for p in parts])
    spec = get_model("cnn-digits")
    job = TrainJob(spec, initial_weights(spec, 0), x, y, rounds * epochs, batch, DEFAULT_LR, seed=0)
    w = Trainer().fit(job).weights
    return accuracy(spec, w, ds.x_test, ds.y_test)


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    steady = run["overhead_s"][1:] or run["overhead_s"]
    out = {
        "overhead_s_median_excl_round1": round(statistics.median(steady), 3) if steady else None,
        "overhead_s_max_excl_round1": round(max(steady), 3) if steady else None,
        "round_s_median_excl_round1": round(statistics.median(run["round_s"][1:] or run["round_s"]), 3),
    }
    if run.get("centralised_accuracy") and run.get("final_accuracy") is not None:
        out["final_vs_centralised"] = round(run["final_accuracy"] / run["centralised_accuracy"], 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--miners", default="4,10", help="comma-separated miner counts (default 4,10)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per miner count")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.miners.split(",") if c.strip()]
    runs = []
    for n in counts:
        print(f"== {n} miners, {args.rounds} rounds", flush=True)
        t0 = time.monotonic()
        run = run_chain(n, args.rounds, args.epochs, args.batch_size, args.timeout)
        run["wall_s"] = round(time.monotonic() - t0, 1)
        run["centralised_accuracy"] = centralised_accuracy(n, args.rounds, args.epochs, args.batch_size)
        run["summary"] = summarise(run)
        runs.append(run)
    print()
    print(f"{'miners':>6} {'round':>5} {'round_s':>8} {'train_max':>9} {'overhead':>8} {'acc':>7}")
    for run in runs:
        for i in range(run["rounds"]):
            acc = run["accuracy"][i]
            print(
                f"{run['miners']:>6} {i + 1:>5} {run['round_s'][i]:>8.2f} {run['train_s_max'][i]:>9.2f} "
                f"{run['overhead_s'][i]:>8.2f} {acc if acc is not None else float('nan'):>7.4f}"
            )
        s = run["summary"]
        print(
            f"  {run['miners']} miners: overhead median {s['overhead_s_median_excl_round1']}s, "
            f"max {s['overhead_s_max_excl_round1']}s (excl. round 1); final accuracy "
            f"{run['final_accuracy']:.4f} vs centralised {run['centralised_accuracy']:.4f} "
            f"({s.get('final_vs_centralised', float('nan')):.1%})"
        )
    doc = {
        "benchmark": "rounds",
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "params": {
            "rounds": args.rounds,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": DEFAULT_LR,
        },
        "runs": runs,
    }
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
