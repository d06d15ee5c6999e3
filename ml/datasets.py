"""Datasets for miners and the simulator (DESIGN §8), loaded from their standard files without pickle risk.

Every loader returns float32 inputs scaled to [0, 1] in NHWC layout and int64 labels, so the model
registry, training and canonical inference see one format whatever the source:

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (offline; the embedded default), split
  deterministically (stratified, fixed seed) into train/test;
- ``mnist``: the IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``) or Keras' ``mnist.npz``;
- ``cifar10``: the python batches directory ``cifar-10-batches-py`` (or its ``cifar-10-python.tar.gz``),
  read with a restricted unpickler that can only rebuild dicts/lists/bytes/str/ints and plain numpy arrays;
- ``npz:PATH``: any ``.npz`` holding ``x``/``y`` (optionally ``x_test``/``y_test``), loaded with
  ``allow_pickle=False``.

Keras' download is used only when the caller passes ``allow_download=True`` (off by default) and even
then the downloaded file is parsed by the loaders here, never by Keras' own (pickle-based) readers.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DIGITS = "digits"
MNIST = "mnist"
CIFAR10 = "cifar10"
NPZ_PREFIX = "npz:"

FASHION_MNIST = "fashion-mnist"
# Debian's dataset packages (e.g. `apt-get install dataset-fashion-mnist`) install here
DEBIAN_DATASETS_DIR = Path("/usr/share/datasets")
DEFAULT_MODELS: dict[str, str] = {
    DIGITS: "cnn-digits",
    MNIST: "cnn-mnist",
    CIFAR10: "pocl-cifar10",
    FASHION_MNIST: "cnn-mnist",  # same 28x28x1 images and 10 classes as MNIST
}
# Input shape -> default model for generic npz datasets (matches the registry's architectures).
MODELS_BY_SHAPE: dict[tuple[int, int, int], str] = {
    (8, 8, 1): "cnn-digits",
    (28, 28, 1): "cnn-mnist",
    (32, 32, 3): "pocl-cifar10",
}

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
NPZ_TEST_FRACTION = 0.2
NPZ_SPLIT_SEED = 0
# Refuse absurd headers before allocating (a corrupt or hostile IDX file must not exhaust memory).
MAX_IDX_ITEMS = 1 << 31

MNIST_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MNIST_NPZ = "mnist.npz"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_IMAGE_BYTES = 32 * 32 * 3

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"


class DatasetError(Exception):
    """A dataset is missing, malformed or unknown; the message says what to put where."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/test arrays in the canonical format: x float32 NHWC in [0, 1], y int64 class ids."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    model_name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1


