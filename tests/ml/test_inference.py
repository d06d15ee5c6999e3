"""Canonical inference (numpy only): exact fixed-point arithmetic, bit-identical whatever the batching, BLAS
thread count, input dtype or summation order; layer semantics and accuracy against float references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pocl.ml.model import inference
from pocl.ml.model.inference import ACT_FRAC_BITS, ACT_MAX, int_logits, logits, predict, quantise_model
from pocl.ml.model.registry import (
    CONV2D,
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

from tests.ml.float_reference import float_conv, float_logits, int_reference_logits
from tests.support.pocl_scenario import SPEC, digits, trained_weights

RNG = np.random.default_rng(1234)
QUANTUM = 2.0**-ACT_FRAC_BITS


def _bn_weights(spec: ModelSpec, seed: int) -> list[np.ndarray]:
    """Initial weights with non-trivial batch-norm statistics and biases."""
    rng = np.random.default_rng(seed)
    w = initial_weights(spec, seed)
    for i, p in enumerate(spec.params()):
        if p.role in ("gamma", "moving_variance"):
            w[i] = rng.uniform(0.5, 2.0, p.shape).astype(np.float32)
        elif p.role in ("beta", "moving_mean", "bias"):
            w[i] = rng.normal(0, 0.1, p.shape).astype(np.float32)
    return w


def _conv_layer(
    k: np.ndarray, b: np.ndarray, padding: str, winograd: bool, down: np.ndarray | None = None
) -> inference.QuantLayer:
    down = np.ones(k.shape[-1]) if down is None else down
    kernel = k.reshape(-1, k.shape[-1])
    return inference.QuantLayer(CONV2D, kernel, b, down, size=k.shape[0], padding=padding, winograd=winograd)


def _exact_conv(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'valid' convolution in int64 (no BLAS, no float): the exact integer sums."""
    x, k = x.astype(np.int64), k.astype(np.int64)
    kk = k.shape[0]
    oh, ow = x.shape[1] - kk + 1, x.shape[2] - kk + 1
    out = np.zeros((x.shape[0], oh, ow, k.shape[3]), dtype=np.int64)
    for i in range(kk):
        for j in range(kk):
            out += np.einsum("nhwc,cf->nhwf", x[:, i : i + oh, j : j + ow, :], k[i, j])
    return out + b.astype(np.int64)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_on_integers_equals_naive_reference_exactly(kernel: int, padding: str) -> None:
    x = np.rint(RNG.standard_normal((3, 7, 6, 2)) * 1000)
    k = np.rint(RNG.standard_normal((kernel, kernel, 2, 4)) * 1000)
    b = np.rint(RNG.standard_normal(4) * 1000)
    want = float_conv(x, k, b, padding)
    for winograd in (False, True) if kernel == 3 else (False,):
        got = inference._conv2d(x, _conv_layer(k, b, padding, winograd))
        assert got.shape == want.shape
        assert np.array_equal(got, np.clip(want, -ACT_MAX, ACT_MAX)), winograd


@pytest.mark.parametrize("shape", [(5, 5), (6, 7), (8, 8), (9, 4), (3, 3)])
def test_winograd_equals_exact_sums_with_fused_pooling(shape: tuple[int, int]) -> None:
    """Winograd F(2x2, 3x3), odd and even output sizes, with and without the fused 2x2 max-pool, equals the
    int64 sums (and im2col) exactly; pooling the accumulators equals pooling the rescaled activations."""
    x = np.rint(RNG.standard_normal((2, *shape, 5)) * 3000)
    k = np.rint(RNG.standard_normal((3, 3, 5, 6)) * 3000)
    b = np.rint(RNG.standard_normal(6) * 3000)
    exact = _exact_conv(x, k, b)
    wino, im2col = _conv_layer(k, b, "valid", True), _conv_layer(k, b, "valid", False)
    for pool2 in (False, True):
        want = inference._maxpool(exact, 2) if pool2 else exact
        assert np.array_equal(inference._conv_acc(x, wino, pool2), want), pool2
        assert np.array_equal(inference._conv_acc(x, im2col, pool2), want), pool2
    down = 2.0 ** -RNG.integers(-3, 12, 6)
    for winograd in (True, False):
        layer = _conv_layer(k, b, "valid", winograd, down)
        fused = inference._rescale(inference._conv_acc(x, layer, True), 0.0)
        unfused = inference._maxpool(np.maximum(inference._rescale(exact * down), 0.0), 2)
        assert np.array_equal(fused, unfused)
        assert np.array_equal(inference._conv2d(x, layer), inference._rescale(exact * down))


