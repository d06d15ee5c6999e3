"""Dataset loaders read files the tests write in each standard format; bad or missing files fail clearly."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pocl.ml.datasets import (
    CIFAR_DIR,
    CIFAR_TARBALL,
    DatasetError,
    load_dataset,
    parse_idx,
    restricted_loads,
)

RNG = np.random.default_rng(7)


# ----------------------------------------------------------------------------- writers (standard formats)


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.tobytes()


def write_mnist_idx(d: Path, n_train: int = 12, n_test: int = 6, gz: bool = False) -> dict[str, np.ndarray]:
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": RNG.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": RNG.integers(0, 10, n_test, dtype=np.uint8),
    }
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (d / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (d / name).write_bytes(raw)
    return arrays


def cifar_batch(n: int, protocol: int) -> tuple[bytes, np.ndarray, list[int]]:
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in RNG.integers(0, 10, n)]
    obj = {b"batch_label": b"training batch", b"labels": labels, b"data": data, b"filenames": [b"a.png"] * n}
    return pickle.dumps(obj, protocol=protocol), data, labels


def write_cifar_dir(root: Path, n: int = 3, protocol: int = 2) -> tuple[np.ndarray, list[int]]:
    d = root / CIFAR_DIR
    d.mkdir(parents=True, exist_ok=True)
    first = None
    for i in range(1, 6):
        raw, data, labels = cifar_batch(n, protocol)
        (d / f"data_batch_{i}").write_bytes(raw)
        if first is None:
            first = (data, labels)
    raw, _, _ = cifar_batch(n, protocol)
    (d / "test_batch").write_bytes(raw)
    assert first is not None
    return first


# ----------------------------------------------------------------------------- digits


def test_digits_canonical_format_and_deterministic_split() -> None:
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert a.model_name == "cnn-digits"
    assert a.x_train.shape[1:] == (8, 8, 1) and a.x_train.dtype == np.float32
    assert a.y_train.dtype == np.int64 and a.y_test.dtype == np.int64
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    assert len(a.y_train) + len(a.y_test) == 1797
    assert abs(len(a.y_test) / 1797 - 0.2) < 0.01
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    # stratified: every class appears in the test split
    assert set(np.unique(a.y_test)) == set(range(10))
    assert a.num_classes == 10


def test_unknown_dataset() -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet")


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_the_data_dir(tmp_path: Path) -> None:
    """Same IDX files as MNIST, in DIR/fashion-mnist; the chain model is cnn-mnist; the name says which."""
    arrays = write_mnist_idx(tmp_path / "fashion-mnist", gz=True)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert (ds.name, ds.model_name, ds.x_train.shape) == ("fashion-mnist", "cnn-mnist", (12, 28, 28, 1))
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"].astype(np.int64))


def test_fashion_mnist_from_debians_package() -> None:
    """`.ci/run` installs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist): the loader finds
    it with no --data-dir and no download."""
    from pocl.ml.datasets import DEBIAN_DATASETS_DIR

    assert (DEBIAN_DATASETS_DIR / "fashion-mnist").is_dir(), "install dataset-fashion-mnist (.ci/run does)"
    ds = load_dataset("fashion-mnist", Path("/nonexistent"))
    assert ds.x_train.shape == (60_000, 28, 28, 1) and ds.x_test.shape == (10_000, 28, 28, 1)
    assert set(np.unique(ds.y_train)) == set(range(10)) and 0.0 <= float(ds.x_train.min()) <= float(ds.x_train.max()) <= 1.0


def test_fashion_mnist_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pocl.ml.datasets as datasets

    monkeypatch.setattr(datasets, "DEBIAN_DATASETS_DIR", tmp_path / "none")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


# ----------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist_idx(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.model_name == "cnn-mnist"
    assert ds.x_train.shape == (12, 28, 28, 1) and ds.x_test.shape == (6, 28, 28, 1)
    assert ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train[..., 0], arrays["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"].astype(np.int64))


def test_mnist_idx_in_subdirectory(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path / "mnist")
    assert load_dataset("mnist", tmp_path).x_train.shape[0] == 12


def test_mnist_keras_npz(tmp_path: Path) -> None:
    x_train = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y_train = np.array([0, 1, 2, 3, 4], dtype=np.uint8)
    x_test = RNG.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    y_test = np.array([9, 8], dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(ds.y_train, np.arange(5))
    np.testing.assert_allclose(ds.x_test[..., 0], x_test / 255.0, rtol=1e-6)


def test_mnist_missing_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg
    assert "train-images-idx3-ubyte" in msg and "mnist.npz" in msg and "download is off" in msg


def test_mnist_partial_idx_names_the_missing_file(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="but not t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_idx_corrupt_files(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    parse_idx(good)
    with pytest.raises(DatasetError, match="magic"):
        parse_idx(b"\x01\x02" + good[2:])
    with pytest.raises(DatasetError, match="element type"):
        parse_idx(good[:2] + b"\x0d" + good[3:])
    with pytest.raises(DatasetError, match="body"):
        parse_idx(good[:-1])
    with pytest.raises(DatasetError, match="truncated"):
        parse_idx(good[:6])
    # a header claiming a huge array is refused before allocating
    huge = bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 60000, 60000)
    with pytest.raises(DatasetError, match="too large"):
        parse_idx(huge)
    write_mnist_idx(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11, dtype=np.uint8)))
    with pytest.raises(DatasetError, match="11 labels for 12 inputs"):
        load_dataset("mnist", tmp_path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DatasetError, match="corrupt gzip"):
        load_dataset("mnist", tmp_path)


# ----------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_python_batches(tmp_path: Path, protocol: int) -> None:
    data, labels = write_cifar_dir(tmp_path, n=3, protocol=protocol)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.model_name == "pocl-cifar10"
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train[:3], labels)
    # row layout: 1024 red, 1024 green, 1024 blue bytes, each 32×32 row-major
    img = data[0]
    expected = np.stack([img[:1024], img[1024:2048], img[2048:]], axis=-1).reshape(32, 32, 3) / 255.0
    np.testing.assert_allclose(ds.x_train[0], expected, rtol=1e-6)


def test_cifar_from_tarball(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_cifar_dir(src, n=2)
    with tarfile.open(tmp_path / CIFAR_TARBALL, "w:gz") as tar:
        tar.add(src / CIFAR_DIR, arcname=CIFAR_DIR)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (10, 32, 32, 3)


def test_cifar_missing_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", tmp_path)
    assert "cifar-10-batches-py" in str(err.value) and "data_batch_1" in str(err.value)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    evil = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="forbidden"):
        restricted_loads(evil)
    write_cifar_dir(tmp_path, n=1)
    (tmp_path / CIFAR_DIR / "data_batch_3").write_bytes(evil)
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_restricted_unpickler_refuses_object_arrays() -> None:
    raw = pickle.dumps(np.array([1, "x"], dtype=object), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="object"):
        restricted_loads(raw)


def test_restricted_unpickler_allows_plain_data() -> None:
    value = {b"k": [1, 2, b"x", "s"], "n": np.arange(4, dtype=np.int32)}
    out = restricted_loads(pickle.dumps(value, protocol=2))
    assert out[b"k"] == [1, 2, b"x", "s"]
    np.testing.assert_array_equal(out["n"], np.arange(4))


def test_cifar_wrong_shape_batch(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path, n=1)
    bad = pickle.dumps({b"data": np.zeros((1, 100), np.uint8), b"labels": [0]}, protocol=2)
    (tmp_path / CIFAR_DIR / "test_batch").write_bytes(bad)
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", tmp_path)


# ----------------------------------------------------------------------------- generic npz


def test_npz_with_split(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (50, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(10), 5)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    ds = load_dataset(f"npz:{path}")
    assert ds.model_name == "cnn-digits"
    assert len(ds.y_train) == 40 and len(ds.y_test) == 10
    assert ds.x_train.shape[1:] == (8, 8, 1) and ds.x_train.max() <= 1.0


def test_npz_with_explicit_test_and_float_inputs(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = RNG.random((6, 32, 32, 3), dtype=np.float32)
    np.savez(path, x=x, y=np.arange(6), x_test=x[:2], y_test=np.array([[1], [2]]))
    ds = load_dataset(f"npz:{path}")
    assert ds.model_name == "pocl-cifar10"
    np.testing.assert_array_equal(ds.y_test, [1, 2])
    np.testing.assert_array_equal(ds.x_train, x)


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    p = tmp_path / "noy.npz"
    np.savez(p, x=np.zeros((3, 8, 8)))
    with pytest.raises(DatasetError, match="missing arrays"):
        load_dataset(f"npz:{p}")
    p = tmp_path / "range.npz"
    np.savez(p, x=np.full((3, 8, 8), 2.0), y=np.zeros(3, int))
    with pytest.raises(DatasetError, match=r"\[0, 1\]"):
        load_dataset(f"npz:{p}")
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([None, 1], dtype=object), y=np.zeros(2, int))
    with pytest.raises(DatasetError, match="unreadable"):
        load_dataset(f"npz:{p}")
    p = tmp_path / "shape.npz"
    np.savez(p, x=np.zeros((3, 5, 5)), y=np.zeros(3, int))
    with pytest.raises(DatasetError, match="no default model"):
        load_dataset(f"npz:{p}")
    assert load_dataset(f"npz:{p}", model_name="custom").model_name == "custom"
    p = tmp_path / "garbage.npz"
    p.write_bytes(b"not a zip at all")
    with pytest.raises(DatasetError, match="unreadable"):
        load_dataset(f"npz:{p}")


def test_npz_object_pickle_is_never_loaded(tmp_path: Path) -> None:
    """An npz holding a pickled object array is refused, never unpickled."""
    buf = io.BytesIO()
    np.savez(buf, x=np.array([_Evil()], dtype=object), y=np.zeros(1, int))
    p = tmp_path / "evil.npz"
    p.write_bytes(buf.getvalue())
    with pytest.raises(DatasetError):
        load_dataset(f"npz:{p}")
