"""What a devnet run is asked to do: its options, checked once into `DevnetParams`, and the chain settings
every devnet gets (fast BFT timeouts, a genesis `pocl` section sized to the miner count)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from pocl.consensus.pocl.params import PoclParams
from pocl.ledger.params import ChainParams

DESCRIPTION = """\
One-command local PoCL network: N validator-miners learning a dataset together (DESIGN §7).
The chain's model is the dataset's (digits: cnn-digits, mnist and fashion-mnist: cnn-mnist, cifar10: pocl-cifar10,
npz:PATH: by its input shape) unless --model names one; the block limits follow from the model."""
DEFAULT_MINERS = 4
DEFAULT_ROUNDS = 5
DEFAULT_EPOCHS = 4
DEFAULT_BATCH = 32
TRAIN_BLOCKS_PER_MINER = 40  # COMMIT's maximum length scales with the start-up load

# Fast local BFT: a height every ~0.5 s on a loaded 2-core machine.
DEVNET_CHAIN_PARAMS = ChainParams(
    timeout_propose_ms=1_500,
    timeout_propose_delta_ms=500,
    timeout_prevote_ms=500,
    timeout_prevote_delta_ms=250,
    timeout_precommit_ms=500,
    timeout_precommit_delta_ms=250,
    timeout_commit_ms=300,
    unbonding_blocks=400,  # >= the longest round (PoclParams.check_chain_params)
)


def devnet_pocl(miners: int) -> dict[str, Any]:
    """The devnet genesis `pocl` section.

    Phases close early once every miner has acted, so long maximum phases cost nothing when all are
    prompt; they leave room for the first round (each miner's TensorFlow start-up: ~20-45 s when 4
    start at once on 2 cores, ~90 s for 10, hence 40 blocks per miner) and for a miner restarting
    mid-round. K = ceil(N/2) winners, as in
    `scripts/simulate.py`; every scoring shard of a would-be winner is verified.
    """
    return {
        "first_round_height": 2,
        "train_blocks": TRAIN_BLOCKS_PER_MINER * max(2, miners),
        "shard_blocks": 20,
        "predict_blocks": 30,
        "vote_blocks": 30,
        "winners": max(2, math.ceil(miners / 2)),
    }


def dataset_model(dataset: str) -> str | None:
    """The model a named dataset trains (`ml.datasets.DEFAULT_MODELS`); None for `npz:PATH` (by its shape)."""
    from pocl.ml.datasets import DEFAULT_MODELS

    return DEFAULT_MODELS.get(dataset)


def devnet_chain(
    miners: int,
    model: str,
    pocl_overrides: dict[str, Any] | None = None,
    params: ChainParams = DEVNET_CHAIN_PARAMS,
) -> tuple[dict[str, Any], ChainParams]:
    """The devnet genesis `pocl` section and chain params for `model`: `devnet_pocl` with the model's fields,
    block/tx limits derived from the model (`genesis.models.fit_model`), unbonding twice the longest round."""
    from pocl.genesis.models import fit_model

    pocl, chain = fit_model(model, {**devnet_pocl(miners), **(pocl_overrides or {})}, params)
    longest = PoclParams.from_json(pocl).max_round_blocks()
    return pocl, dataclasses.replace(chain, unbonding_blocks=max(chain.unbonding_blocks, 2 * longest))


class DevnetError(Exception):
    """A user mistake or a devnet that could not run; one line for the user."""


@dataclasses.dataclass(frozen=True)
class DevnetParams:
    """A checked devnet request; `behaviours[i]` is miner i's behaviour (`honest`, `knn`, ...)."""

    miners: int
    rounds: int | None
    blocks: int | None
    duration: float | None
    dataset: str
    data_dir: str | None
    model: str | None  # None: the dataset's model (`dataset_model`, or by an npz's shape)
    partition: str
    adversary: str | None
    epochs: int
    batch_size: int
    out: Path | None
    report_path: Path | None  # --report: also write the report here
    json: bool  # --json: the report as JSON on stdout, progress on stderr
    keep: bool  # --keep: keep the node homes (databases, keys) at the end
    plain: bool
    behaviours: tuple[str, ...]


def build_parser(
    parser: argparse.ArgumentParser | None = None, *, json_flag: bool = True
) -> argparse.ArgumentParser:
    """The devnet options; `json_flag=False` when the parser already has the shared `--json` flag
    (`pocl-node devnet`, where it means the same: JSON on stdout)."""
    parser = parser or argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--miners", type=int, default=DEFAULT_MINERS, help="validator-miners (default 4)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after R finalized rounds (default 5)")
    parser.add_argument("--blocks", type=int, default=None, help="stop at height N")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--dataset", default="digits", help="digits (default) | mnist | fashion-mnist | cifar10 | npz:PATH")
    parser.add_argument("--data-dir", default=None, help="directory with dataset files")
    parser.add_argument(
        "--model", default=None, help="the chain's model (default: the dataset's; e.g. cnn-mnist for mnist)"
    )
    parser.add_argument(
        "--partition", default="iid", help="iid | dirichlet:A | shards:K | decreasing | grouped"
    )
    parser.add_argument("--adversary", default=None, metavar="KIND:COUNT[,...]", help="e.g. knn:1")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="local epochs per round")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory: report, plot, logs, homes (new; default: a temp dir)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the node homes (databases, keys) in the output directory at the end",
    )
    parser.add_argument(
        "--report",
        dest="report_path",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the report here",
    )
    if json_flag:
        parser.add_argument(
            "--json",
            action="store_true",
            default=False,
            help="print the report as JSON on stdout (progress on stderr)",
        )
    parser.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    return parser


def parse_params(args: argparse.Namespace) -> DevnetParams:
    """Check the parsed options (raises DevnetError naming the bad one); no stop condition means 5 rounds."""
    from pocl.ml.adversary import AdversaryError, assign_behaviours, parse_adversaries
    from pocl.ml.partition import PartitionError, parse_scheme

    if args.miners < 2:
        raise DevnetError("--miners must be at least 2 (a round needs 2 participants)")
    for name in ("rounds", "blocks", "epochs", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise DevnetError(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration is not None and not args.duration > 0:
        raise DevnetError("--duration must be positive")
    rounds = args.rounds
    if rounds is None and args.blocks is None and args.duration is None:
        rounds = DEFAULT_ROUNDS
    try:
        parse_scheme(args.partition)
        behaviours = assign_behaviours(args.miners, parse_adversaries(args.adversary))
    except (PartitionError, AdversaryError) as exc:
        raise DevnetError(str(exc)) from None
    if getattr(args, "home", None) is not None:
        raise DevnetError(
            "devnet does not use --home: it creates its own node homes under --out DIR (kept with --keep)"
        )
    if args.out is not None and args.out.exists():
        if not args.out.is_dir():
            raise DevnetError(f"--out {args.out} exists and is not a directory")
        if any(args.out.iterdir()):
            raise DevnetError(f"--out {args.out} exists and is not empty")
    if args.model is not None:
        from pocl.genesis.models import model_names

        if args.model not in model_names():
            raise DevnetError(f"--model {args.model!r}: unknown model (known: {', '.join(model_names())})")
    return DevnetParams(
        miners=args.miners,
        rounds=rounds,
        blocks=args.blocks,
        duration=args.duration,
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        partition=args.partition,
        adversary=args.adversary,
        epochs=args.epochs,
        batch_size=args.batch_size,
        out=args.out,
        report_path=args.report_path,
        json=bool(getattr(args, "json", False)),
        keep=args.keep,
        plain=args.plain,
        behaviours=tuple(b.kind for b in behaviours),
    )
