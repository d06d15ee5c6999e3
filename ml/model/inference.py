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
  to even), saturated to [-ACT_MAX, ACT_MAX]. The scaling is folded into the kernel and bias (kernel · 2**-f_c,
  bias · 2**-f_c: exact), so the matmul yields acc · 2**-f_c directly: every partial sum of column c is an
  integer below 2**53 times 2**-f_c (f_c in [-50, 78]: no underflow or overflow), hence exact too.
- ReLU, max-pooling ("valid", stride = pool size), flatten and dropout (identity) act on the integers;
  "same" padding pads with zeros, TensorFlow's split (stride 1: (k − 1) // 2 before, the rest after).
- The label is the argmax of the integer logits; ties go to the lowest class index.

How the exact sums are computed changes speed only, never a bit (every path computes the same integers):
- 3x3 convolutions with 8 to WINOGRAD_MAX_CHANNELS = 202 input channels use Winograd F(2x2, 3x3) with
  integer transforms (2.25x fewer multiplications than im2col): every intermediate is an integer below
  2**53 (bound next to the constants; the input transform, <= 2**24, even in float32) times the channel's
  power-of-two scale, and the result is exactly the same scaled accumulator. Other convolutions use im2col
  and one float64 matmul.
- Activations are stored as float32 between layers (integers of magnitude <= 2**22: exact in float32).
- ReLU and 2x2 max-pooling that follow a layer are applied to its accumulators before the rescale: the
  rescale is non-decreasing per channel and maps 0 to 0, so max and ReLU commute with it exactly.
- Convolutions run on chunks of `batch_size` samples (cache-sized buffers), dense layers on blocks of
  DENSE_BATCH samples; each sample's integers are independent of its chunk.

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

# Samples per chunk of the convolutional layers: small chunks keep the Winograd / im2col buffers in cache
# (cnn-mnist, 1 BLAS thread: 4 -> ~2,350 samples/s, 8 -> ~2,250, 16 -> ~2,050, 32 -> ~1,250;
# docs/benchmarks/ml.md). A speed setting only.
DEFAULT_BATCH = 4
# Samples per block of the dense layers (after the convolutions): one pass over a dense kernel per block,
# instead of one per chunk (cnn-mnist's 9,216 x 128 kernel is 9.4 MB). A speed setting only.
DENSE_BATCH = 256


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
    winograd: bool = False  # 3x3 conv evaluated by Winograd F(2x2, 3x3) (speed only)
    # Derived, exact (a power-of-two scaling per output channel): kernel · down, bias · down, and for a
    # Winograd layer its transformed kernel 2G g 2G^T · down / 4 (16, C, K). Accumulating with them gives
    # acc · 2**-f directly (see "Rescaling" in the module docstring).
    scaled_kernel: np.ndarray | None = dataclasses.field(init=False, default=None, repr=False)
    scaled_bias: np.ndarray | None = dataclasses.field(init=False, default=None, repr=False)
    winograd_kernel: np.ndarray | None = dataclasses.field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kernel is None or self.bias is None or self.down is None:
            return
        object.__setattr__(self, "scaled_kernel", self.kernel * self.down)
        object.__setattr__(self, "scaled_bias", self.bias * self.down)
        if self.winograd:
            object.__setattr__(self, "winograd_kernel", _winograd_kernel(self.kernel) * (self.down * 0.25))


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
            wino = size == 3 and WINOGRAD_MIN_CHANNELS <= kq.shape[0] // 9 <= WINOGRAD_MAX_CHANNELS
            out.append(QuantLayer(layer.kind, kq, bq, down, size=size, padding=layer.padding, winograd=wino))
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
        # x → float64, · 2**12: exact (or ±inf: saturates below); a new contiguous array, then in place
        scaled = np.multiply(x, float(2**ACT_FRAC_BITS), dtype=np.float64)
    np.clip(scaled, -ACT_MAX, ACT_MAX, out=scaled)  # NaN stays NaN
    np.rint(scaled, out=scaled)
    return np.nan_to_num(scaled, copy=False, nan=0.0)


# ---------------------------------------------------------------------------------------------- forward

