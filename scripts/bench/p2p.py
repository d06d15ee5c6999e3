"""P2P transport throughput: two nodes as separate processes on loopback.

    python -m scripts.bench.p2p [--handshakes N] [--small N] [--bulk N] [--rounds R] [--json PATH]

The parent process is one node; it starts the other node as a child process (`--serve`) and measures,
over real TCP on 127.0.0.1 with the full stack (X25519/Ed25519 handshake, ChaCha20-Poly1305 frames,
canonical msgpack envelopes, handler dispatch):

- handshakes_per_s: sequential dial + handshake + hello exchange + close;
- small_msgs_per_s: one-way 200-byte messages (≤ 256 B) until the peer has handled them all;
- small_rpc_per_s: sequential request/response round trips of small messages;
- bulk_mb_per_s: one-way 1 MiB messages (MiB/s, counted when the peer's handler has them);
- raw_aead_mb_per_s: ChaCha20-Poly1305 encryption alone of 1 MiB buffers on one core, same run;
- bulk_ratio = bulk_mb_per_s / raw_aead_mb_per_s (target ≥ 0.5);
- raw_tcp_mb_per_s / raw_aead_tcp_mb_per_s: blocking sockets sending 1 MiB blocks between two processes,
  plain and with ChaCha20-Poly1305 on both sides (no framing, codec or asyncio): the ceilings of this
  machine, and bulk_vs_raw_aead_tcp, how close the full stack gets to the encrypted one.

Bulk runs in `--rounds` rounds, each right after its own raw AEAD measure (a VM's CPU speed drifts by
tens of percent from one second to the next); the two figures are the medians over the rounds, and the
JSON keeps every round.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey
from pocl.p2p.connection import ConnectionConfig, PeerConnection
from pocl.p2p.dial import dial, serve
from pocl.p2p.frames import TAG_LEN
from pocl.p2p.malloc_tuning import keep_large_buffers_in_heap
from pocl.p2p.message_ids import MessageId
from pocl.p2p.messages import PROTOCOL_VERSION, Hello, MessageRegistry, default_registry
from pocl.p2p.socket_tuning import congestion_control_of, use_unpaced_congestion_control

from scripts.bench.report import print_rows, write_json

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
    cpu_ns: int  # the server process's CPU time so far


def bench_registry() -> MessageRegistry:
    reg = default_registry()
    reg.register(MessageId(200, "blob", "bench"), Blob, 2 * MIB)
    reg.register(MessageId(201, "stats", "bench"), Stats, 64)
    reg.register(MessageId(202, "stats_reply", "bench"), StatsReply, 64)
    return reg


def hello_for(key: PrivateKey) -> Hello:
    return Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS, key.pubkey, 0, bytes(32), "127.0.0.1:0", "pocl-bench")


def bench_config(system_congestion_control: bool) -> ConnectionConfig:
    return ConnectionConfig(
        handshake_timeout_s=10.0,
        request_timeout_s=60.0,
        idle_timeout_s=300.0,
        ping_interval_s=60.0,
        **({"loopback_congestion_control": ()} if system_congestion_control else {}),
    )


def tcp_congestion_control(conn: PeerConnection) -> str:
    """The congestion control algorithm of the connection's socket, for the report."""
    transport = conn._proto.transport
    return (congestion_control_of(transport.get_extra_info("socket")) if transport else None) or "unknown"


# ---------------------------------------------------------------------- server node (child process)


async def serve_forever(config: ConnectionConfig) -> None:
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
            reply = StatsReply(count, nbytes, time.process_time_ns())
            if body.reset:
                count = nbytes = 0
            return reply
        return None

    server = await serve(
        "127.0.0.1",
        0,
        lambda _conn: None,
        node_key=key,
        local_hello=hello_for(key),
        registry=bench_registry(),
        handler=handler,
        config=config,
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None))
    await stdin_closed  # the parent closes our stdin (or dies) when it is done
    server.close()


