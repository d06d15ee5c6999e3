"""The simulator's PNG: accuracy per round (federated vs centralised) and rounds won per miner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pocl.node.simulation.report import SimReport


def write_plot(report: SimReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report.config
    rounds = list(range(1, len(report.rounds) + 1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot([0, *rounds], [report.initial_accuracy, *report.accuracy], marker="o", label="PoCL federated")
    if report.centralised_accuracy_per_round:
        ax1.plot(
            rounds, report.centralised_accuracy_per_round, marker="s", linestyle="--",
            label=f"centralised (epochs = round × {cfg['epochs']})",
        )  # fmt: skip
    ax1.set_xlabel("round")
    ax1.set_ylabel("test accuracy")
    ax1.set_ylim(0, 1)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right")
    ax1.set_title(f"{cfg['dataset']}: {cfg['miners']} miners, K={cfg['k']}, {cfg['partition']}")
    wins = np.zeros(len(report.behaviours), dtype=int)
    for r in report.rounds:
        for i in r.winners:
            wins[i] += 1
    ax2.bar(range(len(wins)), wins)
    ax2.set_xticks(range(len(wins)), [f"{i}\n{b}" for i, b in enumerate(report.behaviours)], fontsize=8)
    ax2.set_ylabel("rounds won")
    ax2.set_title("winners per miner")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
