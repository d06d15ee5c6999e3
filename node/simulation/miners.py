"""A simulated miner: its private data, its round secrets, and the txs it sends in each phase.

It decides exactly what a node's miner (`node.miner`) decides in the same phase - commit when
eligible (to a shard the chain has not seen), open its shard when it committed, reveal when its shard
was accepted, vote when its reveal matched - and builds the same payloads with the same code
(`node.miner_payloads`). Only the plumbing differs: training is a function call instead
of a worker process, the salt comes from the run seed, and txs go straight into the next block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pocl.consensus.pocl import schedule
from pocl.consensus.pocl.records import PHASE_COMMIT, PHASE_PREDICT, PHASE_SHARD, PHASE_VOTE, RoundRecord
from pocl.consensus.pocl.txs import (
    KIND_POCL_COMMIT,
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    KIND_POCL_VOTE,
    SALT_LEN,
    PredictPayload,
    ShardPayload,
    VotePayload,
)
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import SignedTx
from pocl.ml.adversary import REPLAY, Behaviour
from pocl.ml.model.registry import ModelSpec
from pocl.ml.model.weights import decode_weights
from pocl.ml.shards import MinerData
from pocl.node.miner_payloads import (
    NoFreshShard,
    chain_shard_is_fresh,
    commit_payload,
    predict_payload,
    round_secrets,
    shard_payload,
    vote_payload,
)
from pocl.node.miner_store import RoundSecrets
from pocl.node.simulation.chain import InProcessChain
from pocl.node.simulation.config import sub_seed

log = logging.getLogger("pocl.simulation")

# (spec, G_{r-1}, x, y, seed) -> trained weights
TrainFn = Callable[[ModelSpec, list[np.ndarray], np.ndarray, np.ndarray, int], list[np.ndarray]]


@dataclasses.dataclass
class SimMiner:
    index: int
    key: PrivateKey
    behaviour: Behaviour
    data: MinerData
    secrets: dict[int, RoundSecrets] = dataclasses.field(default_factory=dict)
    no_fresh_shard: set[int] = dataclasses.field(default_factory=set)  # rounds it sat out (see _secrets)

    @property
    def address(self) -> bytes:
        return self.key.address


@dataclasses.dataclass
class RoundWork:
    """What the miners did for one round outside the chain (for the report)."""

    train_seconds: float = 0.0


def phase_txs(
    chain: InProcessChain,
    rec: RoundRecord,
    miners: list[SimMiner],
    train: TrainFn,
    seed: int,
    work: RoundWork,
) -> list[SignedTx]:
    """The txs the miners send for the block at `chain.next_height`, given the round's record then."""
    params = chain.pocl.params
    spec = params.model_spec()
    out: list[SignedTx] = []
    if rec.phase == PHASE_COMMIT:
        for m in miners:
            if m.address in rec.eligible and m.address not in rec.committers:
                if m.behaviour.commits_late and not _last_to_commit(chain, rec, m):
                    continue
                sec = _secrets(chain, rec, m, train, seed, work)
                if sec is None:
                    continue
                out.append(
                    chain.sign(m.key, KIND_POCL_COMMIT, commit_payload(chain.chain_id, m.address, sec))
                )
    elif rec.phase == PHASE_SHARD:
        for m in miners:
            if m.address in rec.committers and m.address not in rec.shard_owners:
                stx = chain.offer(m.key, KIND_POCL_SHARD, shard_payload(m.secrets[rec.round]))
                if stx is not None:  # a shard the chain refuses (replayed) never gets in
                    out.append(stx)
    elif rec.phase == PHASE_PREDICT:
        data = chain.pocl.round_data(chain.state, rec)
        for m in miners:
            if (
                m.address in rec.shard_owners
                and m.address not in rec.predictors
                and not m.behaviour.withholds
            ):
                payload = predict_payload(m.behaviour, spec, m.address, m.secrets[rec.round], data, m.data)
                out.append(chain.sign(m.key, KIND_POCL_PREDICT, payload))
    elif rec.phase == PHASE_VOTE:
        data = chain.pocl.round_data(chain.state, rec)
        for m in miners:
            if m.address in rec.revealed and m.address not in rec.voters:
                payload = vote_payload(m.behaviour, m.address, m.secrets[rec.round], data)
                out.append(chain.sign(m.key, KIND_POCL_VOTE, payload))
    return out


