"""Canonical inference: the exact fixed-point forward pass every miner predicts with and every node verifies
with (DESIGN §5.2, docs/pocl-protocol.md "Canonical inference"). numpy only, no TensorFlow.

Every value is an integer, so a sample's logits and label are bit-identical on every machine, whatever
the CPU, BLAS, thread count, batch size, chunking or summation order. A verdict compares labels only.

Arithmetic (all constants below):
- **Activations** (inputs, hidden values, logits) are integers q meaning q / 2**ACT_FRAC_BITS, saturated to
  [-ACT_MAX, ACT_MAX] (a real range of ±1024 at a resolution of 2**-12). Inputs: q = rint(x · 2**12)
  (NaN → 0, ±inf and out-of-range values saturate).
- **Weights** are quantised per output channel of each convolution / dense layer. A batch-norm layer that
  follows one is first folded into it in float64 (scale = gamma / sqrt(var + eps); kernel · scale;
  (bias − mean) · scale + beta: single IEEE-754 operations, correctly rounded everywhere, no libm call).
  Values are then sanitised (NaN → 0, |v| < 2**-64 → 0, |v| clipped to 2**64) so no subnormal, infinity or
  NaN reaches the arithmetic. For output channel c, e_c = frexp(max |w[:, c]|)[1] (exact: only the
  exponent is read) and f_c = WEIGHT_BITS − e_c: the kernel becomes rint(w · 2**f_c), |·| <= 2**WEIGHT_BITS,
  and the bias becomes rint(b · 2**(f_c + ACT_FRAC_BITS)) saturated to [-BIAS_MAX, BIAS_MAX].
  `np.rint` rounds half to even; multiplying a float64 by a power of two is exact.
- **Accumulation** acc = Σ a_k · w_k + bias is done as float64 matmul on integer-valued operands. Every
  product is an integer of magnitude <= ACT_MAX · 2**WEIGHT_BITS = 2**37, so any partial sum of any subset
  of terms, in any order, with or without FMA, is an integer of magnitude
  <= fan_in · 2**37 + BIAS_MAX < 2**53 (checked per layer: fan_in <= MAX_FAN_IN = 57,344; cnn-mnist's
  largest is 9,216) and therefore exact in float64. BLAS is only a fast way to compute an exact sum.
- **Rescaling** back to activations: rint(acc · 2**-f_c) (an exact power-of-two scaling, then round half
  to even), saturated to [-ACT_MAX, ACT_MAX].
- ReLU, max-pooling ("valid", stride = pool size), flatten and dropout (identity) act on the integers;
  "same" padding pads with zeros, TensorFlow's split (stride 1: (k − 1) // 2 before, the rest after).
- The label is the argmax of the integer logits; ties go to the lowest class index.

Measured against the float model: tests/ml/test_inference.py (accuracy on digits), tests/ml/
test_inference_keras.py (agreement with Keras), docs/benchmarks/ml.md (speed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pocl.ml.model.registry import BATCHNORM, BN_EPSILON, CONV2D, DENSE, FLATTEN, MAXPOOL, RELU, ModelSpec
from pocl.ml.model.weights import check_weights

ACT_FRAC_BITS = 12  # activation q means q / 2**12
ACT_MAX = 2**22  # activations saturate to [-ACT_MAX, ACT_MAX] (real ±1024)
WEIGHT_BITS = 15  # quantised weights lie in [-2**15, 2**15]
BIAS_MAX = 2**50  # quantised biases (at the accumulator's scale) saturate to [-BIAS_MAX, BIAS_MAX]
EXACT_LIMIT = 2**53  # float64 represents every integer of magnitude <= 2**53 exactly
# Largest fan-in whose accumulator provably stays below 2**53: fan_in · ACT_MAX · 2**WEIGHT_BITS + BIAS_MAX.
MAX_FAN_IN = (EXACT_LIMIT - BIAS_MAX) // (ACT_MAX * 2**WEIGHT_BITS)  # 57,344
# Weight sanitising bounds: magnitudes below TINY are 0, above HUGE are clipped (no subnormals, no inf).
TINY = 2.0**-64
HUGE = 2.0**64

# BLAS threads used by `int_logits` (None: leave the process setting alone). A speed setting only: the
# results are exact whatever the thread count. One thread on purpose: measured on a busy 2-core machine (a
# miner training with TensorFlow next to the node), OpenBLAS's spinning worker threads made inference 3-15x
# *slower* than one thread (docs/benchmarks/ml.md). Needs `threadpoolctl` (installed with scikit-learn).
INFERENCE_BLAS_THREADS: int | None = 1

# Samples per chunk: small chunks keep the float64 im2col buffers in cache (cnn-mnist, 1 BLAS thread:
# 8 -> ~1,300 samples/s, 32 -> ~1,000, 64 -> ~700; docs/benchmarks/ml.md). A speed setting only.
DEFAULT_BATCH = 8


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - optional dependency
        return None
    return ThreadpoolController()


def _blas_threads(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    controller = _blas_controller() if threads else None
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=threads, user_api="blas")


# ---------------------------------------------------------------------------------------------- quantising


@dataclasses.dataclass(frozen=True)
class QuantLayer:
    """One layer of a quantised model. For conv2d / dense: integer-valued float64 `kernel` (fan_in, C),
    `bias` (C,) at the accumulator's scale and `down` (C,) = 2**-f_c, the exact rescale per channel."""

    kind: str
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    down: np.ndarray | None = None
    size: int = 0  # conv2d kernel size | maxpool window
    padding: str = ""


