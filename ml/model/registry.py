"""Named model architectures, described once (DESIGN §8).

A `ModelSpec` is plain data: the Keras builder (`ml.keras_model`), the numpy canonical forward pass
(`ml.model.inference`) and the canonical weight layout (`ml.model.weights`) are all derived from it, so the model a
miner trains, the bytes it reveals and the model every node verifies cannot drift apart.

Layers are listed in Keras' order; activations are separate `relu` layers (so a convolution or dense layer
holds exactly a kernel and a bias), batch-norm uses `BN_EPSILON` and dropout is the identity at inference.
Only stride-1 convolutions and non-overlapping max-pooling (stride = pool size, "valid") exist, which is
all the registered models need and keeps the canonical forward pass small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BN_EPSILON = 1e-3  # Keras' BatchNormalization default; the Keras builder passes it explicitly.

CONV2D = "conv2d"
BATCHNORM = "batchnorm"
RELU = "relu"
MAXPOOL = "maxpool"
DROPOUT = "dropout"
FLATTEN = "flatten"
DENSE = "dense"
LAYER_KINDS = (CONV2D, BATCHNORM, RELU, MAXPOOL, DROPOUT, FLATTEN, DENSE)
PADDINGS = ("same", "valid")


@dataclass(frozen=True)
class LayerSpec:
    """One layer; only the fields meaningful for `kind` are set (build with the helpers below)."""

    kind: str
    filters: int = 0  # conv2d output channels
    kernel: int = 0  # conv2d square kernel size
    padding: str = ""  # conv2d: "same" | "valid"
    pool: int = 0  # maxpool window and stride
    rate: float = 0.0  # dropout rate (training only)
    units: int = 0  # dense outputs

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}")
        if self.kind == CONV2D and (self.filters < 1 or self.kernel < 1 or self.padding not in PADDINGS):
            raise ValueError(f"bad conv2d layer: {self}")
        if self.kind == MAXPOOL and self.pool < 1:
            raise ValueError(f"bad maxpool layer: {self}")
        if self.kind == DROPOUT and not 0.0 <= self.rate < 1.0:
            raise ValueError(f"bad dropout rate: {self.rate}")
        if self.kind == DENSE and self.units < 1:
            raise ValueError(f"bad dense layer: {self}")


def conv2d(filters: int, kernel: int = 3, padding: str = "same") -> LayerSpec:
    return LayerSpec(CONV2D, filters=filters, kernel=kernel, padding=padding)


def batchnorm() -> LayerSpec:
    return LayerSpec(BATCHNORM)


def relu() -> LayerSpec:
    return LayerSpec(RELU)


def maxpool(pool: int = 2) -> LayerSpec:
    return LayerSpec(MAXPOOL, pool=pool)


def dropout(rate: float) -> LayerSpec:
    return LayerSpec(DROPOUT, rate=rate)


def flatten() -> LayerSpec:
    return LayerSpec(FLATTEN)


def dense(units: int) -> LayerSpec:
    return LayerSpec(DENSE, units=units)


@dataclass(frozen=True)
class ParamSpec:
    """One weight tensor in canonical order: which layer owns it and what it is."""

    layer_index: int
    role: str  # "kernel" | "bias" | "gamma" | "beta" | "moving_mean" | "moving_variance"
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_shape: tuple[int, int, int]  # (height, width, channels), NHWC like Keras
    num_classes: int
    layers: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        # Walk the shapes once so an inconsistent spec fails at definition time, not mid-round.
        self.params()

    def params(self) -> list[ParamSpec]:
        """Weight tensors in Keras' `model.get_weights()` order, with shape checks along the way."""
        out: list[ParamSpec] = []
        shape: tuple[int, ...] = tuple(self.input_shape)
        if len(shape) != 3 or any(d < 1 for d in shape):
            raise ValueError(f"{self.name}: input_shape must be (H, W, C) with positive entries")
        for i, layer in enumerate(self.layers):
            if layer.kind == CONV2D:
                if len(shape) != 3:
                    raise ValueError(f"{self.name}: conv2d at layer {i} needs an (H, W, C) input")
                h, w, c = shape
                k = layer.kernel
                rf = k * k
                out.append(ParamSpec(i, "kernel", (k, k, c, layer.filters), rf * c, rf * layer.filters))
                out.append(ParamSpec(i, "bias", (layer.filters,), rf * c, rf * layer.filters))
                if layer.padding == "valid":
                    h, w = h - k + 1, w - k + 1
                if h < 1 or w < 1:
                    raise ValueError(f"{self.name}: conv2d at layer {i} shrinks the input to nothing")
                shape = (h, w, layer.filters)
            elif layer.kind == BATCHNORM:
                c = shape[-1]
                for role in ("gamma", "beta", "moving_mean", "moving_variance"):
                    out.append(ParamSpec(i, role, (c,), c, c))
            elif layer.kind == MAXPOOL:
                if len(shape) != 3:
                    raise ValueError(f"{self.name}: maxpool at layer {i} needs an (H, W, C) input")
                h, w, c = shape
                h, w = h // layer.pool, w // layer.pool
                if h < 1 or w < 1:
                    raise ValueError(f"{self.name}: maxpool at layer {i} shrinks the input to nothing")
                shape = (h, w, c)
            elif layer.kind == FLATTEN:
                shape = (math.prod(shape),)
            elif layer.kind == DENSE:
                if len(shape) != 1:
                    raise ValueError(f"{self.name}: dense at layer {i} needs a flat input (add flatten)")
                out.append(ParamSpec(i, "kernel", (shape[0], layer.units), shape[0], layer.units))
                out.append(ParamSpec(i, "bias", (layer.units,), shape[0], layer.units))
                shape = (layer.units,)
        if shape != (self.num_classes,):
            raise ValueError(f"{self.name}: output shape {shape} != ({self.num_classes},)")
        return out

    def param_count(self) -> int:
        return sum(math.prod(p.shape) for p in self.params())


