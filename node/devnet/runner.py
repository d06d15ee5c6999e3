#!/usr/bin/env python3
"""One-command local PoCL network: N validator-miners learning `digits` together (DESIGN §7).

    scripts/devnet.py                      # 4 miners, 5 rounds, live table, report + plot
    pocl-node devnet --miners 4 --rounds 3 --adversary knn:1 --json report.json

Generates a testnet (`node.testnet`) whose genesis carries the devnet `pocl` section below, enables
mining in every home with its own data share (`--shard i/N`, same partition in every miner), starts
the nodes as separate `pocl-node run` processes (`node.cluster`), sends a few demo transfers, and
follows the chain over RPC: height, block interval, peers, round, phase, participants, winners with
scores, and the global model's accuracy on the held-out digits test split, which the devnet computes
itself from `/models/global?format=npz` with canonical inference. It stops after `--rounds` rounds
(or `--blocks`/`--duration`, or Ctrl-C), writes `report.json` and `accuracy.png` into `--out`, and
stops every process it started (also on Ctrl-C and errors).

Without a terminal (CI, tests) it prints plain progress lines instead of the live table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pocl.ledger.params import ChainParams
from pocl.node.cluster import ClusterError, LocalCluster, NodeProcess, RpcError
from pocl.node.config import Config, load_config, write_config

DEFAULT_MINERS = 4
DEFAULT_ROUNDS = 5
DEFAULT_EPOCHS = 4
TRAIN_BLOCKS_PER_MINER = 40  # COMMIT's maximum length scales with the start-up load
DEFAULT_BATCH = 32
POLL_S = 0.5
MAX_BLOCKS_PER_POLL = 20  # blocks fetched per poll for tx counts and intervals
START_TIMEOUT_S = 120.0
DEMO_TRANSFERS = 3
DEMO_AMOUNT = 1_000

# Fast local BFT: a height every ~0.5 s on a loaded 2-core machine.
DEVNET_CHAIN_PARAMS = ChainParams(
    timeout_propose_ms=1_500,
    timeout_propose_delta_ms=500,
    timeout_prevote_ms=500,
    timeout_prevote_delta_ms=250,
    timeout_precommit_ms=500,
    timeout_precommit_delta_ms=250,
    timeout_commit_ms=300,
    unbonding_blocks=400,  # >= the longest round (PoclParams.check_chain_params)
)


def devnet_pocl(miners: int) -> dict[str, Any]:
    """The devnet genesis `pocl` section.

    Phases close early once every miner has acted, so long maximum phases cost nothing when all are
    prompt; they leave room for the first round (each miner's TensorFlow start-up: ~20-45 s when 4
    start at once on 2 cores, ~90 s for 10, hence 40 blocks per miner) and for a miner restarting
    mid-round. K = ceil(N/2) winners, as in
    `scripts/simulate.py`; every scoring shard is verified with 4 miners.
    """
    return {
        "first_round_height": 2,
        "train_blocks": TRAIN_BLOCKS_PER_MINER * max(2, miners),
        "predict_blocks": 30,
        "vote_blocks": 30,
        "winners": max(2, math.ceil(miners / 2)),
        "verify_shards": 3,
    }


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
        from pocl.node.pocl_rpc import weights_from_npz

        weights, meta = weights_from_npz(npz)
        return accuracy(get_model(str(meta["model"])), weights, self.ds.x_test, self.ds.y_test)


def fetch_bytes(node: NodeProcess, path: str, timeout: float = 10.0) -> bytes:
    import urllib.request

    with urllib.request.urlopen(node.rpc_url + path, timeout=timeout) as resp:
        return resp.read()


# --------------------------------------------------------------------------- setup


def create_devnet(
    out: Path,
    miners: int,
    *,
    dataset: str,
    data_dir: str | None,
    partition: str,
    behaviours: list[str],
    epochs: int,
    batch_size: int,
    pocl_overrides: dict[str, Any] | None = None,
    params: ChainParams = DEVNET_CHAIN_PARAMS,
    non_validators: int = 0,
) -> LocalCluster:
    """Testnet homes with mining enabled; node i mines share i/N with `behaviours[i]`."""
    pocl = {**devnet_pocl(miners), **(pocl_overrides or {})}
    longest = sum(int(pocl[k]) for k in ("train_blocks", "predict_blocks", "vote_blocks"))
    params = dataclasses.replace(params, unbonding_blocks=max(params.unbonding_blocks, 2 * longest))
    mining = {
        "enabled": True,
        "dataset": dataset,
        "partition": partition,
        "num_shards": miners,
        "epochs": epochs,
        "batch_size": batch_size,
    }
    if data_dir:
        mining["data_dir"] = str(Path(data_dir).resolve())
    cfg = Config().replace("mining", **mining).replace("metrics", enabled=False)
    cluster = LocalCluster.create(
        out, miners, non_validators=non_validators, config=cfg, params=params, pocl=pocl
    )
    for node in cluster.nodes:
        path = node.home / "config.toml"
        conf = load_config(path)
        if node.index < miners:
            conf = conf.replace("mining", shard=node.index, behavior=behaviours[node.index])
        else:
            conf = conf.replace("mining", enabled=False)
        write_config(path, conf)
    return cluster


def send_demo_transfers(cluster: LocalCluster, count: int = DEMO_TRANSFERS) -> list[str]:
    """A few faucet transfers, so the first blocks carry transactions."""
    from pocl.ledger.storage.keystore import load_key
    from pocl.ledger.tx import make_transfer

    faucet = load_key(cluster.testnet.faucet_key_path, None)
    genesis = cluster.testnet.genesis
    node = cluster.nodes[0]
    acct = node.get(f"/accounts/0x{faucet.address.hex()}")
    nonce = int(acct.get("nonce", 0))
    hashes = []
    for i in range(count):
        to = bytes.fromhex(cluster.testnet.nodes[i % len(cluster.testnet.nodes)].address[2:])
        stx = make_transfer(faucet, genesis.chain_id, nonce + i, to, DEMO_AMOUNT, genesis.params.min_fee)
        hashes.append(node.submit_tx(stx.raw))
    return hashes


def stop_nodes(cluster: LocalCluster) -> None:
    """SIGTERM every node at once, then wait for each (a node takes seconds to stop its miner)."""
    for node in cluster.nodes:
        if node.running and node.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)
    cluster.stop_all()


def kill_leftovers(pids: list[int], wait_s: float = 15.0) -> list[int]:
    """Each node runs in its own session (process group = its pid) with its training worker: make
    sure nothing of a group we started survives (a node that had to be SIGKILLed leaves its worker).
    Waits until the groups are gone; returns those still present after `wait_s` (none expected)."""
    deadline = time.monotonic() + wait_s
    left = list(pids)
    while left:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        time.sleep(0.1)
        left = [pid for pid in left if _group_alive(pid)]
        if time.monotonic() > deadline:
            break
    return left


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- following the chain


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


def render(p: Progress, title: str) -> Any:
    from rich.console import Group
    from rich.table import Table

    elapsed = time.monotonic() - p.started
    status = Table.grid(padding=(0, 2))
    status.add_row(
        f"[bold]{title}[/bold]",
        f"height [bold]{p.height}[/bold]",
        f"interval {p.interval_s:.2f}s",
        f"peers {p.peers}",
        f"txs {p.txs}",
        f"elapsed {elapsed:.0f}s",
    )
    status.add_row(
        "",
        f"round [bold]{p.round}[/bold]",
        f"phase [bold]{p.phase}[/bold]",
        f"committed {p.committers}/{p.eligible}",
        "genesis acc " + (f"{p.genesis_accuracy:.4f}" if p.genesis_accuracy is not None else "-"),
        "",
    )
    table = Table(title="finalized rounds", expand=False)
    for col in ("round", "participants", "winners (score bps)", "slashed", "accuracy", "duration"):
        table.add_column(col)
    for r in p.rounds[-12:]:
        wins = (
            "void: " + r.reason
            if r.void
            else ", ".join(f"{short(w['address'])} {w['score_bps']}" for w in r.winners)
        )
        table.add_row(
            str(r.round),
            f"{r.participants}/{r.eligible}",
            wins,
            ", ".join(f"{short(s['address'])} {s['kind']}" for s in r.slashes) or "-",
            f"{r.accuracy:.4f}" if r.accuracy is not None else "-",
            f"{r.duration_s:.1f}s",
        )
    return Group(status, table)


# --------------------------------------------------------------------------- outputs


def write_plot(path: Path, p: Progress) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0] + [r.round for r in p.rounds if r.accuracy is not None]
    ys = [p.genesis_accuracy or 0.0] + [r.accuracy for r in p.rounds if r.accuracy is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("global model accuracy (held-out test split)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title("PoCL devnet: global model accuracy per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_report(
    args: argparse.Namespace,
    cluster: LocalCluster,
    p: Progress,
    stopped_by: str,
    behaviours: list[str],
    pids: list[int],
) -> dict[str, Any]:
    accs = [r.accuracy for r in p.rounds if r.accuracy is not None]
    return {
        "chain_id": cluster.testnet.chain_id,
        "miners": args.miners,
        "dataset": args.dataset,
        "partition": args.partition,
        "adversary": args.adversary,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "height": p.height,
        "stopped_by": stopped_by,
        "elapsed_s": round(time.monotonic() - p.started, 2),
        "genesis_accuracy": p.genesis_accuracy,
        "final_accuracy": accs[-1] if accs else None,
        "nodes": [
            {"index": n.index, "address": n.address, "behavior": behaviours[n.index], "rpc": n.rpc_url}
            for n in cluster.testnet.nodes
        ],
        "pids": pids,
        "rounds": [dataclasses.asdict(r) for r in p.rounds],
        "homes": str(cluster.testnet.out),
    }


# --------------------------------------------------------------------------- main


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--miners", type=int, default=DEFAULT_MINERS, help="validator-miners (default 4)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after R finalized rounds (default 5)")
    parser.add_argument("--blocks", type=int, default=None, help="stop at height N")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--dataset", default="digits", help="digits (default) | mnist | cifar10 | npz:PATH")
    parser.add_argument("--data-dir", default=None, help="directory with dataset files")
    parser.add_argument(
        "--partition", default="iid", help="iid | dirichlet:A | shards:K | decreasing | grouped"
    )
    parser.add_argument("--adversary", default=None, metavar="KIND:COUNT[,...]", help="e.g. knn:1")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="local epochs per round")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--out", type=Path, default=None, help="directory for homes, logs, report (new)")
    parser.add_argument(
        "--json", dest="json_path", type=Path, default=None, help="also write the report here"
    )
    parser.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    return parser


class DevnetError(Exception):
    """A user mistake or a devnet that could not run; one line for the user."""


def check_args(args: argparse.Namespace) -> list[str]:
    from pocl.ml.adversary import AdversaryError, assign_behaviours, parse_adversaries
    from pocl.ml.partition import PartitionError, parse_scheme

    if args.miners < 2:
        raise DevnetError("--miners must be at least 2 (a round needs 2 participants)")
    for name in ("rounds", "blocks", "epochs", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise DevnetError(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration is not None and not args.duration > 0:
        raise DevnetError("--duration must be positive")
    if args.rounds is None and args.blocks is None and args.duration is None:
        args.rounds = DEFAULT_ROUNDS
    try:
        parse_scheme(args.partition)
        behaviours = assign_behaviours(args.miners, parse_adversaries(args.adversary))
    except (PartitionError, AdversaryError) as exc:
        raise DevnetError(str(exc)) from None
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        raise DevnetError(f"--out {args.out} exists and is not empty")
    return [b.kind for b in behaviours]


def run_devnet(args: argparse.Namespace) -> int:
    behaviours = check_args(args)
    try:
        evaluator = Evaluator(args.dataset, args.data_dir)
    except Exception as exc:
        raise DevnetError(f"dataset {args.dataset}: {exc}") from None
    out = args.out or Path(tempfile.mkdtemp(prefix="pocl-devnet-"))
    out.mkdir(parents=True, exist_ok=True)
    live = sys.stdout.isatty() and not args.plain
    say = print if not live else (lambda *_a, **_k: None)
    say(
        f"devnet: {args.miners} miners ({', '.join(behaviours)}) on {args.dataset}, homes in {out}",
        flush=True,
    )
    # A devnet's keys are throwaway and unencrypted by design: say so once instead of once per key file.
    logging.getLogger("pocl.keystore").setLevel(logging.ERROR)
    say("devnet: keys are UNENCRYPTED throwaway devnet keys (never reuse them)", flush=True)
    cluster = create_devnet(
        out / "net",
        args.miners,
        dataset=args.dataset,
        data_dir=args.data_dir,
        partition=args.partition,
        behaviours=behaviours,
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    pids: list[int] = []
    stopped_by = "error"
    follower = Follower(cluster, evaluator)

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored
    try:
        cluster.start(wait=False)
        pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        _wait_up(cluster)
        with contextlib.suppress(Exception):
            send_demo_transfers(cluster)
        say("devnet: nodes up; following the chain (Ctrl-C stops)", flush=True)
        stopped_by = _follow(args, cluster, follower, live, say)
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    finally:
        # a second Ctrl-C / SIGTERM must not interrupt the clean-up itself
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            stop_nodes(cluster)
        kill_leftovers(pids)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    p = follower.p
    report = build_report(args, cluster, p, stopped_by, behaviours, pids)
    report_path = out / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_path = out / "accuracy.png"
    write_plot(plot_path, p)
    if live:
        from rich.console import Console

        Console().print(render(p, "devnet"))
    final = report["final_accuracy"]
    print(
        f"devnet: stopped ({stopped_by}) at height {p.height} after {len(p.rounds)} rounds; "
        f"genesis accuracy {_fmt(p.genesis_accuracy)} -> final {_fmt(final)}"
    )
    print(f"devnet: report {report_path}, plot {plot_path}, logs {out / 'net'}/node*/node.log")
    if stopped_by == "node_died":
        return 1
    return 130 if stopped_by == "interrupted" else 0


def _fmt(v: float | None) -> str:
    return f"{v:.4f}" if v is not None else "-"


def _wait_up(cluster: LocalCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    for node in cluster.nodes:
        while node.status() is None:
            if not node.running:
                raise DevnetError(f"node{node.index} exited at start:\n{node.log_tail(20)}")
            if time.monotonic() > deadline:
                raise DevnetError(f"node{node.index} RPC did not come up in {START_TIMEOUT_S:.0f}s")
            time.sleep(POLL_S)


def _done(args: argparse.Namespace, p: Progress) -> str | None:
    if args.rounds is not None and len(p.rounds) >= args.rounds:
        return "rounds"
    if args.blocks is not None and p.height >= args.blocks:
        return "blocks"
    if args.duration is not None and time.monotonic() - p.started >= args.duration:
        return "duration"
    return None


def _follow(args: argparse.Namespace, cluster: LocalCluster, f: Follower, live: bool, say: Any) -> str:
    title = "devnet"
    ctx: Any = contextlib.nullcontext()
    if live:
        from rich.live import Live

        ctx = Live(render(f.p, title), refresh_per_second=4, transient=True)
    last_height_line = 0
    troubles: set[str] = set()
    with ctx as display:
        while True:
            dead = [n.index for n in cluster.nodes if not n.running]
            if dead:
                say(f"devnet: node(s) {dead} exited unexpectedly; see their node.log", flush=True)
                return "node_died"
            try:
                for line in f.poll():
                    say(line, flush=True)
            except (OSError, RpcError, ValueError, KeyError, ClusterError) as exc:
                # a node busy or restarting: try again next poll (say so once per kind of trouble)
                text = f"{type(exc).__name__}: {exc}"
                if text not in troubles:
                    troubles.add(text)
                    say(f"devnet: poll failed ({text}); retrying", flush=True)
            if not live and f.p.height >= last_height_line + 10:
                last_height_line = f.p.height
                say(
                    f"height {f.p.height} interval {f.p.interval_s:.2f}s peers {f.p.peers} "
                    f"round {f.p.round} {f.p.phase}",
                    flush=True,
                )
            if display is not None:
                display.update(render(f.p, title))
            reason = _done(args, f.p)
            if reason is not None:
                return reason
            time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_devnet(args)
    except DevnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
