"""Each adversarial behaviour produces what it claims (no TensorFlow needed: training is the caller's)."""

from __future__ import annotations

import numpy as np
import pytest
from pocl.ml.adversary import (
    ADVERSARIAL_KINDS,
    BPS,
    AdversaryError,
    Behaviour,
    assign_behaviours,
    knn_predict,
    parse_adversaries,
)
from pocl.ml.datasets import load_dataset
from pocl.ml.model.inference import predict
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import check_weights, initial_weights


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits")
    spec = get_model("cnn-digits")
    g = initial_weights(spec, 3)
    rng = np.random.default_rng(0)
    # a stand-in "trained" model: the global model plus a small perturbation
    trained = [w + rng.normal(0, 0.01, w.shape).astype(np.float32) for w in g]
    shards = [ds.x_test[:40], ds.x_test[40:80]]
    return ds, spec, g, trained, shards


def test_honest_is_the_identity(setup) -> None:
    ds, spec, g, trained, shards = setup
    b = Behaviour()
    assert b.honest and b.trains and not b.withholds
    w = b.make_model(spec, g, trained, seed=1)
    for a, t in zip(w, trained):
        np.testing.assert_array_equal(a, t)
    preds = b.make_predictions(spec, w, shards)
    np.testing.assert_array_equal(preds[0], predict(spec, w, shards[0])[0])
    y = ds.y_test[:40]
    np.testing.assert_array_equal(b.training_labels(y, 10), y)
    np.testing.assert_array_equal(b.reveal_labels(y, 10), y)
    assert b.report_scores([1, 2, 3]) == [1, 2, 3]
    with pytest.raises(AdversaryError):
        b.make_model(spec, g, None, seed=1)


def test_knn_predicts_well_with_an_untrained_model(setup) -> None:
    ds, spec, g, _, shards = setup
    b = Behaviour("knn")
    assert not b.trains
    w = b.make_model(spec, g, None, seed=42)
    check_weights(spec, w)
    # submits an untrained (freshly initialised) model, not the global one
    assert any(not np.array_equal(a, c) for a, c in zip(w, g))
    np.testing.assert_array_equal(w[0], initial_weights(spec, 42)[0])
    preds = b.make_predictions(spec, w, shards, train_x=ds.x_train, train_y=ds.y_train)
    knn_acc = np.mean(preds[0] == ds.y_test[:40])
    model_labels, _ = predict(spec, w, shards[0])
    assert knn_acc > 0.9, "the k-NN predictions are good..."
    assert np.mean(model_labels == ds.y_test[:40]) < 0.4, "...but the submitted model is not"
    # so its claims contradict its own model's exact labels: verification catches it
    assert np.any(model_labels != preds[0])
    with pytest.raises(AdversaryError):
        b.make_predictions(spec, w, shards)


def test_knn_predict_exact_neighbours() -> None:
    tx = np.array([[0.0], [5.0], [6.0], [7.0]], dtype=np.float32)
    ty = np.array([0, 1, 1, 1])
    q = np.array([[2.0], [6.4], [-3.0]], dtype=np.float32)
    np.testing.assert_array_equal(knn_predict(tx, ty, q, k=1), [0, 1, 0])
    np.testing.assert_array_equal(knn_predict(tx, ty, q, k=3), [1, 1, 1])  # majority beats the nearest


def test_random_and_zero_models(setup) -> None:
    _, spec, g, _, shards = setup
    z = Behaviour("zero").make_model(spec, g, None, seed=1)
    check_weights(spec, z)
    assert all(not np.any(w) for w in z)
    r1 = Behaviour("random").make_model(spec, g, None, seed=1)
    r2 = Behaviour("random").make_model(spec, g, None, seed=2)
    check_weights(spec, r1)
    assert any(not np.array_equal(a, b) for a, b in zip(r1, r2))
    assert np.std(r1[0]) > 0.5  # noise, not a sensible initialisation
    # both predict with canonical inference of what they submit (consistent, just useless)
    preds = Behaviour("random").make_predictions(spec, r1, shards)
    np.testing.assert_array_equal(preds[1], predict(spec, r1, shards[1])[0])


def test_label_flip(setup) -> None:
    _, _, _, _, _ = setup
    b = Behaviour("label-flip")
    assert b.trains
    np.testing.assert_array_equal(b.training_labels(np.array([0, 1, 9, 4]), 10), [9, 8, 0, 5])


def test_lazy_returns_the_global_model(setup) -> None:
    _, spec, g, trained, _ = setup
    b = Behaviour("lazy")
    assert not b.trains
    w = b.make_model(spec, g, trained, seed=1)
    for a, c in zip(w, g):
        np.testing.assert_array_equal(a, c)
    assert w[0] is not g[0]  # a copy: the caller may not alias the global model


def test_copycat_copies_a_revealed_model(setup) -> None:
    _, spec, g, trained, _ = setup
    b = Behaviour("copycat")
    w = b.make_model(spec, g, None, seed=1, visible_models=[trained, g])
    for a, t in zip(w, trained):
        np.testing.assert_array_equal(a, t)
    w0 = b.make_model(spec, g, None, seed=1, visible_models=[])
    np.testing.assert_array_equal(w0[0], g[0])


def test_vote_liar_and_label_liar(setup) -> None:
    assert Behaviour("vote-liar").report_scores([9000, 100, 5000]) == [BPS - 9000, BPS - 100, 5000]
    y = np.array([0, 3, 9])
    lied = Behaviour("label-liar").reveal_labels(y, 10)
    np.testing.assert_array_equal(lied, [1, 4, 0])
    assert np.all(lied != y)
    assert Behaviour("label-liar").report_scores([7]) == [7]  # consistent with its (false) labels


def test_withhold(setup) -> None:
    _, spec, g, _, shards = setup
    b = Behaviour("withhold")
    assert b.withholds and not b.trains
    assert b.make_predictions(spec, g, shards) == []


def test_parse_and_assign() -> None:
    parsed = parse_adversaries("knn:2, vote-liar ,zero:1")
    assert [(b.kind, c) for b, c in parsed] == [("knn", 2), ("vote-liar", 1), ("zero", 1)]
    assert parse_adversaries(None) == [] and parse_adversaries("") == []
    kinds = [b.kind for b in assign_behaviours(6, parsed)]
    assert kinds == ["honest", "honest", "knn", "knn", "vote-liar", "zero"]
    for bad, match in [
        ("evil:1", "unknown adversary"),
        ("knn:x", "integer"),
        ("knn:0", "at least 1"),
        ("honest:1", "unknown"),
    ]:
        with pytest.raises(AdversaryError, match=match):
            parse_adversaries(bad)
    with pytest.raises(AdversaryError, match="only 2 miners"):
        assign_behaviours(2, parse_adversaries("knn:3"))
    with pytest.raises(AdversaryError):
        Behaviour("nonsense")
    assert set(ADVERSARIAL_KINDS) == {
        "knn", "random", "zero", "label-flip", "lazy", "copycat", "vote-liar", "label-liar", "withhold",
    }  # fmt: skip
