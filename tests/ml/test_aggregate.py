"""Aggregation: bit-for-bit determinism (incl. across BLAS/OpenMP thread counts), FedAvg identities,
robust rules against one huge outlier update, rule parsing."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from pocl.ml.model.aggregate import (
    LANES,
    AggregationError,
    AggregationRule,
    aggregate,
    deterministic_sum,
    fedavg,
    krum_scores,
    lower_median,
    parse_rule,
    trim_count,
    update_norm,
)
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import encode_weights, initial_weights, weights_hash

SPEC = get_model("cnn-digits")
RULES = ["fedavg", "clip:2", "clip:0.5", "multi-krum:1", "multi-krum:1:2", "median", "trimmed-mean:0.2"]


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Float64 L2 distance between two models (a test oracle, not the chain's summation)."""
    return math.sqrt(
        sum(float(np.sum((x.astype(np.float64) - y.astype(np.float64)) ** 2)) for x, y in zip(a, b))
    )


def _models(n: int, seed: int = 0, scale: float = 0.01) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    g = initial_weights(SPEC, seed=seed)
    rng = np.random.default_rng(seed + 1)
    models = [[(a + rng.normal(0, scale, a.shape)).astype(np.float32) for a in g] for _ in range(n)]
    return g, models


# A script run in fresh interpreters under different thread settings; prints one digest per rule.
_SUBPROCESS_SCRIPT = """
import hashlib, sys
import numpy as np
from pocl.ml.model.aggregate import aggregate, parse_rule
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import initial_weights, weights_hash
spec = get_model("cnn-digits")
g = initial_weights(spec, seed=0)
rng = np.random.default_rng(1)
models = [[(a + rng.normal(0, 0.01, a.shape)).astype(np.float32) for a in g] for _ in range(7)]
models[3] = [a * np.float32(50.0) for a in models[3]]
for rule in sys.argv[1:]:
    r = aggregate(g, models, parse_rule(rule))
    extra = repr((r.norms, r.selected, r.clipped, r.bound, r.scores)).encode()
    print(rule, weights_hash(r.weights).hex(), hashlib.sha256(extra).hexdigest())
"""


def _run_with_threads(threads: int) -> str:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_SCRIPT, *RULES],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return proc.stdout


def test_identical_bytes_across_thread_counts_and_processes() -> None:
    one = _run_with_threads(1)
    two = _run_with_threads(2)
    assert one == two
    assert len(one.splitlines()) == len(RULES)


def test_repeated_runs_give_identical_bytes() -> None:
    g, models = _models(5)
    for rule in RULES:
        a = aggregate(g, models, parse_rule(rule))
        b = aggregate(g, [[w.copy() for w in m] for m in models], parse_rule(rule))
        assert encode_weights(a.weights) == encode_weights(b.weights), rule
        assert a.norms == b.norms and a.selected == b.selected and a.clipped == b.clipped


def test_fedavg_of_identical_models_is_that_model() -> None:
    g, models = _models(1)
    for n in (1, 2, 3, 7, 10, 64):
        assert encode_weights(fedavg(g, [models[0]] * n)) == encode_weights(models[0])
    far = [a * np.float32(1e6) + np.float32(3.0) for a in models[0]]
    assert encode_weights(fedavg(g, [far] * 5)) == encode_weights(far)


def test_fedavg_is_the_mean_and_float32() -> None:
    g, models = _models(4)
    out = fedavg(g, models)
    assert all(a.dtype == np.float32 for a in out)
    for li in range(len(g)):
        want = np.mean([m[li].astype(np.float64) for m in models], axis=0)
        np.testing.assert_allclose(out[li], want, rtol=1e-6, atol=1e-7)
    # the plain function and the "fedavg" rule are the same computation
    assert encode_weights(aggregate(g, models, parse_rule("fedavg")).weights) == encode_weights(out)


def test_result_depends_on_order_only_through_rounding() -> None:
    g, models = _models(6)
    a = fedavg(g, models)
    b = fedavg(g, models[::-1])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule", ["clip:2", "multi-krum:1", "median", "trimmed-mean:0.2"])
