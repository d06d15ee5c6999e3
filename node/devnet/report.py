"""What a devnet run leaves behind: `report.json` (settings, nodes, every finalized round) and
`accuracy.png` (the global model's accuracy per round)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from pocl.node.cluster import LocalCluster
from pocl.node.devnet.follower import Progress
from pocl.node.devnet.params import DevnetParams


def build_report(
    params: DevnetParams, cluster: LocalCluster, p: Progress, stopped_by: str, pids: list[int]
) -> dict[str, Any]:
    accs = [r.accuracy for r in p.rounds if r.accuracy is not None]
    return {
        "chain_id": cluster.testnet.chain_id,
        "miners": params.miners,
        "dataset": params.dataset,
        "partition": params.partition,
        "adversary": params.adversary,
        "epochs": params.epochs,
        "batch_size": params.batch_size,
        "height": p.height,
        "stopped_by": stopped_by,
        "elapsed_s": round(time.monotonic() - p.started, 2),
        "genesis_accuracy": p.genesis_accuracy,
        "final_accuracy": accs[-1] if accs else None,
        "nodes": [
            {
                "index": n.index,
                "address": n.address,
                "behavior": params.behaviours[n.index],
                "rpc": n.rpc_url,
            }
            for n in cluster.testnet.nodes
        ],
        "pids": pids,
        "rounds": [dataclasses.asdict(r) for r in p.rounds],
        "homes": str(cluster.testnet.out),
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def write_plot(path: Path, p: Progress) -> bool:
    """Write the accuracy plot; False (and nothing written) when matplotlib is not installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = [0] + [r.round for r in p.rounds if r.accuracy is not None]
    ys = [p.genesis_accuracy or 0.0] + [r.accuracy for r in p.rounds if r.accuracy is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("global model accuracy (held-out test split)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title("PoCL devnet: global model accuracy per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
