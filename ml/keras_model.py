"""Keras builder for a registry `ModelSpec` (training only; DESIGN §8).

TensorFlow/Keras are imported lazily inside the functions: importing this module costs nothing, and a
validator or full node never loads TensorFlow. The model outputs logits (no softmax), exactly like the
canonical numpy forward pass in `ml.model.inference`; train it with a from-logits loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pocl.ml.model.registry import (
    BATCHNORM,
    BN_EPSILON,
    CONV2D,
    DENSE,
    DROPOUT,
    FLATTEN,
    MAXPOOL,
    RELU,
    ModelSpec,
)
from pocl.ml.model.weights import WEIGHT_DTYPE, check_weights


def build_keras_model(spec: ModelSpec, weights: list[np.ndarray] | None = None) -> Any:
    """A `keras.Sequential` with the spec's layers in order; `weights` (canonical order) are set if given."""
    import keras  # lazy: TensorFlow is a miner-only dependency

    layers: list[Any] = [keras.Input(shape=tuple(spec.input_shape))]
    for layer in spec.layers:
        if layer.kind == CONV2D:
            layers.append(keras.layers.Conv2D(layer.filters, layer.kernel, padding=layer.padding))
        elif layer.kind == BATCHNORM:
            layers.append(keras.layers.BatchNormalization(epsilon=BN_EPSILON))
        elif layer.kind == RELU:
            layers.append(keras.layers.ReLU())
        elif layer.kind == MAXPOOL:
            layers.append(keras.layers.MaxPooling2D(pool_size=layer.pool))
        elif layer.kind == DROPOUT:
            layers.append(keras.layers.Dropout(layer.rate))
        elif layer.kind == FLATTEN:
            layers.append(keras.layers.Flatten())
        elif layer.kind == DENSE:
            layers.append(keras.layers.Dense(layer.units))
        else:  # pragma: no cover - LayerSpec validates kinds
            raise ValueError(f"unsupported layer kind {layer.kind!r}")
    model = keras.Sequential(layers, name=spec.name.replace("-", "_"))
    shapes = [tuple(int(d) for d in w.shape) for w in model.get_weights()]
    expected = [p.shape for p in spec.params()]
    if shapes != expected:  # pragma: no cover - guards the registry/Keras contract
        raise RuntimeError(f"Keras weight layout {shapes} differs from the spec's {expected}")
    if weights is not None:
        check_weights(spec, weights)
        model.set_weights([np.asarray(w, dtype=WEIGHT_DTYPE) for w in weights])
    return model


def keras_weights(model: Any) -> list[np.ndarray]:
    """The model's weights as float32 arrays in canonical (Keras `get_weights`) order."""
    return [np.ascontiguousarray(w, dtype=WEIGHT_DTYPE) for w in model.get_weights()]
