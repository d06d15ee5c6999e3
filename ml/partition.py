"""Splitting a labelled training set among simulated miners (DESIGN §8).

Schemes (all deterministic by seed; the parts are disjoint and together cover every sample):

- ``iid``: a seeded permutation cut into ``n`` near-equal parts;
- ``dirichlet:ALPHA``: for every class, its samples are shared out with proportions drawn from
  Dir(ALPHA·1_n) (Hsu et al. 2019); small ALPHA → each miner sees few classes. Draws are repeated (same
  seeded stream) until every miner holds at least ``min_size`` samples;
- ``shards:K``: McMahan et al. (2017): sort by label, cut into ``n·K`` equal shards, give each miner K
  shards chosen at random — so each miner sees about K classes;
- ``decreasing``: the PoCL paper's first size split (FL-Validated-Learning ``miner.py``, option 1):
  miner i (0-based) gets the fraction (n − i) / (n(n+1)/2) of the data — for 10 miners 10/55 … 1/55;
- ``grouped``: the paper's second size split (option 2, ``((i // 5)·3 + 1) / 25`` for 10 miners): two
  groups, the first ⌊n/2⌋ miners with weight 1 and the rest with weight 4, fractions = weight / Σ weights
  — for 10 miners five get 1/25 and five get 4/25.

The paper slices the raw (unshuffled) training set; we cut a seeded permutation instead, so the size
splits differ only in size, not in label mix. Integer part sizes come from the fractions by the largest
remainder rule (ties to the lower miner index), so sizes sum exactly to the number of samples.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

IID = "iid"
DIRICHLET = "dirichlet"
SHARDS = "shards"
DECREASING = "decreasing"
GROUPED = "grouped"
SCHEMES = (IID, DIRICHLET, SHARDS, DECREASING, GROUPED)

GROUPED_SMALL_WEIGHT = 1
GROUPED_LARGE_WEIGHT = 4
DIRICHLET_MAX_DRAWS = 1000
DIRICHLET_MIN_SIZE = 10


class PartitionError(ValueError):
    """A scheme string is malformed or the data cannot be split as asked."""


@dataclasses.dataclass(frozen=True)
class Scheme:
    kind: str
    alpha: float = 0.0  # dirichlet
    shards_per_miner: int = 0  # shards

    def __str__(self) -> str:
        if self.kind == DIRICHLET:
            return f"{DIRICHLET}:{self.alpha:g}"
        if self.kind == SHARDS:
            return f"{SHARDS}:{self.shards_per_miner}"
        return self.kind


def parse_scheme(text: str) -> Scheme:
    """``iid`` | ``dirichlet:ALPHA`` (ALPHA > 0) | ``shards:K`` (K ≥ 1) | ``decreasing`` | ``grouped``."""
    kind, sep, arg = text.strip().partition(":")
    kind = kind.strip().lower()
    usage = "expected iid, dirichlet:ALPHA, shards:K, decreasing or grouped"
    if kind in (IID, DECREASING, GROUPED):
        if sep:
            raise PartitionError(f"partition {text!r}: {kind} takes no parameter")
        return Scheme(kind)
    if kind == DIRICHLET:
        try:
            alpha = float(arg)
        except ValueError:
            raise PartitionError(
                f"partition {text!r}: dirichlet needs a number, e.g. dirichlet:0.5"
            ) from None
        if not math.isfinite(alpha) or alpha <= 0:
            raise PartitionError(f"partition {text!r}: dirichlet ALPHA must be a positive number")
        return Scheme(DIRICHLET, alpha=alpha)
    if kind == SHARDS:
        try:
            k = int(arg)
        except ValueError:
            raise PartitionError(f"partition {text!r}: shards needs an integer, e.g. shards:2") from None
        if k < 1:
            raise PartitionError(f"partition {text!r}: shards K must be at least 1")
        return Scheme(SHARDS, shards_per_miner=k)
    raise PartitionError(f"unknown partition {text!r}: {usage}")


def size_fractions(kind: str, n_miners: int) -> list[float]:
    """The size splits' fractions (``iid`` is uniform)."""
    if kind == DECREASING:
        total = n_miners * (n_miners + 1) // 2
        return [(n_miners - i) / total for i in range(n_miners)]
    if kind == GROUPED:
        weights = [
            GROUPED_SMALL_WEIGHT if i < n_miners // 2 else GROUPED_LARGE_WEIGHT for i in range(n_miners)
        ]
        return [w / sum(weights) for w in weights]
    if kind == IID:
        return [1.0 / n_miners] * n_miners
    raise PartitionError(f"{kind} is not a size split")


