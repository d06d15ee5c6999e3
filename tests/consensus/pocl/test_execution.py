"""PoCL wired into the ledger executor: rounds run by height through real signed txs and state."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.pocl.events import PhaseStarted, RewardPaid, RoundFinalized, Slashed
from pocl.consensus.pocl.execution import NS_POCL
from pocl.consensus.pocl.records import (
    PENALTY_PREDICTION_FRAUD,
    PHASE_COMMIT,
    PHASE_DONE,
    ROLE_VOTER,
    ROLE_WINNER,
    predict_key,
)
from pocl.consensus.pocl.rewards import split_proportional
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_SHARD, KIND_POCL_VOTE
from pocl.consensus.pocl.validate import E_NO_ROUND, E_NOT_ELIGIBLE, E_WRONG_PHASE
from pocl.ledger.state import full_key
from pocl.ledger.tx import TX_VERSION, SignedTx, Tx, sign_tx
from pocl.ml.model.weights import decode_weights

from tests.support.pocl_chain import BALANCE, FEE, STAKE, Chain, key
from tests.support.pocl_scenario import (
    CHAIN_ID,
    HONEST,
    KNN,
    commit_payload,
    make_params,
    make_scenario,
    perturbed,
    shard_payload,
    vote_payload,
)


@pytest.fixture(scope="module")
def chain() -> Chain:
    s = make_scenario([HONEST, HONEST, KNN, HONEST, HONEST], make_params(first_round_height=2))
    c = Chain(s)
    for _ in range(5):  # heights 1..5: round 1 opens at 2 and closes every phase early
        c.block(c.miner_txs())
    c.block([])  # height 6 opens round 2
    return c


def test_round_runs_on_chain(chain: Chain) -> None:
    p = chain.pocl
    rec1 = p.record(chain.state, 1)
    assert rec1 is not None and rec1.phase == PHASE_DONE
    assert (rec1.start_height, rec1.shard_start, rec1.predict_start, rec1.vote_start, rec1.end_height) == (
        2,
        3,
        4,
        5,
        5,
    )
    assert rec1.shard_owners == rec1.committers == sorted(m.address for m in chain.s.miners)
    out = rec1.outcome
    assert out is not None and not out.void and len(out.winners) == 2
    assert chain.state.global_model_hash == out.model_hash != out.prev_model_hash
    weights = decode_weights(chain.s.params.model_spec(), chain.state.get_model(out.model_hash))
    assert len(weights) == len(chain.s.global_weights)
    # once final, the round's per-miner entries (commits, shards, weights, labels) are deleted: state
    # keeps one record per round, not every miner's data (issue 16: it is held in memory)
    assert all(chain.state.get_raw(NS_POCL, predict_key(1, m)) is None for m in rec1.predictors)
    assert round_entry_keys(chain, 1) == []
    finals = [e for e in chain.events if isinstance(e, RoundFinalized)]
    assert finals and finals[0].round == 1 and finals[0].next_round_start == 6
    phases = [(e.round, e.phase, e.start_height) for e in chain.events if isinstance(e, PhaseStarted)]
    assert phases[:3] == [(1, "shard", 3), (1, "predict", 4), (1, "vote", 5)]


def test_rewards_and_slashes_land_in_accounts(chain: Chain) -> None:
    out = chain.pocl.record(chain.state, 1).outcome
    knn = chain.s.miners[2].address
    assert [(p.miner, p.kind) for p in out.penalties] == [(knn, PENALTY_PREDICTION_FRAUD)]
    acct = chain.state.account(knn)
    expected_slash = STAKE * chain.s.params.slash_prediction_fraud_bps // 10_000
    assert acct.stake == STAKE - expected_slash and acct.slashed_total == expected_slash
    assert acct.jailed_until_round == 1 + chain.s.params.jail_rounds
    assert [e.slashed for e in chain.events if isinstance(e, Slashed)] == [expected_slash]
    params = chain.s.params
    # winners are paid in proportion to their positive gain over G_0 (the whole pool when any gained)
    won = [p for p in out.payouts if p.role == ROLE_WINNER]
    assert [p.miner for p in won] == [w for w, g in zip(out.winners, out.gains) if g > 0]
    assert [p.amount for p in won] == [
        a for a in split_proportional(params.winners_pool, [max(0, g) for g in out.gains]) if a
    ]
    # voters are paid only when their own model won, in proportion to their shards' information
    info = dict(zip(out.voters, out.information))
    paid_voters = sorted(v for v in out.winners if info[v] > 0)
    assert paid_voters, "the scenario must pay at least one voter"
    voted = [p for p in out.payouts if p.role == ROLE_VOTER]
    assert [p.miner for p in voted] == paid_voters
    assert [p.amount for p in voted] == split_proportional(params.voters_pool, [info[v] for v in paid_voters])
    assert any(
        info[v] > 0 for v in out.voters if v not in out.winners
    )  # informative, but did not win: unpaid
    assert knn not in {p.miner for p in out.payouts}
    assert out.total_paid() <= params.round_reward
    assert [(e.address, e.role, e.amount) for e in chain.events if isinstance(e, RewardPaid)] == [
        (p.miner, p.role, p.amount) for p in out.payouts
    ]
    paid = {p.miner: 0 for p in out.payouts}
    for p in out.payouts:
        paid[p.miner] += p.amount
    for m in chain.s.miners:
        a = m.address
        spent = (
            sum(1 for blk in chain.blocks for raw in blk.txs if SignedTx.decode(raw).sender_address == a)
            * FEE
        )
        assert chain.state.account(a).balance == BALANCE - spent + paid.get(a, 0)


def test_next_round_opens_without_the_jailed_miner(chain: Chain) -> None:
    rec2 = chain.pocl.record(chain.state, 2)
    assert rec2 is not None and rec2.start_height == 6
    assert chain.s.miners[2].address not in rec2.eligible and len(rec2.eligible) == 4
    assert rec2.prev_model_hash == chain.state.global_model_hash
    assert chain.pocl.round_info(chain.state)


def test_replay_gives_identical_state_roots(chain: Chain) -> None:
    s = dataclasses.replace(chain.s)
    replay = Chain(s)
    for blk in chain.blocks:  # the same raw bytes, decoded and executed again from genesis
        replay.block([SignedTx.decode(raw) for raw in blk.txs])
    assert replay.roots == chain.roots


def test_bad_pocl_txs_are_rejected_with_stable_codes(chain: Chain) -> None:
    st = chain.state
    rec = chain.pocl.open_record(st)
    assert rec is not None and rec.phase == PHASE_COMMIT
    s = chain.s
    s.round = rec.round
    outsider = key(100)
    nonce = st.account(outsider.address).nonce if st.account(outsider.address) else 0
    tx = sign_tx(
        outsider,
        Tx(
            TX_VERSION,
            CHAIN_ID,
            KIND_POCL_COMMIT,
            outsider.pubkey,
            nonce,
            FEE,
            commit_payload(s, s.miners[0]).to_list(),
        ),
    )
    err = chain.executor.check_tx(st, tx)
    assert err is not None and err.code == E_NOT_ELIGIBLE
    m = s.miners[0]
    k = key(m.index)
    vote = vote_payload(s, m, rec, {})
    tx = sign_tx(
        k,
        Tx(TX_VERSION, CHAIN_ID, KIND_POCL_VOTE, k.pubkey, st.account(k.address).nonce, FEE, vote.to_list()),
    )
    err = chain.executor.check_tx(st, tx)
    assert err is not None and err.code == E_WRONG_PHASE
    # the shard is opened only once COMMIT has closed
    tx = sign_tx(
        k,
        Tx(
            TX_VERSION,
            CHAIN_ID,
            KIND_POCL_SHARD,
            k.pubkey,
            st.account(k.address).nonce,
            FEE,
            shard_payload(s, m).to_list(),
        ),
    )
    err = chain.executor.check_tx(st, tx)
    assert err is not None and err.code == E_WRONG_PHASE
    bad = sign_tx(
        k, Tx(TX_VERSION, CHAIN_ID, KIND_POCL_PREDICT, k.pubkey, st.account(k.address).nonce, FEE, [1, 2])
    )
    err = chain.executor.check_tx(st, bad)
    assert err is not None and err.code == "malformed_tx"


def test_mempool_accepts_commits_for_the_round_about_to_open() -> None:
    s = make_scenario([HONEST, HONEST, HONEST], make_params(first_round_height=2), trained=False)
    c = Chain(s)
    m = s.miners[0]
    k = key(m.index)

    def commit_tx() -> SignedTx:
        nonce = c.state.account(k.address).nonce
        return sign_tx(
            k,
            Tx(TX_VERSION, CHAIN_ID, KIND_POCL_COMMIT, k.pubkey, nonce, FEE, commit_payload(s, m).to_list()),
        )

    err = c.executor.check_tx(c.state, commit_tx())  # next block is height 1: no round yet
    assert err is not None and err.code == E_NO_ROUND
    c.block([])
    assert c.pocl.open_record(c.state) is None  # round 1 opens in the next block's begin step...
    assert c.executor.check_tx(c.state, commit_tx()) is None  # ...and the mempool already accepts for it
    c.block([commit_tx()])
    assert c.pocl.open_record(c.state).committers == [m.address]


def test_second_round_builds_on_the_first(chain: Chain) -> None:
    """Runs last (it advances the shared chain): round 2 reads G_1 back through the store's model reader."""
    g1 = chain.state.global_model_hash
    for m in chain.s.miners:  # local training moved every model a little since round 1
        m.weights = perturbed(m.weights, 7 + m.index, 0.01)
    chain.s.fresh_shards(2)  # and every miner holds out a new shard: round 1's would be pocl_shard_seen
    p = chain.s.params
    for _ in range(p.train_blocks + p.shard_blocks + p.predict_blocks + p.vote_blocks):
        rec2 = chain.pocl.record(chain.state, 2)
        if rec2.phase == PHASE_DONE:
            break
        chain.block(chain.miner_txs())
    rec2 = chain.pocl.record(chain.state, 2)
    assert rec2.phase == PHASE_DONE and rec2.outcome.prev_model_hash == g1
    assert rec2.outcome.penalties == [] and len(rec2.outcome.winners) == 2
    assert chain.state.global_model_hash == rec2.outcome.model_hash != g1
    assert chain.pocl.head(chain.state).model_round == 2
    assert round_entry_keys(chain, 1) == round_entry_keys(chain, 2) == []


def round_entry_keys(chain: Chain, round_: int) -> list[bytes]:
    """The state keys of round `round_`'s commit, shard, predict and vote entries."""
    prefixes = [full_key(NS_POCL, p + round_.to_bytes(8, "big")) for p in (b"c", b"s", b"p", b"v")]
    return [k for k in chain.state.entries_snapshot() if any(k.startswith(p) for p in prefixes)]
