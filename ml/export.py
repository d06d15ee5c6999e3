"""Using the global model outside the chain: the canonical input preprocessing, prediction with the
canonical (exact fixed-point) inference, and the `.keras` export (`pocl-node model predict|export`,
`/models/global/predict`).

Preprocessing is the one every dataset loader applies (`ml.datasets`): NHWC float32 in [0, 1]; integer
pixels (0..255) are divided by 255, float inputs must already lie in [0, 1]. Predictions are
`pocl.ml.model.inference.predict`: the same labels every node computes, bit for bit. Only the `.keras`
export needs TensorFlow (imported inside `write_keras`); everything else is numpy (a validator path).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from pocl.ml.model.inference import ACT_FRAC_BITS
from pocl.ml.model.inference import predict as canonical_predict
from pocl.ml.model.registry import ModelSpec

DIGIT_NAMES = tuple(str(i) for i in range(10))
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cnn-digits": DIGIT_NAMES,
    "cnn-mnist": DIGIT_NAMES,
    "pocl-cifar10": CIFAR10_NAMES,
}
SCALING = "integer pixels 0..255 are divided by 255; float inputs must already lie in [0, 1]"
METADATA_ENTRY = "pocl_metadata.json"  # inside the .keras zip, next to Keras' own entries
# Bounds on what one prediction request may hold (a file, or an RPC body).
MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_INPUT_ELEMENTS = 16 * 1024 * 1024


class InputError(ValueError):
    """Inputs that cannot be fed to the model; the message says what is expected."""


def class_names(spec: ModelSpec) -> list[str] | None:
    names = CLASS_NAMES.get(spec.name)
    return list(names) if names is not None and len(names) == spec.num_classes else None


def preprocessing(spec: ModelSpec) -> dict[str, Any]:
    """What an input must look like, as recorded in exports and returned by the RPC."""
    h, w, c = spec.input_shape
    return {
        "input_shape": [h, w, c],
        "layout": "NHWC",
        "dtype": "float32",
        "range": [0.0, 1.0],
        "scaling": SCALING,
        "accepts": [f"(N, {h}, {w}, {c})", f"({h}, {w}, {c})"]
        + ([f"(N, {h}, {w})", f"({h}, {w})"] if c == 1 else []),
        "output": "canonical logits (exact fixed point, 2**-12 resolution); label = argmax, ties to the lowest class",
        "class_names": class_names(spec),
    }


def prepare_inputs(spec: ModelSpec, x: Any, max_samples: int | None = None) -> np.ndarray:
    """Any accepted input -> float32 (N, H, W, C) in [0, 1], exactly as the dataset loaders scale."""
    x = np.asarray(x)
    if x.dtype == np.bool_ or x.dtype.kind not in "iuf":
        raise InputError(f"inputs must be numbers (integer pixels or floats), got dtype {x.dtype}")
    h, w, c = spec.input_shape
    if x.ndim == 2 and c == 1:
        x = x[None, ..., None]
    elif x.ndim == 3 and x.shape == (h, w, c):
        x = x[None]
    elif x.ndim == 3 and c == 1:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (h, w, c):
        want = " or ".join(preprocessing(spec)["accepts"])
        raise InputError(f"{spec.name} takes inputs shaped {want}; got {tuple(np.asarray(x).shape)}")
    if max_samples is not None and x.shape[0] > max_samples:
        raise InputError(f"at most {max_samples} samples per request, got {x.shape[0]}")
    if x.size > MAX_INPUT_ELEMENTS:
        raise InputError(f"at most {MAX_INPUT_ELEMENTS} input values per request, got {x.size}")
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise InputError("integer pixels must lie in 0..255")
        return (x.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    x = x.astype(np.float32)
    if x.size and (not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0):
        raise InputError("float inputs must be finite and scaled to [0, 1] (or pass integer pixels 0..255)")
    return x


def predict(
    spec: ModelSpec, weights: list[np.ndarray], x: Any, max_samples: int | None = None
) -> dict[str, Any]:
    """Canonical labels and logits of (preprocessed) inputs, as plain JSON values."""
    xs = prepare_inputs(spec, x, max_samples)
    labels, z = canonical_predict(spec, weights, xs)
    names = class_names(spec)
    return {
        "count": int(xs.shape[0]),
        "labels": [int(v) for v in labels],
        "classes": [names[int(v)] for v in labels] if names else None,
        "logits": (z.astype(np.float64) * 2.0**-ACT_FRAC_BITS).tolist(),
    }


# --------------------------------------------------------------------------- input files


def _npy(raw: bytes, what: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} is not a numpy .npy array: {exc}") from None


def decode_npy(raw: bytes, what: str = "input") -> np.ndarray:
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError(f"{what} is larger than {MAX_INPUT_BYTES} bytes")
    arr = _npy(raw, what)
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{what} must be a single .npy array")
    return arr


def load_input_file(path: Path, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """(inputs, labels or None) from `.npy`, `.npz` (`x`, optional `y`; or its only array) or an image
    (`.png`/`.jpg`, needs Pillow, which comes with the miner extra's matplotlib)."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > MAX_INPUT_BYTES:
        raise InputError(f"{path} is larger than {MAX_INPUT_BYTES} bytes")
    if suffix == ".npy":
        return decode_npy(path.read_bytes(), str(path)), None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "x" in data.files:
                    return data["x"], (data["y"] if "y" in data.files else None)
                if len(data.files) == 1:
                    return data[data.files[0]], None
                raise InputError(f"{path} must hold an array 'x' (and optionally 'y'), has {data.files}")
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} is not a numpy .npz file: {exc}") from None
    if suffix in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
        return _load_image(path, spec), None
    raise InputError(f"--input must be .npy, .npz or an image (.png), got {path.name!r}")


def _load_image(path: Path, spec: ModelSpec) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise InputError(
            "reading images needs Pillow (installed with the miner extra: pip install 'pocl[miner]'); "
            "or pass the pixels as a .npy array"
        ) from None
    h, w, c = spec.input_shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                raise InputError(
                    f"{path.name} is {img.size[0]}x{img.size[1]} pixels; {spec.name} takes {w}x{h} "
                    "(resize it first: predictions use the canonical preprocessing only)"
                )
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


# --------------------------------------------------------------------------- .keras export


def export_metadata(spec: ModelSpec, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "pocl-global-model",
        "model": spec.name,
        "round": meta.get("round"),
        "model_hash": meta.get("model_hash"),
        "num_classes": spec.num_classes,
        "preprocessing": preprocessing(spec),
        "keras_output": "probabilities (softmax over the canonical model's logits)",
        "compiled": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    }


def write_keras(
    path: Path, spec: ModelSpec, weights: list[np.ndarray], meta: dict[str, Any]
) -> dict[str, Any]:
    """A compiled `.keras` (softmax output; `evaluate(x, y)` works as loaded, on inputs preprocessed as
    recorded) with the metadata inside the archive (`pocl_metadata.json`) and next to it (`FILE.json`).
    Raises ImportError without TensorFlow."""
    import keras  # lazy: TensorFlow is a miner-only dependency
    from pocl.ml.keras_model import build_keras_model

    model = build_keras_model(spec, weights)
    model.add(keras.layers.Softmax(name="probabilities"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)  # saved with its variables: loads without warnings
    model.save(path)
    doc = export_metadata(spec, meta)
    text = json.dumps(doc, indent=2) + "\n"
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(METADATA_ENTRY, text)
    sidecar_path(path).write_text(text)
    return doc


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_keras_metadata(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(METADATA_ENTRY))
