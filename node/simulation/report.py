"""What a simulation reports: per round, the chain's outcome in miner indices; totals per miner kind."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Slash:
    miner: int
    kind: str  # the penalty (consensus.pocl.records.PENALTY_*)
    amount: int  # stake burned


@dataclasses.dataclass(frozen=True)
class RoundReport:
    round: int
    heights: tuple[int, int]  # first COMMIT block, finalizing block
    eligible: list[int]
    participants: list[int]  # committers
    void: bool
    reason: str
    winners: list[int]  # in ranking order
    scores: dict[int, int]  # bps, per scored predictor
    rewards: dict[int, int]
    slashed: list[Slash]
    model_hash: str
    accuracy: float  # global model G_r on the held-out test set
    train_seconds: float
    seconds: float


@dataclasses.dataclass(frozen=True)
class KindTotals:
    miners: int
    rounds_won: int = 0
    rewards: int = 0
    slashed: int = 0
    penalties: int = 0


def totals_by_kind(behaviours: list[str], rounds: list[RoundReport]) -> dict[str, KindTotals]:
    out: dict[str, KindTotals] = {}
    for kind in behaviours:
        out[kind] = KindTotals(miners=sum(1 for b in behaviours if b == kind))
    for r in rounds:
        for i in r.winners:
            t = out[behaviours[i]]
            out[behaviours[i]] = dataclasses.replace(t, rounds_won=t.rounds_won + 1)
        for i, amount in r.rewards.items():
            t = out[behaviours[i]]
            out[behaviours[i]] = dataclasses.replace(t, rewards=t.rewards + amount)
        for s in r.slashed:
            t = out[behaviours[s.miner]]
            out[behaviours[s.miner]] = dataclasses.replace(
                t, slashed=t.slashed + s.amount, penalties=t.penalties + 1
            )
    return out


@dataclasses.dataclass
class SimReport:
    config: dict[str, Any]
    behaviours: list[str]
    n_train: list[int]
    initial_accuracy: float
    rounds: list[RoundReport]
    blocks: int
    centralised_accuracy_per_round: list[float] | None = None
    wall_seconds: float = 0.0

    @property
    def accuracy(self) -> list[float]:
        return [r.accuracy for r in self.rounds]

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].accuracy if self.rounds else self.initial_accuracy

    @property
    def ratio(self) -> float | None:
        central = self.centralised_accuracy_per_round
        return self.final_accuracy / central[-1] if central and central[-1] > 0 else None

    def history(self) -> dict[str, Any]:
        """The run in the devnet report's Flower-style shape (`flwr.server.History`): `[round, value]`
        series, round 0 the initial model. The simulator measures accuracy only (no loss series) and no
        held-out pools (no distributed accuracy); its distributed metrics come from the round's scores."""
        scored = [(r.round, list(r.scores.values())) for r in self.rounds]
        return {
            "losses_centralized": [],
            "metrics_centralized": {
                "accuracy": [[0, self.initial_accuracy]] + [[r.round, r.accuracy] for r in self.rounds]
            },
            "losses_distributed": [],
            "metrics_distributed": {
                "score_mean_bps": [[n, sum(v) / len(v)] for n, v in scored if v],
            },
            "metrics_distributed_fit": {
                "participants": [[r.round, len(r.participants)] for r in self.rounds],
                "winners": [[r.round, len(r.winners)] for r in self.rounds],
                "slashes": [[r.round, len(r.slashed)] for r in self.rounds],
                "train_s_total": [[r.round, r.train_seconds] for r in self.rounds],
            },
        }

    def totals(self) -> dict[str, KindTotals]:
        return totals_by_kind(self.behaviours, self.rounds)

    def to_json(self) -> dict[str, Any]:
        rounds = []
        for r in self.rounds:
            d = dataclasses.asdict(r)
            d["scores"] = {str(i): s for i, s in r.scores.items()}
            d["rewards"] = {str(i): a for i, a in r.rewards.items()}
            rounds.append(d)
        out: dict[str, Any] = {
            "config": self.config,
            "behaviours": self.behaviours,
            "n_train": self.n_train,
            "initial_accuracy": self.initial_accuracy,
            "accuracy": self.accuracy,
            "final_accuracy": self.final_accuracy,
            "winners": [r.winners for r in self.rounds],
            "rounds": rounds,
            "totals": {k: dataclasses.asdict(t) for k, t in self.totals().items()},
            "history": self.history(),
            "blocks": self.blocks,
            "wall_seconds": self.wall_seconds,
        }
        central = self.centralised_accuracy_per_round
        if central:
            out["centralised_accuracy_per_round"] = central
            out["centralised_accuracy"] = central[-1]
            out["centralised_epochs"] = self.config["epochs"] * len(central)
            out["ratio"] = self.ratio
        return out


def format_table(report: SimReport) -> str:
    """The per-round table and the totals per miner kind, as printed by scripts/simulate.py."""
    lines = ["round  blocks    acc     participants  winners (score bps)         slashed"]
    for r in report.rounds:
        winners = " ".join(f"{i}({r.scores.get(i, 0)})" for i in r.winners) or ("void" if r.void else "-")
        slashed = " ".join(f"{s.miner}:{s.kind}:{s.amount}" for s in r.slashed) or "-"
        parts = ",".join(str(i) for i in r.participants) or "-"
        lines.append(
            f"{r.round:5d}  {r.heights[0]:>3}-{r.heights[1]:<3}  {r.accuracy:.4f}  {parts:<12}  "
            f"{winners:<26}  {slashed}"
        )
    lines.append("")
    lines.append("kind         miners  rounds won    rewards    slashed  penalties")
    for kind, t in report.totals().items():
        lines.append(
            f"{kind:<12} {t.miners:6d}  {t.rounds_won:10d}  {t.rewards:9d}  {t.slashed:9d}  {t.penalties:9d}"
        )
    lines.append("")
    lines.append(f"federated accuracy {report.initial_accuracy:.4f} -> {report.final_accuracy:.4f}")
    if report.centralised_accuracy_per_round:
        lines.append(
            f"centralised accuracy {report.centralised_accuracy_per_round[-1]:.4f}; "
            f"federated / centralised = {report.ratio:.4f}"
        )
    lines.append(f"{report.blocks} blocks, {report.wall_seconds:.1f}s")
    return "\n".join(lines)
