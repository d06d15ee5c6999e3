"""FedAvg and robust aggregation, bit-for-bit deterministic (DESIGN §5.2).

The aggregated model's hash enters state, so every node must produce the same bytes. Hence:
- no BLAS (`@`, `dot`, `linalg.norm`, `einsum`): its summation order depends on thread count and CPU;
- per-element arithmetic only (IEEE-754 add/sub/mul/div/sqrt are exactly rounded, so elementwise numpy
  ops give identical bits everywhere), accumulated in float64 in the *given model order*;
- reductions to a scalar (norms, distances) go through `deterministic_sum`: the flat array is cut into
  rows of `LANES` values that are added row after row elementwise (a fixed, explicit order that does not
  depend on numpy's internal pairwise/SIMD summation), and the `LANES` partial sums are combined with
  `math.fsum`, which is exactly rounded and so independent of order;
- signed zeros are normalised before sorting (median / trimmed mean), so an unstable or CPU-specific sort
  cannot swap -0.0 and +0.0;
- results are cast to float32 once, at the end (values beyond float32's range saturate).

The result depends only on the bytes of the inputs and their order. Callers pass the models in the
canonical order (sorted by miner address), so every node aggregates identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

LANES = 4096
_F32_MAX = float(np.finfo(np.float32).max)

FEDAVG = "fedavg"
CLIP = "clip"
MULTI_KRUM = "multi-krum"
MEDIAN = "median"
TRIMMED_MEAN = "trimmed-mean"
RULE_KINDS = (FEDAVG, CLIP, MULTI_KRUM, MEDIAN, TRIMMED_MEAN)


class AggregationError(ValueError):
    """Invalid aggregation input (no models, mismatched shapes) or an unparsable rule."""


@dataclass(frozen=True)
class AggregationRule:
    """How winners' updates are combined. Build with `parse_rule`.

    clip: each update Δ_i with ‖Δ_i‖ > bound = lower_median(reference norms) × clip_factor is scaled down
        to the bound. The reference norms are the caller's (finalization passes the update norms of every
        unpenalised new revealed model of the round, not only the winners); by default the models' own.
        The LOWER median (the smaller middle value of an even count) of two norms is the smaller one, so
        even two models bound each other: a boosted update is clipped to clip_factor × the other's norm.
    multi-krum: keep the `m` updates (default n − f) with the smallest sum of squared distances to their
        n − f − 2 nearest neighbours (Blanchard et al. 2017), then average them.
    median: coordinate-wise median of the updates.
    trimmed-mean: per coordinate drop the floor(beta·n) largest and smallest values, average the rest.
    """

    kind: str
    clip_factor: Fraction = Fraction(0)
    f: int = 0
    m: int = 0  # 0: n - f
    beta: Fraction = Fraction(0)


def _parse_fraction(text: str, what: str) -> Fraction:
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise AggregationError(f"{what}: not a number: {text!r}") from exc


def _parse_int(text: str, what: str) -> int:
    if not text.isdigit():
        raise AggregationError(f"{what}: expected a non-negative integer, got {text!r}")
    return int(text)


def parse_rule(text: str) -> AggregationRule:
    """Parse "fedavg", "clip:2.0", "multi-krum:1" / "multi-krum:1:3", "median", "trimmed-mean:0.1"."""
    if not isinstance(text, str):
        raise AggregationError("aggregation rule must be text")
    kind, *args = text.strip().split(":")
    if kind in (FEDAVG, MEDIAN):
        if args:
            raise AggregationError(f"{kind} takes no arguments: {text!r}")
        return AggregationRule(kind)
    if kind == CLIP:
        if len(args) != 1:
            raise AggregationError(f"expected clip:FACTOR, got {text!r}")
        factor = _parse_fraction(args[0], "clip factor")
        if factor <= 0:
            raise AggregationError(f"clip factor must be positive, got {text!r}")
        return AggregationRule(CLIP, clip_factor=factor)
    if kind == MULTI_KRUM:
        if len(args) not in (1, 2):
            raise AggregationError(f"expected multi-krum:F or multi-krum:F:M, got {text!r}")
        f = _parse_int(args[0], "multi-krum f")
        m = _parse_int(args[1], "multi-krum m") if len(args) == 2 else 0
        if len(args) == 2 and m < 1:
            raise AggregationError(f"multi-krum m must be at least 1, got {text!r}")
        return AggregationRule(MULTI_KRUM, f=f, m=m)
    if kind == TRIMMED_MEAN:
        if len(args) != 1:
            raise AggregationError(f"expected trimmed-mean:BETA, got {text!r}")
        beta = _parse_fraction(args[0], "trimmed-mean beta")
        if not 0 <= beta < Fraction(1, 2):
            raise AggregationError(f"trimmed-mean beta must be in [0, 0.5), got {text!r}")
        return AggregationRule(TRIMMED_MEAN, beta=beta)
    raise AggregationError(f"unknown aggregation rule {text!r}; known: {', '.join(RULE_KINDS)}")


@dataclass(frozen=True)
class AggregationResult:
    weights: list[np.ndarray]  # the new global model, float32, canonical order
    norms: tuple[float, ...]  # ‖W_i − G‖₂ per input model (input order), deterministic float64
    selected: tuple[int, ...]  # indices of the models whose updates were averaged (all for median/trimmed)
    clipped: tuple[bool, ...]  # per input model: was its update scaled down (clip rule only)
    bound: float | None = None  # the clip bound, when the rule clips
    scores: tuple[float, ...] = ()  # multi-krum scores per input model (lower is more central)


# ------------------------------------------------------------------------------------------- reductions


def _lane_partials(a: np.ndarray) -> np.ndarray:
    """Row-by-row elementwise sum of a float64 array viewed as rows of LANES values (zero padded)."""
    flat = np.ravel(a)
    pad = (-flat.size) % LANES
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, dtype=np.float64)])
    rows = flat.reshape(-1, LANES)
    acc = rows[0].copy()
    for r in range(1, rows.shape[0]):
        acc += rows[r]
    return acc


def deterministic_sum(arrays: list[np.ndarray]) -> float:
    """Sum of all values of float64 arrays, with the same bits on every machine (see module doc)."""
    partials: list[float] = []
    for a in arrays:
        if a.dtype != np.float64:
            raise AggregationError("deterministic_sum needs float64 arrays")
        if a.size:
            partials.extend(_lane_partials(a).tolist())
    return math.fsum(partials)


def _squared_distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Σ (a − b)² over all layers, float64 elementwise + deterministic_sum; rejects NaN/inf inputs."""
    squares = []
    for x, y in zip(a, b):
        d = np.subtract(x, y, dtype=np.float64)
        np.multiply(d, d, out=d)
        squares.append(d)
    total = deterministic_sum(squares)
    if not math.isfinite(total):
        raise AggregationError("weights hold NaN or infinity")
    return total


