"""`/rounds/{n}` JSON (`node.rpc.pocl_views.round_json`) for a round run by the real protocol: the SHARD
phase's start and shard owners, G_{r-1}'s baseline per voter, each voter's information and each
winner's gain over G_{r-1}, next to the score matrix, rewards and slashes."""

from __future__ import annotations

import json

from pocl.consensus.pocl.records import NO_SCORE, RoundRecord
from pocl.ledger.keys import format_address
from pocl.node.rpc.pocl_views import round_json
from pocl.node.simulation.config import SimConfig
from pocl.node.simulation.run import simulate

from tests.support.sim_training import lstsq_train


def test_round_json_shows_the_shard_phase_baseline_information_and_gains() -> None:
    cfg = SimConfig(miners=4, rounds=1, shard_size=20, adversary="withhold:1", centralised=False, seed=3)
    sim = simulate(cfg, lstsq_train, log=lambda _m: None)
    rec = sim.chain.pocl.record(sim.chain.state, 1)
    o = rec.outcome
    assert o is not None and o.winners
    doc = json.loads(json.dumps(round_json(rec)))
    assert doc["final"] and doc["phase"] == "done"
    assert (
        doc["start_height"]
        < doc["shard_start"]
        < doc["predict_start"]
        < doc["vote_start"]
        <= doc["end_height"]
    )
    parts = doc["participants"]
    assert parts["shard_owners"] == [format_address(a) for a in rec.shard_owners]
    assert set(parts["shard_owners"]) == set(parts["committers"])  # everyone opened its shard
    withholder = format_address(sim.miners[3].address)
    assert withholder in parts["shard_owners"] and withholder not in parts["predictors"]
    m = doc["score_matrix"]
    assert len(m["baseline_bps"]) == len(m["columns"]) == len(m["information"]) == len(o.voters)
    assert m["baseline_bps"] == [None if b == NO_SCORE else b for b in o.baseline]
    assert all(b is None or 0 <= b <= 10_000 for b in m["baseline_bps"])
    assert m["information"] == [None if i == NO_SCORE else i for i in o.information]
    assert doc["gains"] == {format_address(w): g for w, g in zip(o.winners, o.gains, strict=True)}
    assert list(doc["gains"]) == doc["winners"]
    assert (
        doc["total_reward"] == sum(r["amount"] for r in doc["rewards"]) <= sim.chain.pocl.params.round_reward
    )
    assert [s["address"] for s in doc["slashes"]] == [withholder]
    assert doc["slashes"][0]["evidence"][-1] == b"weights".hex()  # withheld its weights, not its shard


def test_open_round_json_has_the_same_keys_before_it_is_final() -> None:
    rec = RoundRecord.open(5, 100, [b"\x01" * 20, b"\x02" * 20], b"\x00" * 32)
    doc = round_json(rec)
    assert not doc["final"] and doc["shard_start"] == 0 and doc["participants"]["shard_owners"] == []
    assert doc["gains"] == {} and doc["score_matrix"] is None
