"""Following a devnet's chain over RPC: height, block interval, peers, the open round, what the network is
doing while it starts, and a report for each finalized round: the global model's accuracy and loss measured
by the devnet itself (centralised), the score matrix's statistics (distributed) and each miner's part."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pocl.node.cluster import ClusterError, LocalCluster, NodeProcess, RpcError

MAX_BLOCKS_PER_POLL = 20  # blocks fetched per poll for tx counts and intervals
MINER_POLL_S = 2.0  # while starting: how often each node's /miner is asked whether its worker is ready


@dataclasses.dataclass
class MinerRound:
    """One miner's part in a finalized round (`train_s`: its local training time from its `/miner`)."""

    address: str
    behavior: str
    eligible: bool
    committed: bool
    score_bps: int | None
    winner: bool
    gain_bps: int | None
    reward: int
    slashes: list[str]
    train_s: float | None = None
    train_loss: float | None = None
    pool_accuracy: float | None = None  # G_r on this miner's held-out pool (distributed evaluation)
    pool_loss: float | None = None


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
    loss: float | None = None  # cross-entropy of G_r on the held-out test split (reporting only)
    seed: str = ""
    distributed: dict[str, Any] = dataclasses.field(default_factory=dict)
    score_matrix: dict[str, Any] | None = None
    miners: list[MinerRound] = dataclasses.field(default_factory=list)


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
    genesis_loss: float | None = None
    genesis_eval: Evaluation | None = None
    rounds: list[RoundReport] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.monotonic)
    stage: str = ""  # what the network is doing while no round has progressed ("" once rounds run)
    behaviours: dict[str, str] = dataclasses.field(default_factory=dict)  # address -> behaviour
    workers_ready: int | None = None

    @property
    def latest_accuracy(self) -> tuple[int, float | None]:
        """(round, accuracy) of the newest global model measured: the last finalized round's, else G_0's."""
        for r in reversed(self.rounds):
            if r.accuracy is not None:
                return r.round, r.accuracy
        return 0, self.genesis_accuracy

    def label(self, address: str) -> str:
        """A short address, with its behaviour when it is not honest (`0x1234ab…cdef [knn]`)."""
        b = self.behaviours.get(address, "honest")
        return short(address) + ("" if b == "honest" else f" [{b}]")


