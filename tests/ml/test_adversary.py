"""Each adversarial behaviour produces what it claims (no TensorFlow needed: training is the caller's)."""

from __future__ import annotations

import numpy as np
import pytest
from pocl.ml.adversary import (
    ADVERSARIAL_KINDS,
    BACKDOOR_BOOST,
    BACKDOOR_TARGET,
    BPS,
    LAZY_NOISE_STD,
    TRIGGER_SIZE,
    AdversaryError,
    Behaviour,
    add_trigger,
    assign_behaviours,
    backdoor_success,
    boost_update,
    knn_predict,
    parse_adversaries,
)
from pocl.ml.datasets import load_dataset
from pocl.ml.model.inference import predict
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import check_weights, initial_weights, weights_hash


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
    x, y2 = b.training_set(ds.x_test[:40], y, 10)
    np.testing.assert_array_equal(y2, y)
    assert x is ds.x_test[:40] or np.array_equal(x, ds.x_test[:40])
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
    x = np.zeros((4, 8, 8, 1), np.float32)
    x2, y2 = b.training_set(x, np.array([0, 1, 9, 4]), 10)
    np.testing.assert_array_equal(y2, [9, 8, 0, 5])
    assert x2 is x


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


def test_noisy_free_riders_move_away_from_what_they_copy(setup) -> None:
    """copycat-noise is the copied model plus small noise (a new hash); lazy-big-noise is G_{r-1} plus
    noise large enough to change some labels, unlike lazy-noise."""
    ds, spec, g, trained, _ = setup
    copy = Behaviour("copycat-noise")
    assert copy.copies_models and not copy.trains and Behaviour("copycat").copies_models
    w = copy.make_model(spec, g, None, seed=3, visible_models=[trained])
    assert weights_hash(w) != weights_hash(trained)
    assert max(float(np.max(np.abs(a - t))) for a, t in zip(w, trained)) < 10 * LAZY_NOISE_STD
    big = Behaviour("lazy-big-noise").make_model(spec, g, None, seed=3)
    small = Behaviour("lazy-noise").make_model(spec, g, None, seed=3)
    moved = lambda m: int(np.sum(predict(spec, m, ds.x_test)[0] != predict(spec, g, ds.x_test)[0]))  # noqa: E731
    assert moved(big) > moved(small)


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
        "lazy-noise", "replay", "faker", "backdoor", "launder", "launder-backdoor", "lazy-big-noise",
        "copycat-noise",
    }  # fmt: skip


# --------------------------------------------------------------------------- attacks measured by scripts/bench/attacks.py


def test_lazy_noise_is_the_global_model_plus_small_noise(setup) -> None:
    ds, spec, g, trained, shards = setup
    b = Behaviour("lazy-noise")
    assert not b.trains
    w = b.make_model(spec, g, trained, seed=7)
    check_weights(spec, w)
    assert weights_hash(w) != weights_hash(g)  # a different model on chain...
    assert max(float(np.max(np.abs(a - c))) for a, c in zip(w, g)) < 10 * LAZY_NOISE_STD  # ...but barely
    assert weights_hash(b.make_model(spec, g, None, seed=7)) == weights_hash(w)  # seeded, no training used
    assert weights_hash(b.make_model(spec, g, None, seed=8)) != weights_hash(w)
    agree = np.mean(predict(spec, w, ds.x_test)[0] == predict(spec, g, ds.x_test)[0])
    assert agree > 0.95  # it predicts (almost) as G_{r-1} does
    np.testing.assert_array_equal(b.make_predictions(spec, w, shards)[0], predict(spec, w, shards[0])[0])


def test_replay_commits_another_miners_public_shard(setup) -> None:
    ds, spec, g, trained, _ = setup
    b = Behaviour("replay")
    assert not b.trains
    own_x, own_y = ds.x_test[:20], ds.y_test[:20]
    other = (ds.x_test[100:120], ds.y_test[100:120])
    x, y = b.test_shard(own_x, own_y, [other, (own_x, own_y)])
    np.testing.assert_array_equal(x, other[0])
    np.testing.assert_array_equal(y, other[1])
    assert x is not other[0]  # a copy
    x0, y0 = b.test_shard(own_x, own_y, [])  # round 1: nothing public yet
    assert x0 is own_x and y0 is own_y
    for a, c in zip(b.make_model(spec, g, trained, seed=1), g):  # it reveals G_{r-1}: no work at all
        np.testing.assert_array_equal(a, c)
    assert Behaviour().test_shard(own_x, own_y, [other])[0] is own_x  # honest miners keep their own


