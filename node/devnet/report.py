"""What a devnet run leaves behind: `report.json` and `accuracy.png` (`plot`).

`report.json` holds, besides the run's settings, nodes and every finalized round:

- `history`: Flower-style (`flwr.server.History`), each series a list of `[round, value]`, round 0 being
  the genesis model: `losses_centralized` / `metrics_centralized.accuracy` (G_r on the dataset's held-out
  test split, measured by the devnet from the exact canonical logits: a float64 log-softmax, reporting
  only), `losses_distributed` / `metrics_distributed` (G_r on the miners' held-out pools, sample-weighted,
  and the round's score matrix: predictors' scores, the voters' accuracy matrix, G_{r-1}'s baseline,
  voters' information, winners' gains, in bps) and `metrics_distributed_fit` (local training time);
- `miners`: per miner, its behaviour, partition statistics and per-round part (score, winner, gain,
  reward, slashes, local training time from its `/miner`, G_r on its pool), with totals;
- `partition`: the scheme and seed, and per miner its training and held-out pool sizes and label
  histograms, computed with `ml.shards.miner_data` exactly as the nodes do;
- `metadata`: seeds, dataset, model, partition, miners and behaviours, chain id, genesis hash, package
  versions and the git commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from pocl.ml.shards import DEFAULT_HOLDOUT_FRACTION
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.follower import Progress, RoundReport
from pocl.node.devnet.params import DevnetParams

REPORT_VERSION = 2
ALIASES = {"tensorflow": ("tensorflow-cpu", "tensorflow-macos", "tf-nightly")}  # the same import name
PACKAGES = ("numpy", "tensorflow", "scikit-learn", "matplotlib", "aiohttp", "cryptography", "msgpack")


def _series(pairs: list[tuple[int, float | None]]) -> list[list[float]]:
    return [[r, v] for r, v in pairs if v is not None]  # type: ignore[misc]


def history(p: Progress) -> dict[str, Any]:
    """The run's history in Flower's shape: `[round, value]` series, round 0 the genesis model."""
    g = p.genesis_eval
    rounds = [r for r in p.rounds if not (r.accuracy is None and r.loss is None)]
    cent_acc = [(0, p.genesis_accuracy)] + [(r.round, r.accuracy) for r in rounds]
    cent_loss = [(0, p.genesis_loss)] + [(r.round, r.loss) for r in rounds]
    dist_loss = [(0, g.pool_loss if g else None)] + [
        (r.round, r.distributed.get("pool_loss")) for r in rounds
    ]
    dist: dict[str, list[list[float]]] = {
        "accuracy": _series(
            [(0, g.pool_accuracy if g else None)]
            + [(r.round, r.distributed.get("pool_accuracy")) for r in rounds]
        )
    }
    for key in (
        "score_mean_bps",
        "score_median_bps",
        "accuracy_mean_bps",
        "accuracy_median_bps",
        "baseline_mean_bps",
        "baseline_median_bps",
        "information_mean_bps",
        "winner_gain_mean_bps",
        "winner_gain_median_bps",
    ):
        dist[key] = _series([(r.round, r.distributed.get(key)) for r in p.rounds])
    fit: dict[str, list[list[float]]] = {
        "participants": _series([(r.round, r.participants) for r in p.rounds]),
        "winners": _series([(r.round, len(r.winners)) for r in p.rounds]),
        "slashes": _series([(r.round, len(r.slashes)) for r in p.rounds]),
    }
    times = [(r.round, [m.train_s for m in r.miners if m.train_s is not None]) for r in p.rounds]
    fit["train_s_mean"] = _series([(r, float(np.mean(t)) if t else None) for r, t in times])
    fit["train_s_max"] = _series([(r, max(t) if t else None) for r, t in times])
    losses = [(r.round, [m.train_loss for m in r.miners if m.train_loss is not None]) for r in p.rounds]
    fit["train_loss_mean"] = _series([(r, float(np.mean(v)) if v else None) for r, v in losses])
    return {
        "losses_centralized": _series(cent_loss),
        "metrics_centralized": {"accuracy": _series(cent_acc)},
        "losses_distributed": _series(dist_loss),
        "metrics_distributed": dist,
        "metrics_distributed_fit": fit,
    }


def partition_stats(
    ds: Any, miners: int, scheme: str, seed: int, shares: list[Any] | None = None
) -> list[dict[str, Any]]:
    """Per miner: training and held-out pool sizes and label histograms (`ml.shards.miner_data`, as nodes)."""
    if not shares:
        from pocl.ml.shards import miner_data

        shares = [miner_data(ds, miners, i, scheme=scheme, seed=seed) for i in range(miners)]
    classes = int(ds.num_classes)

    def hist(y: np.ndarray) -> list[int]:
        return np.bincount(np.asarray(y, dtype=np.int64), minlength=classes).tolist()

    return [
        {
            "index": i,
            "train_size": len(s.y_train),
            "pool_size": len(s.pool_y),
            "train_labels": hist(s.y_train),
            "pool_labels": hist(s.pool_y),
        }
        for i, s in enumerate(shares)
    ]


def package_versions() -> dict[str, str | None]:
    """python, pocl and the main libraries (by their installed metadata: nothing is imported)."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("pocl", *PACKAGES):
        out[name] = None
        for dist in (name, *ALIASES.get(name, ())):
            with contextlib.suppress(metadata.PackageNotFoundError):
                out[name] = metadata.version(dist)
                break
    return out


