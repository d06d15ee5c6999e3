"""Canonical inference (numpy only): layer semantics against naive float64 references, shapes, margins."""

from __future__ import annotations

import numpy as np
import pytest
from pocl.consensus.pocl.params import PoclParams
from pocl.ml.model import inference
from pocl.ml.model.inference import logits, margins_of, predict
from pocl.ml.model.registry import (
    ModelSpec,
    batchnorm,
    conv2d,
    dense,
    dropout,
    flatten,
    get_model,
    maxpool,
    model_names,
    relu,
)
from pocl.ml.model.weights import WeightsError, initial_weights

RNG = np.random.default_rng(1234)
NEAR_TIE_MARGIN = PoclParams().near_tie_threshold  # the chain's default near-tie guard


def _naive_conv(x: np.ndarray, k: np.ndarray, b: np.ndarray, padding: str) -> np.ndarray:
    """Direct float64 convolution with TensorFlow's 'same' padding rule (stride 1)."""
    n, h, w, _ = x.shape
    kk = k.shape[0]
    if padding == "same":
        before = (kk - 1) // 2
        x = np.pad(x, ((0, 0), (before, kk - 1 - before), (before, kk - 1 - before), (0, 0)))
        oh, ow = h, w
    else:
        oh, ow = h - kk + 1, w - kk + 1
    out = np.zeros((n, oh, ow, k.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i : i + kk, j : j + kk, :].astype(np.float64)
            out[:, i, j, :] = np.tensordot(patch, k.astype(np.float64), axes=([1, 2, 3], [0, 1, 2]))
    return out + b


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_matches_naive_reference(kernel: int, padding: str) -> None:
    x = RNG.standard_normal((3, 7, 6, 2)).astype(np.float32)
    k = RNG.standard_normal((kernel, kernel, 2, 4)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    got = inference._conv2d(x, k, b, padding)
    want = _naive_conv(x, k, b, padding)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_maxpool_drops_remainder_like_keras_valid() -> None:
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1)
    got = inference._maxpool(x, 2)
    assert got.shape == (2, 2, 2, 1)
    assert got[0, :, :, 0].tolist() == [[6, 8], [16, 18]]


def test_full_model_matches_float64_reference_with_batchnorm() -> None:
    spec = ModelSpec(
        "t",
        (6, 6, 2),
        3,
        (conv2d(4, 3, "same"), batchnorm(), relu(), maxpool(2), dropout(0.5), flatten(), dense(3)),
    )
    w = initial_weights(spec, seed=5)
    w[2] = RNG.uniform(0.5, 2, 4).astype(np.float32)  # gamma
    w[3] = RNG.standard_normal(4).astype(np.float32)  # beta
    w[4] = RNG.standard_normal(4).astype(np.float32)  # moving mean
    w[5] = RNG.uniform(0.1, 3, 4).astype(np.float32)  # moving variance
    x = RNG.standard_normal((5, 6, 6, 2)).astype(np.float32)
    h = _naive_conv(x, w[0], w[1], "same")
    h = (h - w[4]) / np.sqrt(w[5].astype(np.float64) + 1e-3) * w[2] + w[3]
    h = np.maximum(h, 0).reshape(5, 3, 2, 3, 2, 4).max(axis=(2, 4)).reshape(5, -1)
    want = h @ w[6].astype(np.float64) + w[7]
    np.testing.assert_allclose(logits(spec, w, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", model_names())
def test_registered_models_run_and_batching_is_consistent(name: str) -> None:
    spec = get_model(name)
    w = initial_weights(spec, seed=0)
    x = RNG.random((40, *spec.input_shape), dtype=np.float32)
    z = logits(spec, w, x)
    assert z.shape == (40, 10) and z.dtype == np.float32 and np.isfinite(z).all()
    z_small = logits(spec, w, x, batch_size=7)
    np.testing.assert_allclose(z, z_small, rtol=1e-5, atol=1e-6)
    labels, margin = predict(spec, w, x)
    assert labels.dtype == np.int64 and margin.dtype == np.float32
    assert np.array_equal(labels, np.argmax(z, axis=1))
    assert (margin >= 0).all()


def test_input_shape_handling() -> None:
    spec = get_model("cnn-digits")
    w = initial_weights(spec, seed=0)
    x = RNG.random((4, 8, 8), dtype=np.float32)
    assert np.array_equal(logits(spec, w, x), logits(spec, w, x[..., None]))
    assert logits(spec, w, (x * 16).astype(np.uint8)).dtype == np.float32
    assert logits(spec, w, np.zeros((0, 8, 8, 1), np.float32)).shape == (0, 10)
    with pytest.raises(ValueError, match="expects inputs"):
        logits(spec, w, np.zeros((4, 8, 9, 1), np.float32))
    with pytest.raises(WeightsError):
        logits(spec, w[:-1], x)
    with pytest.raises(WeightsError):
        logits(get_model("cnn-mnist"), w, np.zeros((1, 28, 28, 1), np.float32))


def test_margins_are_relative_and_ties_are_zero() -> None:
    z = np.array(
        [[1.0, 3.0, 2.0], [5.0, 5.0, 0.0], [0.1, 0.2, 0.3], [100.0, 99.0, 0.0], [np.nan, 0.0, 1.0]],
        dtype=np.float32,
    )
    m = margins_of(z)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m[:4], [1 / 3, 0.0, 0.1, 0.01], rtol=1e-5)
    assert m[4] == 0.0  # non-finite logits never make a decisive sample
    assert (m > NEAR_TIE_MARGIN).tolist() == [True, False, True, True, False]


@pytest.mark.parametrize("name", model_names())
def test_float64_inference_agrees_with_float32(name: str) -> None:
    spec = get_model(name)
    w = initial_weights(spec, seed=1)
    x = RNG.random((20, *spec.input_shape), dtype=np.float32)
    z32 = logits(spec, w, x)
    z64 = logits(spec, w, x, dtype=np.float64)
    assert z64.dtype == np.float64
    np.testing.assert_allclose(z32, z64, rtol=1e-5, atol=1e-6)
    l32, m32 = predict(spec, w, x)
    l64, _ = predict(spec, w, x, dtype=np.float64)
    assert np.array_equal(l32[m32 > NEAR_TIE_MARGIN], l64[m32 > NEAR_TIE_MARGIN])
    with pytest.raises(ValueError, match="dtype"):
        logits(spec, w, x, dtype=np.float16)


def test_hostile_weights_overflow_to_near_ties_quietly() -> None:
    spec = get_model("cnn-digits")
    w = [a * np.float32(1e30) if a.ndim > 1 else a for a in initial_weights(spec, seed=0)]
    x = RNG.random((8, 8, 8, 1), dtype=np.float32) * 16
    labels, margin = predict(spec, w, x)
    assert labels.shape == (8,)
    assert not (margin[~np.isfinite(logits(spec, w, x)).all(axis=1)] > NEAR_TIE_MARGIN).any()
