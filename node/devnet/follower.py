"""Following a devnet's chain over RPC: height, block interval, peers, the open round, and a report for
each finalized round, with the global model's accuracy measured by the devnet itself."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pocl.node.cluster import ClusterError, LocalCluster, NodeProcess, RpcError

MAX_BLOCKS_PER_POLL = 20  # blocks fetched per poll for tx counts and intervals


@dataclasses.dataclass
class RoundReport:
    round: int
    void: bool
    reason: str
    start_height: int
    end_height: int
    duration_s: float
    participants: int
    eligible: int
    winners: list[dict[str, Any]]
    scores: dict[str, int | None]
    rewards: list[dict[str, Any]]
    slashes: list[dict[str, Any]]
    model_hash: str
    accuracy: float | None


@dataclasses.dataclass
class Progress:
    height: int = 0
    interval_s: float = 0.0
    peers: int = 0
    txs: int = 0
    round: int = 0
    phase: str = "-"
    committers: int = 0
    eligible: int = 0
    genesis_accuracy: float | None = None
    rounds: list[RoundReport] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.monotonic)


class Evaluator:
    """Accuracy of a global model on the dataset's held-out test split (canonical inference)."""

    def __init__(self, dataset: str, data_dir: str | None) -> None:
        from pocl.ml.datasets import load_dataset

        self.ds = load_dataset(dataset, data_dir)

    def accuracy(self, npz: bytes) -> float:
        from pocl.ml.model.registry import get_model
        from pocl.ml.training import accuracy
        from pocl.node.rpc.model_npz import weights_from_npz

        weights, meta = weights_from_npz(npz)
        return accuracy(get_model(str(meta["model"])), weights, self.ds.x_test, self.ds.y_test)


def fetch_bytes(node: NodeProcess, path: str, timeout: float = 10.0) -> bytes:
    import urllib.request

    with urllib.request.urlopen(node.rpc_url + path, timeout=timeout) as resp:
        return resp.read()


class Follower:
    def __init__(self, cluster: LocalCluster, evaluator: Evaluator | None) -> None:
        self.cluster = cluster
        self.evaluator = evaluator
        self.p = Progress()
        self._reported: set[int] = set()
        self._block_time: dict[int, int] = {}

    @property
    def node(self) -> NodeProcess:
        for n in self.cluster.nodes:
            if n.running:
                return n
        raise ClusterError("no node is running")

    def block_time_ms(self, height: int) -> int:
        if height not in self._block_time:
            self._block_time[height] = int(self.node.get(f"/blocks/{height}")["header"]["time_ms"])
        return self._block_time[height]

    def poll(self) -> list[str]:
        """Refresh progress; returns plain-text lines for what happened since the last poll."""
        lines: list[str] = []
        node = self.node
        st = node.get("/status")
        p = self.p
        if st["height"] != p.height:
            new = st["height"]
            for h in range(max(p.height + 1, new - MAX_BLOCKS_PER_POLL + 1), new + 1):
                block = node.get(f"/blocks/{h}")
                self._block_time[h] = int(block["header"]["time_ms"])
                p.txs += int(block.get("num_txs", 0))
            if new - 1 in self._block_time:
                p.interval_s = (self._block_time[new] - self._block_time[new - 1]) / 1000
            p.height = new
        p.peers = int(st.get("peers", 0)) if not isinstance(st.get("peers"), list) else len(st["peers"])
        if p.genesis_accuracy is None and self.evaluator is not None:
            p.genesis_accuracy = self.evaluator.accuracy(
                fetch_bytes(node, "/models/global?round=0&format=npz")
            )
            lines.append(f"genesis model accuracy {p.genesis_accuracy:.4f}")
        try:
            rec = node.get("/rounds/latest")
        except RpcError:
            return lines
        phase = rec["phase"]
        if (rec["round"], phase) != (p.round, p.phase):
            lines.append(
                f"height {p.height}: round {rec['round']} {phase} "
                f"({len(rec['participants']['committers'])}/{len(rec['participants']['eligible'])} committed)"
            )
        p.round, p.phase = rec["round"], phase
        p.committers = len(rec["participants"]["committers"])
        p.eligible = len(rec["participants"]["eligible"])
        for r in range(1, rec["round"] + 1):
            if r in self._reported:
                continue
            full = rec if r == rec["round"] else node.get(f"/rounds/{r}")
            if not full["final"]:
                continue
            self._reported.add(r)
            report = self.round_report(full)
            p.rounds.append(report)
            lines.append(describe_round(report))
        return lines

    def round_report(self, rec: dict[str, Any]) -> RoundReport:
        start, end = rec["start_height"], rec["end_height"]
        try:
            duration = (self.block_time_ms(end) - self.block_time_ms(max(1, start - 1))) / 1000
        except (RpcError, KeyError):
            duration = float("nan")
        acc = None
        if self.evaluator is not None:
            acc = self.evaluator.accuracy(
                fetch_bytes(self.node, f"/models/global?round={rec['round']}&format=npz")
            )
        scores = rec.get("scores") or {}
        return RoundReport(
            round=rec["round"],
            void=bool(rec["void"]),
            reason=rec.get("reason", ""),
            start_height=start,
            end_height=end,
            duration_s=duration,
            participants=len(rec["participants"]["committers"]),
            eligible=len(rec["participants"]["eligible"]),
            winners=[{"address": w, "score_bps": scores.get(w)} for w in rec.get("winners", [])],
            scores=scores,
            rewards=rec.get("rewards", []),
            slashes=[{k: v for k, v in s.items() if k != "evidence_hex"} for s in rec.get("slashes", [])],
            model_hash=rec["global_model_hash"],
            accuracy=acc,
        )


def short(addr: str) -> str:
    return addr[:8] + "…" + addr[-4:]


def describe_round(r: RoundReport) -> str:
    acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
    if r.void:
        head = f"round {r.round} VOID ({r.reason})"
    else:
        wins = ", ".join(f"{short(w['address'])} {w['score_bps']}" for w in r.winners) or "none"
        head = f"round {r.round} final: winners {wins}"
    slashes = "; ".join(f"{short(s['address'])} {s['kind']}" for s in r.slashes)
    return f"{head} | participants {r.participants}/{r.eligible} | accuracy {acc} | {r.duration_s:.1f}s" + (
        f" | slashed: {slashes}" if slashes else ""
    )