def _sanitise(a: np.ndarray) -> np.ndarray:
    """float64; NaN -> 0, |v| < TINY -> 0, |v| clipped to HUGE (so no inf, NaN or subnormal remains)."""
    a = np.asarray(a, dtype=np.float64)
    a = np.clip(np.where(np.isnan(a), 0.0, a), -HUGE, HUGE)
    return np.where(np.abs(a) < TINY, 0.0, a)


def _quantise_affine(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kernel (fan_in, C), bias (C,)) sanitised float64 -> integer kernel, integer bias, 2**-f per channel."""
    fan_in = kernel.shape[0]
    if fan_in > MAX_FAN_IN:
        raise ValueError(f"fan-in {fan_in} exceeds {MAX_FAN_IN}: accumulation would not be exact in float64")
    # frexp: max|w| = m · 2**e with m in [0.5, 1) (m = e = 0 for 0), read exactly from the bits.
    _, e = np.frexp(np.abs(kernel).max(axis=0))
    f = WEIGHT_BITS - e.astype(np.int64)  # in [-50, 78] after sanitising
    kq = np.rint(kernel * np.ldexp(1.0, f))  # |kernel · 2**f| < 2**WEIGHT_BITS, so |kq| <= 2**WEIGHT_BITS
    bq = np.clip(np.rint(bias * np.ldexp(1.0, f + ACT_FRAC_BITS)), -BIAS_MAX, BIAS_MAX)
    assert fan_in * ACT_MAX * 2**WEIGHT_BITS + BIAS_MAX < EXACT_LIMIT
    return np.ascontiguousarray(kq), bq, np.ldexp(1.0, -f)


def quantise_model(spec: ModelSpec, weights: list[np.ndarray]) -> tuple[QuantLayer, ...]:
    """The integer model for `weights` (checked against `spec`), with batch-norm folded into its layer."""
    check_weights(spec, weights)
    it = iter(weights)
    layers = spec.layers
    out: list[QuantLayer] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer.kind in (CONV2D, DENSE):
            kernel, bias = _sanitise(next(it)), _sanitise(next(it))
            if i + 1 < len(layers) and layers[i + 1].kind == BATCHNORM:
                gamma, beta, mean, var = (_sanitise(next(it)) for _ in range(4))
                with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                    scale = gamma / np.sqrt(var + BN_EPSILON)  # NaN/inf from a hostile var: sanitised below
                    kernel = _sanitise(kernel * _sanitise(scale))
                    bias = _sanitise((bias - mean) * _sanitise(scale) + beta)
                i += 1
            channels = kernel.shape[-1]
            kq, bq, down = _quantise_affine(kernel.reshape(-1, channels), bias)
            size = layer.kernel if layer.kind == CONV2D else 0
            out.append(QuantLayer(layer.kind, kq, bq, down, size=size, padding=layer.padding))
        elif layer.kind == BATCHNORM:
            raise ValueError(f"{spec.name}: batch-norm at layer {i} must follow a conv2d or dense layer")
        elif layer.kind == MAXPOOL:
            out.append(QuantLayer(MAXPOOL, size=layer.pool))
        elif layer.kind in (RELU, FLATTEN):
            out.append(QuantLayer(layer.kind))
        # DROPOUT: identity at inference
        i += 1
    return tuple(out)


def quantise_inputs(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """Inputs (N, H, W, C) (or (N, H, W) when C == 1) -> integer-valued float64 at ACT_FRAC_BITS."""
    x = np.asarray(x)
    h, w, c = spec.input_shape
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (h, w, c):
        raise ValueError(f"{spec.name} expects inputs of shape (N, {h}, {w}, {c}), got {x.shape}")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"inputs must be numeric, got {x.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.asarray(x, dtype=np.float64) * float(2**ACT_FRAC_BITS)  # exact (or ±inf: saturates)
    scaled = np.where(np.isnan(scaled), 0.0, scaled)
    return np.ascontiguousarray(np.rint(np.clip(scaled, -ACT_MAX, ACT_MAX)))


# ---------------------------------------------------------------------------------------------- forward


def _rescale(acc: np.ndarray, down: np.ndarray) -> np.ndarray:
    # acc · 2**-f is exact (a power-of-two scaling of an integer < 2**53, far from under/overflow); rint
    # rounds half to even; then saturate.
    out = acc * down
    np.rint(out, out=out)
    return np.clip(out, -ACT_MAX, ACT_MAX, out=out)


def _conv2d(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    assert q.kernel is not None and q.bias is not None and q.down is not None
    n, h, w, c = x.shape
    k = q.size
    if q.padding == "same":
        before = (k - 1) // 2
        after = k - 1 - before
        x = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
        oh, ow = h, w
    else:
        oh, ow = h - k + 1, w - k + 1
    # im2col: windows (N, OH, OW, C, kh, kw) -> contiguous (N, OH, OW, kh, kw, C), the kernel's row order.
    cols = np.ascontiguousarray(sliding_window_view(x, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3))
    acc = cols.reshape(n * oh * ow, k * k * c) @ q.kernel  # exact: see the module docstring
    acc += q.bias
    return _rescale(acc, q.down).reshape(n, oh, ow, -1)


def _dense(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    assert q.kernel is not None and q.bias is not None and q.down is not None
    acc = x @ q.kernel  # exact: see the module docstring
    acc += q.bias
    return _rescale(acc, q.down)


def _maxpool(x: np.ndarray, p: int) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = h // p, w // p
    x = x[:, : oh * p, : ow * p, :].reshape(n, oh, p, ow, p, c)
    return x.max(axis=(2, 4))


def forward(model: tuple[QuantLayer, ...], xq: np.ndarray) -> np.ndarray:
    """Integer-valued float64 logits of quantised inputs `xq` through the quantised `model`."""
    x = xq
    for q in model:
        if q.kind == CONV2D:
            x = _conv2d(x, q)
        elif q.kind == DENSE:
            x = _dense(x, q)
        elif q.kind == RELU:
            x = np.maximum(x, 0.0)
        elif q.kind == MAXPOOL:
            x = _maxpool(x, q.size)
        elif q.kind == FLATTEN:
            x = x.reshape(x.shape[0], -1)
    return x


def int_logits(
    spec: ModelSpec,
    weights: list[np.ndarray],
    x: np.ndarray,
    batch_size: int = DEFAULT_BATCH,
    blas_threads: int | None = INFERENCE_BLAS_THREADS,
) -> np.ndarray:
    """The canonical integer logits, int64 of shape (N, num_classes); q means q / 2**ACT_FRAC_BITS.

    Inputs (N, H, W, C) (or (N, H, W) when C == 1). `batch_size` and `blas_threads` change only speed.
    """
    model = quantise_model(spec, weights)
    xq = quantise_inputs(spec, x)
    out = np.empty((xq.shape[0], spec.num_classes), dtype=np.int64)
    step = max(1, batch_size)
    with _blas_threads(blas_threads):
        for start in range(0, xq.shape[0], step):
            chunk = xq[start : start + step]
            out[start : start + chunk.shape[0]] = forward(model, chunk).astype(np.int64)
    return out


def logits(
    spec: ModelSpec,
    weights: list[np.ndarray],
    x: np.ndarray,
    batch_size: int = DEFAULT_BATCH,
    blas_threads: int | None = INFERENCE_BLAS_THREADS,
) -> np.ndarray:
    """The canonical logits as real numbers: `int_logits` · 2**-ACT_FRAC_BITS, float64 (exact, identical
    everywhere). For features and reports; verdicts use labels."""
    return int_logits(spec, weights, x, batch_size, blas_threads).astype(np.float64) * 2.0**-ACT_FRAC_BITS


def labels_of(z: np.ndarray) -> np.ndarray:
    """Argmax per row of integer logits, ties to the lowest class index (np.argmax returns the first)."""
    return np.argmax(np.asarray(z), axis=1).astype(np.int64)


def predict(
    spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, batch_size: int = DEFAULT_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, integer logits int64) per sample: the canonical prediction miners claim and nodes
    verify. Ties resolve to the lowest class index."""
    z = int_logits(spec, weights, x, batch_size=batch_size)
    return labels_of(z), z
