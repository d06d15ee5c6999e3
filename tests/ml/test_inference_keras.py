"""Canonical (numpy) inference agrees with Keras on the same weights (real TensorFlow; DESIGN §5.2).

The contract: labels agree on >= 99.9% of samples, every disagreement is a near-tie (relative top-2
margin <= NEAR_TIE_MARGIN), and logits differ by far less than that margin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pocl.consensus.pocl.params import PoclParams
from pocl.ml.keras_model import build_keras_model, keras_weights
from pocl.ml.model.inference import logits, predict
from pocl.ml.model.registry import ModelSpec, conv2d, dense, flatten, get_model, maxpool, model_names, relu
from pocl.ml.model.weights import initial_weights, weights_hash

NEAR_TIE_MARGIN = PoclParams().near_tie_threshold  # the chain's default near-tie guard
LOGIT_REL_TOL = NEAR_TIE_MARGIN / 10  # vs the logits' own scale; measured <= ~1.5e-6


def _keras_logits(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32)


def _check_agreement(
    spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, model: Any
) -> dict[str, float]:
    zk = _keras_logits(model, x)
    zn = logits(spec, weights, x)
    labels, margin = predict(spec, weights, x)
    scale = max(1.0, float(np.abs(zk).max()))
    max_diff = float(np.abs(zn - zk).max())
    disagree = labels != np.argmax(zk, axis=1)
    agreement = 1.0 - float(disagree.mean())
    assert max_diff <= LOGIT_REL_TOL * scale, (max_diff, scale)
    assert agreement >= 0.999
    assert np.all(margin[disagree] <= NEAR_TIE_MARGIN)
    near_ties = float((margin <= NEAR_TIE_MARGIN).mean())
    return {"agreement": agreement, "max_diff": max_diff, "near_ties": near_ties}


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
    assert float((labels == y).mean()) > 0.9  # it really trained
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
    np.testing.assert_allclose(logits(spec, w, x), zk, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", model_names())
def test_keras_weight_order_is_canonical(name: str) -> None:
    spec = get_model(name)
    w = initial_weights(spec, seed=2)
    model = build_keras_model(spec, w)
    back = keras_weights(model)
    assert [a.shape for a in back] == [p.shape for p in spec.params()]
    assert weights_hash(back) == weights_hash(w)
    assert model.output_shape == (None, spec.num_classes)
