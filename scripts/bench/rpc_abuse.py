"""RPC abuse against a real node process: memory under large bodies, and consensus under fd pressure.

    python -m scripts.bench.rpc_abuse [--clients 40] [--body-mib 8] [--seconds 5] [--settle 3]
                                      [--idle-connections 2000] [--hold 15] [--nofile 1024] [--unbounded]
                                      [--json PATH]

Starts a one-validator node (`pocl-node run`, a fresh home in a temp dir, 200 ms commit timeout) with
its open-file limit set to `--nofile` (soft and hard, as the common default 1024; the node can only
raise its soft limit to the hard one), then:

1. bodies: `--clients` clients each POST `--body-mib` MiB to `/txs` over and over for `--seconds`;
   the node's RSS (`/proc/PID/status` VmRSS) is sampled every 50 ms before, during and `--settle`
   seconds after (`rss_before_mb`, `rss_peak_mb`, `rss_after_mb`) with the answers by status;
2. connections: `--idle-connections` clients each hold an idle connection, dialling again when the
   node closes it, for `--hold` seconds while the node's height is read from its metrics endpoint (a separate listener): `blocks_during_hold`
   must stay positive (the node keeps signing and committing), `refused` is the node's
   `pocl_rpc_connections_refused_total`, `accept_error_log_lines` the failed-accept lines in its log.

`--unbounded` sets the `[rpc]` bounds to "none" (the RPC before issue 16) for comparison; the
accept-log rate limit and the fd-limit raise stay on. Prints a table; `--json` writes every figure. Issue 16 measured, before the RPC was bounded: RSS 90 →
767 MB staying at 626 MB, and at 2,000 connections the validator stopped signing with a 120 MB log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from pocl.node.config import Config
from pocl.node.home import init_home
from pocl.node.testnet import free_ports

from scripts.bench.report import print_rows, write_json

MIB = 1024 * 1024
SAMPLE_S = 0.05
START_TIMEOUT_S = 90.0
ACCEPT_ERROR = "socket.accept() out of system resource"
UNBOUNDED_RPC: dict[str, Any] = {
    "max_connections": 0,
    "max_connections_per_source": 0,
    "header_timeout_s": 0.0,
    "body_timeout_s": 0.0,
    "keepalive_timeout_s": 3630.0,  # aiohttp's default
    "max_buffered_body_bytes": 0,
}
_METRIC = re.compile(r"^(pocl_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class NodeProcess:
    """`pocl-node run` of a fresh single-validator home with a given open-file limit."""

    def __init__(self, root: Path, nofile: int | None, *, unbounded: bool = False) -> None:
        self.root = root
        self.rpc_port, self.metrics_port, p2p_port = free_ports(3)
        config = (
            Config()
            .replace("rpc", listen_addr=f"127.0.0.1:{self.rpc_port}")
            .replace("metrics", listen_addr=f"127.0.0.1:{self.metrics_port}")
            .replace("p2p", listen_addr=f"127.0.0.1:{p2p_port}", pex=False)
            .replace("consensus", timeout_commit_ms=200, timeout_propose_ms=500)
        )
        if unbounded:  # the RPC as it was before issue 16: no caps, no timeouts, no body budget
            config = config.replace("rpc", **UNBOUNDED_RPC)
        init_home(root / "home", insecure_keys=True, config=config)
        self.log_path = root / "node.log"
        self._log = self.log_path.open("wb")
        self.nofile = nofile
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pocl.node.cli", "run", "--home", str(root / "home")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limit if nofile else None,
        )

    def _limit(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        """`name{labels}` → value from the node's metrics endpoint (empty if it does not answer)."""
        try:
            with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=2) as s:
                s.sendall(b"GET /metrics HTTP/1.0\r\nHost: m\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return {}
        text = data.decode(errors="replace")
        return {m.group(1) + (m.group(2) or ""): float(m.group(3)) for m in _METRIC.finditer(text)}

    def height(self) -> int:
        return int(self.metrics().get("pocl_consensus_height", 0))

    def wait_height(self, height: int, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while self.height() < height:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not reach height {height}: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


async def _body_client(
    session: aiohttp.ClientSession, url: str, body: bytes, until: float, statuses: Counter[str]
) -> None:
    while time.monotonic() < until:
        try:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/octet-stream"}
            ) as r:
                await r.read()
                statuses[str(r.status)] += 1
        except (aiohttp.ClientError, OSError):
            statuses["reset"] += 1
            await asyncio.sleep(0.01)


async def _sample_rss(pid: int, stop: asyncio.Event, samples: list[float]) -> None:
    while not stop.is_set():
        samples.append(rss_mb(pid))
        await asyncio.sleep(SAMPLE_S)


async def body_burst(node: NodeProcess, clients: int, body_mib: int, seconds: float) -> dict[str, Any]:
    body = b"\x00" * (body_mib * MIB)
    statuses: Counter[str] = Counter()
    samples: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(node.pid, stop, samples))
    url = f"http://127.0.0.1:{node.rpc_port}/txs"
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        await asyncio.gather(*(_body_client(session, url, body, until, statuses) for _ in range(clients)))
    stop.set()
    await sampler
    return {"rss_peak_mb": max(samples), "responses": dict(sorted(statuses.items()))}


