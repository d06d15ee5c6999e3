"""Local training of a registry model with Keras (DESIGN §8); TensorFlow is imported inside functions.

A miner trains from the global model G_{r-1} on its private data and submits canonical float32 weights.
Training need not be bit-reproducible (nothing in consensus depends on how weights were found, only on
the revealed bytes), but it is seeded so that a simulation rerun with the same seed lands close.

`Trainer` keeps one compiled Keras model per architecture and reloads weights for every job: building
and tracing a model costs more than a small job's training, and a long-lived worker process runs many
jobs. Optimiser state is reset per job, because each job starts from a new global model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pocl.ml.model.registry import ModelSpec
from pocl.ml.model.weights import WEIGHT_DTYPE, check_weights

SGD = "sgd"
ADAM = "adam"
OPTIMIZERS = (SGD, ADAM)
DEFAULT_OPTIMIZER = SGD
DEFAULT_MOMENTUM = 0.9
DEFAULT_THREADS = 2


class TrainingError(RuntimeError):
    """A training job could not run (bad inputs, TensorFlow failure, worker died)."""


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One local training run from ``global_weights`` on (x, y): what `Trainer.fit` runs in this process
    and what `TrainingWorker.train` sends whole to its worker process."""

    spec: ModelSpec
    global_weights: list[np.ndarray]
    x: np.ndarray
    y: np.ndarray
    epochs: int
    batch_size: int
    lr: float
    seed: int
    optimizer: str = DEFAULT_OPTIMIZER
    time_limit_s: float | None = None  # stop early (keeping progress) after this long


@dataclasses.dataclass(frozen=True)
class TrainResult:
    weights: list[np.ndarray]
    epochs_done: int
    steps_done: int
    stopped_early: bool  # by the time limit or a stop request
    final_loss: float
    seconds: float


def quiet_tensorflow_env() -> None:
    """Environment for a process that will import TensorFlow: no info spam, bounded OpenMP threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def configure_threads(threads: int = DEFAULT_THREADS) -> None:
    """Cap TensorFlow's thread pools (intra-op = threads, inter-op ≤ 2); a no-op once TF has started."""
    quiet_tensorflow_env()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:
        pass  # the runtime is already initialised in this process; keep its pools


def _check_inputs(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 3 and spec.input_shape[2] == 1:
        x = x[..., np.newaxis]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise TrainingError(f"{spec.name} expects inputs (N, {spec.input_shape}), got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise TrainingError(f"labels shape {y.shape} does not match {x.shape[0]} inputs")
    if x.shape[0] == 0:
        raise TrainingError("no training samples")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= spec.num_classes:
        raise TrainingError(f"labels must be integers in 0..{spec.num_classes - 1}")
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


class Trainer:
    """Keeps compiled Keras models (one per architecture) for repeated jobs in one process."""

    def __init__(self) -> None:
        self._models: dict[tuple[ModelSpec, str], Any] = {}

    def _model(self, spec: ModelSpec, optimizer: str) -> Any:
        key = (spec, optimizer)
        model = self._models.get(key)
        if model is None:
            import keras
            from pocl.ml.keras_model import build_keras_model

            model = build_keras_model(spec)
            opt = (
                keras.optimizers.SGD(learning_rate=0.01, momentum=DEFAULT_MOMENTUM)
                if optimizer == SGD
                else keras.optimizers.Adam(learning_rate=0.001)
            )
            model.compile(
                optimizer=opt,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            self._models[key] = model
        return model

    def fit(self, job: TrainJob, *, should_stop: Callable[[], bool] | None = None) -> TrainResult:
        """Run ``job``; stops early (keeping progress) on its time limit or a stop request."""
        spec, optimizer, epochs, lr = job.spec, job.optimizer, job.epochs, job.lr
        if optimizer not in OPTIMIZERS:
            raise TrainingError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if epochs < 0 or job.batch_size < 1 or not lr > 0:
            raise TrainingError("epochs must be ≥ 0, batch_size ≥ 1 and lr > 0")
        check_weights(spec, job.global_weights)
        x, y = _check_inputs(spec, job.x, job.y)
        quiet_tensorflow_env()
        import keras

        started = time.monotonic()
        model = self._model(spec, optimizer)
        model.set_weights([np.asarray(w, dtype=WEIGHT_DTYPE) for w in job.global_weights])
        opt = model.optimizer
        for var in opt.variables:  # fresh optimiser state (moments, iteration count) per job
            var.assign(np.zeros(var.shape, dtype=var.dtype))
        opt.learning_rate = lr
        keras.utils.set_random_seed(job.seed % (2**32))

        deadline = started + job.time_limit_s if job.time_limit_s is not None else None
        progress = {"steps": 0, "epochs": 0, "stopped": False}

        class _Stop(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
                progress["steps"] += 1
                if (deadline is not None and time.monotonic() >= deadline) or (should_stop and should_stop()):
                    progress["stopped"] = True
                    self.model.stop_training = True

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                if not progress["stopped"]:
                    progress["epochs"] += 1

        loss = float("nan")
        if epochs > 0 and not (should_stop and should_stop()):
            history = model.fit(
                x, y, epochs=epochs, batch_size=job.batch_size, shuffle=True, verbose=0, callbacks=[_Stop()]
            )
            losses = history.history.get("loss") or []
            if losses:
                loss = float(losses[-1])
        elif epochs > 0:
            progress["stopped"] = True
        from pocl.ml.keras_model import keras_weights

        weights = keras_weights(model)
        if not all(np.isfinite(w).all() for w in weights):
            raise TrainingError("training diverged (non-finite weights); lower the learning rate")
        return TrainResult(
            weights=weights,
            epochs_done=int(progress["epochs"]),
            steps_done=int(progress["steps"]),
            stopped_early=bool(progress["stopped"]),
            final_loss=loss,
            seconds=time.monotonic() - started,
        )


def accuracy(spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` that canonical inference labels correctly."""
    from pocl.ml.model.inference import predict

    labels, _ = predict(spec, weights, x)
    return float(np.mean(labels == np.asarray(y))) if len(y) else 0.0
