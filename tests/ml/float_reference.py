"""Float64 and int64 reference forward passes for tests (never used by the chain).

- `float_logits`: the real-valued model (what Keras computes, in float64): the accuracy yardstick for the
  exact fixed-point inference of `ml.model.inference`.
- `int_reference_logits`: an independent integer implementation of the canonical arithmetic on the
  quantised model (Python-int rounding, int64 accumulation tap by tap in a permuted order, no BLAS): the
  canonical logits must equal it bit for bit.
"""

from __future__ import annotations

import numpy as np
from pocl.ml.model import inference
from pocl.ml.model.registry import BATCHNORM, BN_EPSILON, CONV2D, DENSE, FLATTEN, MAXPOOL, RELU, ModelSpec


def _pad_same(x: np.ndarray, k: int) -> np.ndarray:
    before = (k - 1) // 2
    return np.pad(x, ((0, 0), (before, k - 1 - before), (before, k - 1 - before), (0, 0)))


def float_conv(x: np.ndarray, k: np.ndarray, b: np.ndarray, padding: str) -> np.ndarray:
    """Direct float64 convolution with TensorFlow's 'same' padding rule (stride 1)."""
    n, h, w, _ = x.shape
    kk = k.shape[0]
    if padding == "same":
        x = _pad_same(x, kk)
        oh, ow = h, w
    else:
        oh, ow = h - kk + 1, w - kk + 1
    out = np.zeros((n, oh, ow, k.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i : i + kk, j : j + kk, :].astype(np.float64)
            out[:, i, j, :] = np.tensordot(patch, k.astype(np.float64), axes=([1, 2, 3], [0, 1, 2]))
    return out + b


def _maxpool(x: np.ndarray, p: int) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = h // p, w // p
    return x[:, : oh * p, : ow * p, :].reshape(n, oh, p, ow, p, c).max(axis=(2, 4))


def float_logits(spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """The float64 model: batch-norm with moving statistics, dropout the identity."""
    h = np.asarray(x, dtype=np.float64)
    if h.ndim == 3:
        h = h[..., None]
    it = (np.asarray(w, dtype=np.float64) for w in weights)
    for layer in spec.layers:
        if layer.kind == CONV2D:
            h = float_conv(h, next(it), next(it), layer.padding)
        elif layer.kind == DENSE:
            h = h @ next(it) + next(it)
        elif layer.kind == BATCHNORM:
            gamma, beta, mean, var = next(it), next(it), next(it), next(it)
            h = (h - mean) / np.sqrt(var + BN_EPSILON) * gamma + beta
        elif layer.kind == RELU:
            h = np.maximum(h, 0.0)
        elif layer.kind == MAXPOOL:
            h = _maxpool(h, layer.pool)
        elif layer.kind == FLATTEN:
            h = h.reshape(h.shape[0], -1)
    return h


def _rint_shift(acc: np.ndarray, f: int) -> np.ndarray:
    """Round acc / 2**f half to even, in Python integers (f may be negative: an exact left shift)."""
    if f <= 0:
        return np.array([int(a) << -f for a in acc.ravel()], dtype=object).reshape(acc.shape)
    out = []
    for a in acc.ravel():
        q, r = divmod(int(a), 1 << f)
        if 2 * r > (1 << f) or (2 * r == (1 << f) and q % 2 == 1):
            q += 1
        out.append(q)
    return np.array(out, dtype=object).reshape(acc.shape)


def _rescale(acc: np.ndarray, q: inference.QuantLayer) -> np.ndarray:
    assert q.down is not None
    fs = [-int(np.frexp(d)[1] - 1) for d in q.down]  # down = 2**-f exactly
    out = np.stack([_rint_shift(acc[..., c], fs[c]) for c in range(acc.shape[-1])], axis=-1)
    return np.clip(out, -inference.ACT_MAX, inference.ACT_MAX).astype(np.int64)


def int_reference_logits(
    spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, seed: int = 0
) -> np.ndarray:
    """The canonical arithmetic re-implemented with int64 numpy (no BLAS) and Python-int rounding; each
    convolution sums its kernel taps and each dense layer its inputs in a random (seeded) order."""
    rng = np.random.default_rng(seed)
    model = inference.quantise_model(spec, weights)
    h = inference.quantise_inputs(spec, x).astype(np.int64)
    for q in model:
        if q.kind in (CONV2D, DENSE):
            assert q.kernel is not None and q.bias is not None
            kq = q.kernel.astype(np.int64)
            bq = q.bias.astype(np.int64)
            if q.kind == CONV2D:
                k = q.size
                n, hh, ww, c = h.shape
                if q.padding == "same":
                    h = _pad_same(h, k)
                    oh, ow = hh, ww
                else:
                    oh, ow = hh - k + 1, ww - k + 1
                kern = kq.reshape(k, k, c, -1)
                acc = np.zeros((n, oh, ow, kern.shape[-1]), dtype=np.int64)
                for tap in rng.permutation(k * k):
                    i, j = divmod(int(tap), k)
                    perm = rng.permutation(c)
                    window = h[:, i : i + oh, j : j + ow, :][..., perm]
                    acc += np.einsum("nhwc,cf->nhwf", window, kern[i, j][perm])
            else:
                perm = rng.permutation(h.shape[1])
                acc = np.zeros((h.shape[0], kq.shape[1]), dtype=np.int64)
                for start in range(0, len(perm), 97):  # ragged blocks, reverse order
                    idx = perm[start : start + 97]
                    acc += h[:, idx] @ kq[idx]
            h = _rescale(acc + bq, q)
        elif q.kind == RELU:
            h = np.maximum(h, 0)
        elif q.kind == MAXPOOL:
            h = _maxpool(h, q.size)
        elif q.kind == FLATTEN:
            h = h.reshape(h.shape[0], -1)
    return h
