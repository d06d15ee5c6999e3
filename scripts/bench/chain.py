"""End-to-end chain throughput: 4 validator processes on loopback finalizing signed transfers.

    python -m scripts.bench.chain [--duration 60] [--validators 4] [--rate 1000] [--batch 100]
                                  [--profile DIR] [--json PATH]

Setup: a `LocalCluster` of real `pocl-node run` processes (CometBFT's default timeouts: propose 3 s,
prevote/precommit 1 s, commit 1 s), with `--accounts` extra funded genesis accounts. Load generator
processes (`--generators`) pre-sign every transfer before the clock starts (signing is the client's
cost, not the chain's), then send them open-loop at `--rate` tx/s for `--duration` s over one
pipelined keep-alive HTTP connection per node: every 50 ms the txs that are due go to their node as
`POST /txs/batch` (raw canonical bytes, at most `--batch` per request), or with `--batch 1` as one
`POST /txs` each (a crowd of single wallets; costs the nodes more). Each sender account is pinned to
one node, so its nonces arrive in order.

Measured:
- finalized_tx_per_s: txs committed in the send window (after `--warmup` s), block to block: the txs
  of every block after the first one in the window / time from the first to the last of them;
- latency_p50_s / latency_p99_s: submit (the tx's scheduled send time, so a backlog in the client
  counts too: no coordinated omission) -> block carrying the tx committed, seen by
  polling node0 (`GET /blocks/{next}` every 50 ms); every tx sent is tracked, and one not finalized
  30 s after the load ends counts as infinitely late (a percentile landing on it is null);
- block_interval_s: mean time between committed blocks in the window;
- rss_mb_max: per node, the kernel's peak RSS (VmHWM) at the end, with VmRSS sampled every second;
- tensorflow_loaded: whether any validator process mapped a TensorFlow library (/proc/PID/maps);
- node_cpu_us_per_tx: CPU time (utime+stime) of all nodes in the window / txs committed in it, and
  cpu_bound_tx_per_s = cores / that: the throughput the nodes would reach owning every core;
  machine_busy_cores: what the whole machine did meanwhile (other users' processes included);
- verify_floor_tx_per_s = cores / (validators x per-tx Ed25519 verify time), the verify time measured
  in this process before and after the load (the bound if every node did nothing but verify).

All processes (nodes, generators, this tracker) share the machine's cores, so on a small machine the
figures are the cluster's *aggregate* CPU budget split four ways: compare them with verify_floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import nacl.bindings
from pocl.ledger.hashing import TAG_TX_SIG
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.ledger.tx import make_transfer
from pocl.node.cluster import LocalCluster
from pocl.node.config import Config

CHAIN_ID = "pocl-bench-chain"
ACCOUNT_BALANCE = 10**12
TRANSFER_AMOUNT = 1
FEE = 1
MAX_IN_FLIGHT = 512  # pipelined requests per connection before the generator waits for answers
TICK_S = 0.005
BATCH_TICK_S = 0.05
POLL_S = 0.05
DRAIN_S = 30.0
BENCH_PARAMS = ChainParams(  # CometBFT's defaults (config.toml [consensus])
    timeout_propose_ms=3_000,
    timeout_propose_delta_ms=500,
    timeout_prevote_ms=1_000,
    timeout_prevote_delta_ms=500,
    timeout_precommit_ms=1_000,
    timeout_precommit_delta_ms=500,
    timeout_commit_ms=1_000,
)


def bench_params(args: argparse.Namespace) -> ChainParams:
    return dataclasses.replace(BENCH_PARAMS, timeout_commit_ms=args.timeout_commit_ms)


def account_key(i: int) -> PrivateKey:
    return PrivateKey.from_seed_text(f"bench-chain-account-{i}")


# --------------------------------------------------------------------------- load generator process


def _presign(accounts: list[int], n_accounts: int, per_account: int) -> list[tuple[int, bytes, bytes]]:
    """(sender index, tx hash, raw) for `per_account` consecutive nonces of each sender, nonce-major so
    that sending in list order spreads every nonce round over all senders."""
    keys = {i: account_key(i) for i in accounts}
    to = {i: account_key((i + 1) % n_accounts).address for i in accounts}
    out: list[tuple[int, bytes, bytes]] = []
    for nonce in range(per_account):
        for i in accounts:
            stx = make_transfer(keys[i], CHAIN_ID, nonce, to[i], TRANSFER_AMOUNT, FEE)
            out.append((i, stx.hash, stx.raw))
    return out


def _request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Conn:
    """One pipelined keep-alive HTTP/1.1 connection; answers are read by a background task."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.in_flight = 0
        self.accepted = 0
        self.errors: dict[str, int] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.room = asyncio.Event()
        self.room.set()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.task = asyncio.create_task(self._read_answers())

    def _error(self, code: str, n: int = 1) -> None:
        self.errors[code] = self.errors.get(code, 0) + n

    async def _read_answers(self) -> None:
        assert self.reader is not None
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            code = int(lines[0].split()[1])
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await self.reader.readexactly(length) if length else b""
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if code == 202 and isinstance(doc, dict) and "accepted" in doc:  # POST /txs/batch
                self.accepted += doc["accepted"]
                for err in doc["errors"]:
                    self._error(err["code"])
            elif code == 202:  # POST /txs
                self.accepted += 1
            else:
                try:
                    self._error(doc["error"]["code"])  # type: ignore[index]
                except (KeyError, TypeError):
                    self._error(f"http_{code}")
            self.in_flight -= 1
            if self.in_flight < MAX_IN_FLIGHT:
                self.room.set()

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        while self.in_flight >= MAX_IN_FLIGHT:
            self.room.clear()
            await self.room.wait()
        self.in_flight += 1
        self.writer.write(data)

    async def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling the answer counter of our own reader task
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


