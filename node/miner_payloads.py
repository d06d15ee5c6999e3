"""What a miner submits in each phase of a round, from its secrets and behaviour (DESIGN §5.2, §8).

One code path for every miner that takes part in rounds: the mining node (`node.miner`) and the round
simulator's miners (`node.simulation`) both call these, so the simulator sends exactly the transactions
a node's miner sends. A behaviour (`ml.adversary`) replaces only the decision it cheats at (model,
predictions, revealed labels, reported scores); the payloads themselves come from the chain's builders
(`consensus.pocl.txs.build_*`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import RoundData
from pocl.consensus.pocl.txs import (
    CommitPayload,
    PredictPayload,
    ShardPayload,
    VotePayload,
    build_commit,
    build_predict,
    build_shard,
    build_vote,
    shard_digest,
    shards_to_predict,
    vote_scores,
)
from pocl.ml.adversary import REPLAY, Behaviour
from pocl.ml.model.registry import ModelSpec
from pocl.ml.model.weights import decode_weights, encode_weights
from pocl.ml.shards import MinerData
from pocl.node.miner_store import RoundSecrets

if TYPE_CHECKING:
    from pocl.consensus.pocl.execution import PoclExecution
    from pocl.ledger.state import State


# shard inputs -> whether the chain would accept them as new (not opened in the recent rounds)
ShardIsFresh = Callable[[np.ndarray], bool]
# draws tried for a round's shard: its own slot, then the next rounds' slots (`MinerData.test_shard_indices`)
MAX_SHARD_DRAWS = 8


class NoFreshShard(Exception):
    """Every shard the miner may draw for the round was opened on chain in the recent rounds: the chain
    would refuse it (`pocl_shard_seen`), and committing it would be penalised as withholding the shard."""


def chain_shard_is_fresh(pocl: PoclExecution, state: State, round_: int) -> ShardIsFresh:
    """Freshness as the chain will judge it in round `round_`'s SHARD: the shard's digest is not in the
    recent-fingerprint index (`PoclExecution.seen_recently`), read from `state`."""
    return lambda x: not pocl.seen_recently(state, shard_digest(x), round_)


def freshness_check(behaviour: Behaviour, shard_is_fresh: ShardIsFresh | None) -> ShardIsFresh | None:
    """The check a behaviour's own shard draw must pass: none for `replay`, which deliberately commits
    a shard the chain has seen (and is penalised for it); `shard_is_fresh` for every other behaviour."""
    return None if behaviour.kind == REPLAY else shard_is_fresh


def fresh_shard_indices(
    params: PoclParams, round_: int, data: MinerData, shard_is_fresh: ShardIsFresh | None = None
) -> np.ndarray:
    """Pool indices of round `round_`'s test shard: its own slot (`data.test_shard_indices`), or, when
    `shard_is_fresh` says the chain has seen those inputs, the first fresh one among the next rounds'
    slots (at most `MAX_SHARD_DRAWS` draws in all); raises NoFreshShard when none is fresh."""
    size = params.test_shard_size
    for k in range(MAX_SHARD_DRAWS if shard_is_fresh is not None else 1):
        idx = data.test_shard_indices(size, round_ + k)
        if shard_is_fresh is None or shard_is_fresh(data.pool_x[idx]):
            return idx
    raise NoFreshShard(
        f"round {round_}: the chain has seen every test shard drawn ({MAX_SHARD_DRAWS} draws of "
        f"{size} from a held-out pool of {len(data.pool_y)} samples); the chain would refuse it "
        f"(pocl_shard_seen), so this miner does not commit this round - use a larger held-out pool"
    )


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
    shard_is_fresh: ShardIsFresh | None = None,
) -> RoundSecrets:
    """The model to commit (the behaviour's, from its training result) and round r's fresh test shard.

    ``visible_models`` / ``public_shards``: earlier revealed models / (shard, labels) read from the chain,
    for the behaviours that copy them (`Behaviour.make_model`, `Behaviour.test_shard`).
    ``shard_is_fresh`` (e.g. `chain_shard_is_fresh`): the shard drawn must be one the chain will accept
    (`fresh_shard_indices`; NoFreshShard when none is); not applied to `replay`, which deliberately
    commits a shard the chain has seen.
    """
    spec = params.model_spec()
    weights = behaviour.make_model(
        spec, global_weights, trained, seed=model_seed, visible_models=visible_models
    )
    idx = fresh_shard_indices(params, round_, data, freshness_check(behaviour, shard_is_fresh))
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


def shard_payload(sec: RoundSecrets) -> ShardPayload:
    """Open the committed shard (sent in SHARD, once every model of the round is committed)."""
    return build_shard(sec.round, sec.test_x)


def predict_payload(
    behaviour: Behaviour,
    spec: ModelSpec,
    sender: bytes,
    sec: RoundSecrets,
    round_data: RoundData,
    data: MinerData,
) -> PredictPayload:
    """Reveal the committed weights with the behaviour's labels for every other shard owner's shard."""
    shards = shards_to_predict(sender, {c: e.test_x for c, e in round_data.shards.items()})
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
    honest = vote_scores(sender, sec.labels, rec.shard_owners, revealed)
    return build_vote(sec.round, sec.labels, sec.salt, behaviour.report_scores(honest))