RAW_KEY = b"\x07" * 32


def serve_raw_tcp(encrypted: bool) -> None:
    """Plain TCP sink, no framing or asyncio: the loopback ceiling on this machine. With `encrypted`,
    each 1 MiB block is a ChaCha20-Poly1305 ciphertext decrypted into a reused buffer: the ceiling of
    any encrypted transport here, with nothing of ours in the way."""
    aead = ChaCha20Poly1305(RAW_KEY)
    block = MIB + TAG_LEN if encrypted else MIB
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(f"PORT {server.getsockname()[1]}", flush=True)
        conn, _ = server.accept()
        with conn:
            blocks = int.from_bytes(conn.recv(8), "big")
            buf = bytearray(block)
            view = memoryview(buf)
            plain = bytearray(MIB)
            for _ in range(blocks):
                got = 0
                while got < block:
                    n = conn.recv_into(view[got:])
                    if not n:
                        return
                    got += n
                if encrypted:
                    aead.decrypt_into(bytes(12), buf, None, plain)
            conn.sendall(blocks.to_bytes(8, "big"))


# ---------------------------------------------------------------------- client node (this process)


def start_child(*flags: str) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-m", "scripts.bench.p2p", *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("PORT "):
        child.kill()
        raise RuntimeError(f"bench child {flags} failed to start: {line!r}")
    return child, int(line.split()[1])


def stop_child(child: subprocess.Popen[str]) -> None:
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()


def raw_tcp_mb_per_s(n_mib: int, *, encrypted: bool, congestion_control: tuple[str, ...]) -> float:
    """Blocking TCP between two processes over loopback in 1 MiB blocks (no framing, no asyncio), with
    the congestion control the node would pick; `encrypted`: ChaCha20-Poly1305 on both sides too."""
    child, port = start_child("--serve-raw-aead" if encrypted else "--serve-raw")
    try:
        aead = ChaCha20Poly1305(RAW_KEY)
        data = os.urandom(MIB)
        out = bytearray(MIB + TAG_LEN if encrypted else MIB)
        out[:MIB] = data
        with socket.create_connection(("127.0.0.1", port)) as sock:
            use_unpaced_congestion_control(sock, congestion_control)
            sock.sendall(n_mib.to_bytes(8, "big"))
            t0 = time.perf_counter()
            for _ in range(n_mib):
                if encrypted:
                    aead.encrypt_into(bytes(12), data, None, out)
                sock.sendall(out)
            got = int.from_bytes(sock.recv(8), "big")
            elapsed = time.perf_counter() - t0
        assert got == n_mib
        return n_mib / elapsed
    finally:
        stop_child(child)


def raw_aead_mb_per_s(seconds: float) -> tuple[float, float]:
    """(wall-clock, CPU-time) MiB/s of ChaCha20-Poly1305 encryption of 1 MiB buffers on one core."""
    aead = ChaCha20Poly1305(os.urandom(32))
    buf = os.urandom(MIB)
    nonce = bytes(12)
    n = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - t0) < seconds:
        aead.encrypt(nonce, buf, None)
        n += 1
    return n / elapsed, n / max(time.process_time() - cpu0, 1e-9)


