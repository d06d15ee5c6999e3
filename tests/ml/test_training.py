"""Real TensorFlow training on the bundled digits: it learns, returns canonical weights, stops on request."""

from __future__ import annotations

import numpy as np
import pytest
from pocl.ml.datasets import load_dataset
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import check_weights, initial_weights
from pocl.ml.training import Trainer, TrainingError, TrainJob, accuracy


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return Trainer()


def test_training_learns_digits(digits, trainer: Trainer) -> None:
    spec = get_model(digits.model_name)
    g = initial_weights(spec, 0)
    g_copy = [w.copy() for w in g]
    before = accuracy(spec, g, digits.x_test, digits.y_test)
    result = trainer.fit(
        TrainJob(spec, g, digits.x_train, digits.y_train, epochs=4, batch_size=32, lr=0.05, seed=1)
    )
    check_weights(spec, result.weights)  # canonical float32, the spec's shapes
    assert all(w.dtype == np.float32 for w in result.weights)
    after = accuracy(spec, result.weights, digits.x_test, digits.y_test)
    assert before < 0.3
    assert after > 0.8, f"held-out accuracy {after:.3f}"
    assert result.epochs_done == 4 and not result.stopped_early and result.steps_done > 0
    assert np.isfinite(result.final_loss)
    for a, b in zip(g, g_copy):
        np.testing.assert_array_equal(a, b)  # the global model is not mutated


def test_adam_optimizer(digits, trainer: Trainer) -> None:
    spec = get_model(digits.model_name)
    g = initial_weights(spec, 1)
    w = trainer.fit(
        TrainJob(spec, g, digits.x_train[:300], digits.y_train[:300], 1, 32, 0.003, 5, optimizer="adam")
    ).weights
    check_weights(spec, w)
    assert any(not np.array_equal(a, b) for a, b in zip(w, g))


def test_stop_request_and_time_limit(digits, trainer: Trainer) -> None:
    spec = get_model(digits.model_name)
    g = initial_weights(spec, 0)
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    job = TrainJob(spec, g, digits.x_train, digits.y_train, epochs=50, batch_size=32, lr=0.05, seed=1)
    r = trainer.fit(job, should_stop=stop_after_three)
    assert r.stopped_early and r.epochs_done == 0 and r.steps_done <= 4
    r = trainer.fit(
        TrainJob(
            spec,
            g,
            digits.x_train,
            digits.y_train,
            epochs=1000,
            batch_size=32,
            lr=0.05,
            seed=1,
            time_limit_s=0.5,
        )
    )
    assert r.stopped_early and r.epochs_done < 1000
    check_weights(spec, r.weights)


def test_bad_inputs(digits, trainer: Trainer) -> None:
    spec = get_model(digits.model_name)
    g = initial_weights(spec, 0)
    x, y = digits.x_train[:10], digits.y_train[:10]
    with pytest.raises(TrainingError, match="expects inputs"):
        trainer.fit(
            TrainJob(
                spec, g, np.zeros((10, 28, 28, 1), np.float32), y, epochs=1, batch_size=4, lr=0.1, seed=0
            )
        )
    with pytest.raises(TrainingError, match="labels"):
        trainer.fit(TrainJob(spec, g, x, y[:5], epochs=1, batch_size=4, lr=0.1, seed=0))
    with pytest.raises(TrainingError, match="labels must be"):
        trainer.fit(TrainJob(spec, g, x, y + 10, epochs=1, batch_size=4, lr=0.1, seed=0))
    with pytest.raises(TrainingError, match="optimizer"):
        trainer.fit(TrainJob(spec, g, x, y, epochs=1, batch_size=4, lr=0.1, seed=0, optimizer="rmsprop"))
    with pytest.raises(TrainingError):
        trainer.fit(TrainJob(spec, g, x, y, epochs=1, batch_size=0, lr=0.1, seed=0))
    with pytest.raises(Exception, match="weight"):
        trainer.fit(TrainJob(spec, g[:-1], x, y, epochs=1, batch_size=4, lr=0.1, seed=0))
