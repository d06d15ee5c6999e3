"""The simulator's training function: the miner's Keras training (`ml.training`), in this process.

TensorFlow is imported when the first job runs, never when the simulator is imported, so tests can
drive the protocol with a numpy training function instead.
"""

from __future__ import annotations

import numpy as np
from pocl.ml.model.registry import ModelSpec
from pocl.ml.training import TrainJob
from pocl.node.simulation.config import SimConfig
from pocl.node.simulation.miners import TrainFn


def keras_train_fn(cfg: SimConfig) -> TrainFn:
    """Local training as a node's miner runs it, with the run's epochs, batch, learning rate, optimizer."""
    trainer = None

    def train(
        spec: ModelSpec, g: list[np.ndarray], x: np.ndarray, y: np.ndarray, seed: int
    ) -> list[np.ndarray]:
        nonlocal trainer
        if trainer is None:
            from pocl.ml.training import Trainer, configure_threads

            configure_threads()
            trainer = Trainer()
        job = TrainJob(
            spec, g, x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed,
            optimizer=cfg.optimizer,
        )  # fmt: skip
        return trainer.fit(job).weights

    return train
