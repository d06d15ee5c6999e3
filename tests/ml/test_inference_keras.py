"""Canonical (exact fixed-point) inference agrees with Keras on the same weights (real TensorFlow; §5.2).

The contract: logits differ from Keras' float32 logits by quantisation error only (a few 2**-12 plus a
small relative error), labels agree on >= 99.5% of samples, and every disagreement is a sample whose
Keras top-2 gap is within that error. Accuracy on digits is within 0.5 points of Keras'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pocl.ml.keras_model import build_keras_model, keras_weights
from pocl.ml.model.inference import logits, predict
from pocl.ml.model.registry import ModelSpec, conv2d, dense, flatten, get_model, maxpool, model_names, relu
from pocl.ml.model.weights import initial_weights, weights_hash

QUANT_ABS_TOL = 2e-2  # absolute, in logits (82 quanta of 2**-12)
QUANT_REL_TOL = 2e-3  # relative to the sample set's largest |logit|


def _keras_logits(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)


def _check_agreement(
    spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, model: Any
) -> dict[str, float]:
    zk = _keras_logits(model, x)
    zn = logits(spec, weights, x)
    labels, _ = predict(spec, weights, x)
    tol = QUANT_ABS_TOL + QUANT_REL_TOL * float(np.abs(zk).max())
    max_diff = float(np.abs(zn - zk).max())
    disagree = labels != np.argmax(zk, axis=1)
    agreement = 1.0 - float(disagree.mean())
    assert max_diff <= tol, (max_diff, tol)
    assert agreement >= 0.995
    top2 = np.sort(zk, axis=1)[:, -2:]
    assert np.all(top2[disagree, 1] - top2[disagree, 0] <= 2 * tol)
    return {"agreement": agreement, "max_diff": max_diff}


@pytest.fixture(scope="module")
def trained_digits() -> tuple[Any, np.ndarray, np.ndarray]:
    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int64)
    spec = get_model("cnn-digits")
    model = build_keras_model(spec, initial_weights(spec, seed=0))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    return model, x, y


def test_trained_digits_model_agrees_with_keras(trained_digits: tuple[Any, np.ndarray, np.ndarray]) -> None:
    model, x, y = trained_digits
    spec = get_model("cnn-digits")
    w = keras_weights(model)
    labels, _ = predict(spec, w, x)
    exact_acc = float((labels == y).mean())
    keras_acc = float((np.argmax(_keras_logits(model, x), axis=1) == y).mean())
    assert exact_acc > 0.9  # it really trained
    assert abs(exact_acc - keras_acc) <= 0.005, (exact_acc, keras_acc)
    rng = np.random.default_rng(0)
    noisy = np.clip(x + rng.normal(0, 0.3, x.shape).astype(np.float32), 0, 1)  # more borderline samples
    stats = _check_agreement(spec, w, np.concatenate([x, noisy]), model)
    print(f"cnn-digits trained: {stats}")


@pytest.mark.parametrize("name", ["cnn-mnist", "pocl-cifar10"])
def test_random_models_agree_with_keras(name: str) -> None:
    spec = get_model(name)
    rng = np.random.default_rng(1)
    w = initial_weights(spec, seed=11)
    for i, p in enumerate(spec.params()):  # non-trivial batch-norm statistics and biases
        if p.role in ("gamma", "moving_variance"):
            w[i] = rng.uniform(0.5, 2.0, p.shape).astype(np.float32)
        elif p.role in ("beta", "moving_mean", "bias"):
            w[i] = rng.normal(0, 0.1, p.shape).astype(np.float32)
    x = rng.random((256, *spec.input_shape), dtype=np.float32)
    stats = _check_agreement(spec, w, x, build_keras_model(spec, w))
    print(f"{name} random: {stats}")


@pytest.mark.parametrize("kernel", [2, 3, 4])
def test_same_padding_matches_keras_for_odd_and_even_kernels(kernel: int) -> None:
    spec = ModelSpec(
        f"pad{kernel}", (7, 6, 2), 5, (conv2d(3, kernel, "same"), relu(), maxpool(2), flatten(), dense(5))
    )
    w = initial_weights(spec, seed=kernel)
    w[1] = np.linspace(-0.5, 0.5, 3, dtype=np.float32)
    x = np.random.default_rng(kernel).standard_normal((16, 7, 6, 2)).astype(np.float32)
    zk = _keras_logits(build_keras_model(spec, w), x)
    np.testing.assert_allclose(logits(spec, w, x), zk, rtol=QUANT_REL_TOL, atol=QUANT_ABS_TOL)


@pytest.mark.parametrize("name", model_names())
def test_keras_weight_order_is_canonical(name: str) -> None:
    spec = get_model(name)
    w = initial_weights(spec, seed=2)
    model = build_keras_model(spec, w)
    back = keras_weights(model)
    assert [a.shape for a in back] == [p.shape for p in spec.params()]
    assert weights_hash(back) == weights_hash(w)
    assert model.output_shape == (None, spec.num_classes)
