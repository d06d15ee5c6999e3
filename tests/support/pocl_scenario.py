"""A pure, in-memory PoCL round driver for tests: miners with behaviours, blocks by height.

It plays the part the ledger executor plays on chain: each block applies txs through
`consensus.pocl.validate.accept_*`, then the end-block step of `consensus.pocl.schedule`, and finally
`finalize_round`. Models are cnn-digits with numpy-only weights; data is scikit-learn's bundled digits.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np
from pocl.consensus.pocl.finalize import FinalizeResult, finalize_round
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import (
    CommitEntry,
    PredictEntry,
    RoundData,
    RoundRecord,
    ShardEntry,
    VoteEntry,
)
from pocl.consensus.pocl.schedule import Step, advance, end_block_step, mark_finalized
from pocl.consensus.pocl.txs import (
    CommitPayload,
    NdArray,
    PredictPayload,
    ShardPayload,
    VotePayload,
    build_commit,
    build_predict,
    build_shard,
    build_vote,
    labels_array,
    vote_scores,
)
from pocl.consensus.pocl.validate import accept_commit, accept_predict, accept_shard, accept_vote
from pocl.ledger.keys import PrivateKey
from pocl.ml.model.inference import predict
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import encode_weights, initial_weights, weights_hash

CHAIN_ID = "pocl-test"
SPEC = get_model("cnn-digits")

HONEST = "honest"
KNN = "knn"  # reveals the untrained global model, claims true labels obtained elsewhere (k-NN)
KNN_ZERO = "knn-zero"  # reveals an all-zero model (every logit ties: class 0), claims true labels
WITHHOLD = "withhold"  # commits, never reveals
MODEL_MISMATCH = "model-mismatch"  # reveals weights other than the committed ones
LABEL_MISMATCH = "label-mismatch"  # reveals labels other than the committed ones
VOTE_LIAR = "vote-liar"  # claims scores that differ from the true ones
LABEL_LIAR = "label-liar"  # commits (and reveals) wrong labels for its own shard
SILENT_VOTER = "silent-voter"  # reveals weights, never votes
ABSENT = "absent"  # eligible, never commits
PARTIAL_FAKER = "partial-faker"  # honest model and claims, except the true labels on ONE other shard
# free riders (issue 12 attack 5): honest claims about models that add nothing; never slashable
LAZY = "lazy"  # reveals G_{r-1} itself (re-derived from the round's global model)
LAZY_NOISE = "lazy-noise"  # reveals G_{r-1} plus tiny noise (labels like G_{r-1}: a no-op)
COPY = "copy"  # reveals a model it did not train (tests set `weights` to another miner's earlier model)
SHARD_WITHHOLDER = "shard-withholder"  # commits, never opens its shard
FREE_RIDERS = (LAZY, LAZY_NOISE)
LAZY_NOISE_SCALE = 1e-6


def make_params(**overrides: object) -> PoclParams:
    base = dict(
        test_shard_size=20,
        winners=2,
        train_blocks=4,
        predict_blocks=3,
        vote_blocks=3,
        round_reward=3_001,  # odd, so reward splits have remainders
        voter_share_bps=2_000,
        min_miner_stake=5_000,  # tests.support.pocl_chain.STAKE
        max_miners=8,
    )
    base.update(overrides)
    return PoclParams(**base)  # type: ignore[arg-type]


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return x, d.target.astype(np.int64)


def address_of_index(i: int) -> bytes:
    return PrivateKey.from_seed_text(f"miner-{i}").address


def perturbed(base: list[np.ndarray], seed: int, scale: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(w + rng.normal(0.0, scale, w.shape)).astype(np.float32) for w in base]


@functools.cache
def trained_weights(seed: int) -> tuple[np.ndarray, ...]:
    """A cheaply "trained" cnn-digits model: random conv features + least-squares dense head (numpy only).

    Deterministic per seed; reaches well above chance on digits, so honest miners have real, distinct
    accuracies and confident (decisive) predictions. The least-squares solve runs on one BLAS thread and
    its result is rounded to a 2^-16 grid, so its last bits cannot depend on the thread count another test
    left behind (the golden test pins models built from these weights).
    """
    from pocl.ml.model.inference import logits
    from pocl.ml.model.registry import ModelSpec
    from threadpoolctl import threadpool_limits

    w = initial_weights(SPEC, seed)
    x, y = digits()
    xs, ys = x[:600], y[:600]
    # the network up to the hidden dense layer's relu, as a spec of its own: one pass gives the features
    body = SPEC.layers[:-1]
    hidden = w[-2].shape[0]
    features_spec = ModelSpec("features", SPEC.input_shape, hidden, body)
    f = logits(features_spec, w[:-2], xs).astype(np.float64)
    target = np.eye(10)[ys] * 4.0 - 2.0
    with threadpool_limits(limits=1):
        sol, *_ = np.linalg.lstsq(np.c_[f, np.ones(len(f))], target, rcond=None)
    sol = np.rint(sol * 2.0**16) / 2.0**16
    w[-2] = sol[:-1].astype(np.float32)
    w[-1] = sol[-1].astype(np.float32)
    for a in w:  # cached and shared between tests: a test that edits weights must copy them first
        a.setflags(write=False)
    return tuple(w)


def follow_global(m: Miner, global_weights: list[np.ndarray]) -> None:
    """Free riders take the round's G_{r-1} (LAZY as is, LAZY_NOISE plus tiny noise); others keep theirs."""
    if m.behaviour == LAZY:
        m.weights = [a.copy() for a in global_weights]
    elif m.behaviour == LAZY_NOISE:
        m.weights = perturbed(global_weights, 7_000 + m.index, LAZY_NOISE_SCALE)