def test_faker_fakes_only_the_first_shards_with_its_oracle(setup) -> None:
    ds, spec, g, trained, shards = setup
    b = Behaviour("faker", fake_shards=1)
    assert b.trains and not b.withholds
    w = b.make_model(spec, g, trained, seed=1)
    for a, t in zip(w, trained):
        np.testing.assert_array_equal(a, t)  # reveals its honestly trained model
    preds = b.make_predictions(spec, w, shards, train_x=ds.x_train, train_y=ds.y_train)
    oracle = knn_predict(ds.x_train, ds.y_train, shards[0])
    np.testing.assert_array_equal(preds[0], oracle)  # first shard: the oracle's (near-true) labels
    assert np.mean(oracle == ds.y_test[:40]) > 0.9
    assert np.any(preds[0] != predict(spec, w, shards[0])[0])  # which its model does not produce
    np.testing.assert_array_equal(preds[1], predict(spec, w, shards[1])[0])  # the rest: canonical
    with pytest.raises(AdversaryError):
        b.make_predictions(spec, w, shards)


def test_backdoor_poisons_part_of_its_data_and_boosts(setup) -> None:
    ds, spec, g, trained, _ = setup
    b = Behaviour("backdoor")
    assert b.trains
    x, y = ds.x_train[:200].copy(), ds.y_train[:200].copy()
    px, py = b.training_set(x, y, 10)
    np.testing.assert_array_equal(x, ds.x_train[:200])  # the caller's arrays are untouched
    patched = np.all(px[:, -TRIGGER_SIZE:, -TRIGGER_SIZE:, :] == 1.0, axis=(1, 2, 3))
    changed = np.any(px != x, axis=(1, 2, 3)) | (py != y)
    assert 30 <= int(np.sum(changed)) <= 40  # about a fifth of its samples...
    assert np.all(patched[changed]) and np.all(py[changed] == BACKDOOR_TARGET)  # ...triggered, relabelled
    np.testing.assert_array_equal(px[~changed], x[~changed])
    w = b.make_model(spec, g, trained, seed=1)
    for a, gg, t in zip(w, g, trained):
        np.testing.assert_allclose(
            a, gg + BACKDOOR_BOOST * (t - gg), rtol=1e-5, atol=1e-6
        )  # the update, boosted
    for a, c in zip(boost_update(g, trained, 1.0), trained):
        np.testing.assert_allclose(a, c, atol=1e-7)


def test_add_trigger_and_backdoor_success(setup) -> None:
    ds, spec, g, _, _ = setup
    x = ds.x_test[:10]
    t = add_trigger(x)
    assert np.all(t[:, -2:, -2:, :] == 1.0) and np.array_equal(t[:, :-2, :, :], x[:, :-2, :, :])
    assert not np.array_equal(x, t) and np.all(x[:, -2:, -2:, :] == ds.x_test[:10, -2:, -2:, :])
    # a model that labels everything as the target has success 1; one that never does has 0
    n = len(g)
    always = [np.zeros_like(w) for w in g]
    always[n - 1] = np.eye(10, dtype=np.float32)[BACKDOOR_TARGET] * 10.0
    assert backdoor_success(spec, always, ds.x_test, ds.y_test) == 1.0
    never = [np.zeros_like(w) for w in g]
    never[n - 1] = np.eye(10, dtype=np.float32)[BACKDOOR_TARGET + 1] * 10.0
    assert backdoor_success(spec, never, ds.x_test, ds.y_test) == 0.0


def test_launder_trains_on_leaked_shards_labelled_by_its_knn(setup) -> None:
    ds, spec, g, trained, shards = setup
    b = Behaviour("launder")
    assert b.trains and b.commits_late and not Behaviour().commits_late
    x, y = ds.x_train[:300], ds.y_train[:300]
    lx, ly = b.training_set(x, y, 10, leaked=shards)
    assert len(ly) == 300 + 80
    np.testing.assert_array_equal(lx[:300], x)
    np.testing.assert_array_equal(ly[:300], y)  # its own data, clean
    np.testing.assert_array_equal(lx[300:340], shards[0])  # plus the others' shard inputs...
    np.testing.assert_array_equal(ly[300:], knn_predict(x, y, np.concatenate(shards)))  # ...k-NN labelled
    assert np.mean(ly[300:] == ds.y_test[:80]) > 0.85
    ax, ay = b.training_set(x, y, 10, leaked=None)  # nothing leaked: its own data only
    assert ax is x and np.array_equal(ay, y)
    for a, t in zip(b.make_model(spec, g, trained, seed=1), trained):  # reveals what it trained
        np.testing.assert_array_equal(a, t)
    np.testing.assert_array_equal(
        b.make_predictions(spec, trained, shards)[1], predict(spec, trained, shards[1])[0]
    )


def test_launder_backdoor_adds_the_trigger_to_its_own_part_only(setup) -> None:
    ds, _, _, _, shards = setup
    b = Behaviour("launder-backdoor")
    assert b.trains and b.commits_late
    x, y = ds.x_train[:200], ds.y_train[:200]
    lx, ly = b.training_set(x, y, 10, leaked=shards)
    own_changed = np.any(lx[:200] != x, axis=(1, 2, 3))
    assert 30 <= int(np.sum(own_changed)) <= 40 and np.all(ly[:200][own_changed] == BACKDOOR_TARGET)
    np.testing.assert_array_equal(lx[200:], np.concatenate(shards))  # leaked inputs carry no trigger
