"""Drive R rounds of the real protocol with N simulated miners and measure the global model.

Block by block: the miners look at the round's record as the next block will see it
(`PoclExecution.record_for_tx`) and send their txs; the block runs through the real executor. When a
round's record is final, its outcome (read from state) becomes a `RoundReport`, and the new global
model is measured on the dataset's held-out test split. Optionally the same architecture is trained
centrally on the union of the miners' training parts for the same number of epochs, for comparison.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
from pocl.consensus.pocl.records import NO_SCORE, PHASE_DONE, RoundRecord
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import GenesisAccount
from pocl.ml.adversary import assign_behaviours, parse_adversaries
from pocl.ml.datasets import Dataset, load_dataset
from pocl.ml.model.inference import predict
from pocl.ml.model.registry import ModelSpec, get_model
from pocl.ml.shards import ShardError, miner_data
from pocl.node.simulation.chain import InProcessChain
from pocl.node.simulation.config import DEFAULT_SHARD, SimConfig, sub_seed
from pocl.node.simulation.miners import RoundWork, SimMiner, TrainFn, phase_txs
from pocl.node.simulation.report import RoundReport, SimReport, Slash

CHAIN_ID = "pocl-sim"
GENESIS_BALANCE = 1_000_000
GENESIS_STAKE = 10_000


@dataclasses.dataclass
class Simulation:
    """A finished run: the report, and the chain and miners it ran (for tests and further analysis)."""

    report: SimReport
    chain: InProcessChain
    miners: list[SimMiner]


def prepare_dataset(cfg: SimConfig) -> Dataset:
    ds = load_dataset(cfg.dataset, cfg.data_dir, model_name=cfg.model, allow_download=cfg.allow_download)
    if cfg.train_limit is not None and cfg.train_limit < len(ds.y_train):
        rng = np.random.default_rng(sub_seed(cfg.seed, "limit"))
        keep = np.sort(rng.permutation(len(ds.y_train))[: cfg.train_limit])
        ds = dataclasses.replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep])
    return ds


def make_miners(cfg: SimConfig, ds: Dataset) -> list[SimMiner]:
    """Each miner's share as a devnet node with the same seed gets it (`ml.shards.miner_data`)."""
    behaviours = assign_behaviours(cfg.miners, parse_adversaries(cfg.adversary))
    return [
        SimMiner(
            i,
            PrivateKey.from_seed_text(f"pocl-sim/{cfg.seed}/miner-{i}"),
            behaviours[i],
            miner_data(ds, cfg.miners, i, scheme=cfg.partition, seed=cfg.seed, holdout_fraction=cfg.holdout),
        )
        for i in range(cfg.miners)
    ]


