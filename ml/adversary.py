"""Adversarial miner behaviours for tests and research (DESIGN §8; off by default).

A `Behaviour` is plain data plus small pure functions that the simulator (and the miner loop) call at
each step of a round, so one honest code path runs everything and a behaviour only replaces the step
it cheats at:

| kind        | model it submits                         | predictions it publishes          | its vote                    |
| ----------- | ---------------------------------------- | --------------------------------- | --------------------------- |
| honest      | trained from G_{r-1}                      | canonical inference of its model  | true labels, true scores    |
| knn         | untrained (fresh random init)             | k-NN on its own data (PoCL attack)| honest                      |
| random      | Gaussian noise weights                    | canonical inference of that model | honest                      |
| zero        | all-zero weights                          | canonical inference of that model | honest                      |
| label-flip  | trained on labels y → C−1−y               | canonical inference of its model  | honest                      |
| lazy        | G_{r-1} unchanged (no training)           | canonical inference of G_{r-1}    | honest                      |
| copycat     | another miner's latest revealed model     | canonical inference of the copy   | honest                      |
| vote-liar   | trained (honest)                          | honest                            | scores BPS − true score     |
| label-liar  | trained (honest)                          | honest                            | labels (y+1) mod C, scores consistent with them |
| withhold    | commits, then never reveals               | none                              | none                        |

Only `knn` makes predictions that its submitted model does not reproduce (prediction fraud, caught by
verification); `vote-liar` is provable vote fraud (scores differ from those recomputed from public
labels and predictions); `label-liar` is undetectable per se but is one voter among many, which the
median over voters absorbs; `withhold` is punished for not revealing. The others are merely useless
updates, for robust aggregation and winner selection to keep out of the global model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pocl.ml.model.registry import ModelSpec

BPS = 10_000

HONEST = "honest"
KNN = "knn"
RANDOM = "random"
ZERO = "zero"
LABEL_FLIP = "label-flip"
LAZY = "lazy"
COPYCAT = "copycat"
VOTE_LIAR = "vote-liar"
LABEL_LIAR = "label-liar"
WITHHOLD = "withhold"
KINDS = (HONEST, KNN, RANDOM, ZERO, LABEL_FLIP, LAZY, COPYCAT, VOTE_LIAR, LABEL_LIAR, WITHHOLD)
ADVERSARIAL_KINDS = KINDS[1:]

KNN_NEIGHBOURS = 3
KNN_CHUNK = 256
RANDOM_WEIGHT_STD = 1.0


class AdversaryError(ValueError):
    """An unknown behaviour or a malformed ``KIND:COUNT`` list."""


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """What a (possibly adversarial) miner does at each step of a round."""

    kind: str = HONEST
    knn_neighbours: int = KNN_NEIGHBOURS

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AdversaryError(f"unknown behaviour {self.kind!r}; known: {', '.join(KINDS)}")

    @property
    def honest(self) -> bool:
        return self.kind == HONEST

    @property
    def trains(self) -> bool:
        """Whether the miner runs real local training this round (on `training_labels`)."""
        return self.kind in (HONEST, LABEL_FLIP, VOTE_LIAR, LABEL_LIAR)

    @property
    def withholds(self) -> bool:
        """Commits but never reveals its weights, predictions or vote."""
        return self.kind == WITHHOLD

    def training_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """Labels to train on: flipped for label-flip, unchanged otherwise."""
        y = np.asarray(y, dtype=np.int64)
        if self.kind == LABEL_FLIP:
            return (num_classes - 1 - y).astype(np.int64)
        return y

    def make_model(
        self,
        spec: ModelSpec,
        global_weights: list[np.ndarray],
        trained: list[np.ndarray] | None,
        *,
        seed: int,
        visible_models: list[list[np.ndarray]] | None = None,
    ) -> list[np.ndarray]:
        """The weights this miner submits.

        ``trained``: the result of local training (needed when `trains`); ``visible_models``: models other
        miners already revealed (the previous round's, since commit-reveal hides the current ones), which
        a copycat copies — the first one, by the caller's order; with none it falls back to G_{r-1}.
        """
        if self.trains:
            if trained is None:
                raise AdversaryError(f"{self.kind} needs its trained weights")
            return [np.asarray(w, dtype=np.float32) for w in trained]
        if self.kind == KNN:
            from pocl.ml.model.weights import initial_weights

            return initial_weights(spec, seed % (2**63))
        if self.kind == RANDOM:
            rng = np.random.default_rng(seed)
            return [
                rng.normal(0.0, RANDOM_WEIGHT_STD, size=w.shape).astype(np.float32) for w in global_weights
            ]
        if self.kind == ZERO:
            return [np.zeros_like(w, dtype=np.float32) for w in global_weights]
        if self.kind == COPYCAT and visible_models:
            return [np.array(w, dtype=np.float32) for w in visible_models[0]]
        # lazy, copycat with nothing to copy, withhold (commits to something it never reveals)
        return [np.array(w, dtype=np.float32) for w in global_weights]

    def make_predictions(
        self,
        spec: ModelSpec,
        weights: list[np.ndarray],
        shards: list[np.ndarray],
        *,
        train_x: np.ndarray | None = None,
        train_y: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Labels published for each other miner's shard inputs (int64 arrays, same order as ``shards``)."""
        if self.withholds:
            return []
        if self.kind == KNN:
            if train_x is None or train_y is None:
                raise AdversaryError("knn needs its own training data to predict with")
            return [knn_predict(train_x, train_y, s, self.knn_neighbours) for s in shards]
        from pocl.ml.model.inference import predict

        return [predict(spec, weights, s)[0] for s in shards]

    def reveal_labels(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """The labels this miner reveals for its own shard (the label-liar shifts every one)."""
        labels = np.asarray(labels, dtype=np.int64)
        if self.kind == LABEL_LIAR:
            return ((labels + 1) % num_classes).astype(np.int64)
        return labels

    def report_scores(self, scores: list[int]) -> list[int]:
        """Scores (basis points) reported in the vote, given the ones the public data implies."""
        if self.kind == VOTE_LIAR:
            return [BPS - s for s in scores]
        return list(scores)


def knn_predict(
    train_x: np.ndarray, train_y: np.ndarray, queries: np.ndarray, k: int = KNN_NEIGHBOURS
) -> np.ndarray:
    """Majority label of the k nearest (Euclidean) training samples; ties go to the nearest's label."""
    tx = np.asarray(train_x, dtype=np.float32).reshape(len(train_x), -1)
    ty = np.asarray(train_y, dtype=np.int64)
    q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
    if tx.shape[0] == 0:
        raise AdversaryError("knn needs at least one training sample")
    k = max(1, min(k, tx.shape[0]))
    t_sq = np.einsum("ij,ij->i", tx, tx)
    out = np.empty(q.shape[0], dtype=np.int64)
    n_classes = int(ty.max()) + 1
    for start in range(0, q.shape[0], KNN_CHUNK):
        chunk = q[start : start + KNN_CHUNK]
        d = t_sq[None, :] - 2.0 * (chunk @ tx.T)  # + |q|² is constant per row
        nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
        for row, idx in enumerate(nearest):
            votes = np.bincount(ty[idx], minlength=n_classes)
            best = np.flatnonzero(votes == votes.max())
            out[start + row] = ty[idx[0]] if ty[idx[0]] in best else best[0]
    return out


def parse_adversaries(text: str | None) -> list[tuple[Behaviour, int]]:
    """Parse ``KIND:COUNT[,KIND:COUNT...]`` (COUNT defaults to 1), e.g. ``knn:2,vote-liar:1``."""
    if text is None or not text.strip():
        return []
    out: list[tuple[Behaviour, int]] = []
    for item in text.split(","):
        kind, sep, count_text = item.strip().partition(":")
        kind = kind.strip().lower()
        if kind not in ADVERSARIAL_KINDS:
            raise AdversaryError(f"unknown adversary {kind!r}; known: {', '.join(ADVERSARIAL_KINDS)}")
        try:
            count = int(count_text) if sep else 1
        except ValueError:
            raise AdversaryError(f"adversary {item.strip()!r}: COUNT must be an integer") from None
        if count < 1:
            raise AdversaryError(f"adversary {item.strip()!r}: COUNT must be at least 1")
        out.append((Behaviour(kind), count))
    return out


def assign_behaviours(n_miners: int, adversaries: list[tuple[Behaviour, int]]) -> list[Behaviour]:
    """Behaviour per miner index: adversaries take the LAST miners (so miner 0 is always honest)."""
    total = sum(c for _, c in adversaries)
    if total > n_miners:
        raise AdversaryError(f"{total} adversaries but only {n_miners} miners")
    behaviours = [Behaviour(HONEST)] * (n_miners - total)
    for b, c in adversaries:
        behaviours.extend([b] * c)
    return behaviours
