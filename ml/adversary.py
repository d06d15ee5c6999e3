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
| lazy-noise  | G_{r-1} plus small Gaussian noise         | canonical inference of that model | honest                      |
| lazy-big-noise | G_{r-1} plus noise large enough to change some labels (σ = 1e-2) | canonical inference of that model | honest |
| copycat-noise | the model copycat copies, plus small noise (a new hash) | canonical inference of that model | honest |
| replay      | G_{r-1} unchanged; its test shard is another miner's earlier shard and labels, read from the chain | canonical inference | honest (on the copied labels) |
| faker       | trained (honest)                          | a few shards from a k-NN oracle, the rest canonical | honest      |
| backdoor    | trained on trigger-patched samples relabelled to a target class, update boosted | canonical inference | honest |
| launder     | commits last; trained on its data plus the other shards' inputs labelled by its k-NN (none are public before SHARD) | canonical inference | honest |
| launder-backdoor | launder, with backdoor's trigger on its own part (no boost) | canonical inference | honest |
| vote-liar   | trained (honest)                          | honest                            | scores BPS − true score     |
| label-liar  | trained (honest)                          | honest                            | labels (y+1) mod C, scores consistent with them |
| withhold    | commits, then never reveals               | none                              | none                        |

Only `knn` and `faker` make predictions that their submitted model does not reproduce (prediction
fraud, caught by verification); `vote-liar` is provable vote fraud (scores differ from those recomputed from public
labels and predictions); `label-liar` is undetectable per se but is one voter among many, which the
median over voters absorbs; `withhold` is punished for not revealing. The others are merely useless
updates, for robust aggregation and winner selection to keep out of the global model.

`lazy`, `lazy-noise`, `lazy-big-noise`, `copycat`, `copycat-noise` and `replay` are free-riders (no training, or no data of their own);
`faker` is a partial prediction faker (caught only when a faked shard is among those verified);
`backdoor` is a boosted trigger backdoor, measured by `backdoor_success` on the global model;
`launder` is the PoCL paper's k-NN attack laundered through training, which needs the other shards'
inputs before every model is committed: commits carry commitments only and shards are opened in SHARD,
after COMMIT, so a launderer finds nothing to launder and trains as an honest miner would;
`launder-backdoor` combines it with the backdoor. The chain refuses a shard seen in the recent rounds
(`pocl_shard_seen`), so `replay` ends SHARD without a shard and is penalised as a withholder.
`scripts/bench/attacks.py` measures what each of them earns against the same miner training honestly.
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
LAZY_NOISE = "lazy-noise"
REPLAY = "replay"
FAKER = "faker"
BACKDOOR = "backdoor"
LAUNDER = "launder"
LAUNDER_BACKDOOR = "launder-backdoor"
LAZY_BIG_NOISE = "lazy-big-noise"
COPYCAT_NOISE = "copycat-noise"
KINDS = (
    HONEST, KNN, RANDOM, ZERO, LABEL_FLIP, LAZY, COPYCAT, VOTE_LIAR, LABEL_LIAR, WITHHOLD,
    LAZY_NOISE, REPLAY, FAKER, BACKDOOR, LAUNDER, LAUNDER_BACKDOOR, LAZY_BIG_NOISE, COPYCAT_NOISE,
)  # fmt: skip
ADVERSARIAL_KINDS = KINDS[1:]

KNN_NEIGHBOURS = 3
KNN_CHUNK = 256
RANDOM_WEIGHT_STD = 1.0
LAZY_NOISE_STD = 1e-3  # small enough to keep G_{r-1}'s accuracy, enough to change its hash
LAZY_BIG_NOISE_STD = 1e-2  # enough to change some of G_{r-1}'s labels (no longer a no-op)
FAKE_SHARDS = 1  # shards a faker answers with its oracle (the first ones, in the order given)
BACKDOOR_TARGET = 0  # class a triggered input is pushed to
BACKDOOR_FRACTION = 0.2  # share of the backdoor miner's training samples it patches and relabels
BACKDOOR_BOOST = 2.0  # G + boost * (trained - G)
LAUNDER_BACKDOOR_BOOST = 1.0  # none: on digits any boost costs it the wins it needs (bench sweep)
TRIGGER_SIZE = 2  # a TRIGGER_SIZE x TRIGGER_SIZE patch at max intensity in the bottom-right corner