async def measure(port: int, args: argparse.Namespace) -> tuple[dict[str, float], list[dict[str, float]], str]:
    key = PrivateKey.from_seed_text("bench-client")
    server_id = PrivateKey.from_seed_text("bench-server").pubkey
    reg = bench_registry()

    async def no_handler(_conn: PeerConnection, _body: Struct) -> None:
        return None

    async def connect() -> PeerConnection:
        return await dial(
            "127.0.0.1",
            port,
            node_key=key,
            local_hello=hello_for(key),
            registry=reg,
            handler=no_handler,
            expected_node_id=server_id,
            config=bench_config(args.system_congestion_control),
        )

    res: dict[str, float] = {}
    t0 = time.perf_counter()
    for _ in range(args.handshakes):
        conn = await connect()
        conn.close("bench")
        await conn.wait_closed()
    res["handshakes_per_s"] = args.handshakes / (time.perf_counter() - t0)

    conn = await connect()
    await conn.request(Stats(True), 10.0)
    congestion_control = tcp_congestion_control(conn)

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
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        # Raw AEAD right before each bulk round: a VM's CPU speed drifts, so each bulk figure is compared
        # with the encryption speed of the same moment.
        raw_wall, raw_cpu = raw_aead_mb_per_s(args.raw_seconds)
        before = await conn.request(Stats(True), 60.0)
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(args.bulk):
            await conn.send(blob)
        reply = await conn.request(Stats(True), 120.0)
        elapsed, cpu_sender = time.perf_counter() - t0, time.process_time() - cpu0
        assert isinstance(before, StatsReply) and isinstance(reply, StatsReply), reply
        assert reply.nbytes == args.bulk * MIB, reply
        cpu_receiver = (reply.cpu_ns - before.cpu_ns) / 1e9
        rounds.append(
            {
                "bulk_mb_per_s": args.bulk / elapsed,
                "raw_aead_mb_per_s": raw_wall,
                "raw_aead_cpu_mb_per_s": raw_cpu,
                "sender_cpu_ms_per_mb": 1000 * cpu_sender / args.bulk,
                "receiver_cpu_ms_per_mb": 1000 * cpu_receiver / args.bulk,
            }
        )
    conn.close("bench done")
    await conn.wait_closed()
    return res, rounds, congestion_control


