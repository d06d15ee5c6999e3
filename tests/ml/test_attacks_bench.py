"""scripts/bench/attacks.py on a tiny configuration (numpy training), and the simulated attackers
reading the chain as a node's miner would: the copycat reveals a model revealed in the previous round,
the lazy miner G_{r-1}; the replayer commits to another miner's previous shard, which the chain refuses
to open in SHARD (already seen), so it is penalised as a withholder; the launderer commits last but
finds no shard inputs to launder (commits carry commitments only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pocl.consensus.pocl.records import PENALTY_WITHHOLD
from pocl.consensus.pocl.txs import (
    KIND_POCL_COMMIT,
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    CommitPayload,
    PredictPayload,
    ShardPayload,
    shard_commitment,
    shard_digest,
)
from pocl.ledger import codec
from pocl.ledger.tx import SignedTx
from pocl.ml.model.weights import decode_weights, weights_hash
from pocl.node.simulation import miners as sim_miners
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


def test_replayer_commits_a_seen_shard_that_the_chain_refuses(free_riders: Simulation) -> None:
    sim = free_riders
    chain, replayer = sim.chain, sim.miners[4]
    # round 1: nothing public yet, so it commits to its own shard and opens it
    own1 = replayer.data.pool_x[replayer.data.test_shard_indices(20, 1)]
    shard1 = ShardPayload.from_list(_round_txs(sim, 1, KIND_POCL_SHARD)[replayer.address].tx.payload)
    assert np.array_equal(shard1.test_x.to_numpy(1 << 30), own1)
    assert replayer.address in chain.pocl.record(chain.state, 1).shard_owners
    # round 2: it commits to another miner's round-1 shard (with that miner's revealed labels) ...
    rec = chain.pocl.record(chain.state, 2)
    commit = CommitPayload.from_list(_round_txs(sim, 2, KIND_POCL_COMMIT)[replayer.address].tx.payload)
    public = [(a, px) for a, px, _ in revealed_shards(chain, 1) if a != replayer.address]
    assert public
    copied = shard_digest(public[0][1])
    assert commit.shard_commit == shard_commitment(chain.chain_id, 2, replayer.address, copied)
    # ... which the chain has seen (pocl_shard_seen): its shard tx never gets in, it ends SHARD without
    # a shard, cannot reveal, and is penalised as a withholder of its shard
    assert chain.pocl.seen_recently(chain.state, copied, 2)
    assert replayer.address in rec.committers and replayer.address not in rec.shard_owners
    assert replayer.address not in _round_txs(sim, 2, KIND_POCL_SHARD)
    assert replayer.address not in rec.predictors
    assert set(rec.shard_owners) == set(rec.committers) - {replayer.address}
    (penalty,) = [p for p in rec.outcome.penalties if p.miner == replayer.address]
    assert penalty.kind == PENALTY_WITHHOLD and codec.decode(penalty.evidence)[-1] == b"shard"
    assert all(p.miner != replayer.address for p in rec.outcome.payouts)
    # jailed: it sits round 3 out
    assert replayer.address not in chain.pocl.record(chain.state, 3).eligible
    totals = sim.report.totals()["replay"]
    assert totals.rewards == 0 and totals.penalties == 1


def test_launderer_commits_last_but_finds_no_shard_inputs_to_launder(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    public_at_commit: list[dict[bytes, np.ndarray]] = []
    real_public = sim_miners.public_shard_inputs

    def spy_public(chain, rec):  # type: ignore[no-untyped-def]
        public_at_commit.append(real_public(chain, rec))
        return public_at_commit[-1]

    monkeypatch.setattr(sim_miners, "public_shard_inputs", spy_public)

    def train(spec, g, x, y, seed):  # type: ignore[no-untyped-def]
        seen.append(len(y))
        return lstsq_train(spec, g, x, y, seed)

    def run(adversary: str) -> Simulation:
        cfg = SimConfig(miners=3, rounds=1, shard_size=20, adversary=adversary, centralised=False, seed=3)
        return simulate(cfg, train, log=lambda _m: None)

    sim = run("launder:1")
    heights = {}
    for b in sim.chain.blocks:
        for raw in b.txs:
            stx = SignedTx.decode(raw)
            if stx.tx.kind == KIND_POCL_COMMIT:
                heights[stx.sender_address] = b.height
    launderer = sim.miners[2]
    assert sim.report.behaviours[2] == "launder"
    assert heights[launderer.address] > max(h for a, h in heights.items() if a != launderer.address)
    # it looked during COMMIT, after every other miner had committed: no shard input is public yet
    assert public_at_commit == [{}]
    assert seen[-1] == len(launderer.data.y_train)  # its own data only, nothing laundered
    # so it is just an honest miner committing late: the same model and slots as the honest run's
    honest = run("")
    r, h = sim.report.rounds[0], honest.report.rounds[0]
    assert r.winners == h.winners and r.rewards == h.rewards
    assert revealed_models(sim.chain, 1) == revealed_models(honest.chain, 1)
    rounds = sim.report.rounds
    slot_share = sum(r.winners.count(2) for r in rounds) / sum(len(r.winners) for r in rounds)
    assert slot_share <= 1 / 3  # not above the fair share