def shard_size_for(cfg: SimConfig, miners: list[SimMiner]) -> int:
    """`cfg.shard_size`, else DEFAULT_SHARD capped at half the smallest held-out pool: a shard as large as
    the pool would be the same set of samples every round, which the chain refuses once seen."""
    smallest = min(len(m.data.pool_y) for m in miners)
    size = cfg.shard_size if cfg.shard_size is not None else min(DEFAULT_SHARD, max(1, smallest // 2))
    if size > smallest:
        raise ShardError(f"a miner holds out {smallest} samples, fewer than --shard-size {size}")
    return size


def accuracy_on(spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predict(spec, weights, x)[0] == y)) if len(y) else 0.0


def simulate(cfg: SimConfig, train: TrainFn | None = None, log: Callable[[str], None] = print) -> Simulation:
    """Run `cfg.rounds` rounds; `train` defaults to the miners' Keras training (`keras_train_fn`)."""
    started = time.monotonic()
    cfg.validate()
    if train is None:
        from pocl.node.simulation.training import keras_train_fn

        train = keras_train_fn(cfg)
    ds = prepare_dataset(cfg)
    spec = get_model(ds.model_name)
    miners = make_miners(cfg, ds)
    params = cfg.pocl_params(spec, shard_size_for(cfg, miners))
    accounts = [
        GenesisAccount(m.address, GENESIS_BALANCE, GENESIS_STAKE, m.key.pubkey, miner=True) for m in miners
    ]
    chain = InProcessChain(CHAIN_ID, params, accounts)
    log(
        f"dataset {ds.name} ({len(ds.y_train)} train / {len(ds.y_test)} test), model {spec.name}, "
        f"{cfg.miners} miners ({', '.join(m.behaviour.kind for m in miners)}), partition {cfg.partition}, "
        f"K={params.winners}, shards of {params.test_shard_size}, {cfg.rounds} rounds × {cfg.epochs} epochs, "
        f"aggregation {params.aggregation}"
    )
    g0 = chain.global_weights(chain.pocl.genesis_model()[0])
    initial = accuracy_on(spec, g0, ds.x_test, ds.y_test)
    rounds: list[RoundReport] = []
    by_address = {m.address: m for m in miners}
    work = RoundWork()
    slashed_before = _slashed_totals(chain, miners)
    accuracy, model_hash = initial, chain.pocl.genesis_model()[0]
    t_round = time.monotonic()
    block_limit = params.first_round_height + cfg.rounds * (
        params.max_round_blocks() + params.round_gap_blocks + 1
    )
    while len(rounds) < cfg.rounds:
        if chain.state.height > block_limit:
            raise RuntimeError(f"round {len(rounds) + 1} did not finalize by height {block_limit}")
        rec = chain.pocl.record_for_tx(chain.state, chain.next_height)
        txs = phase_txs(chain, rec, miners, train, cfg.seed, work) if rec is not None else []
        chain.execute(txs)
        done = chain.pocl.record(chain.state, len(rounds) + 1)
        if done is None or done.phase != PHASE_DONE or done.outcome is None:
            continue
        if done.outcome.model_hash != model_hash:
            model_hash = done.outcome.model_hash
            accuracy = accuracy_on(spec, chain.global_weights(model_hash), ds.x_test, ds.y_test)
        slashed_now = _slashed_totals(chain, miners)
        report = _round_report(done, by_address, slashed_now, slashed_before, accuracy, work, t_round)
        rounds.append(report)
        log(_round_line(report))
        work, slashed_before, t_round = RoundWork(), slashed_now, time.monotonic()
    sim = SimReport(
        config=dataclasses.asdict(cfg) | {"k": params.winners, "model": spec.name, "pocl": params.to_json()},
        behaviours=[m.behaviour.kind for m in miners],
        n_train=[len(m.data.y_train) for m in miners],
        initial_accuracy=initial,
        rounds=rounds,
        blocks=chain.state.height,
    )
    if cfg.centralised:
        sim.centralised_accuracy_per_round = _centralised(cfg, spec, g0, miners, ds, train, log)
    sim.wall_seconds = round(time.monotonic() - started, 2)
    return Simulation(sim, chain, miners)


def _slashed_totals(chain: InProcessChain, miners: list[SimMiner]) -> dict[bytes, int]:
    out = {}
    for m in miners:
        acct = chain.state.account(m.address)
        out[m.address] = acct.slashed_total if acct is not None else 0
    return out


def _round_report(
    rec: RoundRecord,
    miners: dict[bytes, SimMiner],
    slashed_now: dict[bytes, int],
    slashed_before: dict[bytes, int],
    accuracy: float,
    work: RoundWork,
    t_round: float,
) -> RoundReport:
    out = rec.outcome
    assert out is not None
    rewards: dict[int, int] = {}
    for p in out.payouts:
        i = miners[p.miner].index
        rewards[i] = rewards.get(i, 0) + p.amount
    return RoundReport(
        round=rec.round,
        heights=(rec.start_height, rec.end_height),
        eligible=sorted(miners[a].index for a in rec.eligible),
        participants=sorted(miners[a].index for a in rec.committers),
        void=out.void,
        reason=out.reason,
        winners=[miners[a].index for a in out.winners],
        scores={miners[a].index: s for a, s in zip(out.predictors, out.scores) if s != NO_SCORE},
        rewards=rewards,
        slashed=[
            Slash(miners[p.miner].index, p.kind, slashed_now[p.miner] - slashed_before[p.miner])
            for p in out.penalties
        ],
        model_hash=out.model_hash.hex(),
        accuracy=accuracy,
        train_seconds=round(work.train_seconds, 3),
        seconds=round(time.monotonic() - t_round, 3),
    )


def _round_line(r: RoundReport) -> str:
    scores = " ".join(f"{i}:{s}" for i, s in sorted(r.scores.items()))
    slashed = " ".join(f"{s.miner}:{s.kind}" for s in r.slashed)
    return (
        f"round {r.round:3d}: accuracy {r.accuracy:.4f}  participants {r.participants}  winners {r.winners}  "
        f"scores [{scores}]" + (f"  slashed [{slashed}]" if slashed else "") + (f"  void: {r.reason}" if r.void else "")
        + f"  ({r.seconds:.1f}s)"
    )  # fmt: skip


def _centralised(
    cfg: SimConfig,
    spec: ModelSpec,
    g0: list[np.ndarray],
    miners: list[SimMiner],
    ds: Dataset,
    train: TrainFn,
    log: Callable[[str], None],
) -> list[float]:
    """The same architecture from G_0 on the union of the miners' training parts, one call per round."""
    x = np.concatenate([m.data.x_train for m in miners])
    y = np.concatenate([m.data.y_train for m in miners])
    t0 = time.monotonic()
    w, curve = g0, []
    for r in range(1, cfg.rounds + 1):
        w = train(spec, w, x, y, sub_seed(cfg.seed, "central", r))
        curve.append(accuracy_on(spec, w, ds.x_test, ds.y_test))
    log(
        f"centralised ({len(y)} samples, {cfg.rounds * cfg.epochs} epochs, {time.monotonic() - t0:.1f}s): "
        f"accuracy {curve[-1]:.4f}"
    )
    return curve
