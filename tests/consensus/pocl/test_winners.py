"""Aggregation that bounds each winner, and commitments bound to chain, round and sender (issue 12
attacks #3, #5 (known models) and #6, deliverable 4).

- the clip bound is derived from every unpenalised revealed model of the round (lower median), never from
  the K winners alone: a 1000x boosted update is clipped at K = 2;
- identical revealed weights (same hash in the round) cannot both win, and a model already on chain
  (G_{r-1} or any earlier global model) cannot win;
- a copied or replayed label commitment does not open for the copier.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pocl.consensus.pocl.finalize import finalize_round
from pocl.consensus.pocl.records import PENALTY_LABEL_MISMATCH, PHASE_VOTE, ROLE_WINNER, RoundData
from pocl.consensus.pocl.txs import build_vote
from pocl.consensus.pocl.validate import accept_vote
from pocl.ml.model.aggregate import aggregate, lower_median, update_norm
from pocl.ml.model.weights import weights_hash

from tests.support.pocl_scenario import (
    CHAIN_ID,
    HONEST,
    Scenario,
    make_params,
    make_scenario,
    perturbed,
    run_round,
    trained_weights,
)


def _weak_round(n: int, **params: object) -> Scenario:
    """n honest miners with untrained (perturbed G_0) models: low accuracy, so a planted model ranks first."""
    return make_scenario([HONEST] * n, make_params(**params) if params else None, trained=False)


# --------------------------------------------------------------------------- identical and known models


def test_sybils_revealing_identical_weights_cannot_both_win() -> None:
    """Old protocol: both Sybils won, and G_r became their model. Now neither wins (no slash)."""
    s = _weak_round(5)
    for m in s.miners[3:]:
        m.weights = [w.copy() for w in trained_weights(103)]  # the best model, revealed twice
    o = run_round(s).result.outcome
    sybils = {m.address for m in s.miners[3:]}
    assert set(o.ranking[:2]) == sybils  # they would have been the K = 2 winners
    assert not sybils & set(o.winners) and len(o.winners) == 2
    assert o.penalties == [] and not sybils & {p.miner for p in o.payouts}
    assert o.model_hash != weights_hash(trained_weights(103))


def test_revealing_the_previous_global_model_unchanged_cannot_win() -> None:
    s = _weak_round(4)
    s.global_weights = [w.copy() for w in trained_weights(200)]  # a good G_{r-1}
    for m in s.miners[1:]:
        m.weights = perturbed(s.global_weights, 10 + m.index, 0.2)  # honest fine-tunes, noisier than G
    s.miners[0].weights = [w.copy() for w in s.global_weights]  # the free-rider
    o = run_round(s).result.outcome
    lazy = s.miners[0].address
    assert o.ranking[0] == lazy  # it would have won
    assert lazy not in o.winners and len(o.winners) == 2 and o.penalties == []
    assert lazy not in [p.miner for p in o.payouts]  # not as a winner, nor as a voter (it did not win)
    paid = [p.miner for p in o.payouts if p.role == ROLE_WINNER]  # only a gain over G_{r-1} is paid
    assert paid == [w for w, gain in zip(o.winners, o.gains) if gain > 0]


def test_revealing_an_earlier_global_model_cannot_win() -> None:
    s = _weak_round(4)
    old = [w.copy() for w in trained_weights(300)]
    s.known_models = frozenset({weights_hash(old)})  # G_{r-2}, still on chain
    s.miners[2].weights = old
    o = run_round(s).result.outcome
    replay = s.miners[2].address
    assert o.ranking[0] == replay and replay not in o.winners and o.penalties == []
    s.known_models = frozenset()  # the same round where that model is new: it wins
    assert run_round(s).result.outcome.winners[0] == replay


# --------------------------------------------------------------------------- the clip bound


def test_a_1000x_boosted_winner_is_clipped_at_k_2() -> None:
    """Attack #3: two winners, one boosting its update 1000x. The old bound, 2 x median of the two winners'
    norms = n1 + n2, never clipped it; now it is clipped to 2 x the other update's norm."""
    s = _weak_round(2)
    g = s.global_weights
    honest, booster = s.miners
    booster.weights = [
        (gi + np.float32(1000) * (wi - gi)).astype(np.float32) for gi, wi in zip(g, booster.weights)
    ]
    o = run_round(s).result
    assert sorted(o.outcome.winners) == sorted([honest.address, booster.address])
    n_honest, n_boost = update_norm(honest.weights, g), update_norm(booster.weights, g)
    assert n_boost > 500 * n_honest
    assert n_boost < 2 * (n_honest + n_boost) / 2  # the old bound: nothing clipped
    step = update_norm(o.weights, g)
    assert step <= (n_honest + 2 * n_honest) / 2 * 1.001  # the mean of n and at most 2n


