"""BFT engine cost: the pure state machine, commit verification, proposer selection, the signing guard.

    python -m scripts.bench.bft [--validators 4,10,30,100] [--heights N] [--json PATH]

- `machine`: N validators' state machines on an in-memory bus (every vote reaches every node, no
  timeouts needed), run for `--heights` heights. Reports the CPU time one node spends per height
  (receiving N prevotes + N precommits, each signature verified) and per received vote. This is the
  consensus overhead a node pays per block, apart from block validation and networking.
- `verify_commit`: one full commit of N signatures.
- `proposer`: cold schedule build for N validators with 18-digit stakes, and warm lookups.
- `guard_sign`: SigningGuard.sign_vote with fsync (temp file + rename + dir fsync) on this machine's disk.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import deque
from pathlib import Path

from pocl.consensus.bft.commit import verify_commit
from pocl.consensus.bft.machine import (
    Broadcast,
    ConsensusMachine,
    Decide,
    NewHeight,
    ProposalReceived,
    VoteReceived,
)
from pocl.consensus.bft.messages import Proposal, ProposalMessage, make_vote
from pocl.consensus.bft.proposer import ProposerSchedule, _schedule, proposer_for, proposer_weights
from pocl.consensus.bft.votes import ValidatorSet
from pocl.consensus.signing_state import SigningGuard
from pocl.ledger.block import VOTE_PREVOTE, Block, Header, Vote, txs_root
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams

from scripts.bench.report import write_json

CHAIN_ID = "bench"


class _Signer:
    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.pubkey = key.pubkey

    def sign_vote(self, vote_type: int, height: int, round_: int, block_hash: bytes) -> Vote:
        return make_vote(self.key, CHAIN_ID, vote_type, height, round_, block_hash)

    def sign_proposal(self, height: int, round_: int, block_hash: bytes, pol_round: int) -> Proposal:
        return Proposal.create(self.key, CHAIN_ID, height, round_, block_hash, pol_round)


def bench_machine(n: int, heights: int) -> dict[str, float]:
    keys = [PrivateKey.from_seed_text(f"bench-{i}") for i in range(n)]
    vals = ValidatorSet([(k.pubkey, 100 + i) for i, k in enumerate(keys)])

    def get_value_for(key: PrivateKey):
        def get_value(h: int, r: int) -> Block:
            txs = [f"{h}/{r}".encode()]
            return Block(Header(h, h, b"", key.address, txs_root(txs), bytes(32), b"", b""), txs, None)
        return get_value

    machines = [ConsensusMachine(CHAIN_ID, ChainParams(), signer=_Signer(k), get_value=get_value_for(k),
                                 valid=lambda b: True) for k in keys]
    cpu = [0.0] * n
    received_votes = [0] * n
    queue: deque[tuple[int, object]] = deque()

    def deliver(i: int, event: object) -> list[int]:
        t0 = time.thread_time()
        actions = machines[i].handle(event)  # type: ignore[arg-type]
        cpu[i] += time.thread_time() - t0
        decided = []
        for a in actions:
            if isinstance(a, Broadcast):
                msg = a.message
                ev = ProposalReceived(msg) if isinstance(msg, ProposalMessage) else VoteReceived(msg.vote)
                for j in range(n):
                    if j != i:
                        queue.append((j, ev))
            elif isinstance(a, Decide):
                decided.append(a.height)
        return decided

    wall0 = time.perf_counter()
    for h in range(1, heights + 1):
        done = set()
        for i in range(n):
            if deliver(i, NewHeight(h, vals)):
                done.add(i)
        while queue:
            i, ev = queue.popleft()
            if isinstance(ev, VoteReceived) and ev.vote.height == h:
                received_votes[i] += 1
            if deliver(i, ev):
                done.add(i)
        assert len(done) == n, "not every node decided"
    wall = time.perf_counter() - wall0
    per_node_cpu = sum(cpu) / n
    return {
        "validators": n,
        "heights": heights,
        "node_cpu_ms_per_height": 1e3 * per_node_cpu / heights,
        "node_us_per_received_vote": 1e6 * sum(cpu) / max(1, sum(received_votes)),
        "network_wall_s": wall,
    }


def bench_commit(n: int, reps: int = 20) -> float:
    keys = [PrivateKey.from_seed_text(f"bench-{i}") for i in range(n)]
    vals = ValidatorSet([(k.pubkey, 1) for k in keys])
    from pocl.consensus.bft.votes import VoteSet
    from pocl.ledger.block import VOTE_PRECOMMIT

    block = b"\x01" * 32
    vs = VoteSet(CHAIN_ID, 1, 0, VOTE_PRECOMMIT, vals)
    for k in keys:
        vs.add(make_vote(k, CHAIN_ID, VOTE_PRECOMMIT, 1, 0, block))
    commit = vs.make_commit(block)
    t0 = time.perf_counter()
    for _ in range(reps):
        verify_commit(CHAIN_ID, commit, vals, block, 1)
    return 1e3 * (time.perf_counter() - t0) / reps


def bench_proposer(n: int) -> tuple[float, float]:
    keys = [PrivateKey.from_seed_text(f"bench-{i}") for i in range(n)]
    vals = ValidatorSet([(k.pubkey, 10**18 + 7919 * i * 10**12) for i, k in enumerate(keys)])
    _schedule.cache_clear()
    period = ProposerSchedule(proposer_weights([v.power for v in vals]), []).period
    t0 = time.perf_counter()
    proposer_for(vals, period, 0)  # worst case: the whole cycle is replayed
    cold_ms = 1e3 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for h in range(1, 10_001):
        proposer_for(vals, h, h % 3)
    warm_us = 1e6 * (time.perf_counter() - t0) / 10_000
    return cold_ms, warm_us


def bench_guard(reps: int = 50) -> float:
    with tempfile.TemporaryDirectory() as d:
        g = SigningGuard(Path(d) / "state", PrivateKey.from_seed_text("bench-guard"), CHAIN_ID)
        t0 = time.perf_counter()
        for h in range(1, reps + 1):
            g.sign_vote(VOTE_PREVOTE, h, 0, b"\x02" * 32)
        return 1e3 * (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--validators", default="4,10,30,100")
    ap.add_argument("--heights", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sizes = [int(x) for x in args.validators.split(",")]
    rows = []
    print(f"{'N':>4} {'node ms/height':>15} {'us/vote':>8} {'commit verify ms':>17} "
          f"{'proposer cold ms':>17} {'proposer warm us':>17}")
    for n in sizes:
        m = bench_machine(n, args.heights)
        m["verify_commit_ms"] = bench_commit(n)
        m["proposer_cold_ms"], m["proposer_warm_us"] = bench_proposer(n)
        rows.append(m)
        print(f"{n:>4} {m['node_cpu_ms_per_height']:>15.2f} {m['node_us_per_received_vote']:>8.1f} "
              f"{m['verify_commit_ms']:>17.2f} {m['proposer_cold_ms']:>17.1f} {m['proposer_warm_us']:>17.1f}")
    guard_ms = bench_guard()
    print(f"SigningGuard.sign_vote with fsync: {guard_ms:.2f} ms")
    result = {"machine": platform.platform(), "python": platform.python_version(), "rows": rows,
              "guard_sign_ms": guard_ms}
    write_json(args.json, result)


if __name__ == "__main__":
    main()