def _digits_cnn() -> ModelSpec:
    # Small enough to train in seconds on 2 cores on scikit-learn's 8x8 digits (the offline default).
    return ModelSpec(
        name="cnn-digits",
        input_shape=(8, 8, 1),
        num_classes=10,
        layers=(
            conv2d(16, 3, "same"), relu(),
            conv2d(32, 3, "same"), relu(),
            maxpool(2),
            flatten(),
            dense(64), relu(),
            dense(10),
        ),
    )  # fmt: skip


def _mnist_cnn() -> ModelSpec:
    # The classic Keras MNIST CNN (mnist_cnn.py): ~1.2 M parameters.
    return ModelSpec(
        name="cnn-mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        layers=(
            conv2d(32, 3, "valid"), relu(),
            conv2d(64, 3, "valid"), relu(),
            maxpool(2),
            dropout(0.25),
            flatten(),
            dense(128), relu(),
            dropout(0.5),
            dense(10),
        ),
    )  # fmt: skip


def _cifar_block(filters: int, rate: float) -> tuple[LayerSpec, ...]:
    return (
        conv2d(filters, 3, "same"), batchnorm(), relu(),
        conv2d(filters, 3, "same"), batchnorm(), relu(),
        maxpool(2),
        dropout(rate),
    )  # fmt: skip


def _pocl_cifar10() -> ModelSpec:
    # The PoCL paper's CIFAR-10 CNN: three VGG-style blocks (32/64/128) with batch-norm; ~0.31 M parameters.
    return ModelSpec(
        name="pocl-cifar10",
        input_shape=(32, 32, 3),
        num_classes=10,
        layers=(
            *_cifar_block(32, 0.2),
            *_cifar_block(64, 0.3),
            *_cifar_block(128, 0.4),
            flatten(),
            dense(10),
        ),
    )


_MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (_digits_cnn(), _mnist_cnn(), _pocl_cifar10())}


class UnknownModelError(KeyError):
    """The chain or a config names a model architecture this build does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


def get_model(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(model_names())}") from None


def model_names() -> list[str]:
    return list(_MODELS)
