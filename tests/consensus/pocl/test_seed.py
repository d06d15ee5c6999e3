"""Randomness no single party picks (issue 12 attack #4, deliverable 3).

The finalization seed is derived from the salts the miners committed inside their label commitments in
COMMIT and revealed in VOTE (address order), never from the finalizing block: its proposer, time and tx
order cannot change the outcome. Verification checks every scoring shard of every candidate that would win,
so there is no sampling left to grind: a faker of one shard among many is caught under every seed.
"""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.pocl.finalize import round_seed
from pocl.consensus.pocl.records import PENALTY_LABEL_MISMATCH, PENALTY_PREDICTION_FRAUD, PENALTY_WITHHOLD
from pocl.ledger import codec
from pocl.node.simulation import chain as sim_chain

from tests.support.pocl_chain import Chain
from tests.support.pocl_scenario import (
    CHAIN_ID,
    HONEST,
    KNN,
    PARTIAL_FAKER,
    SILENT_VOTER,
    make_params,
    make_scenario,
    run_round,
)

# --------------------------------------------------------------------------- through the real executor


def _chain_round(proposer: bytes, interval_ms: int, reverse: bool, monkeypatch: pytest.MonkeyPatch) -> Chain:
    """Round 1 of one scenario on the real executor; the finalizing block (height 5, the one carrying the
    votes) gets `proposer` and time `interval_ms * 5`, and every block's txs are in reverse order if asked."""
    s = make_scenario([HONEST, HONEST, KNN, HONEST, HONEST], make_params(first_round_height=2))
    c = Chain(s)
    for h in range(1, 6):  # 1: empty; 2: commit; 3: shard; 4: predict; 5: vote, and the round finalizes
        txs = c.miner_txs()
        if reverse:
            txs = list(reversed(txs))
        if h == 5:
            c.proposer = proposer
            monkeypatch.setattr(sim_chain, "BLOCK_INTERVAL_MS", interval_ms)
        c.block(txs)
    return c


def test_finalizing_block_time_proposer_and_tx_order_cannot_change_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attack #4: under the old seed H(height, time_ms, proposer) each variant had another seed, hence
    other tie-breaks and verification picks; now the outcome is one function of the round's txs."""
    variants = [
        (b"\xee" * 20, sim_chain.BLOCK_INTERVAL_MS, False),
        (b"\x11" * 20, sim_chain.BLOCK_INTERVAL_MS, False),  # another proposer
        (b"\xee" * 20, 987_654_321, False),  # another time
        (b"\x22" * 20, 31, True),  # all three, and every block's txs reversed
    ]
    outcomes, models, accounts = [], [], []
    for proposer, interval, reverse in variants:
        c = _chain_round(proposer, interval, reverse, monkeypatch)
        rec = c.pocl.record(c.state, 1)
        assert rec is not None and rec.outcome is not None and rec.end_height == 5  # the block varied
        outcomes.append(rec.outcome)
        models.append(c.state.global_model_hash)
        accounts.append([(a.stake, a.jailed_until_round) for a in map(c.state.account, rec.committers)])
        assert rec.outcome.total_paid() == c.s.params.round_reward  # both winners gained, on shards G_r improved
    assert all(o == outcomes[0] for o in outcomes)  # seed, ranking, winners, payouts, penalties, model
    assert len(set(models)) == 1 and all(a == accounts[0] for a in accounts)
    o = outcomes[0]
    assert [p.kind for p in o.penalties] == [PENALTY_PREDICTION_FRAUD]  # the k-NN miner, every time


# --------------------------------------------------------------------------- the seed's material


def test_seed_is_the_revealed_salts_in_address_order() -> None:
    s = make_scenario([HONEST, HONEST, HONEST, HONEST])
    run = run_round(s)
    o = run.result.outcome
    salts = [run.data.votes[v].salt for v in o.voters]
    assert o.voters == sorted(o.voters) and len(salts) == 4
    assert o.seed == round_seed(CHAIN_ID, 1, salts)
    # another salt of one miner (committed in COMMIT, so fixed before any outcome) gives another seed
    s2 = make_scenario([HONEST, HONEST, HONEST, HONEST])
    s2.miners[2].salt_seed = 1
    assert run_round(s2).result.outcome.seed != o.seed


def test_a_withheld_vote_drops_its_salt_and_is_slashed() -> None:
    """The last revealer's one bit: withholding its vote changes the seed, and costs it the withhold slash
    and any pay of the round (docs/pocl-protocol.md §12)."""
    s = make_scenario([HONEST, HONEST, HONEST, SILENT_VOTER])
    run = run_round(s)
    o = run.result.outcome
    silent = s.miners[3].address
    assert silent not in o.voters
    assert o.seed == round_seed(CHAIN_ID, 1, [run.data.votes[v].salt for v in o.voters])
    assert [(p.miner, p.kind) for p in o.penalties] == [(silent, PENALTY_WITHHOLD)]
    assert silent not in [p.miner for p in o.payouts]


def test_a_salt_that_does_not_open_its_commitment_is_not_seed_material() -> None:
    s = make_scenario([HONEST, HONEST, HONEST, HONEST])
    run = run_round(s)
    d = run.data
    liar = s.miners[1].address
    votes = {**d.votes, liar: dataclasses.replace(d.votes[liar], salt=b"\x77" * 32)}
    from pocl.consensus.pocl.finalize import finalize_round
    from pocl.consensus.pocl.records import RoundData

    res = finalize_round(
        RoundData(d.record, d.commits, d.shards, d.predictions, votes),
        s.global_weights,
        s.params,
        CHAIN_ID,
        lambda h: False,
    )
    o = res.outcome
    assert [(p.miner, p.kind) for p in o.penalties] == [(liar, PENALTY_LABEL_MISMATCH)]
    assert o.seed == round_seed(CHAIN_ID, 1, [votes[v].salt for v in o.voters])
    assert liar not in o.voters


# --------------------------------------------------------------------------- exhaustive verification


@pytest.mark.parametrize("salt_seed", range(6))
def test_a_faker_of_one_shard_among_many_is_always_caught_when_it_would_win(salt_seed: int) -> None:
    """7 miners, the best of them fakes ONE of its 6 scoring shards. With 3 of 6 shards sampled (the old
    verify_shards) it escaped whenever the seed skipped that shard (1 seed in 2, and the finalizing proposer
    could pick the seed); now every shard is checked under every seed."""
    s = make_scenario([PARTIAL_FAKER, *[HONEST] * 6], trained=False)
    from tests.support.pocl_scenario import trained_weights

    s.miners[0].weights = [w.copy() for w in trained_weights(100)]  # the best model: it would win
    for m in s.miners:
        m.salt_seed = salt_seed
    run = run_round(s)
    o = run.result.outcome
    faker = s.miners[0].address
    assert o.ranking[0] == faker
    assert [(p.miner, p.kind) for p in o.penalties] == [(faker, PENALTY_PREDICTION_FRAUD)]
    _kind, _r, _tx, _w, owners, samples = codec.decode(o.penalties[0].evidence)
    assert len(owners) == 6 and samples == 6 * s.params.test_shard_size  # every scoring shard
    assert faker not in o.winners and len(o.winners) == s.params.winners
    assert faker not in [p.miner for p in o.payouts]
