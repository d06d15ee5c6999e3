"""What a miner submits in each phase of a round, from its secrets and behaviour (DESIGN §5.2, §8).

One code path for every miner that takes part in rounds: the mining node (`node.miner`) and the round
simulator's miners (`node.simulation`) both call these, so the simulator sends exactly the transactions
a node's miner sends. A behaviour (`ml.adversary`) replaces only the decision it cheats at (model,
predictions, revealed labels, reported scores); the payloads themselves come from the chain's builders
(`consensus.pocl.txs.build_*`).
"""

from __future__ import annotations

import numpy as np
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import RoundData
from pocl.consensus.pocl.txs import (
    CommitPayload,
    PredictPayload,
    VotePayload,
    build_commit,
    build_predict,
    build_vote,
    shards_to_predict,
    vote_scores,
)
from pocl.ml.adversary import Behaviour
from pocl.ml.model.registry import ModelSpec
from pocl.ml.model.weights import decode_weights, encode_weights
from pocl.ml.shards import MinerData
from pocl.node.miner_store import RoundSecrets


def round_secrets(
    behaviour: Behaviour,
    params: PoclParams,
    round_: int,
    prev_model_hash: bytes,
    global_weights: list[np.ndarray],
    trained: list[np.ndarray] | None,
    data: MinerData,
    *,
    salt: bytes,
    model_seed: int,
    train_s: float = 0.0,
    visible_models: list[list[np.ndarray]] | None = None,
    public_shards: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> RoundSecrets:
    """The model to commit (the behaviour's, from its training result) and round r's fresh test shard.

    ``visible_models`` / ``public_shards``: earlier revealed models / (shard, labels) read from the chain,
    for the behaviours that copy them (`Behaviour.make_model`, `Behaviour.test_shard`).
    """
    spec = params.model_spec()
    weights = behaviour.make_model(
        spec, global_weights, trained, seed=model_seed, visible_models=visible_models
    )
    idx = data.test_shard_indices(params.test_shard_size, round_)
    test_x, labels = behaviour.test_shard(data.pool_x[idx], data.pool_y[idx], public_shards)
    return RoundSecrets(
        round=round_,
        prev_model_hash=prev_model_hash,
        weights=encode_weights(weights),
        labels=np.asarray(behaviour.reveal_labels(labels, params.classes), dtype=np.int64),
        salt=salt,
        test_x=np.ascontiguousarray(test_x, dtype=np.float32),
        shard_indices=np.asarray(idx, dtype=np.int64),
        n_train=len(data.y_train),
        train_s=train_s,
    )


def commit_payload(chain_id: str, sender: bytes, sec: RoundSecrets) -> CommitPayload:
    return build_commit(
        chain_id, sec.round, sender, sec.weights, sec.test_x, sec.labels, sec.salt, sec.n_train
    )


def predict_payload(
    behaviour: Behaviour,
    spec: ModelSpec,
    sender: bytes,
    sec: RoundSecrets,
    round_data: RoundData,
    data: MinerData,
) -> PredictPayload:
    """Reveal the committed weights with the behaviour's labels for every other committer's shard."""
    shards = shards_to_predict(sender, {c: e.test_x for c, e in round_data.commits.items()})
    predictions = behaviour.make_predictions(
        spec, decode_weights(spec, sec.weights), shards, train_x=data.x_train, train_y=data.y_train
    )
    return build_predict(sec.round, sec.weights, predictions)


def vote_payload(
    behaviour: Behaviour, sender: bytes, sec: RoundSecrets, round_data: RoundData
) -> VotePayload:
    """Reveal the committed labels and salt with the scores the behaviour reports."""
    rec = round_data.record
    revealed = {p: round_data.predictions[p].predictions for p in rec.revealed if p in round_data.predictions}
    honest = vote_scores(sender, sec.labels, rec.committers, revealed)
    return build_vote(sec.round, sec.labels, sec.salt, behaviour.report_scores(honest))