async def _send_all(
    txs: list[tuple[int, bytes, bytes]], ports: list[int], rate: float, start_at: float, batch: int
) -> dict[str, Any]:
    """Open loop: at each tick send every tx that is due; batch > 1 groups a tick's txs per node into
    `POST /txs/batch` requests of at most `batch` txs, batch == 1 sends one `POST /txs` each."""
    conns = [_Conn(p) for p in ports]
    for c in conns:
        await c.open()
    n_nodes = len(ports)
    singles = [_request_bytes(ports[i % n_nodes], "/txs", raw) for i, _h, raw in txs] if batch == 1 else []
    sent_at: list[float] = []
    while time.monotonic() < start_at:
        await asyncio.sleep(min(0.01, max(0.0, start_at - time.monotonic())))
    t0 = time.monotonic()
    cpu_start = time.process_time()
    n = 0
    total = len(txs)
    tick = TICK_S if batch == 1 else BATCH_TICK_S
    while n < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        if batch == 1:
            while n < due:
                await conns[txs[n][0] % n_nodes].send(singles[n])
                sent_at.append(t0 + n / rate)  # scheduled time: a client-side queue counts as latency
                n += 1
        else:
            groups: list[list[bytes]] = [[] for _ in ports]
            for i, _h, raw in txs[n:due]:
                groups[i % n_nodes].append(raw)
            for node, raws in enumerate(groups):
                for k in range(0, len(raws), batch):
                    body = msgpack.packb(raws[k : k + batch], use_bin_type=True)
                    await conns[node].send(_request_bytes(ports[node], "/txs/batch", body))
            sent_at.extend(t0 + k / rate for k in range(n, due))  # scheduled times (see above)
            n = due
        await asyncio.sleep(tick)
    send_end = time.monotonic()
    cpu_s = time.process_time() - cpu_start
    for c in conns:
        await c.finish(30.0)
    errors: dict[str, int] = {}
    for c in conns:
        for k, v in c.errors.items():
            errors[k] = errors.get(k, 0) + v
    return {
        "sent_at": sent_at,
        "hashes": [h for _i, h, _raw in txs[: len(sent_at)]],
        "send_start": t0,
        "send_end": send_end,
        "accepted": sum(c.accepted for c in conns),
        "errors": errors,
        "cpu_s": cpu_s,
    }


def generator_main(conn: Connection, spec: dict[str, Any]) -> None:
    """Child process: pre-sign, report ready, wait for the start time, send, report results."""
    txs = _presign(spec["accounts"], spec["n_accounts"], spec["per_account"])
    txs = txs[: spec["count"]]
    conn.send(("ready", len(txs)))
    _kind, start_at = conn.recv()
    result = asyncio.run(_send_all(txs, spec["ports"], spec["rate"], start_at, spec["batch"]))
    conn.send(("done", result))
    conn.close()


