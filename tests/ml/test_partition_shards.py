"""Held-out pools and per-round test shards: fresh each round, no reuse until the pool is exhausted."""

from __future__ import annotations

import numpy as np
import pytest
from pocl.ml.shards import ShardError, draw_test_shard, split_holdout


def test_split_holdout_disjoint_and_deterministic() -> None:
    idx = np.arange(100, 200)
    train, pool = split_holdout(idx, 0.2, seed=1)
    assert pool.size == 20 and train.size == 80
    assert set(train).isdisjoint(pool)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, pool])), idx)
    t2, p2 = split_holdout(idx, 0.2, seed=1)
    np.testing.assert_array_equal(pool, p2)
    np.testing.assert_array_equal(train, t2)
    _, p3 = split_holdout(idx, 0.2, seed=2)
    assert not np.array_equal(pool, p3)


def test_split_holdout_errors() -> None:
    with pytest.raises(ShardError):
        split_holdout(np.arange(10), 0.0, seed=0)
    with pytest.raises(ShardError):
        split_holdout(np.arange(1), 0.5, seed=0)


def test_shards_fresh_until_exhausted_then_reshuffled() -> None:
    pool = np.arange(1000, 1100)  # 100 samples, shards of 30: 3 disjoint shards per pass
    shards = [draw_test_shard(pool, 30, r, seed=9) for r in range(6)]
    for s in shards:
        assert s.size == 30 and len(set(s)) == 30 and set(s) <= set(pool)
    first_pass = np.concatenate(shards[:3])
    assert len(set(first_pass)) == 90, "no sample reused within a pass"
    second_pass = np.concatenate(shards[3:])
    assert len(set(second_pass)) == 90
    assert not np.array_equal(shards[0], shards[3]), "reshuffled after exhaustion"
    # deterministic: the same (pool, size, round, seed) gives the same shard
    np.testing.assert_array_equal(draw_test_shard(pool, 30, 4, seed=9), shards[4])
    assert not np.array_equal(draw_test_shard(pool, 30, 4, seed=10), shards[4])


def test_shard_equal_to_pool_reshuffles_every_round() -> None:
    pool = np.arange(20)
    a, b = draw_test_shard(pool, 20, 0, seed=1), draw_test_shard(pool, 20, 1, seed=1)
    assert set(a) == set(b) == set(pool)
    assert not np.array_equal(a, b)


def test_shard_errors() -> None:
    with pytest.raises(ShardError, match="cannot supply"):
        draw_test_shard(np.arange(5), 6, 0, seed=0)
    with pytest.raises(ShardError):
        draw_test_shard(np.arange(5), 0, 0, seed=0)
    with pytest.raises(ShardError):
        draw_test_shard(np.arange(5), 2, -1, seed=0)


def test_miner_data_shares_are_disjoint() -> None:
    from pocl.ml.datasets import load_dataset
    from pocl.ml.shards import miner_data

    ds = load_dataset("digits")
    shares = [miner_data(ds, 3, i, seed=4) for i in range(3)]
    total = sum(m.y_train.size + m.pool_y.size for m in shares)
    assert total == ds.y_train.size
    seen = {m.x_train[0].tobytes() for m in shares}
    assert len(seen) == 3
    i0, i1 = shares[0].test_shard_indices(20, 0), shares[0].test_shard_indices(20, 1)
    (x0, y0), x1 = (shares[0].pool_x[i0], shares[0].pool_y[i0]), shares[0].pool_x[i1]
    assert x0.shape == (20, 8, 8, 1) and y0.shape == (20,)
    assert not np.array_equal(x0, x1)
    with pytest.raises(ShardError):
        miner_data(ds, 3, 3)
