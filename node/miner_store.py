"""A miner's round secrets on disk: what it must keep between COMMIT and VOTE (DESIGN §5.2).

After `pocl.commit` a miner is bound to weights (revealed in PREDICT) and to a labelled test shard
and salt (revealed in VOTE). Losing them means it cannot reveal and is slashed for withholding, so the
miner writes them here BEFORE it submits the commit; a miner restarted mid-round reloads them and
still reveals and votes.

One file per round, `HOME/data/miner/round-<r>.npz`, written atomically (temp file, fsync, rename,
fsync of the directory) with numpy's `.npz` format and read back with `allow_pickle=False`. Only the
last `KEEP_ROUNDS` rounds are kept. The files are this node's own; a corrupt one is reported and
ignored (the miner then skips the round instead of crashing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
from pathlib import Path

import numpy as np
from pocl.ledger.storage.durable_file import replace_durably

log = logging.getLogger("pocl.miner")

KEEP_ROUNDS = 4
FILE_RE = re.compile(r"^round-(\d{1,19})\.npz$")
MAX_FILE_BYTES = 256 * 1024 * 1024


class MinerStoreError(Exception):
    """A secrets file could not be written or read."""


@dataclasses.dataclass(frozen=True)
class RoundSecrets:
    """Everything needed to reveal and vote in `round` after a restart."""

    round: int
    prev_model_hash: bytes  # G_{r-1} the weights were trained from
    weights: bytes  # canonical encoded weights (ml.model.weights.encode_weights) as committed
    labels: np.ndarray  # int64 labels committed for the test shard (as they will be revealed)
    salt: bytes
    test_x: np.ndarray  # float32 test shard inputs, as committed
    shard_indices: np.ndarray  # positions in this miner's held-out pool
    n_train: int
    train_s: float  # wall-clock seconds of local training (0 when the behaviour does not train)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "round": np.array(self.round, dtype=np.int64),
            "prev_model_hash": np.frombuffer(self.prev_model_hash, dtype=np.uint8),
            "weights": np.frombuffer(self.weights, dtype=np.uint8),
            "labels": np.asarray(self.labels, dtype=np.int64),
            "salt": np.frombuffer(self.salt, dtype=np.uint8),
            "test_x": np.asarray(self.test_x, dtype=np.float32),
            "shard_indices": np.asarray(self.shard_indices, dtype=np.int64),
            "n_train": np.array(self.n_train, dtype=np.int64),
            "train_s": np.array(self.train_s, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RoundSecrets:
        try:
            return cls(
                round=int(arrays["round"]),
                prev_model_hash=arrays["prev_model_hash"].astype(np.uint8).tobytes(),
                weights=arrays["weights"].astype(np.uint8).tobytes(),
                labels=arrays["labels"].astype(np.int64),
                salt=arrays["salt"].astype(np.uint8).tobytes(),
                test_x=arrays["test_x"].astype(np.float32),
                shard_indices=arrays["shard_indices"].astype(np.int64),
                n_train=int(arrays["n_train"]),
                train_s=float(arrays["train_s"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise MinerStoreError(f"secrets file is incomplete: {exc}") from None


class MinerStore:
    """Round secrets under one directory (normally `HOME/data/miner`)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    def path(self, round_: int) -> Path:
        return self.dir / f"round-{round_}.npz"

    def save(self, secrets: RoundSecrets) -> Path:
        """Atomically write (replace) the secrets of `secrets.round`; durable when this returns."""
        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **secrets.to_arrays())
        target = self.path(secrets.round)
        try:
            replace_durably(target, buf.getvalue())
        except OSError as exc:
            raise MinerStoreError(f"cannot write {target}: {exc.strerror or exc}") from None
        self.prune(keep_from=secrets.round - KEEP_ROUNDS + 1)
        return target

    def load(self, round_: int) -> RoundSecrets | None:
        """The secrets of `round_`, None if absent; MinerStoreError if the file is corrupt."""
        path = self.path(round_)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        if size > MAX_FILE_BYTES:
            raise MinerStoreError(f"{path} is too large ({size} bytes)")
        try:
            with np.load(path, allow_pickle=False) as data:
                secrets = RoundSecrets.from_arrays({k: data[k] for k in data.files})
        except MinerStoreError:
            raise
        except (OSError, ValueError, EOFError, KeyError) as exc:
            raise MinerStoreError(f"{path} is corrupt: {exc}") from None
        if secrets.round != round_:
            raise MinerStoreError(f"{path} holds round {secrets.round}, not {round_}")
        return secrets

    def rounds(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in self.dir.iterdir():
            m = FILE_RE.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def prune(self, keep_from: int) -> None:
        """Delete the secrets of rounds below `keep_from` (they can no longer be revealed)."""
        for r in self.rounds():
            if r < keep_from:
                with contextlib.suppress(OSError):
                    self.path(r).unlink()