# --------------------------------------------------------------------------- tracking (this process)


class Tracker:
    """Follows node0's committed blocks: height -> (seen_at, tx hashes).

    Polls `GET /blocks/{next}` every `POLL_S` (a 404 until it is committed): the WebSocket stream
    sends one message per committed tx, which at this load costs node0 more than the polling does and
    lags behind (its bounded queue then drops events)."""

    def __init__(self, rpc_url: str) -> None:
        self.rpc_url = rpc_url
        self.blocks: dict[int, tuple[float, list[bytes]]] = {}
        self.committed_at: dict[bytes, float] = {}
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.rpc_url + "/status") as resp:
                nxt = (await resp.json())["height"] + 1
            while not self._stop.is_set():
                try:  # the next block, or a cheap 404 until it is committed
                    async with session.get(f"{self.rpc_url}/blocks/{nxt}") as resp:
                        block = await resp.json() if resp.status == 200 else None
                    seen_at = time.monotonic()
                except (aiohttp.ClientError, OSError, ValueError):
                    block = None  # node busy or restarting: next poll
                if block is not None:
                    hashes = [bytes.fromhex(t["hash"].removeprefix("0x")) for t in block.get("txs", [])]
                    self.blocks[nxt] = (seen_at, hashes)
                    for tx_hash in hashes:
                        self.committed_at.setdefault(tx_hash, seen_at)
                    nxt += 1
                    continue  # more blocks may be waiting
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL_S)

    def stop(self) -> None:
        self._stop.set()


def read_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB from /proc."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine spent busy (non-idle), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def maps_tensorflow(pid: int) -> bool:
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return any("tensorflow" in line for line in f)


def verify_time_s(n: int = 4000) -> float:
    """Mean seconds per Ed25519 verify of a signed transfer (PyNaCl, exactly as SignedTx does)."""
    key = PrivateKey.from_seed_text("bench-chain-verify")
    stx = make_transfer(key, CHAIN_ID, 0, account_key(1).address, TRANSFER_AMOUNT, FEE)
    signed = stx.signature + bytes([len(TAG_TX_SIG)]) + TAG_TX_SIG + stx.sign_bytes
    t0 = time.thread_time()  # CPU time: wall time would count other processes' turns on a busy machine
    for _ in range(n):
        nacl.bindings.crypto_sign_open(signed, stx.tx.sender)
    return (time.thread_time() - t0) / n


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def _seconds(value: float) -> float | None:
    """Rounded seconds; None (JSON null) for a percentile that falls on a tx never finalized."""
    return None if math.isinf(value) else round(value, 3)


# --------------------------------------------------------------------------- orchestration