def test_winograd_is_exact_at_its_channel_bound_with_extreme_values() -> None:
    """At C = WINOGRAD_MAX_CHANNELS, with saturated activations and full-size weights (the tile pattern that
    maximises the transformed input, and random signs), Winograd still gives the exact int64 sums; one
    channel more and the layer takes the im2col path."""
    c = inference.WINOGRAD_MAX_CHANNELS
    assert 81 * c * 4 * ACT_MAX * 2**inference.WEIGHT_BITS < inference.EXACT_LIMIT
    assert 81 * (c + 1) * 4 * ACT_MAX * 2**inference.WEIGHT_BITS >= inference.EXACT_LIMIT
    rows = np.array([0, 1, 0, -1, 0, 1])  # B^T row (0, 1, 0, -1): |d1 - d3| = 2 · ACT_MAX on tile 0
    pattern = np.outer(rows, rows)[None, :, :, None] * ACT_MAX
    x = np.concatenate(
        [np.broadcast_to(pattern, (1, 6, 6, c)), RNG.choice([-1.0, 1.0], (2, 6, 6, c)) * ACT_MAX]
    ).astype(np.float64)
    top = 2.0**inference.WEIGHT_BITS
    k = RNG.choice([-top, top], (3, 3, c, 3))
    k[:, :, :, 0] = top  # a column of +2**15: |2G g 2G^T| reaches 9 · 2**15 on its (1, 1) entry
    b = np.array([inference.BIAS_MAX, -inference.BIAS_MAX, 0.0])
    layer = _conv_layer(k, b, "valid", True)
    assert np.array_equal(inference._conv_acc(x, layer), _exact_conv(x, k, b))
    assert layer.winograd_kernel is not None and np.abs(layer.winograd_kernel).max() == 9 * top / 4
    for channels, uses_winograd in ((c, True), (c + 1, False), (7, False)):
        spec = ModelSpec("w", (4, 4, channels), 2, (conv2d(2, 3, "valid"), flatten(), dense(2)))
        model = quantise_model(spec, initial_weights(spec, 0))
        assert model[0].winograd == uses_winograd and (model[0].winograd_kernel is not None) == uses_winograd


def test_maxpool_drops_remainder_like_keras_valid() -> None:
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float64).reshape(2, 5, 5, 1)
    got = inference._maxpool(x, 2)
    assert got.shape == (2, 2, 2, 1)
    assert got[0, :, :, 0].tolist() == [[6, 8], [16, 18]]


def test_rounding_is_half_to_even_and_saturates() -> None:
    acc = np.array([[5.0, 6.0, 7.0, -5.0, -6.0, -7.0, 2.0**52, -(2.0**52)]]).T  # / 4 below
    got = inference._rescale(acc * 0.25)
    assert got.ravel().tolist() == [1, 2, 2, -1, -2, -2, ACT_MAX, -ACT_MAX]


def test_inputs_quantise_at_a_fixed_scale_with_saturation() -> None:
    spec = ModelSpec("in", (1, 4, 1), 2, (flatten(), dense(2)))
    x = np.array([[[[0.5], [1 / 3], [np.nan], [np.inf]]], [[[-1e300], [3e-5], [1024.0], [-0.0]]]])
    xq = inference.quantise_inputs(spec, x)
    assert xq.ravel().tolist() == [2048, 1365, 0, ACT_MAX, -ACT_MAX, 0, ACT_MAX, 0]