# ------------------------------------------------------------------------------------------ aggregation


def _check_layout(global_w: list[np.ndarray], models: list[list[np.ndarray]]) -> None:
    if not models:
        raise AggregationError("nothing to aggregate: no models")
    shapes = [np.shape(g) for g in global_w]
    for i, m in enumerate(models):
        if len(m) != len(global_w):
            raise AggregationError(f"model {i} has {len(m)} arrays, the global model {len(global_w)}")
        for j, (w, shape) in enumerate(zip(m, shapes)):
            if np.shape(w) != shape:
                raise AggregationError(f"model {i} array {j}: shape {np.shape(w)} != {shape}")
            if np.asarray(w).dtype.kind != "f":
                raise AggregationError(f"model {i} array {j}: not floating point")
    # Finiteness is checked on results instead of with an extra pass over every input: with finite float32
    # inputs no float64 sum or square here can overflow, so a non-finite result means a non-finite input.


def _to_float32(a: np.ndarray) -> np.ndarray:
    np.clip(a, -_F32_MAX, _F32_MAX, out=a)
    return a.astype(np.float32)


# Coordinates per block in `_mean_update`: the block's accumulator, temporary and G stay in cache while
# every model streams through it (same per-coordinate operations and order as an unblocked loop).
_MEAN_BLOCK = 1 << 15


def _mean_update(
    global_w: list[np.ndarray], models: list[list[np.ndarray]], indices: list[int], scales: list[float]
) -> list[np.ndarray]:
    """G + (Σ_i s_i·(W_i − G)) / len(indices), summed in float64 in the order of `indices`."""
    out: list[np.ndarray] = []
    count = float(len(indices))
    for li, g in enumerate(global_w):
        g64 = np.asarray(g, dtype=np.float64).ravel()
        flats = [(np.ravel(models[i][li]), scales[i]) for i in indices]
        res = np.empty_like(g64)
        tmp = np.empty(min(_MEAN_BLOCK, g64.size), dtype=np.float64)
        for lo in range(0, g64.size, _MEAN_BLOCK):
            hi = min(lo + _MEAN_BLOCK, g64.size)
            gb, acc, t = g64[lo:hi], res[lo:hi], tmp[: hi - lo]
            acc.fill(0.0)
            for w, scale in flats:
                np.subtract(w[lo:hi], gb, out=t, dtype=np.float64)
                if scale != 1.0:
                    t *= scale
                acc += t
            acc /= count
            acc += gb
        if not np.isfinite(res).all():
            raise AggregationError("weights hold NaN or infinity")
        out.append(_to_float32(res).reshape(np.shape(g)))
    return out


def fedavg(global_w: list[np.ndarray], models: list[list[np.ndarray]]) -> list[np.ndarray]:
    """G + mean_i(W_i − G): float64 accumulation in the given order, float32 result."""
    _check_layout(global_w, models)
    n = len(models)
    return _mean_update(global_w, models, list(range(n)), [1.0] * n)


# Coordinates per block for the sort-based rules: bounds the (n, block) float64 stack to n × 2 MiB.
_SORT_BLOCK = 1 << 18