async def _sample_rss(pids: list[int], out: dict[int, list[float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for pid in pids:
            with contextlib.suppress(OSError):
                out.setdefault(pid, []).append(read_rss_mb(pid)[0])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _start_profilers(pids: list[int], args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """--profile DIR: py-spy samples every node during the window (raw collapsed stacks per node)."""
    if args.profile is None:
        return []
    args.profile.mkdir(parents=True, exist_ok=True)
    pyspy = Path(sys.executable).with_name("py-spy")
    span = max(1, int(args.duration - args.warmup - 2))
    return [
        subprocess.Popen(
            [str(pyspy), "record", "-p", str(pid), "-d", str(span), "-r", "50", "-f", "raw", "--nonblocking",
             "-o", str(args.profile / f"node{i}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]


async def _measure(
    cluster: LocalCluster, gens: list[tuple[mp.Process, Connection]], args: argparse.Namespace
) -> dict[str, Any]:
    tracker = Tracker(cluster.nodes[0].rpc_url)
    track_task = asyncio.create_task(tracker.run())
    pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
    rss: dict[int, list[float]] = {}
    stop_rss = asyncio.Event()
    rss_task = asyncio.create_task(_sample_rss(pids, rss, stop_rss))
    await asyncio.sleep(1.0)  # let the tracker see the current head first
    start_at = time.monotonic() + 0.5
    for _p, c in gens:
        c.send(("go", start_at))
    await asyncio.sleep(max(0.0, start_at + args.warmup - time.monotonic()))
    cpu0 = {pid: cpu_seconds(pid) for pid in pids}
    sys0 = sum(cpu_times(pid)[1] for pid in pids)
    machine0 = machine_busy_seconds()
    profilers = _start_profilers(pids, args)
    cpu_t0 = time.monotonic()
    results = []
    loop = asyncio.get_running_loop()
    for _p, c in gens:
        kind, res = await loop.run_in_executor(None, c.recv)
        assert kind == "done"
        results.append(res)
    send_end = max(r["send_end"] for r in results)
    cpu_t1 = time.monotonic()
    cpu1 = {pid: cpu_seconds(pid) for pid in pids}
    sys1 = sum(cpu_times(pid)[1] for pid in pids)
    machine1 = machine_busy_seconds()
    for prof in profilers:
        await loop.run_in_executor(None, prof.wait)
    sent: dict[bytes, float] = {}
    for r in results:
        sent.update(zip(r["hashes"], r["sent_at"], strict=True))
    drain_deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < drain_deadline and not all(h in tracker.committed_at for h in sent):
        await asyncio.sleep(0.25)  # waiting on the tracker task for the tail of the load
    tracker.stop()
    stop_rss.set()
    await rss_task
    track_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await track_task
    return {
        "tracker": tracker,
        "results": results,
        "sent": sent,
        "send_start": start_at,
        "send_end": send_end,
        "rss": rss,
        "pids": pids,
        "cpu": (cpu0, cpu1, cpu_t0, cpu_t1),
        "machine_busy_s": machine1 - machine0,
        "node_sys_s": sys1 - sys0,
    }


def summarise(m: dict[str, Any], args: argparse.Namespace, verify_s: float, cores: int) -> dict[str, Any]:
    params = bench_params(args)
    tracker: Tracker = m["tracker"]
    sent: dict[bytes, float] = m["sent"]
    t_start, t_end = m["send_start"] + args.warmup, m["send_end"]
    window = [(t, len(hs)) for t, hs in tracker.blocks.values() if t_start <= t <= t_end]
    window.sort()
    # Block-to-block: the txs of every block after the window's first one, over the time between the
    # first and last block commits (no partial-interval edge error from the block cadence).
    span = window[-1][0] - window[0][0] if len(window) >= 2 else 0.0
    in_window = sum(n for _t, n in window[1:])
    times = sorted(t for t, _hs in tracker.blocks.values() if m["send_start"] <= t <= t_end)
    intervals = [b - a for a, b in itertools.pairwise(times)]
    lat = [tracker.committed_at[h] - t for h, t in sent.items() if h in tracker.committed_at]
    finalized = len(lat)
    lat += [math.inf] * (len(sent) - finalized)  # not finalized by the end of the drain: counts as worst
    errors: dict[str, int] = {}
    for r in m["results"]:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    rss_max = {}
    hwm = {}
    tf = {}
    for i, pid in enumerate(m["pids"]):
        rss_max[f"node{i}"] = round(max(m["rss"].get(pid, [0.0])), 1)
        try:
            hwm[f"node{i}"] = round(read_rss_mb(pid)[1], 1)
            tf[f"node{i}"] = maps_tensorflow(pid)
        except OSError:
            hwm[f"node{i}"] = float("nan")
            tf[f"node{i}"] = False
    cpu0, cpu1, cpu_t0, cpu_t1 = m["cpu"]
    cpu_txs = sum(len(hs) for t, hs in tracker.blocks.values() if cpu_t0 <= t <= cpu_t1)
    node_cpu = sum(cpu1[p] - cpu0[p] for p in m["pids"])
    gen_cpu = sum(r["cpu_s"] for r in m["results"])
    gen_txs = sum(len(r["sent_at"]) for r in m["results"])
    sizes = [len(hs) for _t, hs in tracker.blocks.values() if m["send_start"] <= _t <= t_end]
    return {
        "validators": args.validators,
        "duration_s": args.duration,
        "offered_rate_tx_per_s": args.rate,
        "sent_txs": len(sent),
        "send_span_s": round(m["send_end"] - m["send_start"], 2),
        "accepted_txs": sum(r["accepted"] for r in m["results"]),
        "batch": args.batch,
        "rejected": errors,
        "finalized_txs": finalized,
        "finalized_fraction": round(finalized / max(1, len(sent)), 4),
        "finalized_tx_per_s": round(in_window / span, 1) if span > 0 else 0.0,
        "finalized_tx_per_s_overall": round(finalized / max(1e-9, max(tracker.committed_at.get(h, 0) for h in sent) - m["send_start"]), 1) if finalized else 0.0,
        "latency_p50_s": _seconds(percentile(lat, 0.50)),
        "latency_p90_s": _seconds(percentile(lat, 0.90)),
        "latency_p99_s": _seconds(percentile(lat, 0.99)),
        "block_interval_s": round(statistics.fmean(intervals), 3) if intervals else float("nan"),
        "blocks_in_window": len(window),
        "txs_per_block_mean": round(statistics.fmean(sizes), 1) if sizes else 0.0,
        "txs_per_block_max": max(sizes) if sizes else 0,
        "rss_mb_max": hwm,
        "rss_mb_sampled_max": rss_max,
        "rss_mb_max_all": max(hwm.values()) if hwm else float("nan"),
        "tensorflow_loaded": tf,
        "node_cpu_util": round(node_cpu / max(1e-9, cpu_t1 - cpu_t0), 2),
        "node_cpu_kernel_fraction": round(m["node_sys_s"] / max(1e-9, node_cpu), 3),
        "machine_busy_cores": round(m["machine_busy_s"] / max(1e-9, cpu_t1 - cpu_t0), 2),
        "loadavg_end": os.getloadavg()[0],
        "node_cpu_us_per_tx": round(node_cpu / max(1, cpu_txs) * 1e6, 1),
        "node_cpu_us_per_tx_per_node": round(node_cpu / max(1, cpu_txs) * 1e6 / max(1, len(m["pids"])), 1),
        "generator_cpu_us_per_tx": round(gen_cpu / max(1, gen_txs) * 1e6, 1),
        "cpu_bound_tx_per_s": round(cores / max(1e-9, node_cpu / max(1, cpu_txs)), 1),
        "verify_us": round(verify_s * 1e6, 2),
        "cores": cores,
        "verify_floor_tx_per_s": round(cores / (args.validators * verify_s), 1),
        "ratio_to_verify_floor": 0.0,
        "timeouts_ms": {
            "propose": params.timeout_propose_ms,
            "prevote": params.timeout_prevote_ms,
            "precommit": params.timeout_precommit_ms,
            "commit": params.timeout_commit_ms,
        },
        "accounts": args.accounts,
        "generators": args.generators,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    total = int(args.rate * args.duration)
    per_account = -(-total // args.accounts)
    ctx = mp.get_context("spawn")
    gens: list[tuple[mp.Process, Connection]] = []
    verify_before = verify_time_s()
    with tempfile.TemporaryDirectory(prefix="pocl-bench-chain-") as tmp:
        accounts = [(account_key(i).address, ACCOUNT_BALANCE) for i in range(args.accounts)]
        config = Config().replace("mempool", max_txs=args.mempool_txs)
        cluster = LocalCluster.create(
            Path(tmp) / "net",
            args.validators,
            config=config,
            chain_id=CHAIN_ID,
            params=bench_params(args),
            accounts=accounts,
        )
        ports = [n.spec.ports.rpc for n in cluster.nodes]
        try:
            for g in range(args.generators):
                mine = list(range(g, args.accounts, args.generators))
                parent, child = ctx.Pipe()
                spec = {
                    "accounts": mine,
                    "n_accounts": args.accounts,
                    "per_account": per_account,
                    "count": total // args.generators,
                    "ports": ports,
                    "rate": args.rate / args.generators,
                    "batch": args.batch,
                }
                proc = ctx.Process(target=generator_main, args=(child, spec), daemon=True)
                proc.start()
                gens.append((proc, parent))
            cluster.start()
            cluster.wait_for_height(2, timeout=120)
            for _p, c in gens:
                kind, _n = c.recv()
                assert kind == "ready"
            cluster.wait_for_height(cluster.heights()[0] + 1, timeout=60)
            print(f"cluster up, {total} txs pre-signed; sending for {args.duration:.0f} s...", file=sys.stderr)
            m = asyncio.run(_measure(cluster, gens, args))
            heights = cluster.heights()
            cluster.assert_no_fork(up_to=min(heights))
            verify_after = verify_time_s()
            summary = summarise(m, args, (verify_before + verify_after) / 2, cores)
            summary["final_heights"] = heights
            if args.keep_logs:
                summary["logs"] = cluster.logs(5)
        finally:
            cluster.stop_all()
            for p, _c in gens:
                p.join(5)
                if p.is_alive():
                    p.kill()
    summary["ratio_to_verify_floor"] = round(summary["finalized_tx_per_s"] / summary["verify_floor_tx_per_s"], 3)
    return summary


def print_table(s: dict[str, Any]) -> None:
    rows = [
        ("validators / cores", f"{s['validators']} / {s['cores']}"),
        ("offered rate (tx/s)", f"{s['offered_rate_tx_per_s']:.0f}"),
        ("sent / accepted", f"{s['sent_txs']} / {s['accepted_txs']}  rejected={s['rejected']}"),
        ("finalized (of sent)", f"{s['finalized_txs']} ({s['finalized_fraction']:.1%})"),
        ("finalized tx/s (window)", f"{s['finalized_tx_per_s']:.0f}   target >= 1000"),
        ("latency p50 / p90 / p99 (s)", f"{s['latency_p50_s']} / {s['latency_p90_s']} / {s['latency_p99_s']}   target p50 <= 2"),
        ("block interval (s)", f"{s['block_interval_s']}  ({s['blocks_in_window']} blocks, mean {s['txs_per_block_mean']} txs, max {s['txs_per_block_max']})"),
        ("node RSS peak (MB)", f"{s['rss_mb_max']}   target <= 200"),
        ("tensorflow mapped", f"{s['tensorflow_loaded']}"),
        ("node CPU per tx (us)", f"{s['node_cpu_us_per_tx']} all nodes, {s['node_cpu_us_per_tx_per_node']} per node; nodes used {s['node_cpu_util']} cores"),
        ("machine busy (cores)", f"{s['machine_busy_cores']} of {s['cores']} (all processes; load avg {s['loadavg_end']:.1f})"),
        ("generator CPU per tx (us)", f"{s['generator_cpu_us_per_tx']}"),
        ("CPU-bound capacity (tx/s)", f"{s['cpu_bound_tx_per_s']:.0f}   = cores / node CPU per tx"),
        ("Ed25519 verify (us)", f"{s['verify_us']}"),
        ("verify floor (tx/s)", f"{s['verify_floor_tx_per_s']:.0f}   = cores / (validators x verify)"),
        ("finalized / floor", f"{s['ratio_to_verify_floor']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nchain benchmark ({s['validators']} validators, {s['duration_s']:.0f} s, timeout_commit {s['timeouts_ms']['commit']} ms)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--rate", type=float, default=1000.0, help="offered load, tx/s (open loop)")
    ap.add_argument(
        "--timeout-commit-ms", type=int, default=BENCH_PARAMS.timeout_commit_ms,
        help="BFT timeout_commit (CometBFT default 1000): the pause between blocks",
    )
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the window opens")
    ap.add_argument("--accounts", type=int, default=2000, help="funded sender accounts")
    ap.add_argument("--generators", type=int, default=1, help="load generator processes")
    ap.add_argument(
        "--batch", type=int, default=100,
        help="max txs per POST /txs/batch request (1: one POST /txs per tx, like single wallets)",
    )
    ap.add_argument("--mempool-txs", type=int, default=20_000, help="[mempool] max_txs of every node")
    ap.add_argument("--profile", type=Path, help="py-spy every node during the window into this folder")
    ap.add_argument("--keep-logs", action="store_true", help="put node log tails in the JSON")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.validators < 1 or args.duration <= args.warmup or args.rate <= 0 or args.accounts < 2:
        ap.error("need validators >= 1, duration > warmup, rate > 0, accounts >= 2")
    previous = signal.signal(signal.SIGTERM, _terminate)  # so `finally` stops the cluster on kill
    try:
        summary = run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary["command"] = "python -m scripts.bench.chain " + " ".join(sys.argv[1:] if argv is None else argv)
    print_table(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
