"""scripts/bench/attacks.py on a tiny configuration (numpy training), and the simulated attackers
reading the chain as a node's miner would: the copycat reveals a model revealed in the previous round,
the replayer commits another miner's previous shard with its revealed labels, the lazy miner G_{r-1}."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, CommitPayload, PredictPayload
from pocl.ledger.tx import SignedTx
from pocl.ml.model.weights import decode_weights, weights_hash
from pocl.node.simulation.config import SimConfig
from pocl.node.simulation.miners import revealed_models, revealed_shards
from pocl.node.simulation.run import Simulation, simulate

from scripts.bench.attacks import ATTACKS, main
from tests.support.sim_training import lstsq_train

KEYS = {
    "kind", "reward_ratio", "slot_share", "fair_share", "accuracy", "honest_accuracy", "backdoor_asr",
    "honest_penalties", "targets", "per_seed",
}  # fmt: skip


def test_bench_json_has_every_kind_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "attacks.json"
    argv = ["--seeds", "1", "--rounds", "2", "--miners", "4", "--shard-size", "20", "--json", str(out)]
    assert main(argv, train=lstsq_train) == 0
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("python -m scripts.bench.attacks") and "--seeds 1" in doc["command"]
    assert doc["params"]["miners"] == 4 and doc["params"]["rounds"] == 2 and doc["params"]["seeds"] == [0]
    rows = {r["kind"]: r for r in doc["attacks"]}
    assert list(rows) == list(ATTACKS)
    for word in ("lazy", "copycat", "replay", "faker", "backdoor"):
        assert any(word in k for k in rows), word
    for kind, r in rows.items():
        assert set(r) >= KEYS, kind
        assert r["fair_share"] == 0.25 and 0 <= r["slot_share"] <= 1
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["honest_accuracy"] <= 1
        assert isinstance(r["reward_ratio"], float) and r["honest_reward"] > 0
        assert (r["backdoor_asr"] is None) == ("backdoor" not in kind)
        assert r["honest_penalties"] == 0  # honest miners are never penalised
    assert 0 <= rows["boosted-backdoor"]["backdoor_asr"] <= 1
    printed = capsys.readouterr().out
    assert all(k in printed for k in ATTACKS) and "reward_ratio" in printed


def test_bench_rejects_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--kinds", "lazy,teleport"], train=lstsq_train)
    assert "teleport" in capsys.readouterr().err


def _round_txs(sim: Simulation, round_: int, kind: str) -> dict[bytes, SignedTx]:
    rec = sim.chain.pocl.record(sim.chain.state, round_)
    out = {}
    for b in sim.chain.blocks:
        if rec.start_height <= b.height <= rec.end_height:
            for raw in b.txs:
                stx = SignedTx.decode(raw)
                if stx.tx.kind == kind:
                    out[stx.sender_address] = stx
    return out


@pytest.fixture(scope="module")
def free_riders() -> Simulation:
    cfg = SimConfig(
        miners=5, rounds=3, shard_size=20, adversary="lazy:1,copycat:1,replay:1", centralised=False, seed=2
    )
    return simulate(cfg, lstsq_train, log=lambda _m: None)


def test_copycat_reveals_a_model_revealed_in_the_previous_round(free_riders: Simulation) -> None:
    sim = free_riders
    copycat, lazy = sim.miners[3], sim.miners[2]
    spec = sim.chain.pocl.params.model_spec()
    for r in (2, 3):
        mine = PredictPayload.from_list(_round_txs(sim, r, KIND_POCL_PREDICT)[copycat.address].tx.payload)
        before = revealed_models(sim.chain, r - 1)
        others = [w for a, w in before if a != copycat.address]
        assert before and mine.weights == others[0]  # the best-ranked other model of round r-1
        prev = sim.chain.pocl.record(sim.chain.state, r).prev_model_hash
        lazy_w = PredictPayload.from_list(_round_txs(sim, r, KIND_POCL_PREDICT)[lazy.address].tx.payload)
        assert weights_hash(decode_weights(spec, lazy_w.weights)) == prev  # lazy: G_{r-1} itself
    assert revealed_models(sim.chain, 0) == [] and revealed_models(sim.chain, 99) == []


def test_replayer_commits_another_miners_previous_shard(free_riders: Simulation) -> None:
    sim = free_riders
    replayer = sim.miners[4]
    for r in (2, 3):
        commit = CommitPayload.from_list(_round_txs(sim, r, KIND_POCL_COMMIT)[replayer.address].tx.payload)
        x = commit.test_x.to_numpy(1 << 30)
        public = [(a, px, py) for a, px, py in revealed_shards(sim.chain, r - 1) if a != replayer.address]
        assert public and np.array_equal(x, public[0][1])  # another miner's shard from round r-1
        own = replayer.data.pool_x[replayer.data.test_shard_indices(20, r)]
        assert not np.array_equal(x, own)
    # round 1: nothing public yet, so it commits its own shard
    commit1 = CommitPayload.from_list(_round_txs(sim, 1, KIND_POCL_COMMIT)[replayer.address].tx.payload)
    own1 = replayer.data.pool_x[replayer.data.test_shard_indices(20, 1)]
    assert np.array_equal(commit1.test_x.to_numpy(1 << 30), own1)


def test_launderer_commits_last_and_trains_on_the_leaked_shards() -> None:
    seen: list[int] = []

    def train(spec, g, x, y, seed):  # type: ignore[no-untyped-def]
        seen.append(len(y))
        return lstsq_train(spec, g, x, y, seed)

    cfg = SimConfig(miners=3, rounds=1, shard_size=20, adversary="launder:1", centralised=False, seed=3)
    sim = simulate(cfg, train, log=lambda _m: None)
    heights = {}
    for b in sim.chain.blocks:
        for raw in b.txs:
            stx = SignedTx.decode(raw)
            if stx.tx.kind == KIND_POCL_COMMIT:
                heights[stx.sender_address] = b.height
    launderer = sim.miners[2]
    assert heights[launderer.address] > max(h for a, h in heights.items() if a != launderer.address)
    n_own = len(launderer.data.y_train)
    assert seen[-1] == n_own + 2 * 20  # its own data plus the two other committed shards
