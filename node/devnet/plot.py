"""The devnet's `accuracy.png`, drawn from a report (`report.json`'s `history`, `rounds`, `nodes`): the
global model's accuracy (top) and cross-entropy loss (bottom) per round on the held-out test split, with
the miners' distributed view (G_r on their held-out pools, and the mean score of the round's predictors);
rounds with slashes are marked and labelled with who was slashed for what, and the adversaries are named in
the title and the legend.

    python -m pocl.node.devnet.plot report.json accuracy.png   # redraw from a saved report
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

SLASH_COLOUR = "tab:red"


def _short(addr: str) -> str:
    return addr[:8] + "…" + addr[-4:]


def _xy(series: list[list[float]]) -> tuple[list[float], list[float]]:
    return [r for r, _ in series], [v for _, v in series]


def adversaries(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(address, behaviour) of every non-honest node."""
    return [
        (n["address"], n["behavior"])
        for n in report.get("nodes", [])
        if n.get("behavior", "honest") != "honest"
    ]


def slash_marks(report: dict[str, Any]) -> list[tuple[int, str]]:
    """(round, label) for each round with slashes; the label names each slashed miner, its behaviour and the
    penalty kind."""
    behaviour = {n["address"]: n.get("behavior", "honest") for n in report.get("nodes", [])}
    out = []
    for r in report.get("rounds", []):
        if r.get("slashes"):
            who = ", ".join(
                f"{_short(s['address'])}"
                + (
                    f" ({behaviour[s['address']]})"
                    if behaviour.get(s["address"], "honest") != "honest"
                    else ""
                )
                + f": {s['kind']}"
                for s in r["slashes"]
            )
            out.append((int(r["round"]), who))
    return out


def title(report: dict[str, Any]) -> str:
    meta = report.get("metadata", {})
    head = "PoCL devnet"
    bits = [
        str(x)
        for x in (meta.get("dataset") or report.get("dataset"), meta.get("model") or report.get("model"))
        if x
    ]
    if report.get("miners"):
        bits.append(f"{report['miners']} miners")
    if meta.get("partition") or report.get("partition"):
        bits.append(str(meta.get("partition") or report.get("partition")))
    adv = adversaries(report)
    line2 = "adversaries: " + ", ".join(f"{_short(a)} ({b})" for a, b in adv) if adv else "all miners honest"
    return f"{head}: {', '.join(bits)}\n{line2}" if bits else f"{head}\n{line2}"


def make_figure(report: dict[str, Any]) -> Any:
    """The annotated figure (matplotlib, Agg); the caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    h = report.get("history", {})
    fig, (ax_acc, ax_loss) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    xs, ys = _xy(h.get("metrics_centralized", {}).get("accuracy", []))
    ax_acc.plot(xs, ys, marker="o", label="accuracy, test split (centralised)")
    dist = h.get("metrics_distributed", {})
    xs, ys = _xy(dist.get("accuracy", []))
    if xs:
        ax_acc.plot(
            xs, ys, marker="s", linestyle="--", label="accuracy, miners' held-out pools (distributed)"
        )
    xs, ys = _xy(dist.get("score_mean_bps", []))
    if xs:
        ax_acc.plot(xs, [v / 10_000 for v in ys], marker="^", linestyle=":", label="mean predictor score")
    xs, ys = _xy(h.get("losses_centralized", []))
    ax_loss.plot(xs, ys, marker="o", color="tab:orange", label="loss, test split (centralised)")
    xs, ys = _xy(h.get("losses_distributed", []))
    if xs:
        ax_loss.plot(
            xs, ys, marker="s", linestyle="--", color="tab:brown", label="loss, miners' pools (distributed)"
        )
    marks = slash_marks(report)
    for rnd, who in marks:
        for ax in (ax_acc, ax_loss):
            ax.axvline(rnd, color=SLASH_COLOUR, linestyle="-.", alpha=0.6, gid=f"slash-round-{rnd}")
        ax_acc.annotate(
            f"slashed: {who}",
            xy=(rnd, 0.02),
            xycoords=("data", "axes fraction"),
            xytext=(-3, 0),
            textcoords="offset points",
            rotation=90,
            fontsize=7,
            color=SLASH_COLOUR,
            va="bottom",
            ha="right",
        )
    handles, _ = ax_acc.get_legend_handles_labels()
    if marks:
        handles.append(Line2D([], [], color=SLASH_COLOUR, linestyle="-.", label="round with slashes"))
    for addr, behaviour in adversaries(report):
        handles.append(Line2D([], [], color="none", marker="x", markeredgecolor=SLASH_COLOUR,
                              label=f"adversary {_short(addr)}: {behaviour}"))  # fmt: skip
    ax_acc.legend(handles=handles, loc="lower right", fontsize=7)
    ax_loss.legend(loc="upper right", fontsize=7)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_xlabel("round")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
    ax_acc.set_title(title(report), fontsize=9)
    fig.tight_layout()
    return fig


def write_plot(path: Path, report: dict[str, Any]) -> bool:
    """Write the plot; False (and nothing written) when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib.pyplot as plt

    fig = make_figure(report)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pocl.node.devnet.plot REPORT.json OUT.png", file=sys.stderr)
        return 2
    report = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    if not write_plot(Path(args[1]), report):
        print("matplotlib is not installed: pip install 'pocl[miner]'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