class AdversaryError(ValueError):
    """An unknown behaviour or a malformed ``KIND:COUNT`` list."""


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """What a (possibly adversarial) miner does at each step of a round."""

    kind: str = HONEST
    knn_neighbours: int = KNN_NEIGHBOURS
    fake_shards: int = FAKE_SHARDS
    backdoor_target: int = BACKDOOR_TARGET
    backdoor_fraction: float = BACKDOOR_FRACTION
    backdoor_boost: float = BACKDOOR_BOOST

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AdversaryError(f"unknown behaviour {self.kind!r}; known: {', '.join(KINDS)}")

    @property
    def honest(self) -> bool:
        return self.kind == HONEST

    @property
    def trains(self) -> bool:
        """Whether the miner runs real local training this round (on `training_set`)."""
        return self.kind in (
            HONEST,
            LABEL_FLIP,
            VOTE_LIAR,
            LABEL_LIAR,
            FAKER,
            BACKDOOR,
            LAUNDER,
            LAUNDER_BACKDOOR,
        )

    @property
    def copies_models(self) -> bool:
        """Reads the models other miners revealed in the previous round (``visible_models``)."""
        return self.kind in (COPYCAT, COPYCAT_NOISE)

    @property
    def commits_late(self) -> bool:
        """Commits only once every other eligible miner has (or in COMMIT's last block), hoping to read
        their shard inputs first and pass them to `training_set` as ``leaked``; since shards are opened
        only in SHARD, after COMMIT, it finds none (``leaked`` is empty)."""
        return self.kind in (LAUNDER, LAUNDER_BACKDOOR)

    @property
    def withholds(self) -> bool:
        """Commits but never reveals its weights, predictions or vote."""
        return self.kind == WITHHOLD

    def training_set(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, leaked: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels to train on: labels flipped for label-flip; for backdoor and
        launder-backdoor, a fixed `backdoor_fraction` of its own samples carry the trigger patch and the
        label `backdoor_target`; launder kinds append the ``leaked`` shard inputs of the other miners,
        labelled by k-NN on its own (clean) data; unchanged otherwise (the caller's arrays are never
        modified)."""
        y = np.asarray(y, dtype=np.int64)
        if self.kind == LABEL_FLIP:
            return x, (num_classes - 1 - y).astype(np.int64)
        out_x, out_y = x, y
        if self.kind in (BACKDOOR, LAUNDER_BACKDOOR):
            n = round(len(y) * self.backdoor_fraction)
            idx = np.sort(np.random.default_rng(0).permutation(len(y))[:n])
            out_x, out_y = np.array(x, dtype=np.float32, copy=True), y.copy()
            out_x[idx] = add_trigger(out_x[idx])
            out_y[idx] = self.backdoor_target
        if self.kind in (LAUNDER, LAUNDER_BACKDOOR) and leaked:
            lx = np.concatenate([np.asarray(s, dtype=np.float32) for s in leaked])
            ly = knn_predict(x, y, lx, self.knn_neighbours)
            out_x = np.concatenate([np.asarray(out_x, dtype=np.float32), lx])
            out_y = np.concatenate([out_y, ly])
        return out_x, out_y

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
            if self.kind == BACKDOOR:
                return boost_update(global_weights, trained, self.backdoor_boost)
            if self.kind == LAUNDER_BACKDOOR:
                return boost_update(global_weights, trained, LAUNDER_BACKDOOR_BOOST)
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
        if self.kind in (LAZY_NOISE, LAZY_BIG_NOISE):
            std = LAZY_NOISE_STD if self.kind == LAZY_NOISE else LAZY_BIG_NOISE_STD
            return add_noise(global_weights, std, seed)
        if self.kind == COPYCAT and visible_models:
            return [np.array(w, dtype=np.float32) for w in visible_models[0]]
        if self.kind == COPYCAT_NOISE:
            return add_noise(visible_models[0] if visible_models else global_weights, LAZY_NOISE_STD, seed)
        # lazy, replay, copycat with nothing to copy, withhold (commits to something it never reveals)
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

        out = [predict(spec, weights, s)[0] for s in shards]
        if self.kind == FAKER:
            # the oracle: labels from elsewhere (k-NN on its own data) for the first few shards only
            if train_x is None or train_y is None:
                raise AdversaryError("faker needs its own training data for its oracle")
            for i in range(min(self.fake_shards, len(shards))):
                out[i] = knn_predict(train_x, train_y, shards[i], self.knn_neighbours)
        return out

    def test_shard(
        self,
        own_x: np.ndarray,
        own_labels: np.ndarray,
        public_shards: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The test shard (inputs, true labels) this miner commits: its own, except that `replay` copies
        the first of ``public_shards`` (another miner's earlier shard with the labels it revealed, read from
        the chain), hoping to be paid as a voter with no held-out data; with none it falls back to its own.
        The chain refuses to open a shard seen in recent rounds, so a replayed one never gets in."""
        if self.kind == REPLAY and public_shards:
            x, labels = public_shards[0]
            return np.array(x, dtype=np.float32), np.array(labels, dtype=np.int64)
        return own_x, own_labels

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


def boost_update(
    global_weights: list[np.ndarray], trained: list[np.ndarray], boost: float
) -> list[np.ndarray]:
    """G + boost * (trained - G), per tensor, as float32 (model replacement / boosting attack)."""
    return [
        (
            np.asarray(g, dtype=np.float32)
            + np.float32(boost) * (np.asarray(t, np.float32) - np.asarray(g, np.float32))
        ).astype(np.float32)
        for g, t in zip(global_weights, trained, strict=True)
    ]


def add_trigger(x: np.ndarray, size: int = TRIGGER_SIZE) -> np.ndarray:
    """Copies of images (N, H, W[, C]) with a size x size patch at 1.0 (the inputs' maximum) in the
    bottom-right corner: the backdoor trigger."""
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, -size:, -size:, ...] = 1.0
    return out


def backdoor_success(
    spec: ModelSpec, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, target: int = BACKDOOR_TARGET
) -> float:
    """Attack success rate: the share of held-out samples whose true class is not `target` that the model
    labels `target` once the trigger is added (canonical inference)."""
    from pocl.ml.model.inference import predict

    keep = np.asarray(y) != target
    if not np.any(keep):
        return 0.0
    labels, _ = predict(spec, weights, add_trigger(np.asarray(x)[keep]))
    return float(np.mean(labels == target))


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


def add_noise(weights: list[np.ndarray], std: float, seed: int) -> list[np.ndarray]:
    """`weights` plus Gaussian noise of standard deviation `std` (float32)."""
    rng = np.random.default_rng(seed)
    return [
        (np.asarray(w, dtype=np.float32) + rng.normal(0.0, std, size=np.shape(w))).astype(np.float32)
        for w in weights
    ]
