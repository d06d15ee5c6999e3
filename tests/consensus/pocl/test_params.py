"""PoclParams: defaults, JSON round trip, validation naming the bad field."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pocl.consensus.pocl.params import PoclParams, PoclParamsError
from pocl.consensus.pocl.schedule import max_round_blocks


def test_defaults_are_a_valid_devnet() -> None:
    p = PoclParams.from_json({})
    assert p.model == "cnn-digits" and p.input_shape == (8, 8, 1) and p.classes == 10
    assert max_round_blocks(p) <= 30  # a round fits in 30 s of 1 s blocks
    assert p.winners_pool + p.voters_pool == p.round_reward
    p.check_model()


def test_json_round_trip_through_text() -> None:
    p = PoclParams(winners=3, voter_share_bps=1234, aggregation="median", input_shape=(8, 8, 1))
    again = PoclParams.from_json(json.loads(json.dumps(p.to_json())))
    assert again == p


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"nope": 1}, "nope"),
        ({"near_tie_margin": 1_000}, "near_tie_margin"),  # removed: verdicts are exact
        ({"winners": 1.5}, "winners"),
        ({"winners": True}, "winners"),
        ({"round_reward": -1}, "round_reward"),
        ({"voter_share_bps": 10_001}, "voter_share_bps"),
        ({"slash_vote_fraud_bps": 20_000}, "slash_vote_fraud_bps"),
        ({"train_blocks": 0}, "train_blocks"),
        ({"verify_shards": 3}, "verify_shards"),  # removed: verification is exhaustive
        ({"input_shape": [8, 8]}, "input_shape"),
        ({"input_shape": "8x8"}, "input_shape"),
        ({"classes": 7}, "classes"),
        ({"model": "no-such-model"}, "model"),
        ({"aggregation": "clip:-1"}, "aggregation"),
        ({"aggregation": "bogus"}, "aggregation"),
        ({"winners": 65, "max_miners": 64}, "winners"),
        ({"test_shard_size": 0}, "test_shard_size"),
    ],
)
def test_bad_values_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(PoclParamsError) as exc:
        PoclParams.from_json(doc)
    assert exc.value.field == field
    assert f"pocl.{field}" in str(exc.value)


def test_not_an_object() -> None:
    with pytest.raises(PoclParamsError):
        PoclParams.from_json([1, 2])  # type: ignore[arg-type]


def test_cross_checks_with_chain_params() -> None:
    from pocl.ledger.params import ChainParams

    PoclParams().check_chain_params(ChainParams())  # the shipped defaults agree
    with pytest.raises(PoclParamsError) as exc:
        PoclParams().check_chain_params(ChainParams(unbonding_blocks=5))
    assert "unbonding" in str(exc.value)
    mnist = PoclParams(model="cnn-mnist", input_shape=(28, 28, 1))
    with pytest.raises(PoclParamsError) as exc:
        mnist.check_chain_params(ChainParams())
    assert exc.value.field == "model" and "max_pocl_tx_bytes" in str(exc.value)
    roomy = ChainParams(max_pocl_tx_bytes=8 * 1024 * 1024, unbonding_blocks=40)
    dataclasses.replace(mnist, predict_blocks=22).check_chain_params(roomy)  # 3 predict txs a block
