"""A miner never commits a test shard the chain will refuse as already seen (pocl_shard_seen): the
draw is checked against the chain's recent-fingerprint index and replaced by the next rounds' slots
(`node.miner_payloads.fresh_shard_indices`), or the miner sits the round out, logging why - in the
node's miner and in the simulator's miners alike; `replay` alone still commits the seen shard."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_SHARD, ShardPayload
from pocl.ledger.tx import SignedTx
from pocl.ml.adversary import Behaviour
from pocl.ml.shards import MinerData
from pocl.node.miner import Miner, MinerSettings
from pocl.node.miner_payloads import (
    MAX_SHARD_DRAWS,
    NoFreshShard,
    chain_shard_is_fresh,
    fresh_shard_indices,
    round_secrets,
)
from pocl.node.miner_store import MinerStore
from pocl.node.simulation.config import SimConfig
from pocl.node.simulation.run import Simulation, simulate

from tests.support.sim_training import lstsq_train

SHARD = 20


@pytest.fixture(scope="module")
def one_round() -> Simulation:
    """A chain whose round 1 is final: its three opened shards are in the recent-fingerprint index."""
    cfg = SimConfig(miners=3, rounds=1, shard_size=SHARD, centralised=False, seed=3)
    return simulate(cfg, lstsq_train, log=lambda _m: None)


def opened_shard(sim: Simulation, i: int) -> np.ndarray:
    """Miner i's round-1 shard as its `pocl.shard` tx opened it (a final round's entries are deleted)."""
    for blk in sim.chain.blocks:
        for raw in blk.txs:
            stx = SignedTx.decode(raw)
            if stx.tx.kind == KIND_POCL_SHARD and stx.sender_address == sim.miners[i].address:
                return ShardPayload.from_list(stx.tx.payload).test_x.to_numpy(1 << 30)
    raise AssertionError(f"miner {i} opened no shard")


def with_slot_replaced(data: MinerData, round_: int, x: np.ndarray) -> MinerData:
    """`data` whose pool holds the rows `x` at round `round_`'s slot: its own draw for that round is x."""
    pool_x = np.array(data.pool_x, copy=True)
    pool_x[data.test_shard_indices(SHARD, round_)] = x
    return dataclasses.replace(data, pool_x=pool_x)


def secrets_for(sim: Simulation, data: MinerData, behaviour: str = "honest", **kw: Any) -> Any:
    chain = sim.chain
    g = chain.global_weights(chain.state.global_model_hash)
    return round_secrets(
        Behaviour(behaviour),
        chain.pocl.params,
        2,
        chain.state.global_model_hash,
        g,
        g,
        data,
        salt=b"\x07" * 32,
        model_seed=1,
        shard_is_fresh=chain_shard_is_fresh(chain.pocl, chain.state, 2),
        **kw,
    )


def test_chain_freshness_is_the_chains_seen_index(one_round: Simulation) -> None:
    chain = one_round.chain
    fresh = chain_shard_is_fresh(chain.pocl, chain.state, 2)
    x = opened_shard(one_round, 0)
    assert not fresh(x) and not fresh(x[::-1])  # row order does not make a new shard
    assert fresh(x[1:]) and fresh(one_round.miners[0].data.pool_x[:SHARD] + 1.0)
    # as the chain judges it: seen within memory_rounds rounds
    memory = chain.pocl.params.memory_rounds
    assert not chain_shard_is_fresh(chain.pocl, chain.state, 1 + memory)(x)
    assert chain_shard_is_fresh(chain.pocl, chain.state, 2 + memory)(x)


def test_a_seen_draw_is_replaced_by_the_next_rounds_slot(one_round: Simulation) -> None:
    own = one_round.miners[0].data
    assert np.array_equal(
        fresh_shard_indices(one_round.chain.pocl.params, 2, own), own.test_shard_indices(SHARD, 2)
    )
    # miner 0's round-2 slot holds exactly the shard miner 1 opened in round 1 (rows reordered)
    data = with_slot_replaced(own, 2, opened_shard(one_round, 1)[::-1])
    sec = secrets_for(one_round, data)
    assert np.array_equal(sec.shard_indices, data.test_shard_indices(SHARD, 3))
    assert np.array_equal(sec.test_x, data.pool_x[data.test_shard_indices(SHARD, 3)])
    assert np.array_equal(sec.labels, data.pool_y[data.test_shard_indices(SHARD, 3)])
    # without a check (shard_is_fresh None) the draw is the round's own slot, as before
    plain = fresh_shard_indices(one_round.chain.pocl.params, 2, data, None)
    assert np.array_equal(plain, data.test_shard_indices(SHARD, 2))


def test_no_fresh_shard_is_an_error_naming_the_pool(one_round: Simulation) -> None:
    # a pool that is exactly one opened shard: every draw is that set of samples
    x = opened_shard(one_round, 0)
    data = MinerData(
        one_round.miners[0].data.x_train, one_round.miners[0].data.y_train, x, np.zeros(SHARD, np.int64), 5
    )
    calls: list[int] = []

    def stale(_x: np.ndarray) -> bool:
        calls.append(1)
        return False

    with pytest.raises(NoFreshShard, match=f"pool of {SHARD} samples"):
        fresh_shard_indices(one_round.chain.pocl.params, 2, data, stale)
    assert len(calls) == MAX_SHARD_DRAWS  # bounded
    with pytest.raises(NoFreshShard):
        secrets_for(one_round, data)