def test_robust_rules_resist_one_huge_outlier(rule: str) -> None:
    g, models = _models(7)
    honest = fedavg(g, models[:3] + models[4:])
    attacked = [*models]
    attacked[3] = [(a + np.float32(1e4) * np.sign(a + np.float32(1e-9))).astype(np.float32) for a in g]
    naive = fedavg(g, attacked)
    robust = aggregate(g, attacked, parse_rule(rule))
    err_naive = _distance(honest, naive)
    err_robust = _distance(honest, robust.weights)
    honest_scale = _distance(g, honest) + max(_distance(g, m) for m in models)
    assert err_naive > 1e5
    assert err_robust < 2 * honest_scale, (rule, err_robust, honest_scale)
    if rule.startswith("multi-krum"):
        assert 3 not in robust.selected and len(robust.selected) == 6
    if rule.startswith("clip"):
        assert robust.clipped == (False, False, False, True, False, False, False)
        assert robust.bound == pytest.approx(sorted(robust.norms)[3] * 2)


def test_clip_bound() -> None:
    g, models = _models(4)
    r = aggregate(g, models, parse_rule("clip:0.5"))
    assert r.bound is not None and r.bound == 0.5 * sorted(r.norms)[1]  # lower median of four
    assert sum(r.clipped) >= 2
    # clipped updates end up exactly at the bound (up to float rounding)
    for i, was in enumerate(r.clipped):
        assert was == (r.norms[i] > r.bound)


def _boosted(g: list[np.ndarray], m: list[np.ndarray], factor: float) -> list[np.ndarray]:
    """G + factor × (W − G): a model-replacement / boosted update."""
    return [
        (gi.astype(np.float64) + factor * (mi.astype(np.float64) - gi)).astype(np.float32)
        for gi, mi in zip(g, m)
    ]


def test_a_1000x_boosted_update_is_clipped_at_k_2() -> None:
    """Attack #3: with K = 2 the old bound (2 × median of the two winners' norms = n1 + n2) clipped nothing;
    the lower median of two is the smaller norm, so the boosted update is cut to clip_factor × the other."""
    g, (honest, other) = _models(2)
    boosted = _boosted(g, other, 1000.0)
    r = aggregate(g, [honest, boosted], parse_rule("clip:2"))
    old_bound = (r.norms[0] + r.norms[1]) / 2 * 2
    assert r.norms[1] < old_bound  # the old rule left it untouched
    assert r.clipped == (False, True) and r.bound == 2 * r.norms[0]
    assert update_norm(r.weights, g) <= 1.5 * r.norms[0]  # ≈ (n + 2n) / 2, not 500 n
    # bound from a wider reference (finalization: every unpenalised revealed model of the round)
    reference = [update_norm(m, g) for m in _models(9, seed=3)[1]] + [r.norms[1]]
    wide = aggregate(g, [honest, boosted], parse_rule("clip:2"), reference)
    assert wide.bound == 2 * lower_median(reference) and wide.clipped == (False, True)


def test_lower_median() -> None:
    assert lower_median([3.0, 1.0]) == 1.0 and lower_median([5.0, 1.0, 3.0]) == 3.0
    assert lower_median([4.0, 1.0, 3.0, 2.0]) == 2.0
    with pytest.raises(AggregationError):
        lower_median([])


def test_update_norms_match_float64_reference_and_sum_exactly() -> None:
    g, models = _models(2)
    norms = aggregate(g, [models[0], g], parse_rule("fedavg")).norms
    assert norms[0] == pytest.approx(_distance(models[0], g), rel=1e-12)
    assert norms[1] == 0.0
    vals = np.random.default_rng(0).normal(size=3 * LANES + 17)
    assert deterministic_sum([vals]) == pytest.approx(math.fsum(vals.tolist()), rel=1e-12, abs=1e-9)
    with pytest.raises(AggregationError):
        deterministic_sum([vals.astype(np.float32)])


def test_median_and_trimmed_mean_values() -> None:
    g = [np.zeros(3, np.float32)]
    models = [[np.array(v, np.float32)] for v in ([1, -0.0, 5], [2, 0.0, 5], [3, -0.0, 5], [100, 0, -7])]
    med = aggregate(g, models, parse_rule("median")).weights[0]
    assert med.tolist() == [2.5, 0.0, 5.0]
    assert not np.signbit(med).any()  # signed zeros normalised
    tm = aggregate(g, models, parse_rule("trimmed-mean:0.25")).weights[0]
    assert tm.tolist() == [2.5, 0.0, 5.0]
    assert trim_count(Fraction(1, 4), 4) == 1
    assert trim_count(Fraction(49, 100), 3) == 1  # keeps exactly one value
    assert trim_count(Fraction(49, 100), 2) == 0
    assert trim_count(Fraction(29, 100), 100) == 29  # exact, no float floor surprise


