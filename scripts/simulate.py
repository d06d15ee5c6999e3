#!/usr/bin/env python3
"""PoCL round simulator: N miners, R rounds of the real protocol in one process (`pocl.node.simulation`).

Miners train with the real training code and send the txs a node's miner sends; blocks run through the
real executor, so schedule, verification, finalization, rewards and slashing are the chain's. Prints a
table per round and totals per miner kind; `--json` writes the full report, `--plot` a PNG.

    scripts/simulate.py --dataset digits --miners 4 --rounds 10 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pocl.ml.adversary import ADVERSARIAL_KINDS
from pocl.ml.datasets import DatasetError
from pocl.ml.partition import PartitionError
from pocl.ml.shards import ShardError
from pocl.node.simulation.config import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_MINERS,
    DEFAULT_ROUNDS,
    DEFAULT_SHARD,
    OPTIMIZERS,
    SimConfig,
    SimConfigError,
)
from pocl.node.simulation.report import format_table
from pocl.node.simulation.run import simulate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="digits", help="digits | mnist | cifar10 | npz:PATH (default digits)")
    p.add_argument(
        "--data-dir", default=None, help="directory with the dataset files (default ~/.keras/datasets)"
    )
    p.add_argument("--model", default=None, help="registry model (default: the dataset's)")
    p.add_argument("--miners", type=int, default=DEFAULT_MINERS)
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument(
        "--partition", default="iid", help="iid | dirichlet:ALPHA | shards:K | decreasing | grouped"
    )
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="local epochs per round")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--lr", type=float, default=DEFAULT_LR)
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    p.add_argument("--winners", type=int, default=None, help="K winners per round (default ceil(miners/2))")
    p.add_argument(
        "--shard-size", type=int, default=None,
        help=f"test shard size per miner per round (default {DEFAULT_SHARD}, capped at half the smallest held-out pool, so rounds can draw fresh shards)",
    )  # fmt: skip
    p.add_argument("--holdout", type=float, default=SimConfig.holdout, help="fraction held out for test shards")
    p.add_argument(
        "--aggregation", default=None,
        help="fedavg | clip:F | multi-krum:F[:M] | median | trimmed-mean:B (default: the chain's, clip:2.0)",
    )  # fmt: skip
    p.add_argument(
        "--adversary", action="append", default=None,
        help=f"KIND:COUNT (repeatable or comma-separated); kinds: {', '.join(ADVERSARIAL_KINDS)}",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--no-centralised", action="store_true", help="skip the centralised baseline")
    p.add_argument("--allow-download", action="store_true", help="let Keras download mnist/cifar10 if absent")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, miners=args.miners,
        rounds=args.rounds, partition=args.partition, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, winners=args.winners, shard_size=args.shard_size,
        holdout=args.holdout, aggregation=args.aggregation,
        adversary=",".join(args.adversary) if args.adversary else None, seed=args.seed,
        centralised=not args.no_centralised, train_limit=args.train_limit, allow_download=args.allow_download,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    try:
        cfg.validate()
    except SimConfigError as exc:
        parser.error(str(exc))
    try:
        sim = simulate(cfg, log=(lambda _msg: None) if args.quiet else print)
    except (DatasetError, PartitionError, ShardError) as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(sim.report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(sim.report.to_json(), indent=2) + "\n")
    if args.plot is not None:
        from pocl.node.simulation.plot import write_plot

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(sim.report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