def test_clip_bound_comes_from_every_unpenalised_revealed_model_not_the_winners() -> None:
    s = _weak_round(6)
    run = run_round(s)
    o, g = run.result.outcome, s.global_weights
    rule = s.params.aggregation_rule()
    everyone = [update_norm(m.weights, g) for m in sorted(s.miners, key=lambda m: m.address)]
    winners = [m.weights for m in sorted(s.miners, key=lambda m: m.address) if m.address in o.winners]
    expected = aggregate(g, winners, rule, everyone)
    assert expected.bound == float(rule.clip_factor) * lower_median(everyone)
    assert expected.bound != aggregate(g, winners, rule).bound  # the winners alone give another bound
    assert weights_hash(expected.weights) == o.model_hash  # bit-exact: what finalization wrote


# --------------------------------------------------------------------------- bound label commitments (#6)


def test_a_copied_label_commitment_does_not_open_for_the_copier() -> None:
    """Attack #6: a miner with no data copies another's label commitment and reveals the other's labels
    and salt. Unbound (H(labels, salt)) it opened and the copier was paid as a voter; now it is a label
    mismatch, and the original owner is unaffected."""
    s = make_scenario([HONEST] * 4)
    run = run_round(s)
    d = run.data
    owner, copier = s.miners[0].address, s.miners[1].address
    commits = {
        **d.commits,
        copier: dataclasses.replace(d.commits[copier], label_commit=d.commits[owner].label_commit),
    }
    votes = {
        **d.votes,
        copier: dataclasses.replace(d.votes[copier], labels=d.votes[owner].labels, salt=d.votes[owner].salt),
    }
    o = finalize_round(
        RoundData(d.record, commits, d.shards, d.predictions, votes),
        g := s.global_weights,
        s.params,
        CHAIN_ID,
        lambda h: False,
    ).outcome
    assert [(p.miner, p.kind) for p in o.penalties] == [(copier, PENALTY_LABEL_MISMATCH)]
    assert copier not in o.voters and owner in o.valid_voters
    assert copier not in [p.miner for p in o.payouts] and g is s.global_weights
    # and the chain's per-tx check marks the copied reveal as not opening
    rec = dataclasses.replace(run.record, phase=PHASE_VOTE, voters=[])
    vote = votes[copier]
    payload = build_vote(1, vote.labels.to_numpy(1 << 20), vote.salt, vote.scores)
    _, entry = accept_vote(rec, copier, payload, commits[copier], s.params, CHAIN_ID, 20, b"")
    assert not entry.labels_ok


def test_a_replayed_label_commitment_from_an_earlier_round_does_not_open() -> None:
    s = make_scenario([HONEST] * 4)
    first = run_round(s).data
    s.round = 2
    d = run_round(s).data
    m = s.miners[2].address  # same shard, labels and salt in both rounds: only the round differs
    assert d.votes[m].salt == first.votes[m].salt and d.votes[m].labels == first.votes[m].labels
    commits = {**d.commits, m: dataclasses.replace(d.commits[m], label_commit=first.commits[m].label_commit)}
    o = finalize_round(
        RoundData(d.record, commits, d.shards, d.predictions, d.votes),
        s.global_weights,
        s.params,
        CHAIN_ID,
        lambda h: False,
    ).outcome
    assert [(p.miner, p.kind) for p in o.penalties] == [(m, PENALTY_LABEL_MISMATCH)]