# Winograd F(2x2, 3x3) (Lavin & Gray), scaled to integers: B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
# [0, 1, 0, -1]] (applied as the sums in `_conv_acc_winograd`), 2·G and A^T. For a 3x3 kernel g and a 4x4
# input tile d, A^T [(2G g 2G^T) ⊙ (B^T d B)] A is exactly 4x the tile's 2x2 outputs.
_WINO_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.float64)
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
_WINO_AA = np.kron(_WINO_AT, _WINO_AT)  # (4, 16): the 2-D output transform to a flattened 2x2 tile
# Exactness bound (every partial sum < 2**53 in float64, in any order): |2G g 2G^T| <= 9 · 2**WEIGHT_BITS,
# |B^T d B| <= 4 · ACT_MAX, a product <= 9 · 2**39; the GEMM sums C of them; the output transform adds 9
# such sums: 81 · C · 2**39 < 2**53 for C <= 202 input channels. Wider layers use the im2col path.
WINOGRAD_MAX_CHANNELS = EXACT_LIMIT // (81 * 4 * ACT_MAX * 2**WEIGHT_BITS)  # 202
WINOGRAD_MIN_CHANNELS = 8  # below, im2col is faster (cnn-mnist's first layer: 1 channel); speed only
WINOGRAD_BLOCK = 1  # samples per Winograd GEMM: its (16, 144, 64) products (1.2 MB) stay in cache; speed only
assert 81 * WINOGRAD_MAX_CHANNELS * 4 * ACT_MAX * 2**WEIGHT_BITS < EXACT_LIMIT


def _winograd_kernel(kernel: np.ndarray) -> np.ndarray:
    """(16, C, K) transformed kernel 2G g 2G^T of a 3x3 conv kernel (9C, K) (exact small integers)."""
    g = kernel.reshape(3, 3, -1, kernel.shape[1])  # (kh, kw, C, K)
    u = np.einsum("ai,ijck,bj->abck", _WINO_G2, g, _WINO_G2)  # each output sums <= 9 small integers: exact
    return np.ascontiguousarray(u.reshape(16, *u.shape[2:]))


def _pad(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    if q.padding != "same":
        return x
    before = (q.size - 1) // 2
    after = q.size - 1 - before
    return np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))


