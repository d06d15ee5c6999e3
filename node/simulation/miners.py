"""A simulated miner: its private data, its round secrets, and the txs it sends in each phase.

It decides exactly what a node's miner (`node.miner`) decides in the same phase - commit when
eligible, reveal when it committed, vote when its reveal matched - and builds the same payloads with
the same code (`node.miner_payloads`). Only the plumbing differs: training is a function call instead
of a worker process, the salt comes from the run seed, and txs go straight into the next block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable

import numpy as np
from pocl.consensus.pocl.records import PHASE_COMMIT, PHASE_PREDICT, PHASE_VOTE, RoundRecord
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_VOTE, SALT_LEN
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import SignedTx
from pocl.ml.adversary import COPYCAT, Behaviour
from pocl.ml.model.registry import ModelSpec
from pocl.ml.model.weights import decode_weights
from pocl.ml.shards import MinerData
from pocl.node.miner_payloads import commit_payload, predict_payload, round_secrets, vote_payload
from pocl.node.miner_store import RoundSecrets
from pocl.node.simulation.chain import InProcessChain
from pocl.node.simulation.config import sub_seed

# (spec, G_{r-1}, x, y, seed) -> trained weights
TrainFn = Callable[[ModelSpec, list[np.ndarray], np.ndarray, np.ndarray, int], list[np.ndarray]]


@dataclasses.dataclass
class SimMiner:
    index: int
    key: PrivateKey
    behaviour: Behaviour
    data: MinerData
    secrets: dict[int, RoundSecrets] = dataclasses.field(default_factory=dict)

    @property
    def address(self) -> bytes:
        return self.key.address


@dataclasses.dataclass
class RoundWork:
    """What the miners did for one round outside the chain (for the report)."""

    train_seconds: float = 0.0
    revealed: dict[bytes, bytes] = dataclasses.field(default_factory=dict)  # address -> weights bytes


def phase_txs(
    chain: InProcessChain,
    rec: RoundRecord,
    miners: list[SimMiner],
    train: TrainFn,
    seed: int,
    work: RoundWork,
    visible: list[tuple[bytes, bytes]],
) -> list[SignedTx]:
    """The txs the miners send for the block at `chain.next_height`, given the round's record then.

    `visible`: (address, weights) revealed in the previous round, best ranked first (a copycat's pick).
    """
    params = chain.pocl.params
    spec = params.model_spec()
    out: list[SignedTx] = []
    if rec.phase == PHASE_COMMIT:
        for m in miners:
            if m.address in rec.eligible and m.address not in rec.committers:
                sec = _secrets(chain, rec, m, train, seed, work, visible)
                out.append(
                    chain.sign(m.key, KIND_POCL_COMMIT, commit_payload(chain.chain_id, m.address, sec))
                )
    elif rec.phase == PHASE_PREDICT:
        data = chain.pocl.round_data(chain.state, rec)
        for m in miners:
            if m.address in rec.committers and m.address not in rec.predictors and not m.behaviour.withholds:
                payload = predict_payload(m.behaviour, spec, m.address, m.secrets[rec.round], data, m.data)
                work.revealed[m.address] = payload.weights
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
    visible: list[tuple[bytes, bytes]],
) -> RoundSecrets:
    """Train from G_{r-1} (if the behaviour trains) and draw the round's shard; once per round."""
    if rec.round in m.secrets:
        return m.secrets[rec.round]
    params = chain.pocl.params
    spec = params.model_spec()
    g = chain.global_weights(rec.prev_model_hash)
    trained = None
    t0 = time.monotonic()
    if m.behaviour.trains:
        y = m.behaviour.training_labels(m.data.y_train, params.classes)
        trained = train(spec, g, m.data.x_train, y, sub_seed(seed, "train", rec.round, m.index))
    train_s = time.monotonic() - t0
    work.train_seconds += train_s
    copy_from = None
    if m.behaviour.kind == COPYCAT:
        copy_from = [decode_weights(spec, w) for a, w in visible if a != m.address]
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
    )
    m.secrets = {rec.round: sec}  # earlier rounds' secrets are never needed again
    return sec
