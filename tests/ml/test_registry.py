"""Model registry: names, parameter counts and spec validation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from pocl.ml.model.registry import (
    ModelSpec,
    UnknownModelError,
    conv2d,
    dense,
    dropout,
    flatten,
    get_model,
    maxpool,
    model_names,
    relu,
)


def test_model_names() -> None:
    assert model_names() == ["cnn-digits", "cnn-mnist", "pocl-cifar10"]
    for name in model_names():
        assert get_model(name).name == name


def test_unknown_model_has_clear_error() -> None:
    with pytest.raises(KeyError) as exc:
        get_model("resnet-9000")
    assert isinstance(exc.value, UnknownModelError)
    assert "resnet-9000" in str(exc.value) and "cnn-mnist" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "shape", "params", "arrays"),
    [
        ("cnn-digits", (8, 8, 1), 38_282, 8),
        ("cnn-mnist", (28, 28, 1), 1_199_882, 8),
        ("pocl-cifar10", (32, 32, 3), 309_290, 38),
    ],
)
def test_parameter_counts(name: str, shape: tuple[int, int, int], params: int, arrays: int) -> None:
    spec = get_model(name)
    print(f"{name}: {spec.param_count():,} parameters in {len(spec.params())} arrays")
    assert spec.input_shape == shape and spec.num_classes == 10
    assert spec.param_count() == params
    assert len(spec.params()) == arrays


def test_cifar_model_is_about_03m_parameters() -> None:
    assert 280_000 <= get_model("pocl-cifar10").param_count() <= 330_000


def test_specs_are_frozen() -> None:
    spec = get_model("cnn-digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]


def test_inconsistent_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="flat input"):
        ModelSpec("bad", (8, 8, 1), 10, (conv2d(4), dense(10)))
    with pytest.raises(ValueError, match="output shape"):
        ModelSpec("bad", (8, 8, 1), 10, (flatten(), dense(7)))
    with pytest.raises(ValueError, match="nothing"):
        ModelSpec("bad", (2, 2, 1), 10, (conv2d(4, 3, "valid"), flatten(), dense(10)))
    with pytest.raises(ValueError):
        conv2d(4, 3, "full")
    with pytest.raises(ValueError):
        dropout(1.0)
    with pytest.raises(ValueError):
        maxpool(0)


def test_layer_helpers_build_valid_spec() -> None:
    spec = ModelSpec("tiny", (4, 4, 2), 3, (conv2d(5, 2, "same"), relu(), maxpool(2), flatten(), dense(3)))
    assert [p.shape for p in spec.params()] == [(2, 2, 2, 5), (5,), (20, 3), (3,)]


def test_ml_core_never_imports_tensorflow_at_import_time() -> None:
    code = (
        "import sys, pocl.ml.model.registry, pocl.ml.model.weights, pocl.ml.model.inference, pocl.ml.model.aggregate, pocl.ml.keras_model\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