@dataclasses.dataclass
class Miner:
    index: int
    behaviour: str
    weights: list[np.ndarray]
    shard_x: np.ndarray
    shard_y: np.ndarray
    predict_batch: int = 256  # honest miners may run inference with another batching ("another machine")
    salt_seed: int = 0  # vary to draw other salts, hence another round seed

    @property
    def address(self) -> bytes:
        return address_of_index(self.index)

    @property
    def salt(self) -> bytes:
        extra = self.salt_seed.to_bytes(8, "big") if self.salt_seed else b""
        return hashlib.sha256(b"salt" + bytes([self.index]) + extra).digest()

    def committed_labels(self) -> NdArray:
        y = self.shard_y
        if self.behaviour == LABEL_LIAR:
            y = (y + 1) % 10
        return labels_array(y)

    def revealed_weights(self) -> list[np.ndarray]:
        if self.behaviour == MODEL_MISMATCH:
            return [w * np.float32(0.5) for w in self.weights]
        return self.weights


@dataclasses.dataclass
class Scenario:
    params: PoclParams
    miners: list[Miner]
    global_weights: list[np.ndarray]
    round: int = 1
    start_height: int = 10
    known_models: frozenset[bytes] = frozenset()  # global model hashes "already on chain" (besides G_{r-1})
    seen_shards: frozenset[bytes] = frozenset()  # shard digests opened in recent rounds

    def by_address(self) -> dict[bytes, Miner]:
        return {m.address: m for m in self.miners}

    def enter_round(self, round_: int, global_weights: list[np.ndarray]) -> None:
        """Round `round_` opened on a chain whose global model is `global_weights` (G_{r-1}): new shards
        (`fresh_shards`), and the free riders take G_{r-1}."""
        self.fresh_shards(round_)
        self.round = round_
        for m in self.miners:
            follow_global(m, global_weights)

    def fresh_shards(self, round_: int) -> None:
        """Give every miner round `round_`'s own held-out shard (a shard is rejected if reused within
        `memory_rounds`); round 1's are the ones `make_scenario` drew, later rounds take the next slices
        of digits, wrapping around well past any memory window a test uses."""
        x, y = digits()
        n = self.params.test_shard_size
        span = len(self.miners) * n
        for m in self.miners:
            lo = 1000 + ((round_ - 1) * span + m.index * n) % (len(y) - 1000 - n)
            m.shard_x, m.shard_y = x[lo : lo + n], y[lo : lo + n]


def make_scenario(
    behaviours: list[str],
    params: PoclParams | None = None,
    trained: bool = True,
) -> Scenario:
    params = params or make_params()
    x, y = digits()
    g = initial_weights(SPEC, params.init_seed)
    miners = []
    n = params.test_shard_size
    for i, b in enumerate(behaviours):
        if b in (KNN, KNN_ZERO):
            w = [np.zeros_like(a) for a in g] if b == KNN_ZERO else [a.copy() for a in g]
        elif trained:
            w = [a.copy() for a in trained_weights(100 + i)]
        else:
            w = perturbed(g, 100 + i, 0.05)
        lo = 1000 + i * n
        miner = Miner(i, b, w, x[lo : lo + n], y[lo : lo + n])
        follow_global(miner, g)
        miners.append(miner)
    return Scenario(params, miners, g)


# --------------------------------------------------------------------------- txs


def commit_payload(s: Scenario, m: Miner) -> CommitPayload:
    labels = m.committed_labels().to_numpy(1 << 20)
    return build_commit(
        CHAIN_ID, s.round, m.address, encode_weights(m.weights), m.shard_x, labels, m.salt, 1000
    )


def shard_payload(s: Scenario, m: Miner) -> ShardPayload:
    return build_shard(s.round, m.shard_x)


