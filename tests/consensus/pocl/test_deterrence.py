"""Economics that deter (issue 12 attack #7) and phase windows that fit every miner (attack #8).

Prediction fraud must have negative expected value under the params a chain can be started with, and
genesis parameters that break the inequality (docs/pocl-protocol.md §12) or whose phase windows cannot
carry one tx per eligible miner are refused. One implementation: these tests call the very functions
`PoclParams` validation uses.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import pytest
from pocl.consensus.pocl.events import Slashed
from pocl.consensus.pocl.execution import PoclExecution
from pocl.consensus.pocl.params import PoclParams, PoclParamsError
from pocl.consensus.pocl.records import PENALTY_PREDICTION_FRAUD
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_SHARD, KIND_POCL_VOTE
from pocl.genesis.schema import GenesisValidator, build_genesis, load_genesis, shipped_genesis_path
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import BPS, ChainParams
from pocl.ledger.tx import KIND_UNSTAKE, SignedTx, UnstakePayload
from pocl.ml.model.registry import get_model
from pocl.node.devnet.params import DEVNET_CHAIN_PARAMS, devnet_pocl
from pocl.node.simulation.config import SimConfig

from tests.support.pocl_chain import STAKE, Chain, key
from tests.support.pocl_scenario import HONEST, KNN, make_params, make_scenario

V = PrivateKey.from_seed_text("deterrence-validator")
V_CONSENSUS = PrivateKey.from_seed_text("deterrence-validator/consensus")


def shipped_params() -> list[tuple[str, PoclParams, ChainParams]]:
    localnet = load_genesis(shipped_genesis_path("localnet"))
    out = [
        ("defaults", PoclParams(), ChainParams()),
        ("localnet", PoclParams.from_json(localnet.pocl), localnet.params),
        ("tests", make_params(), ChainParams()),
    ]
    for n in (2, 4, 10, 64):
        devnet = PoclParams.from_json(devnet_pocl(n))
        unbonding = max(
            DEVNET_CHAIN_PARAMS.unbonding_blocks, 2 * devnet.max_round_blocks()
        )  # as devnet.network
        out.append(
            (f"devnet-{n}", devnet, dataclasses.replace(DEVNET_CHAIN_PARAMS, unbonding_blocks=unbonding))
        )
    for n in (1, 4, 10, 64):
        out.append((f"sim-{n}", SimConfig(miners=n).pocl_params(get_model("cnn-digits"), 50), ChainParams()))
    return out


# --------------------------------------------------------------------------- economics (attack #7)


@pytest.mark.parametrize("case", shipped_params(), ids=lambda c: c[0])
def test_prediction_fraud_loses_money_under_every_shipped_params(
    case: tuple[str, PoclParams, ChainParams],
) -> None:
    _, params, chain = case
    assert params.slash_prediction_fraud_bps == BPS  # the whole stake
    assert params.prediction_fraud_ev() < 0
    PoclExecution(params, chain)  # and a chain starts with them


def test_exhaustive_verification_catches_every_would_be_winner_so_any_stake_deters() -> None:
    """Verification re-runs every scoring shard of a would-be winner: p = 1 whatever the miner count, and a
    faker's expected gain is minus its whole stake (tests/consensus/pocl/test_seed.py shows the faker of
    one shard among many caught under every seed)."""
    for n in (2, 4, 16, 64, 256):
        for stake, reward in ((1, 10**12), (10_000, 400), (5_000, 3_001)):
            p = PoclParams(max_miners=n, min_miner_stake=stake, round_reward=reward, slash_withhold_bps=BPS,
                           slash_mismatch_bps=BPS, slash_vote_fraud_bps=BPS)  # fmt: skip
            assert p.fraud_catch_probability() == 1
            assert p.prediction_fraud_ev() == -stake


def test_the_old_economics_paid_a_faker_and_are_refused() -> None:
    """The issue's numbers: stake 1,000, fraud slash 30 %, reward 1,000,000; faking 2 of 15 shards."""
    n, v, faked, stake, slash_bps, reward = 15, 3, 2, 1_000, 3_000, 1_000_000
    escape = Fraction(math.comb(n - faked, v), math.comb(n, v))
    old_ev = escape * reward - (1 - escape) * stake * slash_bps // BPS
    assert old_ev > 100_000  # cheating paid handsomely
    with pytest.raises(PoclParamsError) as exc:
        PoclParams(slash_prediction_fraud_bps=slash_bps)
    assert exc.value.field == "slash_prediction_fraud_bps" and "whole stake" in str(exc.value)
    # the same stake and reward today: exhaustive verification leaves no escape, the faker loses its stake
    new = PoclParams(min_miner_stake=stake, round_reward=reward, max_miners=n + 1)
    assert new.prediction_fraud_ev() == -stake