def git_commit() -> str | None:
    """The source tree's git commit (with `+dirty` when it has changes), or None outside a checkout."""
    here = Path(__file__).resolve().parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "") if head else None
    return None


def mining_seed(cluster: LocalCluster) -> int:
    """The miners' seed (partition and local randomness), read from node0's config."""
    from pocl.node.config import Config, load_config

    with contextlib.suppress(Exception):
        return int(load_config(cluster.testnet.nodes[0].home / "config.toml").mining.seed)
    return Config().mining.seed


def miners_section(
    p: Progress, nodes: list[dict[str, Any]], parts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per miner: behaviour, partition statistics, per-round part and totals."""
    out = []
    for n in nodes:
        a = n["address"]
        rounds = [
            dataclasses.asdict(m) | {"round": r.round} for r in p.rounds for m in r.miners if m.address == a
        ]
        part = next((x for x in parts if x["index"] == n["index"]), {})
        out.append(
            {
                "index": n["index"],
                "address": a,
                "behavior": n["behavior"],
                "partition": {k: v for k, v in part.items() if k != "index"},
                "rounds": rounds,
                "totals": {
                    "rounds_committed": sum(1 for m in rounds if m["committed"]),
                    "rounds_won": sum(1 for m in rounds if m["winner"]),
                    "rewards": sum(m["reward"] for m in rounds),
                    "slashes": [f"round {m['round']}: {k}" for m in rounds for k in m["slashes"]],
                },
            }
        )
    return out


def build_report(
    params: DevnetParams,
    cluster: LocalCluster,
    p: Progress,
    stopped_by: str,
    pids: list[int],
    *,
    ds: Any = None,
    model: str | None = None,
    shares: list[Any] | None = None,
) -> dict[str, Any]:
    accs = [r.accuracy for r in p.rounds if r.accuracy is not None]
    losses = [r.loss for r in p.rounds if r.loss is not None]
    seed = mining_seed(cluster)
    nodes = [
        {"index": n.index, "address": n.address, "behavior": params.behaviours[n.index], "rpc": n.rpc_url}
        for n in cluster.testnet.nodes
    ]
    parts: list[dict[str, Any]] = []
    if ds is not None:
        with contextlib.suppress(Exception):  # a report without partition statistics beats none
            parts = partition_stats(ds, params.miners, params.partition, seed, shares)
    genesis = cluster.testnet.genesis
    model = model or str(genesis.pocl.get("model", "")) or None
    adversaries = [
        {"address": n["address"], "behavior": n["behavior"]} for n in nodes if n["behavior"] != "honest"
    ]
    return {
        "report_version": REPORT_VERSION,
        "chain_id": cluster.testnet.chain_id,
        "miners": params.miners,
        "dataset": params.dataset,
        "model": model,
        "partition": params.partition,
        "adversary": params.adversary,
        "epochs": params.epochs,
        "batch_size": params.batch_size,
        "height": p.height,
        "stopped_by": stopped_by,
        "elapsed_s": round(time.monotonic() - p.started, 2),
        "genesis_accuracy": p.genesis_accuracy,
        "genesis_loss": p.genesis_loss,
        "final_accuracy": accs[-1] if accs else None,
        "final_loss": losses[-1] if losses else None,
        "metadata": {
            "chain_id": cluster.testnet.chain_id,
            "genesis_hash": genesis.hash.hex(),
            "dataset": params.dataset,
            "data_dir": params.data_dir,
            "test_samples": len(ds.y_test) if ds is not None else None,
            "classes": int(ds.num_classes) if ds is not None else None,
            "model": model,
            "partition": params.partition,
            "miners": params.miners,
            "behaviours": list(params.behaviours),
            "adversaries": adversaries,
            "epochs": params.epochs,
            "batch_size": params.batch_size,
            "seeds": {
                "mining": seed,  # partition, held-out split and local training randomness in every miner
                "rounds": {str(r.round): r.seed for r in p.rounds if r.seed},  # each round's on-chain seed
            },
            "versions": package_versions(),
            "git_commit": git_commit(),
        },
        "history": history(p),
        "partition_stats": {
            "scheme": params.partition,
            "seed": seed,
            "holdout_fraction": DEFAULT_HOLDOUT_FRACTION,
            "miners": parts,
        },
        "nodes": nodes,
        "miner_metrics": miners_section(p, nodes, parts),
        "pids": pids,
        "rounds": [dataclasses.asdict(r) for r in p.rounds],
        "homes": str(cluster.testnet.out),
    }


def to_json_text(report: dict[str, Any]) -> str:
    """The report as strict JSON (a NaN, e.g. an unknown round duration, becomes null)."""
    return json.dumps(_clean(report), indent=2, allow_nan=False)


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json_text(report) + "\n", encoding="utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_plot(path: Path, source: Progress | dict[str, Any]) -> bool:
    """Write the annotated accuracy/loss plot (`plot.write_plot`); False (nothing written) without
    matplotlib. `source`: a report dict, or a Progress (its history only)."""
    from pocl.node.devnet.plot import write_plot as write

    report = (
        source
        if isinstance(source, dict)
        else {"history": history(source), "rounds": [dataclasses.asdict(r) for r in source.rounds]}
    )
    return write(path, report)


__all__ = ["RoundReport", "build_report", "history", "partition_stats", "write_plot", "write_report"]
