"""Partitions are disjoint, complete, sized as documented, skewed as asked, deterministic by seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pocl.ml.partition import (
    PartitionError,
    Scheme,
    label_entropy,
    largest_remainder,
    parse_scheme,
    partition,
    size_fractions,
)

LABELS = np.repeat(np.arange(10), 100)  # 1000 samples, 10 balanced classes
np.random.default_rng(0).shuffle(LABELS)
SCHEMES = ["iid", "dirichlet:0.5", "dirichlet:100", "shards:2", "decreasing", "grouped"]


def assert_disjoint_complete(parts: list[np.ndarray], n: int) -> None:
    allidx = np.concatenate(parts)
    assert allidx.size == n, "every sample assigned exactly once"
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0), "sorted, no duplicates"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_disjoint_complete_and_deterministic(scheme: str) -> None:
    parts = partition(LABELS, 5, scheme, seed=3)
    assert len(parts) == 5
    assert_disjoint_complete(parts, LABELS.size)
    again = partition(LABELS, 5, scheme, seed=3)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a, b)
    other = partition(LABELS, 5, scheme, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other))


def test_iid_sizes_and_label_mix() -> None:
    parts = partition(LABELS, 3, "iid", seed=1)
    assert [p.size for p in parts] == [334, 333, 333]
    for p in parts:
        assert label_entropy(LABELS[p], 10) > 3.2  # near log2(10) = 3.32


def test_decreasing_sizes_match_the_paper() -> None:
    assert size_fractions("decreasing", 10) == [(10 - i) / 55 for i in range(10)]
    parts = partition(np.zeros(550, dtype=np.int64), 10, "decreasing", seed=0)
    assert [p.size for p in parts] == [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]


def test_grouped_sizes_match_the_paper() -> None:
    # FL-Validated-Learning miner.py option 2: ((i // 5) * 3 + 1) / 25 for 10 miners
    assert size_fractions("grouped", 10) == [((i // 5) * 3 + 1) / 25 for i in range(10)]
    parts = partition(np.zeros(1000, dtype=np.int64), 10, "grouped", seed=0)
    assert [p.size for p in parts] == [40] * 5 + [160] * 5
    # odd count: the first ⌊n/2⌋ are small
    assert size_fractions("grouped", 5) == [1 / 14, 1 / 14, 4 / 14, 4 / 14, 4 / 14]


def test_shards_limit_classes_per_miner() -> None:
    k = 2
    parts = partition(LABELS, 10, f"shards:{k}", seed=5)
    assert [p.size for p in parts] == [100] * 10  # 20 equal shards of 50
    for p in parts:
        # each shard of a label-sorted array spans at most 2 labels (here exactly 1: 50 | 100)
        assert len(np.unique(LABELS[p])) <= k


def test_dirichlet_skew_grows_as_alpha_falls() -> None:
    def mean_entropy(alpha: float) -> float:
        vals = []
        for seed in range(3):
            parts = partition(LABELS, 5, f"dirichlet:{alpha}", seed=seed)
            vals += [label_entropy(LABELS[p], 10) for p in parts]
        return float(np.mean(vals))

    e_high, e_mid, e_low = mean_entropy(100.0), mean_entropy(1.0), mean_entropy(0.1)
    assert e_high > e_mid > e_low
    assert e_high > 3.2 and e_low < 2.0


def test_dirichlet_min_size_and_failure() -> None:
    parts = partition(LABELS, 5, "dirichlet:0.1", seed=0)
    assert min(p.size for p in parts) >= 10
    with pytest.raises(PartitionError, match="fewer than"):
        partition(LABELS[:30], 3, "dirichlet:0.5", seed=0, min_size=11)  # 3 × 11 > 30


def test_parse_scheme() -> None:
    assert parse_scheme("iid") == Scheme("iid")
    assert parse_scheme(" Dirichlet:0.3 ") == Scheme("dirichlet", alpha=0.3)
    assert parse_scheme("shards:2") == Scheme("shards", shards_per_miner=2)
    assert str(parse_scheme("dirichlet:0.5")) == "dirichlet:0.5"
    for bad, match in [
        ("foo", "unknown partition"),
        ("dirichlet", "needs a number"),
        ("dirichlet:abc", "needs a number"),
        ("dirichlet:-1", "positive"),
        ("dirichlet:nan", "positive"),
        ("shards:x", "integer"),
        ("shards:0", "at least 1"),
        ("iid:3", "no parameter"),
    ]:
        with pytest.raises(PartitionError, match=match):
            parse_scheme(bad)


def test_bad_inputs() -> None:
    with pytest.raises(PartitionError):
        partition(LABELS[:3], 5, "iid", seed=0)
    with pytest.raises(PartitionError):
        partition(LABELS, 0, "iid", seed=0)
    with pytest.raises(PartitionError):
        partition(LABELS.reshape(10, 100), 2, "iid", seed=0)
    with pytest.raises(PartitionError, match="shards"):
        partition(LABELS[:10], 5, "shards:3", seed=0)


def test_largest_remainder_sums_exactly() -> None:
    assert largest_remainder([1 / 3, 1 / 3, 1 / 3], 10) == [4, 3, 3]
    assert sum(largest_remainder(size_fractions("decreasing", 7), 1001)) == 1001


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=20, max_value=300),
    miners=st.integers(min_value=1, max_value=8),
    scheme=st.sampled_from(["iid", "decreasing", "grouped", "shards:1", "shards:2", "dirichlet:1"]),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_property_disjoint_complete(n: int, miners: int, scheme: str, seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 5, n)
    try:
        parts = partition(labels, miners, scheme, seed, min_size=1)
    except PartitionError:
        return  # e.g. too few samples for the shards or the Dirichlet floor: refused, not mis-split
    assert len(parts) == miners
    assert_disjoint_complete(parts, n)