def cross_entropy(int_logits: np.ndarray, labels: np.ndarray, frac_bits: int | None = None) -> float:
    """Mean cross-entropy of canonical integer logits (q means q / 2**frac_bits) against labels: a
    numerically stable log-softmax in float64. For reports only; it never enters state."""
    if frac_bits is None:
        from pocl.ml.model.inference import ACT_FRAC_BITS as frac_bits
    z = np.ldexp(np.asarray(int_logits, dtype=np.float64), -frac_bits)
    y = np.asarray(labels, dtype=np.int64)
    if z.shape[0] == 0:
        return 0.0
    m = z.max(axis=1, keepdims=True)
    log_norm = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(z.shape[0]), y]))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A global model measured by the devnet: on the test split (centralised) and on each miner's held-out
    pool (distributed, as each miner would measure it; `pools[i]` = (accuracy, loss, samples))."""

    accuracy: float
    loss: float
    pools: list[tuple[float, float, int]] = dataclasses.field(default_factory=list)

    @property
    def pool_accuracy(self) -> float | None:
        n = sum(c for _, _, c in self.pools)
        return sum(a * c for a, _, c in self.pools) / n if n else None

    @property
    def pool_loss(self) -> float | None:
        n = sum(c for _, _, c in self.pools)
        return sum(x * c for _, x, c in self.pools) / n if n else None


class Evaluator:
    """Accuracy and loss of a global model on the dataset's held-out test split (canonical inference) and,
    once `set_partition` is called, on each miner's held-out pool."""

    def __init__(self, dataset: str, data_dir: str | None) -> None:
        from pocl.ml.datasets import load_dataset

        self.ds = load_dataset(dataset, data_dir)
        self.shares: list[Any] = []  # ml.shards.MinerData per miner, as the nodes compute them

    def set_partition(self, miners: int, scheme: str, seed: int) -> None:
        """Each miner's data exactly as its node computes it (`ml.shards.miner_data`, same scheme and seed)."""
        from pocl.ml.shards import miner_data

        self.shares = [miner_data(self.ds, miners, i, scheme=scheme, seed=seed) for i in range(miners)]

    def evaluate(self, npz: bytes) -> Evaluation:
        """The model in `npz` measured from its exact canonical logits."""
        from pocl.ml.model.inference import predict
        from pocl.ml.model.registry import get_model
        from pocl.node.rpc.model_npz import weights_from_npz

        weights, meta = weights_from_npz(npz)
        spec = get_model(str(meta["model"]))

        def measure(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
            y = np.asarray(y)
            if not len(y):
                return 0.0, 0.0
            labels, logits = predict(spec, weights, x)
            return float(np.mean(labels == y)), cross_entropy(logits, y)

        acc, loss = measure(self.ds.x_test, self.ds.y_test)
        pools = [(*measure(s.pool_x, s.pool_y), len(s.pool_y)) for s in self.shares]
        return Evaluation(acc, loss, pools)

    def accuracy(self, npz: bytes) -> float:
        return self.evaluate(npz).accuracy


def fetch_bytes(node: NodeProcess, path: str, timeout: float = 10.0) -> bytes:
    return node.get_bytes(path, timeout)


def _stats(values: Sequence[int | float | None]) -> tuple[float | None, float | None]:
    vs = [float(v) for v in values if v is not None]
    return (statistics.fmean(vs), float(statistics.median(vs))) if vs else (None, None)


def distributed_metrics(rec: dict[str, Any], ev: Evaluation | None = None) -> dict[str, Any]:
    """The round's distributed evaluation: from its score matrix, predictors' scores (mean/median), the
    voters' accuracy matrix, G_{r-1}'s baseline on the voters' shards, voters' information, winners' gains;
    with `ev`, G_r's accuracy and loss on the miners' held-out pools (sample-weighted)."""
    scores = list((rec.get("scores") or {}).values())
    matrix = rec.get("score_matrix") or {}
    cells = [c for row in matrix.get("accuracy_bps", []) for c in row]
    gains = list((rec.get("gains") or {}).values())
    out: dict[str, Any] = {}
    for name, values in (
        ("score", scores),
        ("accuracy", cells),
        ("baseline", matrix.get("baseline_bps", [])),
        ("information", matrix.get("information", [])),
        ("winner_gain", gains),
    ):
        mean, median = _stats(values)
        out[f"{name}_mean_bps"] = mean
        out[f"{name}_median_bps"] = median
    out["predictors"] = len(matrix.get("rows", []))
    out["voters"] = len(matrix.get("columns", []))
    out["valid_voters"] = len(matrix.get("valid_voters", []))
    out["pool_accuracy"] = ev.pool_accuracy if ev else None
    out["pool_loss"] = ev.pool_loss if ev else None
    return out


def miner_rounds(
    rec: dict[str, Any],
    behaviours: dict[str, str],
    local: dict[str, dict[int, dict[str, Any]]],
    ev: Evaluation | None = None,
) -> list[MinerRound]:
    """Each known miner's part in round `rec` (local: address -> round -> its `/miner` round stats; `ev`:
    G_r measured on miner i's held-out pool, `ev.pools[i]`, in the order of `behaviours`)."""
    parts = rec["participants"]
    scores = rec.get("scores") or {}
    gains = rec.get("gains") or {}
    winners = set(rec.get("winners", []))
    addresses = list(behaviours) or list(dict.fromkeys(parts["eligible"] + parts["committers"]))
    out = []
    for i, a in enumerate(addresses):
        st = local.get(a, {}).get(int(rec["round"]), {})
        pool = ev.pools[i] if ev is not None and behaviours and i < len(ev.pools) else None
        out.append(
            MinerRound(
                address=a,
                behavior=behaviours.get(a, "honest"),
                eligible=a in parts["eligible"],
                committed=a in parts["committers"],
                score_bps=scores.get(a),
                winner=a in winners,
                gain_bps=gains.get(a),
                reward=sum(int(x["amount"]) for x in rec.get("rewards", []) if x["address"] == a),
                slashes=[s["kind"] for s in rec.get("slashes", []) if s["address"] == a],
                train_s=float(st["train_s"]) if st.get("train_s") else None,
                train_loss=float(st["train_loss"]) if st.get("train_loss") is not None else None,
                pool_accuracy=pool[0] if pool else None,
                pool_loss=pool[1] if pool else None,
            )
        )
    return out


class Follower:
    def __init__(
        self, cluster: LocalCluster, evaluator: Evaluator | None, behaviours: Sequence[str] | None = None
    ) -> None:
        self.cluster = cluster
        self.evaluator = evaluator
        self.p = Progress()
        if behaviours is not None:
            nodes = cluster.testnet.nodes
            self.p.behaviours = {nodes[i].address: b for i, b in enumerate(behaviours) if i < len(nodes)}
        self.local: dict[str, dict[int, dict[str, Any]]] = {}  # address -> round -> /miner round stats
        self._reported: set[int] = set()
        self._block_time: dict[int, int] = {}
        self._miner_polled = float("-inf")

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

    def poll_miners(self) -> int:
        """Ask each running node's `/miner`; keeps its per-round stats; returns how many workers are ready."""
        ready = 0
        for n in self.cluster.nodes:
            if not n.running:
                continue
            with contextlib.suppress(OSError, RpcError, ValueError, KeyError):
                m = n.get("/miner")
                ready += bool(m.get("worker_ready"))
                rounds = self.local.setdefault(m["address"], {})
                for st in m.get("rounds", []):
                    rounds[int(st["round"])] = st
        return ready

    def set_stage(self, stage: str, lines: list[str]) -> None:
        if stage != self.p.stage:
            self.p.stage = stage
            if stage:
                lines.append(f"devnet: {stage}")

    def poll(self) -> list[str]:
        """Refresh progress; returns plain-text lines for what happened since the last poll, in order: a
        round's result comes before the next round's first line."""
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
            ev = self.evaluator.evaluate(fetch_bytes(node, "/models/global?round=0&format=npz"))
            p.genesis_eval, p.genesis_accuracy, p.genesis_loss = ev, ev.accuracy, ev.loss
            lines.append(f"genesis model accuracy {p.genesis_accuracy:.4f} loss {p.genesis_loss:.4f}")
        try:
            rec = node.get("/rounds/latest")
        except RpcError:
            self.set_stage(
                "waiting for the first round" if p.height else "waiting for the first block", lines
            )
            return lines
        latest = int(rec["round"])
        # finalized rounds first: their result lines precede the open round's line
        for r in range(1, latest + 1):
            if r in self._reported:
                continue
            full = rec if r == latest else node.get(f"/rounds/{r}")
            if not full["final"]:
                continue
            self._reported.add(r)
            self.poll_miners()
            report = self.round_report(full)
            p.rounds.append(report)
            lines.append(describe_round(report, p))
        phase = rec["phase"]
        committers = len(rec["participants"]["committers"])
        eligible = len(rec["participants"]["eligible"])
        if (latest, phase) != (p.round, p.phase) and not rec["final"]:
            lines.append(f"height {p.height}: round {latest} {phase} ({committers}/{eligible} committed)")
        p.round, p.phase, p.committers, p.eligible = latest, phase, committers, eligible
        if not p.rounds and committers == 0:
            now = time.monotonic()
            if now - self._miner_polled >= MINER_POLL_S:
                self._miner_polled = now
                p.workers_ready = self.poll_miners()
            # a miner that does not train is ready at once (`/miner` worker_ready)
            miners = len(p.behaviours) or len(self.cluster.nodes)
            ready = p.workers_ready or 0
            self.set_stage(
                f"miners loading TensorFlow ({min(ready, miners)}/{miners} ready)"
                if ready < miners
                else f"miners training round {latest}",
                lines,
            )
        else:
            self.set_stage("", lines)
        return lines

    def round_report(self, rec: dict[str, Any]) -> RoundReport:
        start, end = rec["start_height"], rec["end_height"]
        try:
            duration = (self.block_time_ms(end) - self.block_time_ms(max(1, start - 1))) / 1000
        except (RpcError, KeyError):
            duration = float("nan")
        ev = None
        if self.evaluator is not None:
            ev = self.evaluator.evaluate(
                fetch_bytes(self.node, f"/models/global?round={rec['round']}&format=npz")
            )
        scores = rec.get("scores") or {}
        gains = rec.get("gains") or {}
        return RoundReport(
            round=rec["round"],
            void=bool(rec["void"]),
            reason=rec.get("reason", ""),
            start_height=start,
            end_height=end,
            duration_s=duration,
            participants=len(rec["participants"]["committers"]),
            eligible=len(rec["participants"]["eligible"]),
            winners=[
                {"address": w, "score_bps": scores.get(w), "gain_bps": gains.get(w)}
                for w in rec.get("winners", [])
            ],
            scores=scores,
            rewards=rec.get("rewards", []),
            slashes=[{k: v for k, v in s.items() if k != "evidence_hex"} for s in rec.get("slashes", [])],
            model_hash=rec["global_model_hash"],
            accuracy=ev.accuracy if ev else None,
            loss=ev.loss if ev else None,
            seed=rec.get("seed", ""),
            distributed=distributed_metrics(rec, ev),
            score_matrix=rec.get("score_matrix"),
            miners=miner_rounds(rec, self.p.behaviours, self.local, ev),
        )


def short(addr: str) -> str:
    return addr[:8] + "…" + addr[-4:]


def describe_round(r: RoundReport, p: Progress | None = None) -> str:
    label = p.label if p is not None else short
    acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
    loss = f" loss {r.loss:.4f}" if r.loss is not None else ""
    if r.void:
        head = f"round {r.round} VOID ({r.reason})"
    else:
        wins = ", ".join(f"{label(w['address'])} {w['score_bps']}" for w in r.winners) or "none"
        head = f"round {r.round} final: winners {wins}"
    slashes = "; ".join(f"{label(s['address'])} {s['kind']}" for s in r.slashes)
    return (
        f"{head} | participants {r.participants}/{r.eligible} | accuracy {acc}{loss} | {r.duration_s:.1f}s"
        + (f" | slashed: {slashes}" if slashes else "")
    )