def raise_own_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def _idle_client(port: int, until: float, opened: list[int]) -> None:
    """Hold one idle connection; when the node closes it, dial again (a client that insists)."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.2)
            continue
        opened[0] += 1
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(1), max(0.0, until - time.monotonic()))
        writer.close()
        await asyncio.sleep(0.1)


async def _idle_clients(node: NodeProcess, count: int, hold_s: float) -> dict[str, Any]:
    until = time.monotonic() + hold_s
    opened = [0]
    fds_peak = 0
    clients = asyncio.gather(*(_idle_client(node.rpc_port, until, opened) for _ in range(count)))
    while time.monotonic() < until:
        fds_peak = max(fds_peak, open_fds(node.pid))
        await asyncio.sleep(0.2)
    await clients
    return {"connections_opened": opened[0], "node_fds_peak": fds_peak}


def hold_idle_connections(node: NodeProcess, count: int, hold_s: float) -> dict[str, Any]:
    """`count` clients each hold an idle connection (re-dialling when closed) for `hold_s` seconds while
    the node's height is watched through its metrics listener."""
    raise_own_nofile(count + 256)
    height_before = node.height()
    result = asyncio.run(_idle_clients(node, count, hold_s))
    height_after = node.height()
    return {
        "idle_connections": count,
        "hold_s": hold_s,
        "height_before_hold": height_before,
        "height_after_hold": height_after,
        "blocks_during_hold": height_after - height_before,
        **result,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rpc-abuse-") as tmp:
        node = NodeProcess(Path(tmp), args.nofile, unbounded=args.unbounded)
        try:
            node.wait_height(2)
            time.sleep(1.0)  # let start-up allocations settle
            result: dict[str, Any] = {
                "clients": args.clients,
                "body_mib": args.body_mib,
                "seconds": args.seconds,
                "nofile": args.nofile,
                "unbounded": args.unbounded,
                "rss_before_mb": rss_mb(node.pid),
            }
            result |= asyncio.run(body_burst(node, args.clients, args.body_mib, args.seconds))
            time.sleep(args.settle)
            result["rss_after_mb"] = rss_mb(node.pid)
            if args.idle_connections:
                result |= hold_idle_connections(node, args.idle_connections, args.hold)
            metrics = node.metrics()
            result["refused"] = sum(
                v for k, v in metrics.items() if k.startswith("pocl_rpc_connections_refused")
            )
            result["bodies_refused_busy"] = metrics.get('pocl_rpc_bodies_refused_total{reason="busy"}', 0)
            result["bodies_refused_too_large"] = metrics.get(
                'pocl_rpc_bodies_refused_total{reason="too_large"}', 0
            )
            result["header_timeouts"] = metrics.get('pocl_rpc_timeouts_total{kind="header"}', 0)
            result["node_alive"] = node.proc.poll() is None
        finally:
            node.stop()
        log = node.log_path.read_text(errors="replace")
        result["accept_error_log_lines"] = log.count(ACCEPT_ERROR)
        result["log_bytes"] = node.log_path.stat().st_size
        result["fd_limit_warning"] = "open-file limit is" in log
        return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--body-mib", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the burst before rss_after_mb")
    p.add_argument("--idle-connections", type=int, default=2000)
    p.add_argument("--hold", type=float, default=15.0)
    p.add_argument("--nofile", type=int, default=1024, help="the node's open-file limit (0: inherit)")
    p.add_argument(
        "--unbounded",
        action="store_true",
        help="turn the [rpc] bounds off (the RPC before issue 16), to compare",
    )
    p.add_argument("--json", metavar="PATH")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_rows((k, str(v)) for k, v in result.items())
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