def test_full_model_with_batchnorm_is_close_to_the_float_model() -> None:
    spec = ModelSpec(
        "t",
        (6, 6, 2),
        3,
        (conv2d(4, 3, "same"), batchnorm(), relu(), maxpool(2), dropout(0.5), flatten(), dense(3)),
    )
    w = _bn_weights(spec, 5)
    x = RNG.standard_normal((5, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(logits(spec, w, x), float_logits(spec, w, x), atol=50 * QUANTUM)


@pytest.mark.parametrize("name", model_names())
def test_registered_models_equal_the_permuted_integer_reference(name: str) -> None:
    """A deliberately reordered summation (int64, kernel taps and inputs permuted, no BLAS) gives the
    same integers, and the logits stay close to the float model."""
    spec = get_model(name)
    w = _bn_weights(spec, 3)
    x = RNG.random((3, *spec.input_shape), dtype=np.float32)
    z = int_logits(spec, w, x)
    assert z.dtype == np.int64 and z.shape == (3, 10)
    for seed in (0, 1):
        assert np.array_equal(z, int_reference_logits(spec, w, x, seed=seed))
    scale = max(1.0, float(np.abs(float_logits(spec, w, x)).max()))
    assert np.abs(logits(spec, w, x) - float_logits(spec, w, x)).max() <= 2e-3 * scale


@pytest.mark.parametrize("name", model_names())
def test_bit_exact_across_batch_sizes_threads_and_input_dtype(name: str) -> None:
    from threadpoolctl import threadpool_limits

    spec = get_model(name)
    w = _bn_weights(spec, 0)
    n = 40 if name != "cnn-mnist" else 33
    x = RNG.random((n, *spec.input_shape), dtype=np.float32)
    labels, z = predict(spec, w, x)
    assert labels.dtype == np.int64 and np.array_equal(labels, np.argmax(z, axis=1))
    for bs in (1, 7, 32, n):
        assert np.array_equal(int_logits(spec, w, x, batch_size=bs), z), bs
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            assert np.array_equal(int_logits(spec, w, x, blas_threads=None), z), threads
    assert np.array_equal(int_logits(spec, w, x.astype(np.float64)), z)
    # a sample's result never depends on the batch it is in
    shuffled = RNG.permutation(n)
    assert np.array_equal(int_logits(spec, w, x[shuffled]), z[shuffled])
    mixed = np.concatenate([x[:1], RNG.random((5, *spec.input_shape), dtype=np.float32)])
    assert np.array_equal(int_logits(spec, w, mixed)[:1], z[:1])


def test_input_shape_handling() -> None:
    spec = get_model("cnn-digits")
    w = initial_weights(spec, seed=0)
    x = RNG.random((4, 8, 8), dtype=np.float32)
    assert np.array_equal(int_logits(spec, w, x), int_logits(spec, w, x[..., None]))
    u8 = (x * 16).astype(np.uint8)
    assert np.array_equal(int_logits(spec, w, u8), int_logits(spec, w, u8.astype(np.float32)))
    assert int_logits(spec, w, np.zeros((0, 8, 8, 1), np.float32)).shape == (0, 10)
    with pytest.raises(ValueError, match="expects inputs"):
        int_logits(spec, w, np.zeros((4, 8, 9, 1), np.float32))
    with pytest.raises(WeightsError):
        int_logits(spec, w[:-1], x)
    with pytest.raises(WeightsError):
        int_logits(get_model("cnn-mnist"), w, np.zeros((1, 28, 28, 1), np.float32))


def test_fan_in_beyond_the_exact_bound_is_refused() -> None:
    spec = ModelSpec("wide", (1, inference.MAX_FAN_IN + 1, 1), 2, (flatten(), dense(2)))
    with pytest.raises(ValueError, match="fan-in"):
        quantise_model(spec, initial_weights(spec, 0))


def test_hostile_weights_and_inputs_give_quiet_deterministic_saturated_integers() -> None:
    spec = get_model("pocl-cifar10")
    w = _bn_weights(spec, 1)
    w[0] = w[0] * np.float32(1e30)  # huge kernel
    w[5] = -w[5]  # negative moving variance: sqrt(NaN) in the fold, sanitised to 0
    w[11] = np.full_like(w[11], -1e-3)  # var + eps == 0: division by zero, sanitised
    w[-2] = np.full_like(w[-2], 1e-40)  # subnormal float32 kernel: flushed to 0
    x = RNG.random((4, *spec.input_shape), dtype=np.float32) * 1e6
    x[0, 0, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = int_logits(spec, w, x)
    assert np.abs(z).max() <= ACT_MAX
    assert np.array_equal(z, int_logits(spec, w, x, batch_size=1))
    assert np.array_equal(int_reference_logits(spec, w, x[:2]), z[:2])


def _crafted_tie(weights: list[np.ndarray], a: int, b: int, bias_gap: float = 0.0) -> list[np.ndarray]:
    """Output columns a and b identical (b's bias higher by `bias_gap`), both pushed far above the rest."""
    w = [v.copy() for v in weights]
    w[-2][:, b] = w[-2][:, a]
    w[-1][a] += np.float32(50.0)
    w[-1][b] = w[-1][a] + np.float32(bias_gap)
    return w


def test_crafted_decision_boundary_has_one_verdict_everywhere_ties_to_lowest_class() -> None:
    from threadpoolctl import threadpool_limits

    x, _ = digits()
    x = x[:64]
    base = list(trained_weights(100))
    tie = _crafted_tie(base, 3, 7)
    z = int_logits(SPEC, tie, x)
    assert np.array_equal(z[:, 3], z[:, 7]) and (z[:, 3][:, None] >= z).all()
    one_up = _crafted_tie(base, 3, 7, bias_gap=QUANTUM)  # one output quantum: exactly representable
    z1 = int_logits(SPEC, one_up, x)
    assert np.array_equal(z1[:, 7] - z1[:, 3], np.ones(len(x), np.int64))
    for bs in (1, 7, 32, 64):
        for threads in (1, 2):
            with threadpool_limits(limits=threads, user_api="blas"):
                assert (predict(SPEC, tie, x, batch_size=bs)[0] == 3).all()  # the tie: lowest class
                assert (predict(SPEC, one_up, x, batch_size=bs)[0] == 7).all()  # one quantum decides
    assert (predict(SPEC, tie, x.astype(np.float64))[0] == 3).all()
    assert np.array_equal(int_reference_logits(SPEC, tie, x[:4]), z[:4])


def test_exact_accuracy_within_half_a_point_of_the_float_model_on_digits() -> None:
    x, y = digits()
    for seed in (100, 101):
        w = list(trained_weights(seed))
        exact = float((predict(SPEC, w, x)[0] == y).mean())
        float_acc = float((np.argmax(float_logits(SPEC, w, x), axis=1) == y).mean())
        assert exact > 0.5, "the model really learned something"
        assert abs(exact - float_acc) <= 0.005, (seed, exact, float_acc)