def _secrets(
    chain: InProcessChain,
    rec: RoundRecord,
    m: SimMiner,
    train: TrainFn,
    seed: int,
    work: RoundWork,
) -> RoundSecrets | None:
    """Train from G_{r-1} (if the behaviour trains) and draw the round's shard; once per round. The shard
    is one the chain has not seen (as a node's miner draws it; not for `replay`); None, and the miner
    sits the round out, when no fresh one can be drawn."""
    if rec.round in m.no_fresh_shard:
        return None
    if rec.round in m.secrets:
        return m.secrets[rec.round]
    params = chain.pocl.params
    spec = params.model_spec()
    g = chain.global_weights(rec.prev_model_hash)
    trained = None
    t0 = time.monotonic()
    if m.behaviour.trains:
        leaked = None
        if m.behaviour.commits_late:
            leaked = [x for a, x in public_shard_inputs(chain, rec).items() if a != m.address]
        x, y = m.behaviour.training_set(m.data.x_train, m.data.y_train, params.classes, leaked)
        trained = train(spec, g, x, y, sub_seed(seed, "train", rec.round, m.index))
    train_s = time.monotonic() - t0
    work.train_seconds += train_s
    copy_from = public = None
    if m.behaviour.copies_models:
        copy_from = [
            decode_weights(spec, w) for a, w in revealed_models(chain, rec.round - 1) if a != m.address
        ]
    if m.behaviour.kind == REPLAY:
        public = [(x, y) for a, x, y in revealed_shards(chain, rec.round - 1) if a != m.address]
    try:
        sec = round_secrets(
            m.behaviour,
            params,
            rec.round,
            rec.prev_model_hash,
            g,
            trained,
            m.data,
            salt=hashlib.sha256(repr((seed, "salt", rec.round, m.index)).encode()).digest()[:SALT_LEN],
            model_seed=sub_seed(seed, "model", rec.round, m.index),
            train_s=train_s,
            visible_models=copy_from,
            public_shards=public,
            shard_is_fresh=chain_shard_is_fresh(chain.pocl, chain.state, rec.round),
        )
    except NoFreshShard as exc:
        log.error("miner %d not committing: no fresh test shard: %s", m.index, exc)
        m.no_fresh_shard.add(rec.round)
        return None
    m.secrets = {rec.round: sec}  # earlier rounds' secrets are never needed again
    return sec


def _last_to_commit(chain: InProcessChain, rec: RoundRecord, m: SimMiner) -> bool:
    """Every other eligible miner has committed, or the next block is COMMIT's last."""
    others = set(rec.eligible) - {m.address}
    last = schedule.phase_start(rec) + chain.pocl.params.train_blocks - 1
    return others <= set(rec.committers) or chain.next_height >= last


# --------------------------------------------------------------------------- what a miner reads from the chain


def public_shard_inputs(chain: InProcessChain, rec: RoundRecord) -> dict[bytes, np.ndarray]:
    """The shard inputs of round `rec.round` that are public on chain now, by owner: none while COMMIT
    is open (commits carry commitments only; shards are opened in SHARD), so a late committer finds
    nothing to launder."""
    data = chain.pocl.round_data(chain.state, rec)
    return {a: e.test_x.to_numpy(1 << 30) for a, e in sorted(data.shards.items())}


_ROUND_PAYLOADS = {
    KIND_POCL_PREDICT: PredictPayload,
    KIND_POCL_SHARD: ShardPayload,
    KIND_POCL_VOTE: VotePayload,
}


def _final_round_txs(
    chain: InProcessChain, round_: int
) -> tuple[RoundRecord | None, dict[str, dict[bytes, Any]]]:
    """Round `round_`'s record if final, and the payloads of its predict, shard and vote txs by kind, then
    by sender, read in one pass over the round's blocks (as a node's miner reads them over RPC: a final
    round's entries are deleted from state)."""
    rec = chain.pocl.record(chain.state, round_) if round_ >= 1 else None
    out: dict[str, dict[bytes, Any]] = {kind: {} for kind in _ROUND_PAYLOADS}
    if rec is None or rec.outcome is None:
        return None, out
    for block in chain.blocks:
        if rec.start_height <= block.height <= rec.end_height:
            for raw in block.txs:
                stx = SignedTx.decode(raw)
                payload_type = _ROUND_PAYLOADS.get(stx.tx.kind)
                if payload_type is not None:
                    payload = payload_type.from_list(stx.tx.payload)
                    if payload.round == round_:
                        out[stx.tx.kind][stx.sender_address] = payload
    return rec, out


def revealed_models(chain: InProcessChain, round_: int) -> list[tuple[bytes, bytes]]:
    """(address, weights) revealed in round `round_` (finalized), the outcome's ranking first, then the
    other revealers by address, from the round's pocl.predict txs."""
    rec, txs = _final_round_txs(chain, round_)
    predicts = txs[KIND_POCL_PREDICT]
    if rec is None or rec.outcome is None:
        return []
    order = rec.outcome.ranking + sorted(a for a in rec.revealed if a not in rec.outcome.ranking)
    return [(a, predicts[a].weights) for a in order if a in predicts]


def revealed_shards(chain: InProcessChain, round_: int) -> list[tuple[bytes, np.ndarray, np.ndarray]]:
    """(address, test inputs, revealed labels) of round `round_`'s voters whose labels opened their
    commitment (the outcome's accuracy columns), by address, from the round's shard and vote txs."""
    rec, txs = _final_round_txs(chain, round_)
    shards, votes = txs[KIND_POCL_SHARD], txs[KIND_POCL_VOTE]
    if rec is None or rec.outcome is None:
        return []
    max_bytes = 1 << 30
    return [
        (a, shards[a].test_x.to_numpy(max_bytes), votes[a].labels.to_numpy(max_bytes))
        for a in rec.outcome.voters
        if a in shards and a in votes
    ]