def test_replay_still_commits_the_seen_shard_it_copies(one_round: Simulation) -> None:
    x = opened_shard(one_round, 1)
    labels = np.arange(SHARD, dtype=np.int64) % 10
    data = with_slot_replaced(one_round.miners[0].data, 2, x)
    sec = secrets_for(one_round, data, "replay", public_shards=[(x, labels)])
    assert np.array_equal(sec.test_x, x) and np.array_equal(sec.labels, labels)
    # with nothing to copy it draws its own slot, unchecked
    sec = secrets_for(one_round, data, "replay")
    assert np.array_equal(sec.shard_indices, data.test_shard_indices(SHARD, 2))


# --------------------------------------------------------------------------- the node's miner


class Mempool:
    def pending_nonce(self, _address: bytes) -> int:
        return 0

    def __contains__(self, _tx_hash: bytes) -> bool:
        return False


class FakeNode:
    """What `node.miner.Miner` reads from its node, over an in-process chain."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.pocl = sim.chain.pocl
        self.params = sim.chain.params
        self.chain = SimpleNamespace(state=sim.chain.state, height=sim.chain.state.height)
        self.genesis = SimpleNamespace(chain_id=sim.chain.chain_id)
        self.mempool = Mempool()
        self.submitted: list[SignedTx] = []
        self.syncing = False

    def submit_tx(self, raw: bytes) -> Any:
        stx = SignedTx.decode(raw)
        self.submitted.append(stx)
        return SimpleNamespace(error=None, tx_hash=stx.hash)


def node_miner(sim: Simulation, data: MinerData, tmp_path: Path) -> tuple[Miner, FakeNode]:
    node = FakeNode(sim)
    miner = Miner(node, sim.miners[0].key, MinerSettings(behavior="lazy"), tmp_path / "miner")  # type: ignore[arg-type]
    miner.data = data
    return miner, node


def test_node_miner_draws_a_fresh_shard(one_round: Simulation, tmp_path: Path) -> None:
    data = with_slot_replaced(one_round.miners[0].data, 2, opened_shard(one_round, 2))
    miner, node = node_miner(one_round, data, tmp_path)
    g_hash = one_round.chain.state.global_model_hash
    asyncio.run(miner._prepare(2, g_hash))
    sec = MinerStore(tmp_path / "miner").load(2)
    assert sec is not None and np.array_equal(sec.shard_indices, data.test_shard_indices(SHARD, 3))
    miner._commit(SimpleNamespace(round=2), sec)  # type: ignore[arg-type]
    assert [s.tx.kind for s in node.submitted] == [KIND_POCL_COMMIT]


def test_node_miner_sits_the_round_out_without_a_fresh_shard(
    one_round: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = opened_shard(one_round, 0)
    own = one_round.miners[0].data
    data = MinerData(own.x_train, own.y_train, x, np.zeros(SHARD, np.int64), 5)
    miner, node = node_miner(one_round, data, tmp_path)
    g_hash = one_round.chain.state.global_model_hash

    async def prepare_then_step() -> None:
        await miner._prepare(2, g_hash)
        miner._ensure_training(2, g_hash)  # does not train again for a round it sits out
        assert miner._train_task is None

    with caplog.at_level(logging.ERROR, logger="pocl.miner"):
        asyncio.run(prepare_then_step())
    assert MinerStore(tmp_path / "miner").load(2) is None
    assert "NOT COMMITTING: no fresh test shard" in caplog.text and "pocl_shard_seen" in caplog.text
    # secrets that somehow hold a seen shard are never committed either
    stale = dataclasses.replace(secrets_for(one_round, own), test_x=x)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="pocl.miner"):
        miner._commit(SimpleNamespace(round=2), stale)  # type: ignore[arg-type]
    assert node.submitted == [] and "already seen its saved test shard" in caplog.text


# --------------------------------------------------------------------------- the simulator's miners


def test_sim_miner_with_a_pool_of_one_shard_sits_out_instead_of_being_penalised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = simulate(
        SimConfig(miners=3, rounds=1, centralised=False, seed=4), lstsq_train, log=lambda _m: None
    )
    pools = [len(m.data.pool_y) for m in probe.miners]
    size = min(pools)  # the smallest pool's miner draws the same set of samples every round
    cfg = SimConfig(miners=3, rounds=2, shard_size=size, centralised=False, seed=4)
    with caplog.at_level(logging.ERROR, logger="pocl.simulation"):
        sim = simulate(cfg, lstsq_train, log=lambda _m: None)
    stuck = {i for i, p in enumerate(pools) if p == size}
    r1, r2 = sim.report.rounds
    assert r1.participants == [0, 1, 2]
    assert set(r2.participants) == {0, 1, 2} - stuck and stuck
    assert not r1.slashed and not r2.slashed  # nobody committed a shard the chain refuses
    assert "no fresh test shard" in caplog.text
    rec = sim.chain.pocl.record(sim.chain.state, 2)
    assert rec.shard_owners == rec.committers
