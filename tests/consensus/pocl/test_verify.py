"""Verification verdicts: honest claims from "other machines" pass, borrowed answers fail."""

from __future__ import annotations

import numpy as np
import pytest
from pocl.consensus.pocl.verify import ShardClaim, near_tie_allowance, verify_claims
from pocl.ml.model.inference import _forward, predict
from pocl.ml.model.weights import initial_weights

from tests.support.pocl_scenario import SPEC, digits, make_params, perturbed, trained_weights

P = make_params()
OWNER = b"o" * 20


def claims_of(x: np.ndarray, labels: np.ndarray, shard: int = 20) -> list[ShardClaim]:
    return [ShardClaim(OWNER, x[i : i + shard], labels[i : i + shard]) for i in range(0, len(x), shard)]


def float64_labels(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """A very different "machine": the same forward pass entirely in float64."""
    z = _forward(SPEC, [w.astype(np.float64) for w in weights], x.astype(np.float64))
    return np.argmax(z, axis=1).astype(np.int64)


@pytest.mark.parametrize("seed", [100, 101, 102])
def test_honest_claims_from_other_machines_pass(seed: int) -> None:
    x, _ = digits()
    x = x[:200]
    for weights in (list(trained_weights(seed)), perturbed(initial_weights(SPEC, 0), seed, 0.05)):
        for labels in (
            predict(SPEC, weights, x, batch_size=7)[0],
            predict(SPEC, weights, x, batch_size=17)[0],
            float64_labels(weights, x),
        ):
            verdict = verify_claims(SPEC, weights, claims_of(x, labels), P)
            assert verdict.ok and verdict.decisive_mismatches == 0, seed


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_borrowed_answers_fail_whatever_model_is_revealed(seed: int) -> None:
    x, y = digits()
    x, y = x[:60], y[:60]  # three shards, as verify_shards = 3 checks
    zero = [np.zeros_like(w) for w in initial_weights(SPEC, seed)]
    huge = [w * np.float32(1e30) for w in initial_weights(SPEC, seed)]  # logits overflow: margins count as 0
    for weights in (initial_weights(SPEC, seed), zero, huge, list(trained_weights(100 + seed))):
        verdict = verify_claims(SPEC, weights, claims_of(x, y), P)
        model_labels, _ = predict(SPEC, weights, x)
        if np.array_equal(model_labels, y):
            continue  # the model really does produce these answers: no fraud to find
        assert not verdict.ok


def test_allowance_is_at_least_one_sample() -> None:
    assert near_tie_allowance(1, P) == 1
    assert near_tie_allowance(60, P) == 1
    assert near_tie_allowance(1000, P) == 10