def largest_remainder(fractions: list[float], total: int) -> list[int]:
    """Integer counts ∝ fractions summing exactly to ``total`` (Hamilton's method, ties to lower index)."""
    quotas = [f * total for f in fractions]
    counts = [math.floor(q) for q in quotas]
    short = total - sum(counts)
    order = sorted(range(len(fractions)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:short]:
        counts[i] += 1
    return counts


def partition(
    labels: np.ndarray,
    n_miners: int,
    scheme: str | Scheme,
    seed: int,
    *,
    min_size: int | None = None,
) -> list[np.ndarray]:
    """Split sample indices ``0..len(labels)-1`` among ``n_miners``; each part sorted, int64."""
    sch = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    y = np.asarray(labels)
    if y.ndim != 1:
        raise PartitionError(f"labels must be 1-D, got shape {y.shape}")
    if n_miners < 1:
        raise PartitionError("need at least one miner")
    n = y.shape[0]
    if n < n_miners:
        raise PartitionError(f"{n} samples cannot be split among {n_miners} miners")
    rng = np.random.default_rng(seed)
    if sch.kind in (IID, DECREASING, GROUPED):
        parts = _by_sizes(rng.permutation(n), largest_remainder(size_fractions(sch.kind, n_miners), n))
    elif sch.kind == DIRICHLET:
        floor = min(DIRICHLET_MIN_SIZE, n // n_miners) if min_size is None else min_size
        parts = _dirichlet(y, n_miners, sch.alpha, rng, floor)
    elif sch.kind == SHARDS:
        parts = _shards(y, n_miners, sch.shards_per_miner, rng)
    else:  # pragma: no cover - parse_scheme guards this
        raise PartitionError(f"unknown scheme {sch.kind}")
    return [np.sort(p).astype(np.int64) for p in parts]


def _by_sizes(order: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]


def _dirichlet(
    y: np.ndarray, n_miners: int, alpha: float, rng: np.random.Generator, floor: int
) -> list[np.ndarray]:
    classes = np.unique(y)
    by_class = [np.flatnonzero(y == c) for c in classes]
    for _ in range(DIRICHLET_MAX_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_miners)]
        for idx in by_class:
            idx = idx[rng.permutation(idx.size)]
            sizes = largest_remainder(list(rng.dirichlet([alpha] * n_miners)), idx.size)
            for m, chunk in enumerate(_by_sizes(idx, sizes)):
                parts[m].append(chunk)
        merged = [np.concatenate(p) for p in parts]
        if min(p.size for p in merged) >= floor:
            return merged
    raise PartitionError(
        f"dirichlet:{alpha:g} left some miner with fewer than {floor} samples in {DIRICHLET_MAX_DRAWS} draws; "
        "raise ALPHA or use fewer miners"
    )


def _shards(y: np.ndarray, n_miners: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    n_shards = n_miners * k
    if y.shape[0] < n_shards:
        raise PartitionError(f"{y.shape[0]} samples cannot make {n_shards} shards")
    # Shuffle first so samples of one class are in random order, then stable-sort by label.
    order = rng.permutation(y.shape[0])
    order = order[np.argsort(y[order], kind="stable")]
    shards = np.array_split(order, n_shards)
    assignment = rng.permutation(n_shards)
    return [np.concatenate([shards[s] for s in assignment[m * k : (m + 1) * k]]) for m in range(n_miners)]


def label_entropy(labels: np.ndarray, num_classes: int) -> float:
    """Shannon entropy (bits) of a part's label histogram: log2(C) for balanced, 0 for one class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())
