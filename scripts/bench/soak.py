"""Soak: does a node's memory, fd count or store grow per block under steady load with PoCL rounds on?

    python -m scripts.bench.soak [--minutes 20] [--validators 4] [--rate 5] [--warmup-blocks 1000]
                                 [--round-gap-blocks 100] [--sample-s 5] [--trace-node I] [--keep DIR]
                                 [--json PATH]

A devnet of `--validators` validator-miners (separate `pocl-node run` processes, full P2P mesh on
loopback, the devnet's fast BFT timeouts) whose miners are `lazy` (they commit, reveal G_{r-1}
unchanged, score and vote: every PoCL phase and its txs run, never penalised, no TensorFlow), a new round
`--round-gap-blocks` after the last one ended (see DEFAULT_ROUND_GAP_BLOCKS). A sender
thread signs faucet transfers and posts them to node0 at `--rate` tx/s (open loop) for `--minutes`.

Every `--sample-s` seconds, for each node: its height, RSS (`VmRSS` in /proc/PID/status), open fds
(entries of /proc/PID/fd) and store size (bytes of every file under HOME/data). After the warm-up
(`--warmup-blocks`: caches fill, the first PoCL round ends, Python's allocator reaches its working
set), a least-squares line per node gives the growth slope against height:

- rss_growth_mb_per_1000_blocks: MB of RSS per 1,000 blocks (max over nodes; target ≤ 0.5);
- fds_growth: open fds at the end minus at the end of the warm-up (max over nodes; 0 expected);
- fds_growth_per_1000_blocks: the fitted slope (max over nodes);
- db_growth_kb_per_block: KiB of store per block (max over nodes; blocks and their txs are kept, so
  this is the chain itself, not a leak).

A table prints RSS / fds / store at every 1,000 blocks per node. `--trace-node I` runs node I with
`POCL_MEMTRACE` (node/memtrace.py): tracemalloc's top growing allocation sites land in
HOME/memtrace.txt (that node runs several times slower; its slope is then not comparable).
`--json` writes everything, samples included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocl.ledger.storage.keystore import load_key
from pocl.ledger.tx import make_transfer
from pocl.node.cluster import ClusterError, LocalCluster, NodeProcess, RpcError
from pocl.node.devnet.network import create_devnet, kill_leftovers, stop_nodes
from pocl.node.memtrace import ENV_PATH, ENV_PERIOD

from scripts.bench.report import print_rows, write_json

TARGET_RSS_MB_PER_1000 = 0.5
BLOCKS_PER_ROW = 1_000
TRANSFER_AMOUNT = 1
START_TIMEOUT_S = 180.0
MEMTRACE_FILE = "memtrace.txt"
MEMTRACE_PERIOD_S = 60
# A round every ~100 blocks (about a minute at devnet speed, like miners that train for a minute). Each
# final round leaves its record in state (~1.2 KB with 4 miners; state is held in memory), so back to
# back rounds (every ~5 blocks) would add ~0.25 MB per 1,000 blocks of chain state that is not a leak.
DEFAULT_ROUND_GAP_BLOCKS = 100
# Bounded structures take this long to reach their caps at devnet speed (~175 blocks a minute): the
# gossip seen-ids (2 minutes of messages), LevelDB's block and table caches (8 MiB, filled as the store
# grows), the mempool's verified-signature cache and the allocator's free lists. Measured: RSS rises
# ~12 MB over the first ~1,000 blocks, then moves in a band; a fit from block 300 counts part of that
# filling as growth (docs/benchmarks/soak.md).
DEFAULT_WARMUP_BLOCKS = 1_000


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys against xs (0 with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


class Sender(threading.Thread):
    """Open-loop faucet transfers to node0 at `rate` tx/s, to the validators' accounts in turn."""

    def __init__(self, cluster: LocalCluster, rate: float) -> None:
        super().__init__(daemon=True, name="soak-sender")
        self.cluster = cluster
        self.rate = rate
        self.stop_event = threading.Event()
        self.sent = 0
        self.rejected: dict[str, int] = {}

    def run(self) -> None:
        net = self.cluster.testnet
        key = load_key(net.faucet_key_path, None)
        node = self.cluster.nodes[0]
        nonce = int(node.get(f"/accounts/0x{key.address.hex()}").get("nonce", 0))
        targets = [bytes.fromhex(spec.address[2:]) for spec in net.nodes]
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - t0) * self.rate) + 1
            while self.sent < due and not self.stop_event.is_set():
                to = targets[self.sent % len(targets)]
                stx = make_transfer(
                    key, net.genesis.chain_id, nonce, to, TRANSFER_AMOUNT, net.genesis.params.min_fee
                )
                try:
                    node.submit_tx(stx.raw)
                    nonce += 1
                except RpcError as exc:
                    self.rejected[exc.code] = self.rejected.get(exc.code, 0) + 1
                    if exc.code == "bad_nonce" or "nonce" in exc.message:
                        nonce = int(node.get(f"/accounts/0x{key.address.hex()}").get("nonce", nonce))
                except OSError as exc:
                    self.rejected[type(exc).__name__] = self.rejected.get(type(exc).__name__, 0) + 1
                self.sent += 1
            self.stop_event.wait(max(0.0, (self.sent / self.rate) - (time.monotonic() - t0)))