def test_multi_krum_degenerate_sizes_never_raise() -> None:
    g, models = _models(3)
    for n in (1, 2, 3):
        r = aggregate(g, models[:n], parse_rule("multi-krum:2"))
        assert 1 <= len(r.selected) <= n
        assert len(r.scores) == n
    assert krum_scores(models[:1], 1) == [0.0]


def test_layout_errors() -> None:
    g, models = _models(2)
    with pytest.raises(AggregationError, match="no models"):
        fedavg(g, [])
    with pytest.raises(AggregationError, match="arrays"):
        fedavg(g, [models[0][:-1]])
    with pytest.raises(AggregationError, match="shape"):
        fedavg(g, [[*models[0][:-1], np.zeros(3, np.float32)]])
    bad = [w.copy() for w in models[0]]
    bad[0][0, 0, 0, 0] = np.nan
    for rule in RULES:
        with pytest.raises(AggregationError, match="NaN"):
            aggregate(g, [models[1], bad], parse_rule(rule))
    bad[1][0] = np.inf
    with pytest.raises(AggregationError, match="NaN"):
        fedavg(g, [models[1], bad])


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("fedavg", AggregationRule("fedavg")),
        ("median", AggregationRule("median")),
        ("clip:2.0", AggregationRule("clip", clip_factor=Fraction(2))),
        ("clip:1.5", AggregationRule("clip", clip_factor=Fraction(3, 2))),
        ("multi-krum:1", AggregationRule("multi-krum", f=1)),
        ("multi-krum:1:3", AggregationRule("multi-krum", f=1, m=3)),
        ("trimmed-mean:0.1", AggregationRule("trimmed-mean", beta=Fraction(1, 10))),
    ],
)
def test_parse_rule(text: str, rule: AggregationRule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    "text",
    ["", "mean", "fedavg:1", "clip", "clip:0", "clip:-1", "clip:abc", "clip:inf", "multi-krum", "multi-krum:-1",
     "multi-krum:1:0", "multi-krum:x", "trimmed-mean:0.5", "trimmed-mean:-0.1", "median:2", "clip:1:2"],
)  # fmt: skip
def test_parse_rule_rejects(text: str) -> None:
    with pytest.raises(AggregationError):
        parse_rule(text)


def test_sort_rules_are_independent_of_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import pocl.ml.model.aggregate as agg

    g, models = _models(5)
    want = {
        r: encode_weights(aggregate(g, models, parse_rule(r)).weights) for r in ("median", "trimmed-mean:0.2")
    }
    monkeypatch.setattr(agg, "_SORT_BLOCK", 1000)
    for rule, raw in want.items():
        assert encode_weights(aggregate(g, models, parse_rule(rule)).weights) == raw


# Pinned results (consensus-critical: a change here forks chains). Inputs are PCG64-derived genesis models,
# so they are themselves stable across numpy versions.
GOLDEN_AGGREGATES = {
    "fedavg": "c0d0c87da082ff2aca3c8f75db3f0d04bbe82168f65b2d36e14d4b820f1196e3",
    "clip:1": "73cf9cda797285ae9170c4309238e543c82dc3aebd015cfbc4c079b8113d4607",
    "multi-krum:1": "0a958d680fcb5725a69d98ff5ae75cf32cf339125b363d1f02e640505e940d3c",
    "median": "bd15b2e6dcf7a6174280d4e57c1fab7ddf34b7c2ebb7b2ac2ba9263b77f8d9d9",
    "trimmed-mean:0.2": "f7fd9bd04f02b9349b6742a05414b5d8e661f7d9fb679dc6eb70fa6e47073f22",
}


@pytest.mark.parametrize("rule", sorted(GOLDEN_AGGREGATES))
def test_golden_aggregates(rule: str) -> None:
    g = initial_weights(SPEC, seed=0)
    models = [initial_weights(SPEC, seed=s) for s in range(1, 6)]
    result = aggregate(g, models, parse_rule(rule))
    assert weights_hash(result.weights).hex() == GOLDEN_AGGREGATES[rule]
    assert tuple(round(n * 10**6) for n in result.norms) == (17563059, 17510751, 17512282, 17577666, 17582121)
    if rule == "clip:1":
        assert result.clipped == (False, False, False, True, True)
    if rule == "multi-krum:1":
        assert result.selected == (0, 1, 2, 3)