def _conv_acc_im2col(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    kernel = q.scaled_kernel
    assert kernel is not None
    k = q.size
    n, h, w, c = x.shape
    oh, ow = h - k + 1, w - k + 1
    # im2col: windows (N, OH, OW, C, kh, kw) -> contiguous (N, OH, OW, kh, kw, C), the kernel's row order.
    windows = sliding_window_view(x, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    cols = np.ascontiguousarray(windows, dtype=np.float64).reshape(n * oh * ow, k * k * c)
    return (cols @ kernel).reshape(n, oh, ow, kernel.shape[1])  # exact: see the module docstring


def _conv_acc_winograd(x: np.ndarray, q: QuantLayer, pool2: bool) -> np.ndarray:
    """The exact scaled accumulators of a 3x3 conv (no bias) by Winograd F(2x2, 3x3); with `pool2`, their
    2x2 max-pool (each output tile is one pooling window)."""
    u = q.winograd_kernel  # (16, C, K)
    assert u is not None
    n, h, w, c = x.shape
    oh, ow = h - 2, w - 2
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    if (2 * th + 2, 2 * tw + 2) != (h, w):  # odd output: one zero row / column, its outputs dropped below
        x = np.pad(x, ((0, 0), (0, 2 * th + 2 - h), (0, 2 * tw + 2 - w), (0, 0)))
    # B^T d B of every 4x4 input tile (stride 2), in two separable passes of {0, ±1} sums: columns of each
    # tile column band (d0 - d2, d1 + d2, d2 - d1, d1 - d3; short strided runs, on 26 rows), then the same on
    # rows (long contiguous runs). Exact in float32: inputs are integers <= ACT_MAX = 2**22, a first-pass sum
    # <= 2**23, a tile sum <= 2**24 (float32 holds every such integer).
    x = x.astype(np.float32, copy=False)  # exact: activations are integers <= 2**22
    e = np.empty((4, n, x.shape[1], tw, c), dtype=np.float32)  # (tile column, N, H, TW, C)
    s = [x[:, :, j : j + 2 * tw : 2] for j in range(4)]
    np.subtract(s[0], s[2], out=e[0])
    np.add(s[1], s[2], out=e[1])
    np.subtract(s[2], s[1], out=e[2])
    np.subtract(s[1], s[3], out=e[3])
    v = np.empty((4, 4, n, th, tw, c))  # (tile row, tile column, N, TH, TW, C), float64 for the GEMM
    r = [e[:, :, i : i + 2 * th : 2] for i in range(4)]
    np.subtract(r[0], r[2], out=v[0])
    np.add(r[1], r[2], out=v[1])
    np.subtract(r[2], r[1], out=v[2])
    np.subtract(r[1], r[3], out=v[3])
    # Per sample (so the (16, TH·TW, K) products stay in cache): the GEMM, then A^T M A (<= 9 terms of ±M).
    k = u.shape[-1]
    y = np.empty((4, n, th * tw, k))
    step = WINOGRAD_BLOCK
    for i in range(0, n, step):
        j = min(n, i + step)
        p = (j - i) * th * tw
        m = np.matmul(v[:, :, i:j].reshape(16, p, c), u)  # C products per output, exact (see above)
        np.matmul(_WINO_AA, m.reshape(16, p * k), out=y[:, i:j].reshape(4, p * k))
    if pool2:
        return y.max(axis=0).reshape(n, th, tw, k)[:, : oh // 2, : ow // 2]
    full = y.reshape(2, 2, n, th, tw, k).transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, k)
    return full[:, :oh, :ow]


def _conv_acc(x: np.ndarray, q: QuantLayer, pool2: bool = False) -> np.ndarray:
    """Exact scaled accumulators acc · 2**-f (bias included) of a conv layer; with `pool2`, their 2x2
    max-pool."""
    assert q.scaled_bias is not None
    x = _pad(x, q)
    if q.winograd_kernel is not None and x.shape[1] >= 3 and x.shape[2] >= 3:
        acc = _conv_acc_winograd(x, q, pool2)
    else:
        acc = _conv_acc_im2col(x, q)
        if pool2:
            acc = _maxpool(acc, 2)
    acc += q.scaled_bias
    return acc


def _rescale(scaled: np.ndarray, low: float = -ACT_MAX) -> np.ndarray:
    # `scaled` = acc · 2**-f, exact; rint rounds half to even (in place); then saturate (low = 0: a ReLU as
    # well). Activations are stored as float32: integers of magnitude <= ACT_MAX = 2**22 are exact in it
    # (half the memory traffic of float64).
    np.rint(scaled, out=scaled)
    return np.clip(scaled, low, ACT_MAX, out=np.empty(scaled.shape, dtype=np.float32))


def _conv2d(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    return _rescale(_conv_acc(x, q))


def _dense_acc(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    assert q.scaled_kernel is not None and q.scaled_bias is not None
    acc = x @ q.scaled_kernel  # exact: see the module docstring
    acc += q.scaled_bias
    return acc


def _maxpool(x: np.ndarray, p: int) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = h // p, w // p
    x = x[:, : oh * p, : ow * p, :].reshape(n, oh, p, ow, p, c)
    return x.max(axis=(2, 4))


def _forward(model: tuple[QuantLayer, ...], x: np.ndarray) -> np.ndarray:
    i = 0
    while i < len(model):
        q = model[i]
        if q.kind in (CONV2D, DENSE):
            # fuse the ReLU / 2x2 max-pool that follow into the accumulators (exact: module docstring)
            j, relu, pool2 = i + 1, False, False
            while j < len(model) and model[j].kind == RELU:
                relu, j = True, j + 1
            if q.kind == CONV2D and j < len(model) and model[j].kind == MAXPOOL and model[j].size == 2:
                pool2, j = True, j + 1
                while j < len(model) and model[j].kind == RELU:
                    relu, j = True, j + 1
            acc = _conv_acc(x, q, pool2) if q.kind == CONV2D else _dense_acc(x, q)
            x = _rescale(acc, 0.0 if relu else -ACT_MAX)
            i = j
            continue
        if q.kind == RELU:
            x = np.maximum(x, 0.0)
        elif q.kind == MAXPOOL:
            x = _maxpool(x, q.size)
        elif q.kind == FLATTEN:
            x = x.reshape(x.shape[0], -1)
        i += 1
    return x


def _split(model: tuple[QuantLayer, ...]) -> int:
    """Index of the first flatten / dense layer: the layers before it run on small chunks (their im2col /
    Winograd buffers stay in cache), the rest on large blocks (one pass over the dense weights per block)."""
    return next((i for i, q in enumerate(model) if q.kind in (FLATTEN, DENSE)), len(model))


def forward(model: tuple[QuantLayer, ...], xq: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Integer-valued float64 logits of quantised inputs `xq` (N >= 1 samples) through the quantised
    `model`. The convolutional part runs on chunks of `batch_size` samples, the dense part on blocks of
    DENSE_BATCH: speed settings only (every sample's integers are independent of its chunk)."""
    split = _split(model)
    head, tail = model[:split], model[split:]
    step = max(1, batch_size)
    block = max(step, DENSE_BATCH)
    n = xq.shape[0]
    feats: np.ndarray | None = None  # one block's head outputs, reused (no fresh pages per block)
    out: np.ndarray | None = None
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        for s in range(b0, b1, step):
            f = _forward(head, xq[s : min(b1, s + step)])
            if feats is None:
                feats = np.empty((min(n, block), *f.shape[1:]))
            feats[s - b0 : s - b0 + f.shape[0]] = f
        assert feats is not None
        z = _forward(tail, feats[: b1 - b0])
        if out is None:
            out = np.empty((n, *z.shape[1:]))
        out[b0:b1] = z
    assert out is not None
    return out


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
    if xq.shape[0] == 0:
        return np.empty((0, spec.num_classes), dtype=np.int64)
    with _blas_threads(blas_threads):
        z = forward(model, xq, batch_size)
    return z.astype(np.int64).reshape(xq.shape[0], spec.num_classes)


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
