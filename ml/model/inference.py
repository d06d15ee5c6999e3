"""Canonical inference: the numpy float32 forward pass every miner predicts with and every node verifies
with (DESIGN §5.2). No TensorFlow.

This pass may use BLAS (matmul), so its logits can differ in the last bits between machines, thread counts
and Keras. Consensus therefore never uses logits directly: a claimed label is judged only on samples whose
*relative top-2 margin* (see `margins_of`) exceeds the chain's near-tie margin, and such a verdict is the
same everywhere. Measured agreement with Keras lives in tests/ml/test_inference_keras.py.

Known limit: the margin is relative to the logits, so a deliberately built model whose hidden activations
are huge (>= ~1e4x its logits) yet cancel could push round-off past the guard on some samples and make a
fraud verdict machine-dependent. Verifiers can shrink that risk by ~5e8x with `dtype=np.float64` (slower,
fine for the few verification shards); a bound from an absolute-value forward pass was tried and rejected:
on pocl-cifar10 with random BN weights it exceeded the logits by ~1e9, making every sample a near-tie.

Convolutions are im2col (sliding windows) + one matmul per batch chunk; "same" padding follows
TensorFlow exactly (stride 1: pad (k-1)//2 before and the rest after); max-pooling is "valid" with
stride = pool size; batch-norm uses its moving statistics; dropout is the identity.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pocl.ml.model.registry import BATCHNORM, BN_EPSILON, CONV2D, DENSE, FLATTEN, MAXPOOL, RELU, ModelSpec
from pocl.ml.model.weights import check_weights

# Near-tie guard (DESIGN §5.2). `predict` reports margin = (top1 - top2) / max(1, |top1|, |top2|): the gap
# between the two largest logits relative to their own scale, because float32 round-off (and so the
# disagreement between machines, BLAS thread counts and Keras) grows with the logits' magnitude. Measured
# float32-vs-Keras logit differences are <= ~1.5e-6 relative; 1e-3 leaves a factor of ~700 and makes ~0.1%
# of trained cnn-digits samples near-ties. A sample whose margin is <= the near-tie margin is a near-tie:
# its label is never used as evidence of fraud (the threshold is the chain parameter
# `PoclParams.near_tie_margin`, applied in `consensus.pocl.verify`).

# BLAS threads used by `logits` (None: leave the process setting alone). One thread on purpose: measured on
# a busy 2-core machine (e.g. a miner training with TensorFlow next to the node), OpenBLAS's spinning worker
# threads made inference 3-15x *slower* than one thread, while on an idle machine a second thread can at
# most double throughput (docs/benchmarks/ml.md). Needs `threadpoolctl` (installed with scikit-learn);
# without it the process setting applies (set OPENBLAS_NUM_THREADS=1 to get the same effect).
INFERENCE_BLAS_THREADS: int | None = 1

# Samples per chunk: small chunks keep im2col buffers in cache (measured fastest at 32 on cnn-mnist).
DEFAULT_BATCH = 32


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


def _as_batch(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    h, w, c = spec.input_shape
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (h, w, c):
        raise ValueError(f"{spec.name} expects inputs of shape (N, {h}, {w}, {c}), got {x.shape}")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"inputs must be numeric, got {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str) -> np.ndarray:
    n, h, w, c = x.shape
    k = kernel.shape[0]
    if padding == "same":
        before = (k - 1) // 2
        after = k - 1 - before
        x = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
        oh, ow = h, w
    else:
        oh, ow = h - k + 1, w - k + 1
    # im2col: windows (N, OH, OW, C, kh, kw) -> contiguous (N, OH, OW, kh, kw, C), the kernel's row order.
    cols = np.ascontiguousarray(sliding_window_view(x, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3))
    out = cols.reshape(n * oh * ow, k * k * c) @ kernel.reshape(k * k * c, -1)
    out += bias
    return out.reshape(n, oh, ow, -1)


def _maxpool(x: np.ndarray, p: int) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = h // p, w // p
    x = x[:, : oh * p, : ow * p, :].reshape(n, oh, p, ow, p, c)
    return x.max(axis=(2, 4))


def _batchnorm(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> np.ndarray:
    # Same algebra as Keras 3 in inference mode: x * (gamma * rsqrt(var + eps)) + (beta - mean * that).
    inv = (1.0 / np.sqrt(var + BN_EPSILON)).astype(x.dtype) * gamma
    return x * inv + (beta - mean * inv)


def _forward(spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    it = iter(weights)
    for layer in spec.layers:
        if layer.kind == CONV2D:
            kernel, bias = next(it), next(it)
            x = _conv2d(x, kernel, bias, layer.padding)
        elif layer.kind == BATCHNORM:
            gamma, beta, mean, var = next(it), next(it), next(it), next(it)
            x = _batchnorm(x, gamma, beta, mean, var)
        elif layer.kind == RELU:
            x = np.maximum(x, 0, dtype=x.dtype)
        elif layer.kind == MAXPOOL:
            x = _maxpool(x, layer.pool)
        elif layer.kind == FLATTEN:
            x = x.reshape(x.shape[0], -1)
        elif layer.kind == DENSE:
            kernel, bias = next(it), next(it)
            x = x @ kernel
            x += bias
        # DROPOUT: identity at inference
    return x


def logits(
    spec: ModelSpec,
    weights: list[np.ndarray],
    x: np.ndarray,
    batch_size: int = DEFAULT_BATCH,
    blas_threads: int | None = INFERENCE_BLAS_THREADS,
    dtype: type[np.floating[Any]] = np.float32,
) -> np.ndarray:
    """Logits of shape (N, num_classes) for inputs (N, H, W, C) (or (N, H, W) when C == 1).

    Computed in `dtype`: float32 (the canonical, fast default) or float64 (about 2-4x slower; the float32
    weights are widened exactly), returned in that dtype.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"inference dtype must be float32 or float64, got {dt}")
    check_weights(spec, weights)
    xb = _as_batch(spec, x).astype(dt, copy=False)
    ws = [np.ascontiguousarray(w, dtype=dt) for w in weights]
    out = np.empty((xb.shape[0], spec.num_classes), dtype=dt)
    step = max(1, batch_size)
    # A hostile model may overflow to inf/NaN; `margins_of` turns those into near-ties, so stay quiet.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), _blas_threads(blas_threads):
        for start in range(0, xb.shape[0], step):
            chunk = xb[start : start + step]
            out[start : start + chunk.shape[0]] = _forward(spec, ws, chunk)
    return out


def margins_of(z: np.ndarray) -> np.ndarray:
    """Relative top-2 margin per row: (top1 - top2) / max(1, |top1|, |top2|), float32 (inf if 1 class);
    0 (a near-tie) where the logits are not finite."""
    z = np.asarray(z)
    if z.shape[1] < 2:
        return np.full(z.shape[0], np.inf, dtype=np.float32)
    top2 = np.partition(z, z.shape[1] - 2, axis=1)[:, -2:]
    second, first = top2[:, 0], top2[:, 1]
    scale = np.maximum(1.0, np.maximum(np.abs(first), np.abs(second)))
    with np.errstate(over="ignore", invalid="ignore"):
        m = (first - second) / scale
    return np.where(np.isfinite(m), m, 0.0).astype(np.float32)


def predict(
    spec: ModelSpec,
    weights: list[np.ndarray],
    x: np.ndarray,
    batch_size: int = DEFAULT_BATCH,
    dtype: type[np.floating[Any]] = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, relative top-2 margin float32) per sample; ties resolve to the lowest class index."""
    z = logits(spec, weights, x, batch_size=batch_size, dtype=dtype)
    labels = np.argmax(z, axis=1).astype(np.int64)
    return labels, margins_of(z)