def run(args: argparse.Namespace) -> dict:
    flags = ["--no-malloc-tuning"] if args.no_malloc_tuning else []
    if args.system_congestion_control:
        flags.append("--system-congestion-control")
    child, port = start_child("--serve", *flags)
    try:
        res, rounds, congestion_control = asyncio.run(measure(port, args))
    finally:
        stop_child(child)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    res["bulk_mb_per_s"] = med("bulk_mb_per_s")
    res["raw_aead_mb_per_s"] = med("raw_aead_mb_per_s")
    res["bulk_ratio"] = res["bulk_mb_per_s"] / res["raw_aead_mb_per_s"]
    round_ratios = [r["bulk_mb_per_s"] / r["raw_aead_mb_per_s"] for r in rounds]
    res["bulk_ratio_min"], res["bulk_ratio_max"] = min(round_ratios), max(round_ratios)
    # CPU-time view (robust on a busy machine): what each side's CPU cost per MiB would allow.
    res["bulk_sender_cpu_ms_per_mb"] = med("sender_cpu_ms_per_mb")
    res["bulk_receiver_cpu_ms_per_mb"] = med("receiver_cpu_ms_per_mb")
    res["bulk_cpu_bound_mb_per_s"] = 1000 / max(res["bulk_sender_cpu_ms_per_mb"], res["bulk_receiver_cpu_ms_per_mb"])
    res["raw_aead_cpu_mb_per_s"] = med("raw_aead_cpu_mb_per_s")
    res["bulk_cpu_ratio"] = res["bulk_cpu_bound_mb_per_s"] / res["raw_aead_cpu_mb_per_s"]
    cc = bench_config(args.system_congestion_control).loopback_congestion_control
    res["raw_tcp_mb_per_s"] = raw_tcp_mb_per_s(args.bulk, encrypted=False, congestion_control=cc)
    res["raw_tcp_ratio"] = res["raw_tcp_mb_per_s"] / res["raw_aead_mb_per_s"]
    res["raw_aead_tcp_mb_per_s"] = statistics.median(
        raw_tcp_mb_per_s(args.bulk, encrypted=True, congestion_control=cc) for _ in range(3)
    )
    res["raw_aead_tcp_ratio"] = res["raw_aead_tcp_mb_per_s"] / res["raw_aead_mb_per_s"]
    res["bulk_vs_raw_aead_tcp"] = res["bulk_mb_per_s"] / res["raw_aead_tcp_mb_per_s"]
    res["load_avg_1m"] = os.getloadavg()[0]
    return {
        "benchmark": "p2p",
        "command": "python -m scripts.bench.p2p " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "params": {
            "handshakes": args.handshakes,
            "small_msgs": args.small,
            "small_bytes": 200,
            "bulk_msgs_per_round": args.bulk,
            "bulk_rounds": args.rounds,
            "bulk_bytes": MIB,
        },
        "tcp_congestion_control": congestion_control,
        **{k: round(v, 3) for k, v in res.items()},
        "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=300)
    ap.add_argument("--small", type=int, default=50_000, help="number of 200-byte one-way messages")
    ap.add_argument("--bulk", type=int, default=1024, help="number of 1 MiB one-way messages per round")
    ap.add_argument("--rounds", type=int, default=5, help="bulk rounds, each after its own raw AEAD measure")
    ap.add_argument("--raw-seconds", type=float, default=0.5, help="duration of each raw AEAD measure")
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="keep glibc's default malloc thresholds (a node raises them at start-up)",
    )
    ap.add_argument(
        "--system-congestion-control",
        action="store_true",
        help="keep the system's TCP congestion control on loopback (the node switches off pacing ones)",
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-raw-aead", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    malloc_tuned = False if args.no_malloc_tuning else keep_large_buffers_in_heap()
    if args.serve:
        asyncio.run(serve_forever(bench_config(args.system_congestion_control)))
        return 0
    if args.serve_raw:
        serve_raw_tcp(encrypted=False)
        return 0
    if args.serve_raw_aead:
        serve_raw_tcp(encrypted=True)
        return 0
    res = run(args)
    res["malloc_tuned"] = malloc_tuned
    rows = [
        ("handshakes/s", f"{res['handshakes_per_s']:.0f}"),
        ("small msgs/s (200 B one-way)", f"{res['small_msgs_per_s']:.0f}"),
        ("small request/response/s", f"{res['small_rpc_per_s']:.0f}"),
        ("bulk MiB/s (1 MiB msgs)", f"{res['bulk_mb_per_s']:.0f}"),
        ("raw ChaCha20-Poly1305 MiB/s (1 core)", f"{res['raw_aead_mb_per_s']:.0f}"),
        (
            "bulk ratio (target >= 0.5) | rounds min-max",
            f"{res['bulk_ratio']:.2f} | {res['bulk_ratio_min']:.2f}-{res['bulk_ratio_max']:.2f}",
        ),
        (
            "plain TCP MiB/s (no crypto) | / raw AEAD",
            f"{res['raw_tcp_mb_per_s']:.0f} | {res['raw_tcp_ratio']:.2f}",
        ),
        (
            "encrypted TCP, no framing/asyncio MiB/s | / raw AEAD",
            f"{res['raw_aead_tcp_mb_per_s']:.0f} | {res['raw_aead_tcp_ratio']:.2f}",
        ),
        ("bulk / encrypted TCP (stack efficiency)", f"{res['bulk_vs_raw_aead_tcp']:.2f}"),
        (
            "bulk CPU ms/MiB sender | receiver",
            f"{res['bulk_sender_cpu_ms_per_mb']:.2f} | {res['bulk_receiver_cpu_ms_per_mb']:.2f}",
        ),
        (
            "bulk CPU-bound MiB/s | raw AEAD CPU MiB/s",
            f"{res['bulk_cpu_bound_mb_per_s']:.0f} | {res['raw_aead_cpu_mb_per_s']:.0f}",
        ),
        ("bulk CPU ratio", f"{res['bulk_cpu_ratio']:.2f}"),
        ("load average (1 min)", f"{res['load_avg_1m']:.1f}"),
    ]
    print(
        f"p2p transport, {res['machine']}, python {res['python']}, malloc tuned: {malloc_tuned}, "
        f"TCP congestion control: {res['tcp_congestion_control']}"
    )
    print_rows(rows)
    write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
