"""P2P transport throughput: two nodes as separate processes on loopback.

    python -m scripts.bench.p2p [--handshakes N] [--small N] [--bulk N] [--json PATH]

The parent process is one node; it starts the other node as a child process (`--serve`) and measures,
over real TCP on 127.0.0.1 with the full stack (X25519/Ed25519 handshake, ChaCha20-Poly1305 frames,
canonical msgpack envelopes, handler dispatch):

- handshakes_per_s: sequential dial + handshake + hello exchange + close;
- small_msgs_per_s: one-way 200-byte messages (≤ 256 B) until the peer has handled them all;
- small_rpc_per_s: sequential request/response round trips of small messages;
- bulk_mb_per_s: one-way 1 MiB messages (MiB/s, counted when the peer's handler has them);
- raw_aead_mb_per_s: ChaCha20-Poly1305 encryption alone of 1 MiB buffers on one core, same run;
- bulk_ratio = bulk_mb_per_s / raw_aead_mb_per_s (target ≥ 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ledger.codec import Struct
from ledger.keys import PrivateKey
from p2p.connection import ConnectionConfig, PeerConnection, dial, serve
from p2p.messages import PROTOCOL_VERSION, Hello, MessageRegistry, default_registry

MIB = 1024 * 1024
CHAIN_ID = "bench"
GENESIS = b"\x42" * 32


@dataclasses.dataclass(frozen=True)
class Blob(Struct):
    data: bytes


@dataclasses.dataclass(frozen=True)
class Stats(Struct):
    reset: bool


@dataclasses.dataclass(frozen=True)
class StatsReply(Struct):
    count: int
    nbytes: int


def bench_registry() -> MessageRegistry:
    reg = default_registry()
    reg.register(200, "blob", Blob, 2 * MIB)
    reg.register(201, "stats", Stats, 64)
    reg.register(202, "stats_reply", StatsReply, 64)
    return reg


def hello_for(key: PrivateKey) -> Hello:
    return Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS, key.pubkey, 0, bytes(32), "127.0.0.1:0", "pocl-bench")


CONFIG = ConnectionConfig(handshake_timeout_s=10.0, request_timeout_s=60.0, idle_timeout_s=300.0, ping_interval_s=60.0)


# ---------------------------------------------------------------------- server node (child process)


async def serve_forever() -> None:
    key = PrivateKey.from_seed_text("bench-server")
    count = 0
    nbytes = 0

    async def handler(conn: PeerConnection, body: Struct) -> Struct | None:
        nonlocal count, nbytes
        if isinstance(body, Blob):
            count += 1
            nbytes += len(body.data)
            return None
        if isinstance(body, Stats):
            reply = StatsReply(count, nbytes)
            if body.reset:
                count = nbytes = 0
            return reply
        return None

    server = await serve(
        "127.0.0.1", 0, lambda _conn: None, node_key=key, local_hello=hello_for(key),
        registry=bench_registry(), handler=handler, config=CONFIG,
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None))
    await stdin_closed  # the parent closes our stdin (or dies) when it is done
    server.close()


# ---------------------------------------------------------------------- client node (this process)


def raw_aead_mb_per_s(seconds: float = 1.0) -> float:
    aead = ChaCha20Poly1305(os.urandom(32))
    buf = os.urandom(MIB)
    nonce = bytes(12)
    n = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        aead.encrypt(nonce, buf, None)
        n += 1
    return n / elapsed


async def measure(port: int, args: argparse.Namespace) -> dict[str, float]:
    key = PrivateKey.from_seed_text("bench-client")
    server_id = PrivateKey.from_seed_text("bench-server").pubkey
    reg = bench_registry()

    async def no_handler(_conn: PeerConnection, _body: Struct) -> None:
        return None

    async def connect() -> PeerConnection:
        return await dial("127.0.0.1", port, node_key=key, local_hello=hello_for(key), registry=reg,
                          handler=no_handler, expected_node_id=server_id, config=CONFIG)

    res: dict[str, float] = {}
    t0 = time.perf_counter()
    for _ in range(args.handshakes):
        conn = await connect()
        conn.close("bench")
        await conn.wait_closed()
    res["handshakes_per_s"] = args.handshakes / (time.perf_counter() - t0)

    conn = await connect()
    await conn.request(Stats(True), 10.0)

    small = Blob(os.urandom(200))
    assert len(reg.encode_body(small)) <= 256
    t0 = time.perf_counter()
    for _ in range(args.small):
        await conn.send(small)
    reply = await conn.request(Stats(True), 60.0)
    res["small_msgs_per_s"] = args.small / (time.perf_counter() - t0)
    assert isinstance(reply, StatsReply) and reply.count == args.small, reply

    n_rpc = max(1, args.small // 10)
    t0 = time.perf_counter()
    for _ in range(n_rpc):
        await conn.request(Stats(False), 10.0)
    res["small_rpc_per_s"] = n_rpc / (time.perf_counter() - t0)

    blob = Blob(os.urandom(MIB))
    for _ in range(8):  # warm up buffers and TCP windows
        await conn.send(blob)
    await conn.request(Stats(True), 60.0)
    t0 = time.perf_counter()
    for _ in range(args.bulk):
        await conn.send(blob)
    reply = await conn.request(Stats(True), 120.0)
    elapsed = time.perf_counter() - t0
    assert isinstance(reply, StatsReply) and reply.nbytes == args.bulk * MIB, reply
    res["bulk_mb_per_s"] = args.bulk / elapsed
    conn.close("bench done")
    await conn.wait_closed()
    return res


def run(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    child = subprocess.Popen(
        [sys.executable, "-m", "scripts.bench.p2p", "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env=env, text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server node failed to start: {line!r}")
        port = int(line.split()[1])
        raw_before = raw_aead_mb_per_s()
        res = asyncio.run(measure(port, args))
        raw_after = raw_aead_mb_per_s()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    res["raw_aead_mb_per_s"] = max(raw_before, raw_after)
    res["bulk_ratio"] = res["bulk_mb_per_s"] / res["raw_aead_mb_per_s"]
    return {
        "benchmark": "p2p",
        "command": "python -m scripts.bench.p2p " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "params": {"handshakes": args.handshakes, "small_msgs": args.small, "small_bytes": 200,
                   "bulk_msgs": args.bulk, "bulk_bytes": MIB},
        **{k: round(v, 3) for k, v in res.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=300)
    ap.add_argument("--small", type=int, default=50_000, help="number of 200-byte one-way messages")
    ap.add_argument("--bulk", type=int, default=1024, help="number of 1 MiB one-way messages")
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(serve_forever())
        return 0
    res = run(args)
    rows = [
        ("handshakes/s", f"{res['handshakes_per_s']:.0f}"),
        ("small msgs/s (200 B one-way)", f"{res['small_msgs_per_s']:.0f}"),
        ("small request/response/s", f"{res['small_rpc_per_s']:.0f}"),
        ("bulk MiB/s (1 MiB msgs)", f"{res['bulk_mb_per_s']:.0f}"),
        ("raw ChaCha20-Poly1305 MiB/s (1 core)", f"{res['raw_aead_mb_per_s']:.0f}"),
        ("bulk ratio (target >= 0.5)", f"{res['bulk_ratio']:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"p2p transport, {res['machine']}, python {res['python']}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