@pytest.mark.parametrize(
    ("pocl", "field"),
    [
        ({"slash_prediction_fraud_bps": 3_000}, "slash_prediction_fraud_bps"),  # partial fraud slash
        ({"slash_vote_fraud_bps": 0}, "slash_vote_fraud_bps"),  # a free offence
        ({"min_miner_stake": 50, "round_reward": 1}, "slash_withhold_bps"),  # 1 % of 50 rounds to 0
    ],
)
def test_genesis_with_a_small_stake_or_slash_is_refused(pocl: dict, field: str) -> None:
    g = build_genesis("deter-1", [GenesisValidator(V.pubkey, V_CONSENSUS.pubkey, 1_000_000, 0)], pocl=pocl)
    with pytest.raises(PoclParamsError) as exc:  # what a node does with its genesis (node.Node)
        PoclExecution(PoclParams.from_json(g.pocl), g.params)
    assert exc.value.field == field


@pytest.fixture(scope="module")
def fraud_chain() -> Chain:
    """A k-NN faker that also tries to save half its stake by unbonding it before it is caught."""
    s = make_scenario([HONEST, HONEST, KNN, HONEST], make_params(first_round_height=2))
    c = Chain(s)
    c.block([])  # height 1; round 1 opens at 2
    c.block(c.miner_txs())  # commit
    c.block(c.miner_txs())  # shard
    predicts = c.miner_txs()
    c.block([*predicts, c.sign(key(2), KIND_UNSTAKE, UnstakePayload(STAKE // 2))])  # predict; unbond half
    c.block(c.miner_txs())  # vote; the round finalizes
    return c


def test_prediction_fraud_forfeits_the_whole_stake_including_unbonding(fraud_chain: Chain) -> None:
    c = fraud_chain
    out = c.pocl.record(c.state, 1).outcome
    knn = c.s.miners[2].address
    assert [(p.miner, p.kind, p.slash_bps) for p in out.penalties] == [(knn, PENALTY_PREDICTION_FRAUD, BPS)]
    acct = c.state.account(knn)
    assert acct.unbonding  # the unbonding entry is still there, and empty
    assert acct.stake == 0 and all(amount == 0 for amount, _ in acct.unbonding)
    assert acct.slashed_total == STAKE
    assert [(e.address, e.slashed) for e in c.events if isinstance(e, Slashed)] == [(knn, STAKE)]
    for m in c.s.miners:  # honest miners keep every unit
        if m.behaviour == HONEST:
            assert c.state.account(m.address).stake == STAKE and c.state.account(m.address).slashed_total == 0


# --------------------------------------------------------------------------- windows (attack #8)


def test_windows_too_small_for_the_eligible_miners_are_refused() -> None:
    """cnn-mnist: 3 predict txs fit in a 16 MiB block, so 4 PREDICT blocks carry 12 of 64 miners' txs."""
    chain = ChainParams(max_pocl_tx_bytes=8 * 1024 * 1024, unbonding_blocks=100)
    mnist = PoclParams(model="cnn-mnist", input_shape=(28, 28, 1))
    with pytest.raises(PoclParamsError) as exc:
        PoclExecution(mnist, chain)
    assert exc.value.field == "predict_blocks"
    assert "carries at most 12 txs" in str(exc.value) and "max_miners = 64" in str(exc.value)
    PoclExecution(dataclasses.replace(mnist, predict_blocks=22), chain)  # 66 >= 64
    PoclExecution(dataclasses.replace(mnist, max_miners=12), chain)  # 12 >= 12
    # the tx-count limit binds too: 20 txs a block x 2 SHARD blocks, then x 3 VOTE blocks, < 64
    few_txs = ChainParams(max_block_txs=20, unbonding_blocks=100)
    with pytest.raises(PoclParamsError) as exc:
        PoclExecution(PoclParams(), few_txs)
    assert exc.value.field == "shard_blocks" and "carries at most 40 txs" in str(exc.value)
    with pytest.raises(PoclParamsError) as exc:
        PoclExecution(PoclParams(shard_blocks=4), few_txs)
    assert exc.value.field == "vote_blocks"
    with pytest.raises(PoclParamsError) as exc:
        PoclExecution(PoclParams(train_blocks=1, shard_blocks=4), few_txs)
    assert exc.value.field == "train_blocks"
    PoclExecution(PoclParams(shard_blocks=4, vote_blocks=4), few_txs)  # 80 >= 64 in every window


def test_shard_windows_too_small_for_the_eligible_miners_shards_are_refused() -> None:
    """The SHARD window carries every committer's test inputs: 1,000 cnn-mnist images (~3 MiB a tx), 5 to
    a 16 MiB block, so 2 SHARD blocks carry 10 of 64 miners' shards."""
    chain = ChainParams(max_pocl_tx_bytes=8 * 1024 * 1024, unbonding_blocks=100)
    mnist = PoclParams(model="cnn-mnist", input_shape=(28, 28, 1), test_shard_size=1_000, predict_blocks=22)
    per_block = chain.max_block_bytes // mnist.max_shard_tx_bytes()
    assert per_block == 5 and mnist.max_shard_tx_bytes() > 1_000 * 28 * 28 * 4  # the images themselves
    assert mnist.max_commit_tx_bytes() < 2_000  # commitments only: COMMIT carries no shard any more
    with pytest.raises(PoclParamsError) as exc:
        PoclExecution(mnist, chain)
    assert exc.value.field == "shard_blocks"
    assert "carries at most 10 txs" in str(exc.value) and "max_miners = 64" in str(exc.value)
    PoclExecution(dataclasses.replace(mnist, shard_blocks=13), chain)  # 65 >= 64
    PoclExecution(dataclasses.replace(mnist, max_miners=10), chain)  # 10 >= 10
    assert PoclParams().max_round_blocks() == 11 + 2 + 4 + 3  # the SHARD window counts in the round


def test_pocl_txs_stay_within_the_size_bounds_the_window_check_uses(fraud_chain: Chain) -> None:
    p = fraud_chain.s.params
    bound = {
        KIND_POCL_COMMIT: p.max_commit_tx_bytes(),
        KIND_POCL_SHARD: p.max_shard_tx_bytes(),
        KIND_POCL_PREDICT: p.max_predict_tx_bytes(),
        KIND_POCL_VOTE: p.max_vote_tx_bytes(),
    }
    seen = set()
    for blk in fraud_chain.blocks:
        for raw in blk.txs:
            kind = SignedTx.decode(raw).tx.kind
            if kind in bound:
                seen.add(kind)
                assert len(raw) <= bound[kind], kind
    assert seen == set(bound)


def test_a_shard_tx_larger_than_a_pocl_tx_or_a_block_is_refused() -> None:
    """Every committer would be slashed as a withholder if its shard tx could never be included: genesis
    refuses a shard size whose tx exceeds `max_pocl_tx_bytes` or `max_block_bytes`, even when the predict
    tx fits (cnn-mnist, 2,000-sample shards: ~6.27 MB shard tx, ~5.81 MB predict tx)."""
    params = PoclParams(
        model="cnn-mnist", input_shape=(28, 28, 1), test_shard_size=2000, shard_blocks=64, predict_blocks=64
    )
    assert params.max_predict_tx_bytes() < 6_000_000 < params.max_shard_tx_bytes()
    chain = ChainParams(max_pocl_tx_bytes=6_000_000, max_block_bytes=64 << 20, unbonding_blocks=400)
    with pytest.raises(PoclParamsError) as err:
        params.check_chain_params(chain)
    assert err.value.field == "test_shard_size" and "shard tx" in err.value.reason
    small_block = dataclasses.replace(chain, max_pocl_tx_bytes=8_000_000, max_block_bytes=6_200_000)
    with pytest.raises(PoclParamsError, match="does not fit in max_block_bytes"):
        params.check_chain_params(small_block)
    params.check_chain_params(
        dataclasses.replace(chain, max_pocl_tx_bytes=8_000_000)
    )  # room for both: accepted
