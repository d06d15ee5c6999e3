"""P2P bytes per node per PoCL round next to the round's tx bytes, with and without compact propagation.

    python -m scripts.bench.compact [--miners 4] [--rounds 3] [--behaviour lazy-noise] [--modes on,off]
                                    [--dataset digits] [--json PATH]

Mode `on` is the default configuration: compact proposals (`p2p.compact_blocks = true`) and large txs
announced by hash and fetched once per link (`p2p.tx_announce_min_bytes` = 16 KiB). Mode `off` is how
the network propagated before: full blocks in proposals and every tx flooded (`compact_blocks = false`,
`tx_announce_min_bytes = 0`). For each mode, a devnet of `--miners` validator-miners (separate
`pocl-node run` processes, `--dataset` with its default model (digits: cnn-digits), a full P2P mesh on loopback) runs one warm-up round, then
`--rounds` measured rounds. Miners default to `lazy-noise` (G_{r-1} plus small noise, no training): their
`pocl.predict` txs carry full-size weights (≈ 153 KB), which is what moves on the wire, without paying for
TensorFlow training on a small machine (`--behaviour honest` trains).

Bytes are TCP payload received by each node process on its P2P sockets (the kernel's `bytes_received`,
read with `ss -tinp`: encrypted frames, everything P2P: tx gossip, proposals, votes, block sync, pings),
between two snapshots taken at heights h0 and h1; `tx_bytes` is the size of the txs committed in
(h0, h1]. `ratio` = a node's received bytes / tx_bytes; the issue's target is ≤ 2 for every node.
Prints a table; `--json` writes everything (`runs`, one per mode).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pocl.node.cluster import ClusterError, LocalCluster, RpcError
from pocl.node.config import load_config, write_config
from pocl.node.devnet.follower import Follower
from pocl.node.devnet.network import create_devnet, kill_leftovers, stop_nodes
from pocl.node.home import NodeHome

from scripts.bench.report import print_rows, write_json

POLL_S = 0.5
TARGET_RATIO = 2.0
_SOCKET = re.compile(r"^\S+\s+\S+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+users:\(\(.*?pid=(\d+),")
_RECEIVED = re.compile(r"bytes_received:(\d+)")


def p2p_received(pids: dict[int, int], p2p_ports: set[int]) -> dict[int, dict[tuple[int, int], int]]:
    """Per node index: bytes received so far on each live P2P socket (keyed by its two ports)."""
    out: dict[int, dict[tuple[int, int], int]] = {i: {} for i in pids.values()}
    text = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    current: tuple[int, tuple[int, int]] | None = None
    for line in text.splitlines():
        m = _SOCKET.match(line)
        if m:
            lport, rport, pid = int(m.group(2)), int(m.group(4)), int(m.group(5))
            p2p = lport in p2p_ports or rport in p2p_ports
            current = (pids[pid], (lport, rport)) if pid in pids and p2p else None
            continue
        r = _RECEIVED.search(line)
        if current is not None and r:
            out[current[0]][current[1]] = int(r.group(1))
            current = None
    return out


def delta(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> int:
    """Bytes received between two snapshots (a socket opened in between counts from zero)."""
    return sum(n - before.get(key, 0) for key, n in after.items())


def committed_tx_bytes(cluster: LocalCluster, low: int, high: int) -> tuple[int, int]:
    """(bytes, count) of the txs committed in heights (low, high]."""
    node = cluster.nodes[0]
    total = count = 0
    for h in range(low + 1, high + 1):
        txs = node.get(f"/blocks/{h}/txs")["txs"]
        total += sum(int(t["size"]) for t in txs)
        count += len(txs)
    return total, count


def run_mode(
    compact: bool, miners: int, rounds: int, behaviour: str, timeout_s: float, dataset: str = "digits"
) -> dict[str, Any]:
    mode = "on" if compact else "off"
    with tempfile.TemporaryDirectory(prefix=f"pocl-bench-compact-{mode}-") as tmp:
        cluster = create_devnet(
            Path(tmp) / "net",
            miners,
            dataset=dataset,
            data_dir=None,
            partition="iid",
            behaviours=[behaviour] * miners,
            epochs=1,
            batch_size=32,
        )
        for spec in cluster.testnet.nodes:
            path = NodeHome.at(spec.home).config_path
            announce = load_config(path).p2p.tx_announce_min_bytes if compact else 0
            write_config(
                path, load_config(path).replace("p2p", compact_blocks=compact, tx_announce_min_bytes=announce)
            )
        p2p_ports = {spec.ports.p2p for spec in cluster.testnet.nodes}
        follower = Follower(cluster, None)
        pids: list[int] = []
        snapshots: list[
            tuple[int, int, dict[int, dict[tuple[int, int], int]]]
        ] = []  # (rounds, height, bytes)
        try:
            cluster.start(wait=False)
            pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
            by_pid = {pid: i for i, pid in enumerate(pids)}
            deadline = time.monotonic() + timeout_s
            while len(snapshots) < 2:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"compact={mode}: only {len(follower.p.rounds)} rounds in {timeout_s:.0f}s"
                    )
                dead = [node.index for node in cluster.nodes if not node.running]
                if dead:
                    raise ClusterError(f"nodes {dead} died:\n{cluster.logs(20)}")
                with contextlib.suppress(OSError, RpcError, ValueError, KeyError, ClusterError):
                    for line in follower.poll():
                        print(f"  [compact {mode}] {line}", flush=True)
                done = len(follower.p.rounds)
                if (not snapshots and done >= 1) or (snapshots and done >= snapshots[0][0] + rounds):
                    snapshots.append((done, cluster.nodes[0].height(), p2p_received(by_pid, p2p_ports)))
                time.sleep(POLL_S)
            (r0, h0, b0), (r1, h1, b1) = snapshots
            tx_bytes, tx_count = committed_tx_bytes(cluster, h0, h1)
        finally:
            stop_nodes(cluster)
            kill_leftovers(pids)
    received = [delta(b0[i], b1[i]) for i in range(miners)]
    measured = r1 - r0
    ratios = [round(n / tx_bytes, 3) for n in received]
    return {
        "compact_blocks": compact,
        "dataset": dataset,
        "miners": miners,
        "behaviour": behaviour,
        "rounds": measured,
        "heights": [h0, h1],
        "tx_bytes": tx_bytes,
        "txs": tx_count,
        "tx_bytes_per_round": tx_bytes // measured,
        "p2p_bytes_received_per_node": received,
        "p2p_bytes_per_node_per_round": [n // measured for n in received],
        "p2p_bytes_ratio_per_node": ratios,
        "p2p_bytes_ratio": max(ratios),
        "target_met": max(ratios) <= TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--miners", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds, after one warm-up round")
    ap.add_argument("--behaviour", default="lazy-noise", help="every miner's behaviour (honest trains)")
    ap.add_argument(
        "--dataset", default="digits", help="the devnet's dataset (its default model: digits → cnn-digits)"
    )
    ap.add_argument("--modes", default="on,off", help="compact blocks on, off or both (default on,off)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mode")
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("on", "off") for m in modes):
        ap.error("--modes takes on, off or on,off")
    runs = [
        run_mode(m == "on", args.miners, args.rounds, args.behaviour, args.timeout, args.dataset)
        for m in modes
    ]
    rows: list[tuple[str, str]] = []
    for r in runs:
        mode = "on" if r["compact_blocks"] else "off"
        rows += [
            (f"compact {mode}: rounds (heights)", f"{r['rounds']} ({r['heights'][0]}..{r['heights'][1]})"),
            (f"compact {mode}: tx bytes per round", f"{r['tx_bytes_per_round']:,} ({r['txs']} txs in all)"),
            (
                f"compact {mode}: P2P bytes per node per round",
                ", ".join(f"{n:,}" for n in r["p2p_bytes_per_node_per_round"]),
            ),
            (
                f"compact {mode}: ratio per node (target ≤ {TARGET_RATIO:g})",
                ", ".join(f"{x:.2f}" for x in r["p2p_bytes_ratio_per_node"]),
            ),
        ]
    print_rows(rows)
    write_json(
        args.json,
        {"runs": runs, "python": platform.python_version(), "machine": platform.machine()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
