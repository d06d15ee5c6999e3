"""Disk per 1,000 blocks with and without pruning, on a devnet-like chain written to a real LevelDB store.

    python -m scripts.bench.pruning [--heights 3000] [--round-blocks 8] [--miners 4]
        [--predict-bytes 153000] [--retain-blocks 500] [--evidence-max-age 1000] [--json PATH]

The chain: every block is an empty block executed for real (genuine heights, roots and store writes);
each PoCL round of `--round-blocks` blocks carries one predict-sized tx per miner (incompressible
bytes: a miner's weights, ≈ 153 KB for cnn-digits, ≈ 4.8 MB for cnn-mnist) and one new global model of
the same size. The same chain is written twice: as an archive node keeps it, and pruned every
`--interval-blocks` as `[pruning] retain_blocks` / `model_history` would (`Store.prune`, the node's
retain-height policy with the evidence and unbonding windows). Reported: disk MB per 1,000 blocks at
the end for each, the pruned store's largest size along the way, and the bound the policy implies.

Note the evidence window: with the default `evidence_max_age_blocks` (10,000) a node keeps at least
10,000 blocks whatever `retain_blocks` says; the default `--evidence-max-age` here is lower so a short
run shows the steady state. `measure_disk` is what `scripts/bench/sync.py` can reuse.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pocl.ledger.block import Block, Commit, CommitSig, txs_root
from pocl.ledger.block_builder import build_block
from pocl.ledger.executor import Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.storage.store import Store
from pocl.node.devnet.params import DEVNET_CHAIN_PARAMS
from pocl.node.pruning import dir_bytes, retain_height

from scripts.bench.report import print_rows, write_json

MB = 1024 * 1024
CHAIN_ID = "bench-pruning"
PROPOSER = PrivateKey.from_seed_text("bench-pruning-proposer")
SMALL_TX_BYTES = 300  # commit / vote sized txs, a few per round


@dataclasses.dataclass(frozen=True)
class ChainShape:
    heights: int = 3_000
    round_blocks: int = 8
    miners: int = 4
    predict_bytes: int = 153_000


def _commit(block: Block) -> Commit:
    return Commit(block.height, 0, block.hash, [CommitSig(PROPOSER.pubkey, b"\x07" * 64)])


def _round_txs(height: int, shape: ChainShape, rng: random.Random) -> tuple[list[bytes], bytes | None]:
    """A block's tx bodies and, at a round's end, the new global model."""
    pos = height % shape.round_blocks
    tag = height.to_bytes(8, "big")
    if pos == shape.round_blocks // 2:  # the predict phase: every miner's weights
        return [tag + rng.randbytes(shape.predict_bytes) for _ in range(shape.miners)], None
    txs = [tag + rng.randbytes(SMALL_TX_BYTES) for _ in range(shape.miners if pos in (1, 0) else 0)]
    return txs, (rng.randbytes(shape.predict_bytes) if pos == 0 else None)


def measure_disk(
    shape: ChainShape,
    params: ChainParams,
    *,
    retain_blocks: int = 0,
    model_history: int = 0,
    interval_blocks: int = 100,
    workdir: Path | None = None,
    seed: int = 7,
) -> dict[str, Any]:
    """Write the chain to a fresh store, pruning as configured (retain_blocks 0 = archive).
    Returns disk MB per 1,000 blocks at the end, the largest size seen, the final earliest height."""
    tmp = Path(tempfile.mkdtemp(prefix="pocl-bench-pruning-", dir=workdir))
    rng = random.Random(seed)
    executor = Executor()
    try:
        store = Store.open(tmp / "db")
        state = State.from_genesis(params, [GenesisAccount(PROPOSER.address, 10**9)], CHAIN_ID)
        store.init_genesis(state, genesis_hash=b"\x01" * 32)
        prev, last_commit = b"", None
        models: list[bytes] = []
        peak = 0
        for h in range(1, shape.heights + 1):
            empty = build_block(
                executor,
                state,
                [],
                proposer=PROPOSER.address,
                time_ms=h * 1000,
                prev_hash=prev,
                last_commit=None,
            ).block
            work = state.copy()
            executor.apply_block(work, empty)
            txs, model = _round_txs(h, shape, rng)
            if model is not None:
                model_hash = rng.randbytes(32)
                work.put_model(model_hash, model)
                models.append(model_hash)
            block = Block(dataclasses.replace(empty.header, txs_root=txs_root(txs)), txs, last_commit)
            store.commit_block(block, work.delta(), seen_commit=_commit(block))
            state = work.commit()
            prev, last_commit = block.hash, _commit(block)
            if retain_blocks and h % interval_blocks == 0:
                keep = set(models[-model_history:]) if model_history else None
                store.prune(retain_height(h, retain_blocks, params), keep)
                peak = max(peak, dir_bytes(tmp / "db"))
        earliest = store.earliest_height
        store.close()
        final = dir_bytes(tmp / "db")
        return {
            "heights": shape.heights,
            "retain_blocks": retain_blocks,
            "model_history": model_history,
            "disk_mb": final / MB,
            "disk_mb_per_1000_blocks": final / MB * 1000 / shape.heights,
            "peak_disk_mb": max(peak, final) / MB,
            "earliest_height": earliest,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heights", type=int, default=3_000)
    ap.add_argument("--round-blocks", type=int, default=8)
    ap.add_argument("--miners", type=int, default=4)
    ap.add_argument("--predict-bytes", type=int, default=153_000, help="one miner's weights (cnn-digits)")
    ap.add_argument("--retain-blocks", type=int, default=500)
    ap.add_argument("--model-history", type=int, default=4)
    ap.add_argument("--interval-blocks", type=int, default=100)
    ap.add_argument("--evidence-max-age", type=int, default=1_000)
    ap.add_argument("--unbonding-blocks", type=int, default=DEVNET_CHAIN_PARAMS.unbonding_blocks)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    shape = ChainShape(args.heights, args.round_blocks, args.miners, args.predict_bytes)
    params = dataclasses.replace(
        DEVNET_CHAIN_PARAMS,
        evidence_max_age_blocks=args.evidence_max_age,
        unbonding_blocks=args.unbonding_blocks,
    )
    archive = measure_disk(shape, params, interval_blocks=args.interval_blocks)
    pruned = measure_disk(
        shape,
        params,
        retain_blocks=args.retain_blocks,
        model_history=args.model_history,
        interval_blocks=args.interval_blocks,
    )
    kept = max(args.retain_blocks, params.evidence_max_age_blocks, params.unbonding_blocks)
    doc = {
        "heights": shape.heights,
        "round_blocks": shape.round_blocks,
        "miners": shape.miners,
        "predict_bytes": shape.predict_bytes,
        "blocks_kept": kept,
        "disk_mb_per_1000_blocks": archive["disk_mb_per_1000_blocks"],
        "disk_mb_per_1000_blocks_pruned": pruned["disk_mb_per_1000_blocks"],
        "archive": archive,
        "pruned": pruned,
    }
    print_rows(
        [
            (
                "chain",
                f"{shape.heights} heights, {shape.miners} miners x {shape.predict_bytes} B per {shape.round_blocks}-block round",
            ),
            (
                "kept when pruning",
                f"{kept} blocks (retain {args.retain_blocks}, evidence {params.evidence_max_age_blocks}, unbonding {params.unbonding_blocks}), {args.model_history} models",
            ),
            (
                "archive",
                f"{archive['disk_mb']:.1f} MB = {archive['disk_mb_per_1000_blocks']:.1f} MB per 1000 blocks",
            ),
            (
                "pruned",
                f"{pruned['disk_mb']:.1f} MB = {pruned['disk_mb_per_1000_blocks']:.1f} MB per 1000 blocks (peak {pruned['peak_disk_mb']:.1f} MB, earliest {pruned['earliest_height']})",
            ),
        ]
    )
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