def predict_payload(s: Scenario, m: Miner, shard_owners: list[bytes]) -> PredictPayload:
    miners = s.by_address()
    preds = []
    faked = next(o for o in shard_owners if o != m.address)  # the partial faker's one borrowed shard
    for owner in shard_owners:
        if owner == m.address:
            continue
        other = miners[owner]
        if m.behaviour in (KNN, KNN_ZERO) or (m.behaviour == PARTIAL_FAKER and owner == faked):
            labels = other.shard_y.copy()  # "k-NN": (near-)perfect answers not made by the revealed model
        else:
            labels, _ = predict(SPEC, m.weights, other.shard_x, batch_size=m.predict_batch)
        preds.append(labels)
    return build_predict(s.round, encode_weights(m.revealed_weights()), preds)


def vote_payload(
    s: Scenario, m: Miner, record: RoundRecord, predictions: dict[bytes, PredictEntry]
) -> VotePayload:
    committed = m.committed_labels().to_numpy(1 << 20)
    revealed = {p: predictions[p].predictions for p in record.revealed}
    scores = vote_scores(m.address, committed, record.shard_owners, revealed)
    if m.behaviour == VOTE_LIAR and scores:
        scores = [10_000 - v for v in scores]
    labels = (committed + 1) % 10 if m.behaviour == LABEL_MISMATCH else committed
    return build_vote(s.round, labels, m.salt, scores)


# --------------------------------------------------------------------------- driver


@dataclasses.dataclass
class RoundRun:
    record: RoundRecord
    data: RoundData
    result: FinalizeResult
    transitions: list[tuple[int, str]]  # (height, phase entered / "finalize")


def run_round(
    s: Scenario, eligible: list[bytes] | None = None, acts_at: dict[str, int] | None = None
) -> RoundRun:
    """Drive one round block by block. Every miner acts in the first block of each phase unless
    `acts_at[phase]` delays everyone to that block offset within the phase."""
    acts_at = acts_at or {}
    miners = s.miners
    if eligible is None:
        eligible = [m.address for m in miners]
    for m in miners:  # free riders take this round's G_{r-1}, whatever the test set it to
        follow_global(m, s.global_weights)
    rec = RoundRecord.open(s.round, s.start_height, eligible, weights_hash(s.global_weights))
    commits: dict[bytes, CommitEntry] = {}
    shards: dict[bytes, ShardEntry] = {}
    predictions: dict[bytes, PredictEntry] = {}
    votes: dict[bytes, VoteEntry] = {}
    transitions: list[tuple[int, str]] = []
    seen: set[bytes] = set(s.seen_shards)
    h = s.start_height
    phase_first = h
    while True:
        offset = h - phase_first
        txh = hashlib.sha256(h.to_bytes(8, "big")).digest()
        if rec.phase_name == "commit" and offset == acts_at.get("commit", 0):
            for m in miners:
                if m.behaviour == ABSENT:
                    continue
                rec, e = accept_commit(rec, m.address, commit_payload(s, m), s.params, h, txh)
                commits[m.address] = e
        elif rec.phase_name == "shard" and offset == acts_at.get("shard", 0):
            for m in miners:
                if m.address not in commits or m.behaviour == SHARD_WITHHOLDER:
                    continue
                rec, e = accept_shard(
                    rec,
                    m.address,
                    shard_payload(s, m),
                    commits[m.address],
                    s.params,
                    CHAIN_ID,
                    h,
                    txh,
                    lambda d: d in seen,
                )
                seen.add(e.digest)
                shards[m.address] = e
        elif rec.phase_name == "predict" and offset == acts_at.get("predict", 0):
            for m in miners:
                if m.address not in shards or m.behaviour == WITHHOLD:
                    continue
                p = predict_payload(s, m, rec.shard_owners)
                rec, e = accept_predict(rec, m.address, p, commits[m.address], s.params, CHAIN_ID, h, txh)
                predictions[m.address] = e
        elif rec.phase_name == "vote" and offset == acts_at.get("vote", 0):
            for m in miners:
                if m.address not in rec.revealed or m.behaviour == SILENT_VOTER:
                    continue
                v = vote_payload(s, m, rec, predictions)
                rec, e = accept_vote(rec, m.address, v, commits[m.address], s.params, CHAIN_ID, h, txh)
                votes[m.address] = e
        step = end_block_step(rec, h, s.params)
        if step is Step.ADVANCE:
            rec = advance(rec, h)
            transitions.append((h + 1, rec.phase_name))
            phase_first = h + 1
        elif step is Step.FINALIZE:
            data = RoundData.build(rec, commits.values(), shards.values(), predictions.values(), votes.values())
            result = finalize_round(data, s.global_weights, s.params, CHAIN_ID, s.known_models.__contains__)
            rec = mark_finalized(rec, h, result.outcome)
            transitions.append((h, "finalize"))
            return RoundRun(rec, data, result, transitions)
        h += 1
        if h > s.start_height + 1000:
            raise AssertionError("round never finalized")
