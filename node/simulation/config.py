"""What a simulation run is: dataset, miners, rounds, training budget, and the chain's PoCL params."""

from __future__ import annotations

import dataclasses
import hashlib
import math

from pocl.consensus.pocl.params import PoclParams
from pocl.ml.adversary import AdversaryError, assign_behaviours, parse_adversaries
from pocl.ml.model.aggregate import AggregationError, parse_rule
from pocl.ml.model.registry import ModelSpec
from pocl.ml.partition import PartitionError, parse_scheme
from pocl.ml.shards import DEFAULT_HOLDOUT_FRACTION

DEFAULT_MINERS = 4
DEFAULT_ROUNDS = 10
DEFAULT_EPOCHS = 3
DEFAULT_BATCH = 32
DEFAULT_LR = 0.05
DEFAULT_SHARD = 50
OPTIMIZERS = ("sgd", "adam")


class SimConfigError(ValueError):
    """A run that cannot be simulated as configured (the message names the option)."""


@dataclasses.dataclass(frozen=True)
class SimConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    model: str | None = None
    miners: int = DEFAULT_MINERS
    rounds: int = DEFAULT_ROUNDS
    partition: str = "iid"
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    optimizer: str = "sgd"
    winners: int | None = None  # K; default ceil(miners / 2)
    shard_size: int | None = None  # default DEFAULT_SHARD, capped at half the smallest held-out pool
    holdout: float = DEFAULT_HOLDOUT_FRACTION
    aggregation: str | None = None  # default: the chain's (PoclParams.aggregation)
    adversary: str | None = None  # KIND:COUNT[,KIND:COUNT...]; adversaries are the last miners
    seed: int = 0
    centralised: bool = True
    train_limit: int | None = None
    allow_download: bool = False

    @property
    def k(self) -> int:
        return self.winners if self.winners is not None else math.ceil(self.miners / 2)

    def validate(self) -> None:
        """Raise SimConfigError for options no run can use (before any data is loaded)."""
        if self.miners < 1:
            raise SimConfigError("--miners must be at least 1")
        if self.rounds < 1:
            raise SimConfigError("--rounds must be at least 1")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise SimConfigError("--epochs and --batch-size must be ≥ 1 and --lr > 0")
        if self.optimizer not in OPTIMIZERS:
            raise SimConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        if not 1 <= self.k <= self.miners:
            raise SimConfigError(f"--winners must be between 1 and --miners ({self.miners})")
        if (self.shard_size is not None and self.shard_size < 1) or not 0 < self.holdout < 1:
            raise SimConfigError("--shard-size must be ≥ 1 and --holdout in (0, 1)")
        if self.train_limit is not None and self.train_limit < 1:
            raise SimConfigError("--train-limit must be at least 1")
        try:
            parse_scheme(self.partition)
            if self.aggregation is not None:
                parse_rule(self.aggregation)
            assign_behaviours(self.miners, parse_adversaries(self.adversary))
        except (PartitionError, AggregationError, AdversaryError) as exc:
            raise SimConfigError(str(exc)) from None

    def pocl_params(self, spec: ModelSpec, shard_size: int) -> PoclParams:
        """The genesis `pocl` section of the simulated chain: the chain's defaults plus this run's knobs."""
        overrides: dict[str, object] = {
            "model": spec.name,
            "input_shape": tuple(spec.input_shape),
            "classes": spec.num_classes,
            "init_seed": sub_seed(self.seed, "genesis") % 2**32,
            "test_shard_size": shard_size,
            "winners": self.k,
            # the eligible set is exactly the simulated miners
            "max_miners": min(max(2, self.miners), 256),
        }
        if self.aggregation is not None:
            overrides["aggregation"] = self.aggregation
        params = PoclParams(**overrides)  # type: ignore[arg-type]
        params.check_model()
        return params


def sub_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from the run seed and labels, so every random choice is independent."""
    digest = hashlib.sha256(repr((seed, *labels)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
