"""P2P network layer throughput: flood gossip over many hosts and block sync from several peers.

    python -m scripts.bench.p2p_network [--hosts N] [--messages N] [--blocks N] [--json PATH]

All hosts run in this one process on 127.0.0.1 (real TCP, full handshake, encrypted frames), so the
figures are per CPU core for the WHOLE simulated network, a lower bound for one real node:

- gossip: `--hosts` hosts in a ring plus chords (each host has 4 links); `--messages` 200-byte
  messages published round-robin by all hosts; timed until every host has delivered every message.
  `gossip_deliveries_per_s` = hosts × messages / seconds (each delivery = one validate + one deliver on
  one host), `gossip_copies_per_s` counts every copy received including flood duplicates, and
  `p50/p99_latency_ms` is the publish → last-host delivery time of individual probe messages sent on
  an idle network;
- sync: one client fetches `--blocks` blocks (10 txs of 150 bytes each, one Ed25519 commit signature)
  from 3 peers with the default `SyncConfig`, verifying each commit signature: `sync_blocks_per_s`.
Prints a table and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import platform
import statistics
import time

from pocl.ledger.block import VOTE_PRECOMMIT, Block, Commit, CommitSig, Header, txs_root, vote_sign_bytes
from pocl.ledger.codec import Struct
from pocl.ledger.hashing import TAG_VOTE
from pocl.ledger.keys import PrivateKey
from pocl.p2p.connection import ConnectionConfig
from pocl.p2p.gossip import Gossip
from pocl.p2p.host import Host, HostConfig
from pocl.p2p.message_ids import MessageId
from pocl.p2p.sync import SyncConfig, SyncService

from scripts.bench.report import print_rows, write_json

CHAIN_ID = "bench-p2p"
GENESIS_HASH = hashlib.sha256(b"bench-p2p").digest()
BENCH = MessageId(300, "bench", "bench")


@dataclasses.dataclass(frozen=True)
class BenchMsg(Struct):
    seq: int
    payload: bytes


def make_host(name: str) -> Host:
    cfg = HostConfig(max_inbound=64, max_outbound=64, transport=ConnectionConfig(idle_timeout_s=120.0))
    return Host(PrivateKey.from_seed_text(name), chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, config=cfg)


async def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.001)


async def bench_gossip(n_hosts: int, n_messages: int) -> dict[str, float]:
    hosts = [make_host(f"g{i}") for i in range(n_hosts)]
    routers = [Gossip(h) for h in hosts]
    delivered = [0] * n_hosts
    seen_at: dict[int, list[float]] = {}

    def deliver_for(i: int):  # type: ignore[no-untyped-def]
        def deliver(body: BenchMsg, _sender: bytes) -> None:
            delivered[i] += 1
            seen_at.setdefault(body.seq, []).append(time.perf_counter())

        return deliver

    for i, g in enumerate(routers):
        g.register(BENCH, BenchMsg, 4096, validate=lambda b, s: True, deliver=deliver_for(i))
    for h in hosts:
        await h.start()
    try:
        links = {(i, (i + 1) % n_hosts) for i in range(n_hosts)} | {
            (i, (i + n_hosts // 2) % n_hosts) for i in range(n_hosts // 2)
        }
        for i, j in links:
            await hosts[i].connect(hosts[j].listen_addr)
        await wait_for(lambda: sum(len(h.peers()) for h in hosts) == 2 * len(links), 30)

        payload = bytes(200)
        start = time.perf_counter()
        for seq in range(n_messages):
            routers[seq % n_hosts].publish(BenchMsg(seq, payload))
            if seq % 200 == 199:
                await asyncio.sleep(0)  # let the loop move data instead of queueing everything first
        expected = n_messages * (n_hosts - 1)
        await wait_for(lambda: sum(delivered) >= expected, 300)
        elapsed = time.perf_counter() - start
        copies = sum(g.stats.received for g in routers)

        latencies = []
        for k in range(50):
            seq = n_messages + k
            t0 = time.perf_counter()
            routers[k % n_hosts].publish(BenchMsg(seq, payload))
            await wait_for(lambda s=seq: len(seen_at.get(s, ())) == n_hosts - 1, 30)
            latencies.append((max(seen_at[seq]) - t0) * 1000)
        latencies.sort()
        return {
            "gossip_hosts": n_hosts,
            "gossip_links": len(links),
            "gossip_messages": n_messages,
            "gossip_seconds": elapsed,
            "gossip_deliveries_per_s": expected / elapsed,
            "gossip_copies_per_s": copies / elapsed,
            "gossip_p50_latency_ms": statistics.median(latencies),
            "gossip_p99_latency_ms": latencies[int(len(latencies) * 0.99) - 1],
        }
    finally:
        await asyncio.gather(*(h.stop() for h in hosts))


def make_chain(n: int, key: PrivateKey) -> list[tuple[bytes, bytes]]:
    out = []
    prev = b""
    for h in range(1, n + 1):
        txs = [hashlib.sha256(f"{h}/{i}".encode()).digest() * 5 for i in range(10)]  # 160-byte txs
        block = Block(Header(h, h * 1000, prev, key.address, txs_root(txs), bytes(32), b"", b""), txs, None)
        sig = key.sign(TAG_VOTE, vote_sign_bytes(CHAIN_ID, VOTE_PRECOMMIT, h, 0, block.hash))
        out.append((block.encode(), Commit(h, 0, block.hash, [CommitSig(key.pubkey, sig)]).encode()))
        prev = block.hash
    return out


async def bench_sync(n_blocks: int) -> dict[str, float]:
    key = PrivateKey.from_seed_text("bench-validator")
    chain = make_chain(n_blocks, key)
    tip = Block.decode(chain[-1][0]).hash
    client = make_host("sync-client")
    service = SyncService(client, status=lambda: (0, bytes(32)), get_block_with_commit=lambda h: None)
    servers = [make_host(f"sync-server-{i}") for i in range(3)]
    for s in servers:
        SyncService(
            s,
            status=lambda: (n_blocks, tip),
            get_block_with_commit=lambda h: chain[h - 1] if 1 <= h <= n_blocks else None,
        )
    for h in (client, *servers):
        await h.start()
    try:
        for s in servers:
            await client.connect(s.listen_addr)
        applied = 0

        def verify(block: Block, commit: Commit) -> bool:
            return all(v.validator == key.pubkey and v.verify_signature() for v in commit.votes(CHAIN_ID))

        async def apply(block: Block, commit: Commit) -> None:
            nonlocal applied
            applied += 1

        start = time.perf_counter()
        result = await service.syncer(start_height=1, apply=apply, verify=verify, config=SyncConfig()).run()
        elapsed = time.perf_counter() - start
        assert result.height == n_blocks and applied == n_blocks
        return {
            "sync_blocks": n_blocks,
            "sync_seconds": elapsed,
            "sync_blocks_per_s": n_blocks / elapsed,
            "sync_mb_per_s": sum(len(b) + len(c) for b, c in chain) / elapsed / 2**20,
        }
    finally:
        await asyncio.gather(*(h.stop() for h in (client, *servers)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--blocks", type=int, default=2000)
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args(argv)

    async def run() -> dict[str, float]:
        out = await bench_gossip(args.hosts, args.messages)
        out.update(await bench_sync(args.blocks))
        return out

    results: dict[str, object] = dict(asyncio.run(run()))
    results["python"] = platform.python_version()
    results["machine"] = platform.machine()
    print_rows((k, f"{v:,.1f}" if isinstance(v, float) else str(v)) for k, v in results.items())
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
