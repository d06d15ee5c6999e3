#!/usr/bin/env python3
"""PoCL round simulator: N miners, R rounds, no chain and no network (DESIGN §5.2, §8).

Each round every miner trains from G_{r-1} on its private training part, draws a fresh test shard from
its held-out pool, and predicts every other miner's shard with canonical inference. Voters reveal their
labels; scores A[i][j] (accuracy in basis points of predictor i on voter j's shard) are recomputed from
the public data, and a vote that reports other scores is vote fraud (the voter is dropped). score_i is
the median over the valid voters j ≠ i; candidates in score order (ties by H(seed, i)) are verified by
re-running canonical inference of their submitted weights and comparing with the labels they published
(a mismatch on a decisive sample is prediction fraud), until K winners; their models are aggregated
with ``--aggregation`` into G_r. A round with fewer than 2 valid participants leaves G unchanged.

For comparison the same architecture is trained centrally on the union of the miners' training parts
for the same total number of epochs (R × local epochs), evaluated after every E epochs.

    scripts/simulate.py --dataset digits --miners 4 --rounds 10 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pocl.ml.adversary import BPS, AdversaryError, Behaviour, assign_behaviours, parse_adversaries
from pocl.ml.datasets import DatasetError, load_dataset
from pocl.ml.partition import PartitionError, parse_scheme, partition
from pocl.ml.shards import DEFAULT_HOLDOUT_FRACTION, ShardError, draw_test_shard, split_holdout

DEFAULT_MINERS = 4
DEFAULT_ROUNDS = 10
DEFAULT_EPOCHS = 3
DEFAULT_BATCH = 32
DEFAULT_LR = 0.05
DEFAULT_SHARD = 50
MIN_PARTICIPANTS = 2


@dataclasses.dataclass(frozen=True)
class SimConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    model: str | None = None
    miners: int = DEFAULT_MINERS
    rounds: int = DEFAULT_ROUNDS
    partition: str = "iid"
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    optimizer: str = "sgd"
    winners: int | None = None  # default ceil(miners / 2)
    shard_size: int | None = None  # default: DEFAULT_SHARD, capped at the smallest held-out pool
    holdout: float = DEFAULT_HOLDOUT_FRACTION
    aggregation: str = "fedavg"
    adversary: str | None = None
    seed: int = 0
    centralised: bool = True
    train_limit: int | None = None
    allow_download: bool = False

    @property
    def k(self) -> int:
        return self.winners if self.winners is not None else math.ceil(self.miners / 2)


def sub_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from the run seed and labels, so every random choice is independent."""
    digest = hashlib.sha256(repr((seed, *labels)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def accuracy_bps(predicted: np.ndarray, labels: np.ndarray) -> int:
    """Accuracy in integer basis points (floor), as the chain computes it."""
    n = len(labels)
    if n == 0 or len(predicted) != n:
        return 0
    return int(np.count_nonzero(np.asarray(predicted) == np.asarray(labels))) * BPS // n


def median_low(values: list[int]) -> int:
    s = sorted(values)
    return s[(len(s) - 1) // 2] if s else 0


@dataclasses.dataclass
class Miner:
    index: int
    behaviour: Behaviour
    train_idx: np.ndarray
    pool_idx: np.ndarray


def _log_default(msg: str) -> None:
    print(msg, flush=True)


def simulate(cfg: SimConfig, log: Callable[[str], None] = _log_default) -> dict[str, Any]:
    """Run the simulation; returns the report that ``--json`` writes."""
    from pocl.ml.model.aggregate import aggregate, parse_rule
    from pocl.ml.model.inference import NEAR_TIE_MARGIN, predict
    from pocl.ml.model.registry import get_model
    from pocl.ml.model.weights import initial_weights
    from pocl.ml.training import Trainer, configure_threads

    started = time.monotonic()
    if cfg.miners < 1 or cfg.rounds < 1:
        raise ValueError("need at least one miner and one round")
    rule = parse_rule(cfg.aggregation)
    behaviours = assign_behaviours(cfg.miners, parse_adversaries(cfg.adversary))
    ds = load_dataset(cfg.dataset, cfg.data_dir, model_name=cfg.model, allow_download=cfg.allow_download)
    spec = get_model(ds.model_name)
    x_all, y_all = ds.x_train, ds.y_train
    if cfg.train_limit is not None and cfg.train_limit < len(y_all):
        keep = np.sort(
            np.random.default_rng(sub_seed(cfg.seed, "limit")).permutation(len(y_all))[: cfg.train_limit]
        )
        x_all, y_all = x_all[keep], y_all[keep]
    parts = partition(y_all, cfg.miners, parse_scheme(cfg.partition), sub_seed(cfg.seed, "partition"))
    miners: list[Miner] = []
    for i, part in enumerate(parts):
        train_idx, pool_idx = split_holdout(part, cfg.holdout, sub_seed(cfg.seed, "holdout", i))
        miners.append(Miner(i, behaviours[i], train_idx, pool_idx))
    smallest_pool = min(len(m.pool_idx) for m in miners)
    shard_size = cfg.shard_size if cfg.shard_size is not None else min(DEFAULT_SHARD, smallest_pool)
    for m in miners:
        if len(m.pool_idx) < shard_size:
            raise ShardError(
                f"miner {m.index} holds out {len(m.pool_idx)} samples, fewer than --shard-size {shard_size}"
            )

    configure_threads()
    trainer = Trainer()
    g0 = initial_weights(spec, sub_seed(cfg.seed, "genesis") % (2**32))
    x_test, y_test = ds.x_test, ds.y_test

    def test_accuracy(w: list[np.ndarray]) -> float:
        return float(np.mean(predict(spec, w, x_test)[0] == y_test))

    log(
        f"dataset {ds.name} ({len(y_all)} train / {len(y_test)} test), model {spec.name}, "
        f"{cfg.miners} miners ({', '.join(b.kind for b in behaviours)}), partition {cfg.partition}, "
        f"K={cfg.k}, {cfg.rounds} rounds × {cfg.epochs} epochs, aggregation {rule.to_text()}"
    )
    log(
        "miner training sizes: " + ", ".join(str(len(m.train_idx)) for m in miners)
        + f"; test shards of {shard_size} from pools of " + ", ".join(str(len(m.pool_idx)) for m in miners)
    )  # fmt: skip

    g = g0
    initial_acc = test_accuracy(g)
    rounds: list[dict[str, Any]] = []
    previous_reveals: list[tuple[int, list[np.ndarray]]] = []
    for r in range(1, cfg.rounds + 1):
        t_round = time.monotonic()
        # COMMIT: train (or cheat), draw a fresh shard.
        models: dict[int, list[np.ndarray]] = {}
        shards: dict[int, np.ndarray] = {}
        for m in miners:
            b = m.behaviour
            trained = None
            if b.trains:
                trained = trainer.fit(
                    spec,
                    g,
                    x_all[m.train_idx],
                    b.training_labels(y_all[m.train_idx], spec.num_classes),
                    epochs=cfg.epochs,
                    batch_size=cfg.batch_size,
                    lr=cfg.lr,
                    seed=sub_seed(cfg.seed, "train", r, m.index),
                    optimizer=cfg.optimizer,
                ).weights
            visible = [w for j, w in previous_reveals if j != m.index]
            models[m.index] = b.make_model(
                spec, g, trained, seed=sub_seed(cfg.seed, "model", r, m.index), visible_models=visible
            )
            shards[m.index] = draw_test_shard(
                m.pool_idx, shard_size, r - 1, sub_seed(cfg.seed, "shard", m.index)
            )
        t_train = time.monotonic() - t_round
        withheld = [m.index for m in miners if m.behaviour.withholds]
        revealed = [m for m in miners if not m.behaviour.withholds]
        ids = [m.index for m in revealed]

        # PREDICT: each revealer labels every other revealer's shard.
        preds: dict[int, dict[int, np.ndarray]] = {}
        for m in revealed:
            others = [j for j in ids if j != m.index]
            labels = m.behaviour.make_predictions(
                spec,
                models[m.index],
                [x_all[shards[j]] for j in others],
                train_x=x_all[m.train_idx],
                train_y=y_all[m.train_idx],
            )
            preds[m.index] = dict(zip(others, labels))

        # VOTE: reveal labels, report scores; recompute and drop fraudulent votes.
        acc: dict[int, dict[int, int]] = {i: {} for i in ids}  # acc[i][j]: predictor i on voter j's shard
        vote_fraud: list[int] = []
        for v in revealed:
            true_labels = y_all[shards[v.index]]
            published = v.behaviour.reveal_labels(true_labels, spec.num_classes)
            others = [i for i in ids if i != v.index]
            recomputed = [accuracy_bps(preds[i][v.index], published) for i in others]
            reported = v.behaviour.report_scores(recomputed)
            if reported != recomputed:
                vote_fraud.append(v.index)
                continue
            for i, s in zip(others, recomputed):
                acc[i][v.index] = s
        valid_voters = [j for j in ids if j not in vote_fraud]

        # FINALIZE: median scores, verification, top-K, aggregation.
        scores = {i: median_low([acc[i][j] for j in valid_voters if j != i]) for i in ids}
        tie = {i: hashlib.sha256(f"{cfg.seed}/{r}/{i}".encode()).digest() for i in ids}
        order = sorted(ids, key=lambda i: (-scores[i], tie[i]))
        winners: list[int] = []
        prediction_fraud: list[int] = []
        void = len(ids) < MIN_PARTICIPANTS
        if not void:
            for i in order:
                if len(winners) >= cfg.k:
                    break
                if not _predictions_verify(
                    spec, models[i], preds[i], shards, x_all, predict, NEAR_TIE_MARGIN
                ):
                    prediction_fraud.append(i)
                    continue
                winners.append(i)
        if winners:
            winners_sorted = sorted(winners)
            g = aggregate(g, [models[i] for i in winners_sorted], rule).weights
        previous_reveals = [(i, models[i]) for i in order]
        acc_r = test_accuracy(g)
        seconds = time.monotonic() - t_round
        rounds.append(
            {
                "round": r,
                "accuracy": acc_r,
                "winners": winners,
                "scores": {str(i): scores[i] for i in ids},
                "prediction_fraud": prediction_fraud,
                "vote_fraud": vote_fraud,
                "withheld": withheld,
                "void": void or not winners,
                "train_seconds": round(t_train, 3),
                "seconds": round(seconds, 3),
            }
        )
        extra = ""
        if prediction_fraud or vote_fraud or withheld:
            extra = f"  fraud: prediction {prediction_fraud} vote {vote_fraud} withheld {withheld}"
        log(
            f"round {r:3d}: accuracy {acc_r:.4f}  winners {winners}  "
            f"scores {[scores[i] for i in ids]}  ({seconds:.1f}s){extra}"
        )

    report: dict[str, Any] = {
        "config": dataclasses.asdict(cfg) | {"k": cfg.k, "model": spec.name, "shard_size": shard_size},
        "behaviours": [m.behaviour.kind for m in miners],
        "n_train": [len(m.train_idx) for m in miners],
        "initial_accuracy": initial_acc,
        "accuracy": [x["accuracy"] for x in rounds],
        "winners": [x["winners"] for x in rounds],
        "rounds": rounds,
        "final_accuracy": rounds[-1]["accuracy"],
    }

    if cfg.centralised:
        union = np.sort(np.concatenate([m.train_idx for m in miners]))
        cx, cy = x_all[union], y_all[union]
        w = g0
        curve: list[float] = []
        t_central = time.monotonic()
        for r in range(1, cfg.rounds + 1):
            w = trainer.fit(
                spec, w, cx, cy, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                seed=sub_seed(cfg.seed, "central", r), optimizer=cfg.optimizer,
            ).weights  # fmt: skip
            curve.append(test_accuracy(w))
        report["centralised_accuracy_per_round"] = curve
        report["centralised_accuracy"] = curve[-1]
        report["centralised_epochs"] = cfg.rounds * cfg.epochs
        report["ratio"] = report["final_accuracy"] / curve[-1] if curve[-1] > 0 else None
        log(
            f"centralised ({len(cy)} samples, {cfg.rounds * cfg.epochs} epochs, "
            f"{time.monotonic() - t_central:.1f}s): accuracy {curve[-1]:.4f}; "
            f"federated/centralised = {report['ratio']:.4f}"
        )
    report["wall_seconds"] = round(time.monotonic() - started, 2)
    log(f"final federated accuracy {report['final_accuracy']:.4f} in {report['wall_seconds']:.1f}s")
    return report


def _predictions_verify(
    spec: Any,
    weights: list[np.ndarray],
    claimed: dict[int, np.ndarray],
    shards: dict[int, np.ndarray],
    x_all: np.ndarray,
    predict: Callable[..., tuple[np.ndarray, np.ndarray]],
    near_tie: float,
) -> bool:
    """True unless the submitted model contradicts a published label on a decisive sample."""
    for j, labels in claimed.items():
        recomputed, margin = predict(spec, weights, x_all[shards[j]])
        if np.any((recomputed != np.asarray(labels)) & (margin > near_tie)):
            return False
    return True


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    rounds = list(range(1, len(report["accuracy"]) + 1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(
        [0, *rounds], [report["initial_accuracy"], *report["accuracy"]], marker="o", label="PoCL federated"
    )
    if "centralised_accuracy_per_round" in report:
        epochs = [r * cfg["epochs"] for r in rounds]
        ax1.plot(
            rounds, report["centralised_accuracy_per_round"], marker="s", linestyle="--",
            label=f"centralised (epochs = round × {cfg['epochs']}, up to {epochs[-1]})",
        )  # fmt: skip
    ax1.set_xlabel("round")
    ax1.set_ylabel("test accuracy")
    ax1.set_ylim(0, 1)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right")
    ax1.set_title(f"{cfg['dataset']}: {cfg['miners']} miners, K={cfg['k']}, {cfg['partition']}")
    wins = np.zeros(len(report["behaviours"]), dtype=int)
    for ws in report["winners"]:
        for i in ws:
            wins[i] += 1
    labels = [f"{i}\n{b}" for i, b in enumerate(report["behaviours"])]
    ax2.bar(range(len(wins)), wins)
    ax2.set_xticks(range(len(wins)), labels, fontsize=8)
    ax2.set_ylabel("rounds won")
    ax2.set_title("winners per miner")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--winners", type=int, default=None, help="K winners per round (default ceil(miners/2))")
    p.add_argument(
        "--shard-size", type=int, default=None,
        help=f"test shard size per miner per round (default {DEFAULT_SHARD}, capped at the smallest pool)",
    )  # fmt: skip
    p.add_argument(
        "--holdout", type=float, default=DEFAULT_HOLDOUT_FRACTION, help="fraction held out for test shards"
    )
    p.add_argument(
        "--aggregation", default="fedavg", help="fedavg | clip:F | multi-krum:F[:M] | median | trimmed-mean:B"
    )
    p.add_argument(
        "--adversary", action="append", default=None,
        help="KIND:COUNT (repeatable or comma-separated): knn, random, zero, label-flip, lazy, copycat, "
        "vote-liar, label-liar, withhold",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--no-centralised", action="store_true", help="skip the centralised baseline")
    p.add_argument("--allow-download", action="store_true", help="let Keras download mnist/cifar10 if absent")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    p.add_argument("--quiet", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        model=args.model,
        miners=args.miners,
        rounds=args.rounds,
        partition=args.partition,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        winners=args.winners,
        shard_size=args.shard_size,
        holdout=args.holdout,
        aggregation=args.aggregation,
        adversary=",".join(args.adversary) if args.adversary else None,
        seed=args.seed,
        centralised=not args.no_centralised,
        train_limit=args.train_limit,
        allow_download=args.allow_download,
    )


def _validate(parser: argparse.ArgumentParser, cfg: SimConfig) -> None:
    from pocl.ml.model.aggregate import AggregationError, parse_rule

    if cfg.miners < 1:
        parser.error("--miners must be at least 1")
    if cfg.rounds < 1:
        parser.error("--rounds must be at least 1")
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        parser.error("--epochs and --batch-size must be ≥ 1 and --lr > 0")
    if not 1 <= cfg.k <= cfg.miners:
        parser.error(f"--winners must be between 1 and --miners ({cfg.miners})")
    if (cfg.shard_size is not None and cfg.shard_size < 1) or not 0 < cfg.holdout < 1:
        parser.error("--shard-size must be ≥ 1 and --holdout in (0, 1)")
    try:
        parse_scheme(cfg.partition)
        parse_rule(cfg.aggregation)
        assign_behaviours(cfg.miners, parse_adversaries(cfg.adversary))
    except (PartitionError, AggregationError, AdversaryError) as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    _validate(parser, cfg)
    log: Callable[[str], None] = (lambda _msg: None) if args.quiet else _log_default
    try:
        report = simulate(cfg, log)
    except (DatasetError, PartitionError, ShardError) as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