def _coordinatewise(
    global_w: list[np.ndarray], models: list[list[np.ndarray]], combine: Callable[[np.ndarray], np.ndarray]
) -> list[np.ndarray]:
    """G + combine(sorted Δ) per coordinate, in column blocks; `combine` maps (n, b) sorted to (b,)."""
    out = []
    for li, g in enumerate(global_w):
        g64 = np.asarray(g, dtype=np.float64).ravel()
        flats = [np.ravel(m[li]) for m in models]
        res = np.empty_like(g64)
        for lo in range(0, g64.size, _SORT_BLOCK):
            hi = min(lo + _SORT_BLOCK, g64.size)
            stack = np.empty((len(models), hi - lo), dtype=np.float64)
            for i, w in enumerate(flats):
                np.subtract(w[lo:hi], g64[lo:hi], out=stack[i], dtype=np.float64)
            stack += 0.0  # -0.0 -> +0.0: equal values become bit-identical, so sort order cannot matter
            stack.sort(axis=0)
            res[lo:hi] = combine(stack)
        res += g64
        out.append(_to_float32(res).reshape(np.shape(g)))
    return out


def _median_of_sorted(s: np.ndarray) -> np.ndarray:
    n = s.shape[0]
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2.0


def trim_count(beta: Fraction, n: int) -> int:
    """Values dropped at each end: floor(beta·n) exactly, always leaving at least one."""
    return min(math.floor(beta * n), (n - 1) // 2)


def _trimmed_mean_of_sorted(s: np.ndarray, k: int) -> np.ndarray:
    n = s.shape[0]
    acc = s[k].copy()
    for r in range(k + 1, n - k):  # fixed order: ascending rank
        acc += s[r]
    acc /= float(n - 2 * k)
    return acc


def lower_median(values: list[float]) -> float:
    """The middle value; with an even count the smaller of the two middle values (no averaging)."""
    if not values:
        raise AggregationError("median of nothing")
    return sorted(values)[(len(values) - 1) // 2]


def update_norm(model: list[np.ndarray], global_w: list[np.ndarray]) -> float:
    """‖W − G‖₂, deterministic float64 (the value `aggregate` reports in `norms`)."""
    _check_layout(global_w, [model])
    return math.sqrt(_squared_distance(model, global_w))


def krum_scores(models: list[list[np.ndarray]], f: int) -> list[float]:
    """Per model: sum of squared distances to its n − f − 2 nearest others (clamped to [1, n − 1])."""
    n = len(models)
    if n == 1:
        return [0.0]
    k = min(max(n - f - 2, 1), n - 1)
    dist = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            dist[i][j] = dist[j][i] = _squared_distance(models[i], models[j])
    return [math.fsum(sorted(dist[i][j] for j in range(n) if j != i)[:k]) for i in range(n)]


def aggregate(
    global_w: list[np.ndarray],
    models: list[list[np.ndarray]],
    rule: AggregationRule,
    reference_norms: list[float] | None = None,
) -> AggregationResult:
    """Combine the models' updates relative to `global_w` under `rule` (see AggregationRule).

    `reference_norms` (clip only): the update norms the clip bound is derived from (`update_norm`);
    None: the models' own.

    Deterministic: the result depends only on the input bytes and the order of `models` (callers sort
    by miner address). Degenerate sizes never raise: multi-krum clamps its neighbour count and `m` to
    what n allows, trimmed-mean always keeps at least one value per coordinate.
    """
    _check_layout(global_w, models)
    n = len(models)
    norms = tuple(update_norm(m, global_w) for m in models)
    not_clipped = (False,) * n
    if rule.kind == FEDAVG:
        return AggregationResult(fedavg(global_w, models), norms, tuple(range(n)), not_clipped)
    if rule.kind == CLIP:
        bound = lower_median(list(norms if reference_norms is None else reference_norms)) * float(
            rule.clip_factor
        )
        scales = [bound / v if v > bound else 1.0 for v in norms]
        clipped = tuple(v > bound for v in norms)
        weights = _mean_update(global_w, models, list(range(n)), scales)
        return AggregationResult(weights, norms, tuple(range(n)), clipped, bound=bound)
    if rule.kind == MULTI_KRUM:
        scores = krum_scores(models, rule.f)
        m = rule.m if rule.m else n - rule.f
        m = min(max(m, 1), n)
        ranked = sorted(range(n), key=lambda i: (scores[i], i))
        selected = sorted(ranked[:m])
        weights = _mean_update(global_w, models, selected, [1.0] * n)
        return AggregationResult(weights, norms, tuple(selected), not_clipped, scores=tuple(scores))
    if rule.kind == MEDIAN:
        weights = _coordinatewise(global_w, models, _median_of_sorted)
        return AggregationResult(weights, norms, tuple(range(n)), not_clipped)
    if rule.kind == TRIMMED_MEAN:
        k = trim_count(rule.beta, n)
        weights = _coordinatewise(global_w, models, lambda s: _trimmed_mean_of_sorted(s, k))
        return AggregationResult(weights, norms, tuple(range(n)), not_clipped)
    raise AggregationError(f"unknown aggregation rule {rule.kind!r}")