def sample(node: NodeProcess) -> dict[str, Any] | None:
    if node.proc is None or not node.running:
        return None
    st = node.status()
    if st is None:
        return None
    pid = node.proc.pid
    try:
        return {
            "t": round(time.monotonic(), 2),
            "height": int(st["height"]),
            "rss_kb": rss_kb(pid),
            "fds": open_fds(pid),
            "db_bytes": dir_bytes(node.home / "data"),
        }
    except OSError:
        return None


def latest_round(node: NodeProcess) -> int:
    with contextlib.suppress(OSError, RpcError, KeyError, TypeError):
        rec = node.get("/rounds/latest")
        return int(rec["round"]) if rec else 0
    return 0


def summarize(samples: list[dict[str, Any]], warmup_blocks: int) -> dict[str, Any]:
    """One node's growth after the warm-up: slopes and the per-1,000-block rows."""
    start = samples[0]["height"] + warmup_blocks if samples else 0
    kept = [s for s in samples if s["height"] >= start]
    hs = [float(s["height"]) for s in kept]
    rows = []
    next_h = (samples[0]["height"] // BLOCKS_PER_ROW) * BLOCKS_PER_ROW if samples else 0
    for s in samples:
        if s["height"] >= next_h:
            rows.append({k: s[k] for k in ("height", "rss_kb", "fds", "db_bytes")})
            next_h = (s["height"] // BLOCKS_PER_ROW + 1) * BLOCKS_PER_ROW
    if samples and rows[-1]["height"] != samples[-1]["height"]:
        rows.append({k: samples[-1][k] for k in ("height", "rss_kb", "fds", "db_bytes")})
    return {
        "warmup_end_height": start,
        "measured_blocks": int(hs[-1] - hs[0]) if len(hs) > 1 else 0,
        "samples_fitted": len(kept),
        "rss_mb_first": round(kept[0]["rss_kb"] / 1024, 1) if kept else None,
        "rss_mb_last": round(kept[-1]["rss_kb"] / 1024, 1) if kept else None,
        "rss_growth_mb_per_1000_blocks": round(slope(hs, [s["rss_kb"] / 1024 for s in kept]) * 1000, 3),
        "fds_growth": (kept[-1]["fds"] - kept[0]["fds"]) if kept else 0,
        "fds_growth_per_1000_blocks": round(slope(hs, [float(s["fds"]) for s in kept]) * 1000, 3),
        "db_growth_kb_per_block": round(slope(hs, [s["db_bytes"] / 1024 for s in kept]), 3),
        "rows": rows,
    }


def run_soak(
    out: Path,
    *,
    minutes: float,
    validators: int,
    rate: float,
    warmup_blocks: int,
    sample_s: float,
    trace_node: int | None,
    round_gap_blocks: int = DEFAULT_ROUND_GAP_BLOCKS,
) -> dict[str, Any]:
    cluster = create_devnet(
        out,
        validators,
        dataset="digits",
        data_dir=None,
        partition="iid",
        behaviours=["lazy"] * validators,
        epochs=1,
        batch_size=32,
        pocl_overrides={"round_gap_blocks": round_gap_blocks},
    )
    if trace_node is not None:
        node = cluster.nodes[trace_node]
        node.env = {
            **os.environ,
            ENV_PATH: str(node.home / MEMTRACE_FILE),
            ENV_PERIOD: str(MEMTRACE_PERIOD_S),
        }
    samples: dict[int, list[dict[str, Any]]] = {n.index: [] for n in cluster.nodes}
    pids: list[int] = []
    sender = Sender(cluster, rate)
    try:
        cluster.start()
        pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        cluster.wait_for_height(2, timeout=START_TIMEOUT_S)
        round0 = latest_round(cluster.nodes[0])
        h0 = cluster.nodes[0].height()
        sender.start()
        t0 = time.monotonic()
        end = t0 + minutes * 60
        next_print = t0
        while time.monotonic() < end:
            dead = [n.index for n in cluster.nodes if not n.running]
            if dead:
                raise ClusterError("; ".join(cluster.nodes[i].failure("during the soak") for i in dead))
            for node in cluster.nodes:
                s = sample(node)
                if s is not None:
                    samples[node.index].append(s)
            if time.monotonic() >= next_print:
                last = [samples[i][-1] for i in samples if samples[i]]
                print(
                    f"  [soak {time.monotonic() - t0:5.0f}s] heights {[s['height'] for s in last]} "
                    f"rss MB {[round(s['rss_kb'] / 1024, 1) for s in last]} fds {[s['fds'] for s in last]}",
                    flush=True,
                )
                next_print += 60
            time.sleep(sample_s)
        elapsed = time.monotonic() - t0
        sender.stop_event.set()
        sender.join(10)
        h1 = cluster.nodes[0].height()
        round1 = latest_round(cluster.nodes[0])
        committed = sum(len(cluster.nodes[0].get(f"/blocks/{h}/txs")["txs"]) for h in range(h0 + 1, h1 + 1))
    finally:
        sender.stop_event.set()
        stop_nodes(cluster)
        kill_leftovers(pids)
    per_node = {f"node{i}": summarize(s, warmup_blocks) for i, s in samples.items()}
    untraced = {k: v for k, v in per_node.items() if trace_node is None or k != f"node{trace_node}"}
    measured = untraced or per_node
    return {
        "validators": validators,
        "minutes": round(elapsed / 60, 2),
        "rate_tx_per_s": rate,
        "sent_txs": sender.sent,
        "rejected": sender.rejected,
        "committed_txs": committed,
        "committed_tx_per_s": round(committed / elapsed, 2),
        "heights": [h0, h1],
        "heights_per_min": round((h1 - h0) / (elapsed / 60), 1),
        "pocl_rounds_finalized": max(0, round1 - round0),
        "round_gap_blocks": round_gap_blocks,
        "warmup_blocks": warmup_blocks,
        "trace_node": trace_node,
        "rss_growth_mb_per_1000_blocks": max(v["rss_growth_mb_per_1000_blocks"] for v in measured.values()),
        "fds_growth": max(v["fds_growth"] for v in measured.values()),
        "fds_growth_per_1000_blocks": max(v["fds_growth_per_1000_blocks"] for v in measured.values()),
        "db_growth_kb_per_block": max(v["db_growth_kb_per_block"] for v in measured.values()),
        "target_rss_mb_per_1000_blocks": TARGET_RSS_MB_PER_1000,
        "nodes": per_node,
        "samples": {f"node{i}": s for i, s in samples.items()},
    }


def print_result(r: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = [
        (
            "duration",
            f"{r['minutes']} min, heights {r['heights'][0]}..{r['heights'][1]} ({r['heights_per_min']}/min)",
        ),
        (
            "load",
            f"{r['rate_tx_per_s']} tx/s sent, {r['committed_tx_per_s']} tx/s committed, rejected {r['rejected']}",
        ),
        ("PoCL rounds finalized", str(r["pocl_rounds_finalized"])),
    ]
    for name, n in r["nodes"].items():
        table = ", ".join(
            f"h{row['height']}: {row['rss_kb'] / 1024:.1f} MB/{row['fds']} fds/{row['db_bytes'] / 1e6:.1f} MB db"
            for row in n["rows"]
        )
        rows.append((f"{name} per 1,000 blocks", table))
        rows.append(
            (
                f"{name} slopes (after h{n['warmup_end_height']})",
                f"RSS {n['rss_growth_mb_per_1000_blocks']:+.3f} MB/1000 blocks, fds {n['fds_growth']:+d}, "
                f"store {n['db_growth_kb_per_block']:.2f} KiB/block",
            )
        )
    rows += [
        (
            f"RSS growth, max (target ≤ {TARGET_RSS_MB_PER_1000})",
            f"{r['rss_growth_mb_per_1000_blocks']:+.3f} MB per 1,000 blocks",
        ),
        ("fds growth, max", f"{r['fds_growth']:+d}"),
        ("store growth, max", f"{r['db_growth_kb_per_block']:.2f} KiB per block"),
    ]
    print_rows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--rate", type=float, default=5.0, help="faucet transfers per second (open loop)")
    ap.add_argument(
        "--warmup-blocks", type=int, default=DEFAULT_WARMUP_BLOCKS, help="blocks left out of the fit"
    )
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    ap.add_argument(
        "--round-gap-blocks",
        type=int,
        default=DEFAULT_ROUND_GAP_BLOCKS,
        help="blocks between a PoCL round's end and the next one (0: back to back, the devnet's cadence)",
    )
    ap.add_argument("--trace-node", type=int, help="run this node with tracemalloc (POCL_MEMTRACE)")
    ap.add_argument("--keep", metavar="DIR", help="make the devnet here and keep it (logs, memtrace)")
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.minutes <= 0:
        ap.error("--rate and --minutes must be positive")
    if args.trace_node is not None and not 0 <= args.trace_node < args.validators:
        ap.error("--trace-node must name one of the validators (0-based)")
    with contextlib.ExitStack() as stack:
        if args.keep:
            out = Path(args.keep)
            shutil.rmtree(out, ignore_errors=True)
        else:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pocl-bench-soak-"))) / "net"
        result = run_soak(
            out,
            minutes=args.minutes,
            validators=args.validators,
            rate=args.rate,
            warmup_blocks=args.warmup_blocks,
            sample_s=args.sample_s,
            trace_node=args.trace_node,
            round_gap_blocks=args.round_gap_blocks,
        )
    print_result(result)
    write_json(
        args.json,
        {
            **result,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
