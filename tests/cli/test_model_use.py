"""`pocl-node model predict` (canonical preprocessing and exact inference, from a file of weights) and
the `.keras` export (compiled, softmax output, preprocessing recorded, `evaluate()` works as loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pocl.ml import datasets
from pocl.ml.export import InputError, load_input_file, prepare_inputs, read_keras_metadata, sidecar_path
from pocl.ml.model.inference import predict
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import initial_weights, weights_hash
from pocl.node.cli import main
from pocl.node.rpc.model_npz import model_arrays, npz_bytes

SPEC = get_model("cnn-digits")
WEIGHTS = initial_weights(SPEC, 11)


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "g.npz"
    path.write_bytes(npz_bytes(model_arrays(SPEC, WEIGHTS, 3, weights_hash(WEIGHTS))))
    return path


def pixels(n: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(n, 8, 8), dtype=np.uint8)


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict:
    assert main([*map(str, args), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_preprocessing_is_the_dataset_loaders_scaling() -> None:
    x = pixels(4)
    assert np.array_equal(prepare_inputs(SPEC, x), datasets._images_to_float(x, "x"))
    assert prepare_inputs(SPEC, x[0]).shape == (1, 8, 8, 1)


def test_predict_npy_gives_the_canonical_labels(tmp_path: Path, weights_file: Path, capsys) -> None:
    x = pixels(30)
    np.save(tmp_path / "x.npy", x)
    doc = run_json(capsys, "model", "predict", "--weights", weights_file, "--input", tmp_path / "x.npy")
    want = predict(SPEC, WEIGHTS, (x.astype(np.float32) / np.float32(255)).astype(np.float32))[0]
    assert doc["labels"] == want.tolist() and doc["count"] == 30
    assert (
        doc["model"] == "cnn-digits"
        and doc["round"] == 3
        and doc["model_hash"] == weights_hash(WEIGHTS).hex()
    )
    # human output lists the labels
    assert main(["model", "predict", "--weights", str(weights_file), "--input", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert "30 samples" in out and f"  0: {want[0]}" in out and "10 more" in out


def test_predict_npz_with_labels_reports_accuracy(tmp_path: Path, weights_file: Path, capsys) -> None:
    x = pixels(10)
    labels = predict(SPEC, WEIGHTS, prepare_inputs(SPEC, x))[0]
    y = labels.copy()
    y[:3] = (y[:3] + 1) % 10  # three wrong
    np.savez(tmp_path / "d.npz", x=x, y=y)
    doc = run_json(capsys, "model", "predict", "--weights", weights_file, "--input", tmp_path / "d.npz")
    assert doc["correct"] == 7 and doc["accuracy"] == pytest.approx(0.7)


def test_predict_png_matches_npy(tmp_path: Path, weights_file: Path, capsys) -> None:
    image = pytest.importorskip("PIL.Image")
    x = pixels(1)[0]
    image.fromarray(x, mode="L").save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", x)
    a = run_json(capsys, "model", "predict", "--weights", weights_file, "--input", tmp_path / "d.png")
    b = run_json(capsys, "model", "predict", "--weights", weights_file, "--input", tmp_path / "d.npy")
    assert a["labels"] == b["labels"] and a["count"] == 1
    image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / "big.png")
    with pytest.raises(InputError, match="takes 8x8"):
        load_input_file(tmp_path / "big.png", SPEC)


@pytest.mark.parametrize(
    ("name", "array", "words"),
    [
        ("shape.npy", np.zeros((3, 7, 7), np.uint8), "takes inputs shaped"),
        ("range.npy", np.full((8, 8), 300, np.int32), "0..255"),
        ("float.npy", np.full((8, 8), 2.0, np.float32), "[0, 1]"),
        ("nan.npy", np.full((8, 8), np.nan, np.float32), "[0, 1]"),
        ("text.npy", np.array(["a"] * 64).reshape(8, 8), "numbers"),
        ("input.txt", None, "must be .npy, .npz"),
        ("missing.npy", None, "cannot read"),
        ("broken.npy", b"not numpy", "not a numpy .npy"),
    ],
)
def test_predict_bad_inputs_fail_with_one_line(
    tmp_path: Path, weights_file: Path, capsys, name, array, words
) -> None:
    path = tmp_path / name
    if isinstance(array, np.ndarray):
        np.save(path, array)
    elif isinstance(array, bytes):
        path.write_bytes(array)
    elif name.endswith(".txt"):
        path.write_text("1 2 3")
    assert main(["model", "predict", "--weights", str(weights_file), "--input", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --input:") and words in err and err.count("\n") == 1, err


def test_predict_bad_weights_and_round(tmp_path: Path, capsys) -> None:
    (tmp_path / "w.npz").write_bytes(b"junk")
    np.save(tmp_path / "x.npy", pixels(1))
    assert (
        main(["model", "predict", "--weights", str(tmp_path / "w.npz"), "--input", str(tmp_path / "x.npy")])
        == 1
    )
    assert "not a global-model .npz" in capsys.readouterr().err
    assert main(["model", "predict", "--round", "x", "--input", str(tmp_path / "x.npy")]) != 0
    assert "--round must be a number" in capsys.readouterr().err


def test_keras_export_is_compiled_records_preprocessing_and_evaluates(
    tmp_path: Path, weights_file: Path
) -> None:
    keras = pytest.importorskip("keras")
    from pocl.node.commands.model import _write_keras

    out = tmp_path / "g.keras"
    _write_keras(out, weights_file.read_bytes())
    meta = read_keras_metadata(out)
    assert json.loads(sidecar_path(out).read_text()) == meta
    assert meta["preprocessing"]["input_shape"] == [8, 8, 1] and meta["round"] == 3
    assert meta["model_hash"] == weights_hash(WEIGHTS).hex() and "255" in meta["preprocessing"]["scaling"]
    model = keras.models.load_model(out)
    x = prepare_inputs(SPEC, pixels(64))
    labels = predict(SPEC, WEIGHTS, x)[0]
    loss, acc = model.evaluate(x, labels, verbose=0)  # compiled as loaded
    assert acc >= 0.9 and np.isfinite(loss)  # float Keras vs exact fixed point: near ties may differ
    probs = model.predict(x, verbose=0)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # probabilities, not logits
