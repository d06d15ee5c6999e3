"""Held-out pools and per-round test shards (DESIGN §5.2 step 1, §8).

Each miner keeps part of its private data out of training: its held-out pool. Every round it publishes
the inputs of a fresh shard drawn from that pool, on which the others must predict. A shard that was
trained on (or reused across rounds) would reward memorisation, so draws are without replacement
until the pool is exhausted; then the pool is reshuffled.

Draws are a pure function of (pool, size, round, seed): the pool is walked in "epochs", each a fresh
seeded permutation of the pool holding ⌊|pool| / size⌋ disjoint shards; round r takes shard
r mod that count of epoch r div that count. No state to persist, and a miner restarting mid-round
redraws the same shard.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pocl.ml.datasets import Dataset
from pocl.ml.partition import Scheme, partition

DEFAULT_HOLDOUT_FRACTION = 0.2


class ShardError(ValueError):
    """A pool is too small for the requested shard or split."""


def split_holdout(
    indices: np.ndarray, holdout_fraction: float, seed: int, *, min_pool: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split a miner's sample indices into (training part, held-out pool), both sorted int64."""
    idx = np.asarray(indices, dtype=np.int64)
    if not 0.0 < holdout_fraction < 1.0:
        raise ShardError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    n_pool = max(min_pool, round(holdout_fraction * idx.size))
    if n_pool >= idx.size:
        raise ShardError(f"{idx.size} samples are too few for a held-out pool of {n_pool} plus training data")
    order = np.random.default_rng(seed).permutation(idx.size)
    pool = np.sort(idx[order[:n_pool]])
    train = np.sort(idx[order[n_pool:]])
    return train, pool


def shards_per_epoch(pool_size: int, size: int) -> int:
    return pool_size // size


def draw_test_shard(pool: np.ndarray, size: int, round: int, seed: int) -> np.ndarray:
    """The test shard (``size`` entries of ``pool``, in draw order) for round ``round`` (≥ 0)."""
    pool = np.asarray(pool)
    if size < 1:
        raise ShardError(f"shard size must be at least 1, got {size}")
    if round < 0:
        raise ShardError(f"round must be non-negative, got {round}")
    per_epoch = shards_per_epoch(pool.shape[0], size)
    if per_epoch == 0:
        raise ShardError(f"held-out pool of {pool.shape[0]} samples cannot supply a shard of {size}")
    epoch, slot = divmod(round, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(pool.shape[0])
    return pool[perm[slot * size : (slot + 1) * size]]


@dataclasses.dataclass(frozen=True)
class MinerData:
    """One miner's private data: what it trains on and the pool its test shards come from."""

    x_train: np.ndarray
    y_train: np.ndarray
    pool_x: np.ndarray
    pool_y: np.ndarray
    shard_seed: int

    def test_shard_indices(self, size: int, round: int) -> np.ndarray:
        """Pool indices of this round's fresh test shard (the miner publishes `pool_x` at these)."""
        return draw_test_shard(np.arange(self.pool_y.shape[0]), size, round, self.shard_seed)


def miner_data(
    dataset: Dataset,
    n_miners: int,
    index: int,
    *,
    scheme: str | Scheme = "iid",
    seed: int = 0,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
) -> MinerData:
    """Miner ``index``'s share of ``dataset`` (e.g. one devnet node of n), split into training and pool.

    Every node computing this with the same arguments gets the same disjoint shares, so a local cluster
    needs no data distribution step.
    """
    if not 0 <= index < n_miners:
        raise ShardError(f"miner index {index} outside 0..{n_miners - 1}")
    part = partition(dataset.y_train, n_miners, scheme, seed)[index]
    train, pool = split_holdout(part, holdout_fraction, seed * 1_000_003 + index)
    return MinerData(
        x_train=dataset.x_train[train],
        y_train=dataset.y_train[train],
        pool_x=dataset.x_train[pool],
        pool_y=dataset.y_train[pool],
        shard_seed=seed * 1_000_003 + index + 1,
    )