def default_data_dir() -> Path:
    """Keras' cache directory: where ``keras.datasets`` leaves ``mnist.npz`` and the CIFAR batches."""
    return Path.home() / ".keras" / "datasets"


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    model_name: str | None = None,
    allow_download: bool = False,
) -> Dataset:
    """Load a dataset by name (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10`` or ``npz:PATH``)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if name == DIGITS:
        ds = _load_digits()
    elif name == MNIST:
        ds = _load_mnist(root, allow_download)
    elif name == FASHION_MNIST:
        ds = _load_fashion_mnist(root)
    elif name == CIFAR10:
        ds = _load_cifar10(root, allow_download)
    elif name.startswith(NPZ_PREFIX):
        return _load_generic_npz(Path(name[len(NPZ_PREFIX) :]).expanduser(), model_name)
    else:
        raise DatasetError(
            f"unknown dataset {name!r}: expected digits, mnist, fashion-mnist, cifar10 or npz:PATH"
        )
    if model_name is not None:
        ds = dataclasses.replace(ds, model_name=model_name)
    return ds


# ----------------------------------------------------------------------------- canonical form


def _images_to_float(x: np.ndarray, what: str) -> np.ndarray:
    """uint8/integer pixels -> /255; floats must already lie in [0, 1]. Adds a channel axis to NHW."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise DatasetError(f"{what}: expected images shaped (N, H, W) or (N, H, W, C), got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DatasetError(f"{what}: integer pixels must lie in 0..255")
        return (x.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if x.size and (not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0):
            raise DatasetError(f"{what}: float inputs must be finite and scaled to [0, 1]")
        return x
    raise DatasetError(f"{what}: unsupported input dtype {x.dtype}")


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{what}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if y.shape[0] != n:
        raise DatasetError(f"{what}: {y.shape[0]} labels for {n} inputs")
    if y.size and y.min() < 0:
        raise DatasetError(f"{what}: negative label")
    return y.astype(np.int64)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split: each class contributes round(test_fraction·n_c) test samples."""
    rng = np.random.default_rng(seed)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = round(test_fraction * idx.size)
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    train = np.sort(np.concatenate(train_parts)) if train_parts else np.zeros(0, np.int64)
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    return train.astype(np.int64), test.astype(np.int64)


# ----------------------------------------------------------------------------- digits


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no network

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[..., np.newaxis]
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Dataset(DIGITS, x[train], y[train], x[test], y[test], DEFAULT_MODELS[DIGITS])


# ----------------------------------------------------------------------------- MNIST

IDX_UBYTE = 0x08


def parse_idx(raw: bytes, what: str = "IDX file") -> np.ndarray:
    """Parse an IDX (LeCun) file of unsigned bytes: magic 00 00 08 NDIM, big-endian uint32 dims, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{what}: not an IDX file (bad magic)")
    if raw[2] != IDX_UBYTE:
        raise DatasetError(f"{what}: unsupported IDX element type 0x{raw[2]:02x} (expected unsigned byte)")
    ndim = raw[3]
    if ndim < 1 or ndim > 4:
        raise DatasetError(f"{what}: unsupported IDX rank {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{what}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = 1
    for d in dims:
        count *= d
    if count > MAX_IDX_ITEMS:
        raise DatasetError(f"{what}: IDX dims {dims} too large")
    if len(raw) - header != count:
        raise DatasetError(f"{what}: IDX body has {len(raw) - header} bytes, dims {dims} need {count}")
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=header).reshape(dims).copy()


def _read_maybe_gz(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: corrupt gzip ({exc})") from exc
    return data


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    alt = stem.replace("-idx", ".idx")  # the common "train-images.idx3-ubyte" spelling
    for d in dirs:
        for candidate in (stem, stem + ".gz", alt, alt + ".gz"):
            p = d / candidate
            if p.is_file():
                return p
    return None


def _mnist_dirs(root: Path) -> list[Path]:
    return [root, root / "mnist", root / "MNIST", root / "MNIST" / "raw"]


def _load_mnist(root: Path, allow_download: bool) -> Dataset:
    dirs = _mnist_dirs(root)
    found = {key: _find_idx(dirs, stem) for key, stem in MNIST_IDX_FILES.items()}
    if all(found.values()):
        arrays = {key: parse_idx(_read_maybe_gz(path), str(path)) for key, path in found.items() if path}
        return _mnist_from_arrays(arrays, str(root))
    for d in dirs:
        if (d / MNIST_NPZ).is_file():
            return _mnist_from_npz(d / MNIST_NPZ)
    if allow_download:
        return _mnist_from_npz(_download(MNIST_NPZ, MNIST_URL, root, file_hash=MNIST_SHA256))
    names = ", ".join(f"{stem}[.gz]" for stem in MNIST_IDX_FILES.values())
    partial = ""
    if any(found.values()):
        missing = [MNIST_IDX_FILES[k] for k, v in found.items() if v is None]
        partial = f" (found some IDX files but not {', '.join(missing)})"
    raise DatasetError(
        f"MNIST not found in {root}{partial}: put the four IDX files ({names}) or Keras' {MNIST_NPZ} "
        f"there (or in {root}/mnist), or pass --data-dir pointing at them; download is off by default"
    )


def _mnist_from_npz(path: Path) -> Dataset:
    arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    return _mnist_from_arrays(arrays, str(path))


def _mnist_from_arrays(arrays: dict[str, np.ndarray], where: str) -> Dataset:
    x_train = _images_to_float(arrays["x_train"], f"{where} train images")
    x_test = _images_to_float(arrays["x_test"], f"{where} test images")
    y_train = _labels(arrays["y_train"], x_train.shape[0], f"{where} train labels")
    y_test = _labels(arrays["y_test"], x_test.shape[0], f"{where} test labels")
    if x_train.shape[1:] != (28, 28, 1) or x_test.shape[1:] != (28, 28, 1):
        raise DatasetError(f"{where}: MNIST images must be 28×28, got {x_train.shape[1:]}")
    return Dataset(MNIST, x_train, y_train, x_test, y_test, DEFAULT_MODELS[MNIST])


def _load_fashion_mnist(root: Path) -> Dataset:
    """Fashion-MNIST: MNIST's IDX format and shape (Zalando). Looked for under the data dir and where
    Debian's `dataset-fashion-mnist` package puts it; never downloaded."""
    dirs = [root, root / FASHION_MNIST, root / "fashion_mnist", DEBIAN_DATASETS_DIR / FASHION_MNIST]
    found = {key: _find_idx(dirs, stem) for key, stem in MNIST_IDX_FILES.items()}
    if not all(found.values()):
        names = ", ".join(f"{stem}[.gz]" for stem in MNIST_IDX_FILES.values())
        raise DatasetError(
            f"Fashion-MNIST not found in {root}, {root / FASHION_MNIST} or {DEBIAN_DATASETS_DIR / FASHION_MNIST}: "
            f"install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or put the four "
            f"IDX files ({names}) in --data-dir"
        )
    where = str(next(iter(found.values())).parent)  # type: ignore[union-attr]
    arrays = {key: parse_idx(_read_maybe_gz(path), str(path)) for key, path in found.items() if path}
    return dataclasses.replace(_mnist_from_arrays(arrays, where), name=FASHION_MNIST)


# ----------------------------------------------------------------------------- CIFAR-10


def _checked_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("restricted unpickler: only plain numpy arrays may be rebuilt")
    return _NP_RECONSTRUCT(cls, shape, dtype_code)


def _checked_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("restricted unpickler: object arrays are not allowed")
    return dt


def _checked_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    dt = _checked_dtype(dtype)
    return np.frombuffer(buf, dtype=dt).reshape(shape, order=order).copy()


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("restricted unpickler: unexpected _codecs.encode call")
    return text.encode("latin1")


def _numpy_reconstruct() -> Callable[..., np.ndarray]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_NP_RECONSTRUCT = _numpy_reconstruct()

_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _checked_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _checked_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
    ("numpy.core.numeric", "_frombuffer"): _checked_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _checked_frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR python batches: containers, scalars and plain numpy arrays only.

    Any other global (os.system, builtins.eval, arbitrary classes) raises ``UnpicklingError`` before
    it is called, so a hostile batch file cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"restricted unpickler: global {module}.{name} is forbidden"
            ) from None


def restricted_loads(raw: bytes) -> Any:
    """Unpickle ``raw`` allowing only dict/list/tuple/bytes/str/int/float and numpy array reconstruction."""
    return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()


def parse_cifar_batch(raw: bytes, what: str = "CIFAR batch") -> tuple[np.ndarray, np.ndarray]:
    """One python batch -> (uint8 images N×32×32×3, int64 labels)."""
    try:
        obj = restricted_loads(raw)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{what}: not a valid CIFAR-10 python batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{what}: expected a dict, got {type(obj).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{what}: 'data' must be a uint8 N×3072 array")
    if data.shape[1] != CIFAR_IMAGE_BYTES:
        raise DatasetError(f"{what}: rows have {data.shape[1]} bytes, expected {CIFAR_IMAGE_BYTES}")
    if not isinstance(labels, list | np.ndarray):
        raise DatasetError(f"{what}: 'labels' must be a list")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{what}: labels must be integers")
    # Rows are 1024 red, 1024 green, 1024 blue bytes, each plane 32×32 row-major -> NHWC.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), _labels(y, x.shape[0], what)


def _cifar_batches_from_dir(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)}


def _cifar_batches_from_tar(path: Path) -> dict[str, bytes]:
    """Read the batches straight out of the tarball (no extraction, so no path traversal)."""
    wanted = {f"{CIFAR_DIR}/{n}": n for n in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    out[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: corrupt tarball ({exc})") from exc
    missing = sorted(set(wanted.values()) - set(out))
    if missing:
        raise DatasetError(f"{path}: tarball lacks {', '.join(missing)}")
    return out


def _cifar_source(root: Path) -> tuple[str, Callable[[], dict[str, bytes]]] | None:
    for d in (root / CIFAR_DIR, root, root / "cifar10" / CIFAR_DIR):
        if all((d / n).is_file() for n in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)):
            return str(d), lambda d=d: _cifar_batches_from_dir(d)
    for p in (root / CIFAR_TARBALL, root / "cifar10" / CIFAR_TARBALL):
        if p.is_file():
            return str(p), lambda p=p: _cifar_batches_from_tar(p)
    return None


def _load_cifar10(root: Path, allow_download: bool) -> Dataset:
    source = _cifar_source(root)
    if source is None and allow_download:
        tarball = _download(CIFAR_TARBALL, CIFAR_URL, root, file_hash=CIFAR_MD5)
        source = str(tarball), lambda: _cifar_batches_from_tar(tarball)
    if source is None:
        files = ", ".join((*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH))
        raise DatasetError(
            f"CIFAR-10 not found in {root}: put the python batches directory {CIFAR_DIR}/ ({files}) "
            f"or {CIFAR_TARBALL} there, or pass --data-dir pointing at them; download is off by default"
        )
    where, read = source
    raw = read()
    train = [parse_cifar_batch(raw[n], f"{where}/{n}") for n in CIFAR_TRAIN_BATCHES]
    x_test_u8, y_test = parse_cifar_batch(raw[CIFAR_TEST_BATCH], f"{where}/{CIFAR_TEST_BATCH}")
    x_train = _images_to_float(np.concatenate([x for x, _ in train]), where)
    y_train = np.concatenate([y for _, y in train])
    x_test = _images_to_float(x_test_u8, where)
    return Dataset(CIFAR10, x_train, y_train, x_test, y_test, DEFAULT_MODELS[CIFAR10])


# ----------------------------------------------------------------------------- generic npz


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing arrays {missing} (has {sorted(npz.files)})")
            return {k: np.asarray(npz[k]) for k in keys}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError) as exc:  # includes "Object arrays cannot be loaded"
        raise DatasetError(f"{path}: unreadable npz ({exc})") from exc


def _load_generic_npz(path: Path, model_name: str | None) -> Dataset:
    if not path.is_file():
        raise DatasetError(f"npz dataset {path} not found: give npz:PATH to a file with arrays x and y")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable npz ({exc})") from exc
    has_test = {"x_test", "y_test"} <= files
    arrays = _read_npz(path, ("x", "y", "x_test", "y_test") if has_test else ("x", "y"))
    x = _images_to_float(arrays["x"], f"{path} x")
    y = _labels(arrays["y"], x.shape[0], f"{path} y")
    if has_test:
        x_test = _images_to_float(arrays["x_test"], f"{path} x_test")
        y_test = _labels(arrays["y_test"], x_test.shape[0], f"{path} y_test")
        x_train, y_train = x, y
    else:
        train, test = stratified_split(y, NPZ_TEST_FRACTION, NPZ_SPLIT_SEED)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DatasetError(
            f"{path}: train inputs {x_train.shape[1:]} and test inputs {x_test.shape[1:]} differ"
        )
    shape = (int(x_train.shape[1]), int(x_train.shape[2]), int(x_train.shape[3]))
    model = model_name or MODELS_BY_SHAPE.get(shape)
    if model is None:
        known = ", ".join(f"{s} -> {m}" for s, m in MODELS_BY_SHAPE.items())
        raise DatasetError(
            f"{path}: no default model for inputs {shape} (known: {known}); name one explicitly"
        )
    return Dataset(f"{NPZ_PREFIX}{path}", x_train, y_train, x_test, y_test, model)


# ----------------------------------------------------------------------------- download (opt-in)


def _download(fname: str, url: str, root: Path, *, file_hash: str) -> Path:
    """Fetch one archive with Keras' downloader into ``root`` (only when explicitly allowed)."""
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - keras comes with the miner extra
        raise DatasetError(f"cannot download {fname}: keras is not installed") from exc
    root.mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(
            fname, origin=url, file_hash=file_hash, cache_dir=str(root), cache_subdir="."
        )
    except Exception as exc:  # network failures surface as many exception types
        raise DatasetError(f"download of {url} failed ({exc}); put {fname} in {root} by hand") from exc
    return Path(path)
