"""Reaching the tip by state sync vs by block sync, disk with and without pruning, P2P bytes per round.

    python -m scripts.bench.sync [--heights 10000] [--models cnn-digits,cnn-mnist] [--miners 4]
        [--round-gap 0] [--snapshot-interval 1000] [--json PATH]

For each model, a chain of `--heights` heights is built block by block on a real LevelDB store
(`node.chain.Chain`, the real executor with PoCL's hooks): `--miners` staked, registered miners run real
PoCL rounds (`--round-gap` empty blocks between them; by default none for cnn-digits, as on a devnet,
and 96 for cnn-mnist, whose rounds span minutes of training), sending what the simulator's miners
send (`node.simulation.miners.phase_txs`, behaviour `lazy-noise`: G_{r-1} plus small noise, so every
`pocl.predict` carries the model's full weights without paying for training), and every block is
committed by 3 of the 4 genesis validators with real signatures. Snapshots are written as a node with
`[statesync] snapshot_interval` writes them; a joining node finds the newest one somewhere between 0 and
one interval behind the tip, so state sync is measured from a snapshot 0, interval/2 (the headline
`state_sync_s`: the mean) and a full interval behind; behind it the node block-syncs the rest.

Two P2P hosts in this process serve that chain (block sync and the state-sync reactor, as a node
registers them). Then a fresh `Node` (real LevelDB, loopback sockets, its own sync code) joins them
once with `[statesync] enable` per snapshot (restore the offered snapshot, verified against the genesis
validators, then block-sync the rest) and once without (block sync from genesis: every block fetched,
its commit verified and executed). Measured for each: seconds from `Node.start()` to the tip, and the
TCP payload the node received on its P2P sockets (the kernel's `bytes_received`, read with `ss` as
`scripts.bench.compact` does). Both nodes must end on the chain's state root.

Disk per 1,000 blocks is `scripts.bench.pruning.measure_disk` on a chain of the same shape (heights,
round length, miners, predict tx size measured here): archive, and pruned with `--retain-blocks`,
`--model-history` and `--evidence-max-age`. `p2p_bytes_ratio` (P2P bytes received per node per PoCL
round / the round's tx bytes, compact propagation on) comes from `scripts.bench.compact` (a devnet of
separate node processes); `--no-p2p` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pocl.consensus.bft.messages import make_vote
from pocl.consensus.pocl.execution import PoclExecution
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import PHASE_DONE
from pocl.consensus.pocl.txs import KIND_POCL_PREDICT
from pocl.genesis.schema import Genesis, GenesisValidator, build_genesis
from pocl.ledger.block import VOTE_PRECOMMIT, Block, Commit, CommitSig
from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import GenesisAccount
from pocl.ledger.tx import TX_VERSION, SignedTx, Tx, sign_tx
from pocl.ml.adversary import LAZY_NOISE, Behaviour
from pocl.ml.datasets import load_dataset
from pocl.ml.shards import miner_data
from pocl.node.chain import Chain, open_genesis_chain
from pocl.node.config import Config
from pocl.node.devnet.params import devnet_chain
from pocl.node.node import Node
from pocl.node.pruning import dir_bytes
from pocl.node.reactors.statesync import StateSyncReactor
from pocl.node.simulation.miners import RoundWork, SimMiner, phase_txs
from pocl.node.snapshots import SnapshotDir, write_snapshot
from pocl.p2p.host import Host, HostConfig
from pocl.p2p.sync import SyncService

from scripts.bench import compact, pruning
from scripts.bench.report import print_rows, write_json

MB = 1024 * 1024
CHAIN_ID = "bench-sync"
DATASETS = {"cnn-digits": "digits", "cnn-mnist": "fashion-mnist"}  # model -> the dataset its miners hold
# Empty blocks between rounds by default: digits rounds run back to back as on a devnet (4 blocks each);
# a cnn-mnist round every 100 heights (training takes minutes; back to back, 4 miners' 4.8 MB predict txs
# every 4 blocks would make 48 GB per 10,000 heights).
ROUND_GAP = {"cnn-digits": 0, "cnn-mnist": 96}
VALIDATORS = [PrivateKey.from_seed_text(f"bench-sync-val-{i}") for i in range(4)]  # consensus keys
OPERATORS = [PrivateKey.from_seed_text(f"bench-sync-op-{i}") for i in range(4)]
SIGNERS = 3  # of the 4 equal validators: > 2/3 of the power
BLOCK_MS = 1_000
GENESIS_TIME_MS = 1_000
MINER_BALANCE = 10**12
SHARD_SIZE = 20  # the devnet's test shard size, capped at half the smallest held-out pool
SERVERS = 2
TARGET_SPEEDUP = 10.0
POLL_S = 0.05
SYNC_TIMEOUT_S = 6 * 3600.0


# --------------------------------------------------------------------------- the chain


class _ChainView:
    """What the simulator's miners read from and send to a chain, backed by a node's `Chain`."""

    def __init__(self, chain: Chain, pocl: PoclExecution, chain_id: str) -> None:
        self._chain = chain
        self.pocl = pocl
        self.chain_id = chain_id
        self.params = chain.params
        self.executor = chain.executor
        self._nonces: dict[bytes, int] = {}

    @property
    def state(self) -> Any:
        return self._chain.state

    @property
    def next_height(self) -> int:
        return self._chain.height + 1

    def sign(self, key: PrivateKey, kind: str, payload: Struct) -> SignedTx:
        nonce = self._nonces.get(key.address, 0)
        self._nonces[key.address] = nonce + 1
        tx = Tx(TX_VERSION, self.chain_id, kind, key.pubkey, nonce, self.params.min_fee, payload.to_list())
        return sign_tx(key, tx)

    def offer(self, key: PrivateKey, kind: str, payload: Struct) -> SignedTx | None:
        stx = self.sign(key, kind, payload)
        if self.executor.check_tx(self.state, stx) is not None:
            self._nonces[key.address] -= 1
            return None
        return stx

    def left_out(self, txs: list[SignedTx], block: Block) -> None:
        """Txs the block had no room for (a full block: cnn-mnist's predict txs) are sent again for the
        next block, as a mempool would keep them: their senders' nonces are given back. Nothing else may
        be refused: the miners only send what the chain accepts."""
        included = set(block.txs)
        for stx in txs:
            if stx.raw not in included:
                if stx.tx.kind != KIND_POCL_PREDICT or len(block.txs) == 0:
                    raise RuntimeError(f"height {block.height}: a {stx.tx.kind} tx was refused")
                self._nonces[stx.sender_address] -= 1

    def global_weights(self, model_hash: bytes) -> list[Any]:
        return self.pocl.global_weights(self.state, model_hash)


@dataclasses.dataclass
class BuiltChain:
    genesis: Genesis
    chain: Chain
    snapshots: dict[int, SnapshotDir]  # by lag behind the tip: one snapshot each, at height - lag
    rounds: int  # finalized
    round_blocks: float  # heights per round, on average
    tx_bytes: int
    predict_tx_bytes: int  # the largest pocl.predict tx (a miner's weights and predictions)
    build_s: float


def make_genesis(model: str, miners: list[SimMiner], round_gap: int) -> Genesis:
    pocl, params = devnet_chain(len(miners), model, {"round_gap_blocks": round_gap})
    pocl["test_shard_size"] = min(SHARD_SIZE, min(len(m.data.pool_y) for m in miners) // 2)
    stake = PoclParams.from_json(pocl).min_miner_stake
    return build_genesis(
        CHAIN_ID,
        [
            GenesisValidator(o.pubkey, k.pubkey, 1_000_000, 1_000)
            for o, k in zip(OPERATORS, VALIDATORS, strict=True)
        ],
        accounts=[GenesisAccount(m.address, MINER_BALANCE, stake, m.key.pubkey, miner=True) for m in miners],
        params=params,
        genesis_time_ms=GENESIS_TIME_MS,
        pocl=pocl,
    )


def sign_commit(block: Block) -> Commit:
    sigs = [
        CommitSig(k.pubkey, make_vote(k, CHAIN_ID, VOTE_PRECOMMIT, block.height, 0, block.hash).signature)
        for k in VALIDATORS[:SIGNERS]
    ]
    return Commit(block.height, 0, block.hash, sigs)


def _no_training(*_args: Any) -> list[np.ndarray]:
    raise AssertionError("lazy-noise miners do not train")


def build_chain(
    workdir: Path,
    model: str,
    heights: int,
    miners: int,
    round_gap: int,
    snapshot_lags: list[int],
    log: Callable[[str], None] = print,
    seed: int = 7,
) -> BuiltChain:
    """`heights` blocks of PoCL rounds, each committed by 3 of 4 validators; for each lag, a snapshot at
    `heights - lag` in a directory of its own (so a server can offer exactly that one)."""
    t0 = time.monotonic()
    ds = load_dataset(DATASETS[model], model_name=model)
    sims = [
        SimMiner(
            i,
            PrivateKey.from_seed_text(f"bench-sync-miner-{i}"),
            Behaviour(LAZY_NOISE),
            miner_data(ds, miners, i, seed=seed),
        )
        for i in range(miners)
    ]
    genesis = make_genesis(model, sims, round_gap)
    workdir.mkdir(parents=True, exist_ok=True)
    chain, pocl = open_genesis_chain(workdir / "chain.db", genesis)
    snapshots = {lag: SnapshotDir(workdir / f"snapshots-lag-{lag}") for lag in snapshot_lags}
    view = _ChainView(chain, pocl, CHAIN_ID)
    rounds = tx_bytes = predict_bytes = 0
    last_done = 0
    for h in range(1, heights + 1):
        rec = pocl.record_for_tx(chain.state, h)
        txs = phase_txs(view, rec, sims, _no_training, seed, RoundWork()) if rec is not None else []  # type: ignore[arg-type]
        last = chain.store.commit(chain.height) if chain.height else None
        block = chain.build_block(txs, VALIDATORS[h % 4].address, GENESIS_TIME_MS + h * BLOCK_MS, last)
        view.left_out(txs, block)
        chain.commit_block(block, sign_commit(block))
        sizes = [len(raw) for raw in block.txs]
        tx_bytes += sum(sizes)
        predict_bytes = max([predict_bytes, *sizes])
        if rec is not None:
            done = pocl.record(chain.state, rec.round)
            if done is not None and done.phase == PHASE_DONE and rec.round > last_done:
                rounds, last_done = rounds + 1, rec.round
        for lag, directory in snapshots.items():
            if h == heights - lag:
                state_view = chain.store.state_view()
                try:
                    write_snapshot(state_view, directory, keep_recent=1)
                finally:
                    state_view.release()
        if h % 1000 == 0:
            log(f"  [{model}] built {h}/{heights} heights, {rounds} rounds, {tx_bytes / MB:.0f} MB of txs")
    return BuiltChain(
        genesis,
        chain,
        snapshots,
        rounds,
        heights / max(1, rounds),
        tx_bytes,
        predict_bytes,
        time.monotonic() - t0,
    )


# --------------------------------------------------------------------------- syncing a fresh node


@dataclasses.dataclass
class _Server:
    key: PrivateKey
    host: Host

    @property
    def peer_addr(self) -> str:
        return f"{self.key.pubkey.hex()}@{self.host.listen_addr.host}:{self.host.listen_addr.port}"


async def _serve(built: BuiltChain, snapshots: SnapshotDir | None, index: int) -> _Server:
    """A P2P host serving the chain's blocks and snapshots, as a node registers them."""
    chain, genesis = built.chain, built.genesis
    key = PrivateKey.from_seed_text(f"bench-sync-server-{index}")
    host = Host(
        key,
        chain_id=genesis.chain_id,
        genesis_hash=genesis.hash,
        config=HostConfig(listen_host="127.0.0.1", listen_port=0),
        chain_tip=lambda: (chain.height, chain.head_hash),
    )
    SyncService(
        host,
        status=lambda: (chain.height, chain.head_hash),
        get_block_with_commit=chain.get_block_with_commit,
    )
    StateSyncReactor(host, chain.store, snapshots)
    await host.start()
    return _Server(key, host)


def _received_from(server_ports: set[int]) -> int:
    """TCP payload received so far by this process on sockets it dialled to the servers (the joining
    node's side: the servers never dial)."""
    sockets = compact.p2p_received({os.getpid(): 0}, server_ports)[0]
    return sum(n for (_lport, rport), n in sockets.items() if rport in server_ports)


async def _join(built: BuiltChain, home: Path, snapshots: SnapshotDir | None) -> dict[str, Any]:
    """A fresh node joins two servers of the chain: with state sync when `snapshots` are served."""
    state_sync = snapshots is not None
    servers = [await _serve(built, snapshots, i) for i in range(SERVERS)]
    ports = {s.host.listen_addr.port for s in servers}
    (home / "data").mkdir(parents=True)
    config = (
        Config()
        .replace("p2p", listen_addr="127.0.0.1:0", pex=False, persistent_peers=[s.peer_addr for s in servers])
        .replace("rpc", enabled=False)
        .replace("metrics", enabled=False)
        .replace("statesync", enable=state_sync, discovery_time_s=10.0)
    )
    node = Node(
        home=home,
        config=config,
        genesis=built.genesis,
        node_key=PrivateKey.from_seed_text(f"bench-sync-joiner-{state_sync}"),
        consensus_key=None,
    )
    tip = built.chain.height
    try:
        t0 = time.monotonic()
        await node.start()
        while node.chain is None or node.chain.height < tip:
            if time.monotonic() - t0 > SYNC_TIMEOUT_S:
                raise TimeoutError(f"{'state' if state_sync else 'block'} sync did not reach {tip}")
            await asyncio.sleep(POLL_S)  # polling the node's height; nothing to wait on
        seconds = time.monotonic() - t0
        received = _received_from(ports)
        assert node.chain is not None
        if node.chain.state.state_root() != built.chain.state.state_root():
            raise RuntimeError("the synced node's state root differs from the chain's")
        restored = node.restored.height if node.restored is not None else None
        if state_sync and restored is None:
            raise RuntimeError("state sync fell back to block sync")
        return {
            "seconds": seconds,
            "bytes": received,
            "restored_height": restored,
            "disk_mb": dir_bytes(home / "data") / MB,
            "load_avg_1m": os.getloadavg()[0],  # other processes share the cores: say how busy they were
        }
    finally:
        await node.stop()
        for s in servers:
            await s.host.stop()


# --------------------------------------------------------------------------- one model


def run_model(model: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"pocl-bench-sync-{model}-", dir=workdir))
    gap = ROUND_GAP[model] if args.round_gap is None else args.round_gap
    interval = args.snapshot_interval
    mean_lag = interval // 2  # the tip lies uniformly between two snapshots: on average half an interval on
    lags = sorted({0, mean_lag, interval})
    try:
        built = build_chain(base / "source", model, args.heights, args.miners, gap, lags)
        source_mb = dir_bytes(base / "source" / "chain.db") / MB
        print(
            f"  [{model}] chain built in {built.build_s:.0f}s: {built.rounds} rounds, "
            f"{built.tx_bytes / MB:.0f} MB of txs, store {source_mb:.0f} MB",
            flush=True,
        )
        by_lag: dict[int, dict[str, Any]] = {}
        for lag in lags:
            home = base / f"state-sync-{lag}"
            by_lag[lag] = asyncio.run(_join(built, home, built.snapshots[lag])) | {"lag": lag}
            shutil.rmtree(home, ignore_errors=True)
            print(
                f"  [{model}] state sync from a snapshot {lag} blocks behind the tip: "
                f"{by_lag[lag]['seconds']:.1f}s, {by_lag[lag]['bytes']:,} B",
                flush=True,
            )
        state = by_lag[mean_lag]
        block = asyncio.run(_join(built, base / "block-sync", None))
        print(f"  [{model}] block sync: {block['seconds']:.1f}s, {block['bytes']:,} B", flush=True)
        shutil.rmtree(base / "block-sync", ignore_errors=True)
        built.chain.store.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    shape = pruning.ChainShape(
        args.heights, max(1, round(built.round_blocks)), args.miners, built.predict_tx_bytes
    )
    params = dataclasses.replace(built.genesis.params, evidence_max_age_blocks=args.evidence_max_age)
    archive = pruning.measure_disk(shape, params, workdir=workdir)
    pruned = pruning.measure_disk(
        shape, params, retain_blocks=args.retain_blocks, model_history=args.model_history, workdir=workdir
    )
    ratio = None
    if args.p2p:
        p2p = compact.run_mode(True, args.miners, args.p2p_rounds, LAZY_NOISE, 900.0, DATASETS[model])
        ratio = p2p["p2p_bytes_ratio"]
    return {
        "model": model,
        "heights": args.heights,
        "rounds": built.rounds,
        "round_gap": gap,
        "round_blocks": round(built.round_blocks, 2),
        "predict_tx_bytes": built.predict_tx_bytes,
        "chain_tx_mb": built.tx_bytes / MB,
        "source_store_mb": source_mb,
        "build_s": built.build_s,
        "snapshot_height": state["restored_height"],
        "state_sync_s": state["seconds"],
        "block_sync_s": block["seconds"],
        "speedup": block["seconds"] / state["seconds"],
        "speedup_snapshot_at_tip": block["seconds"] / by_lag[0]["seconds"],
        "speedup_worst": block["seconds"] / by_lag[interval]["seconds"],
        "state_sync_by_lag": [
            {k: v[k] for k in ("lag", "restored_height", "seconds", "bytes", "load_avg_1m")}
            for v in by_lag.values()
        ],
        "block_sync_load_avg_1m": block["load_avg_1m"],
        "state_sync_bytes": state["bytes"],
        "block_sync_bytes": block["bytes"],
        "state_sync_disk_mb": state["disk_mb"],
        "block_sync_disk_mb": block["disk_mb"],
        "disk_mb_per_1000_blocks": archive["disk_mb_per_1000_blocks"],
        "disk_mb_per_1000_blocks_pruned": pruned["disk_mb_per_1000_blocks"],
        "pruned_disk_mb": pruned["disk_mb"],
        "pruned_peak_disk_mb": pruned["peak_disk_mb"],
        "pruned_earliest_height": pruned["earliest_height"],
        "p2p_bytes_ratio": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heights", type=int, default=10_000)
    ap.add_argument("--models", default="cnn-digits", help=f"comma-separated, of {', '.join(DATASETS)}")
    ap.add_argument("--miners", type=int, default=4)
    ap.add_argument(
        "--round-gap", type=int, help=f"empty blocks between PoCL rounds (default per model: {ROUND_GAP})"
    )
    ap.add_argument(
        "--snapshot-interval",
        type=int,
        default=1_000,
        help="state sync starts from a snapshot 0, interval/2 (the headline) and interval blocks behind the tip",
    )
    ap.add_argument("--retain-blocks", type=int, default=500)
    ap.add_argument("--model-history", type=int, default=4)
    ap.add_argument("--evidence-max-age", type=int, default=1_000)
    ap.add_argument("--no-p2p", dest="p2p", action="store_false", help="skip the compact-blocks devnet")
    ap.add_argument("--p2p-rounds", type=int, default=2)
    ap.add_argument("--workdir", help="where the chains are written (default: the system temp dir)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or any(m not in DATASETS for m in models):
        ap.error(f"--models takes {', '.join(DATASETS)}")
    if not 0 < args.snapshot_interval <= args.heights:
        ap.error("--snapshot-interval must be between 1 and --heights")
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(args.workdir) if args.workdir else None
    runs = [run_model(m, args, workdir) for m in models]  # type: ignore[arg-type]
    rows: list[tuple[str, str]] = []
    for r in runs:
        m = r["model"]
        ratio = "skipped" if r["p2p_bytes_ratio"] is None else f"{r['p2p_bytes_ratio']:.2f} (target ≤ 2)"
        rows += [
            (
                f"{m}: chain",
                f"{r['heights']} heights, {r['rounds']} rounds, {r['chain_tx_mb']:.0f} MB of txs",
            ),
            (
                f"{m}: state sync",
                f"{r['state_sync_s']:.1f} s, {r['state_sync_bytes'] / MB:.1f} MB (snapshot {r['snapshot_height']})",
            ),
            (f"{m}: block sync", f"{r['block_sync_s']:.1f} s, {r['block_sync_bytes'] / MB:.1f} MB"),
            (
                f"{m}: speedup",
                f"{r['speedup']:.1f}x (target ≥ {TARGET_SPEEDUP:g}); snapshot at the tip "
                f"{r['speedup_snapshot_at_tip']:.1f}x, a full interval behind {r['speedup_worst']:.1f}x",
            ),
            (
                f"{m}: disk per 1000 blocks",
                f"{r['disk_mb_per_1000_blocks']:.1f} MB archive, {r['disk_mb_per_1000_blocks_pruned']:.1f} MB pruned "
                f"(pruned store {r['pruned_disk_mb']:.0f} MB, peak {r['pruned_peak_disk_mb']:.0f} MB)",
            ),
            (f"{m}: P2P bytes / round tx bytes", ratio),
        ]
    print_rows(rows)
    write_json(
        args.json,
        {
            "heights": args.heights,
            "miners": args.miners,
            "snapshot_interval": args.snapshot_interval,
            "retain_blocks": args.retain_blocks,
            "model_history": args.model_history,
            "evidence_max_age_blocks": args.evidence_max_age,
            "runs": runs,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
