"""Free-riding does not beat training (issue 12 attack 5).

A miner that does no training could still reveal a model, evaluate honestly and collect pay: G_{r-1}
itself, G_{r-1} plus noise too small to change a label, or weights someone else revealed before. Now
- such a model cannot win, and its miner earns nothing (no winner pay, no voter pay), even when its score is
  the round's highest; it is not slashed either (nothing it claimed is false);
- winners are paid in proportion to their gain over G_{r-1} (the median over their scoring shards of their
  accuracy minus G_{r-1}'s), and a gain of 0 or less is not paid; when nobody gained, that pool is not
  issued;
- voters are paid only when their own model won with a gain, in proportion to the information their
  shard carried (samples G_r labels right and G_{r-1} got wrong); evaluation alone earns nothing.

Every expected figure here is recomputed from canonical inference (`pocl.ml.model.inference.predict`),
not read back from finalization.
"""

from __future__ import annotations

import numpy as np
import pytest
from pocl.consensus.pocl.events import RewardPaid, RoundFinalized, Slashed
from pocl.consensus.pocl.records import NO_SCORE, ROLE_VOTER, ROLE_WINNER, RoundOutcome
from pocl.ml.model.inference import predict
from pocl.ml.model.weights import weights_hash

from tests.support.pocl_chain import STAKE, Chain
from tests.support.pocl_scenario import (
    COPY,
    HONEST,
    LABEL_LIAR,
    LAZY,
    LAZY_NOISE,
    SPEC,
    VOTE_LIAR,
    Miner,
    RoundRun,
    Scenario,
    digits,
    make_params,
    make_scenario,
    perturbed,
    run_round,
    trained_weights,
)

BPS = 10_000


# --------------------------------------------------------------------------- independent arithmetic


def labels_by(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Canonical inference: the labels every node computes."""
    return predict(SPEC, weights, x)[0]


def labels_of(m: Miner) -> np.ndarray:
    """The labels miner `m` committed for its own shard (what every score is measured against)."""
    return m.committed_labels().to_numpy(1 << 20)


def acc_bps(weights: list[np.ndarray], m: Miner) -> int:
    return int(np.count_nonzero(labels_by(weights, m.shard_x) == labels_of(m))) * BPS // len(m.shard_x)


def median_floor(values: list[int]) -> int:
    s, n = sorted(values), len(values)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


def information(new: list[np.ndarray], old: list[np.ndarray], m: Miner) -> int:
    """Samples of m's shard that `new` labels right and `old` got wrong."""
    y = labels_of(m)
    return int(np.count_nonzero((labels_by(new, m.shard_x) == y) & (labels_by(old, m.shard_x) != y)))


def paid(o: RoundOutcome, role: str) -> dict[bytes, int]:
    return {p.miner: p.amount for p in o.payouts if p.role == role}


def assert_split(pool: int, amounts: dict[bytes, int], weights: dict[bytes, int]) -> None:
    """`amounts` is `pool` split in proportion to the positive `weights` (largest remainder: floor or
    ceil of the exact share); no amount for a weight of 0 or less."""
    positive = {a: w for a, w in weights.items() if w > 0}
    assert set(amounts) == set(positive)
    if not positive:
        return
    assert sum(amounts.values()) == pool
    total = sum(positive.values())
    for a, w in positive.items():
        assert pool * w // total <= amounts[a] <= -(-pool * w // total)


def earns(o: RoundOutcome, m: Miner) -> bool:
    """Is `m` paid anything this round, in any role?"""
    return m.address in [p.miner for p in o.payouts]


def strong_previous_model(s: Scenario) -> None:
    """G_{r-1} is a good model and every honest miner's update made it worse (noisy fine-tunes)."""
    s.global_weights = [w.copy() for w in trained_weights(200)]
    for m in s.miners:
        if m.behaviour == HONEST:
            m.weights = perturbed(s.global_weights, 10 + m.index, 0.2)


# --------------------------------------------------------------------------- G_{r-1} again, or plus noise


@pytest.mark.parametrize("behaviour", [LAZY, LAZY_NOISE])
def test_the_previous_model_again_cannot_win_even_with_the_highest_score(behaviour: str) -> None:
    s = make_scenario([behaviour, HONEST, HONEST, HONEST], trained=False)
    strong_previous_model(s)
    run = run_round(s)
    o = run.result.outcome
    rider = s.miners[0]
    assert o.ranking[0] == rider.address and o.scores[o.predictors.index(rider.address)] == max(o.scores)
    assert rider.address not in o.winners and len(o.winners) == s.params.winners  # the walk went on
    assert not earns(o, rider)  # neither winner nor voter pay
    assert o.penalties == []  # its claims are true: free-riding is not fraud, it just pays nothing


@pytest.mark.parametrize("behaviour", [LAZY, LAZY_NOISE])
def test_a_free_rider_among_improving_miners_earns_nothing_though_its_shard_informed(behaviour: str) -> None:
    """G_0 is untrained, the honest miners' models beat it and are paid; the free rider evaluated honestly,
    its shard even carried information, and it still earns nothing (it did not win)."""
    s = make_scenario([HONEST, HONEST, behaviour, HONEST, HONEST])
    o = run_round(s).result.outcome
    rider = s.miners[2]
    j = o.voters.index(rider.address)
    assert rider.address in o.valid_voters and o.information[j] > 0
    assert rider.address in o.ranking and rider.address not in o.winners
    assert not earns(o, rider)
    assert paid(o, ROLE_WINNER) and paid(o, ROLE_VOTER)  # the round did pay: its honest winners
    assert o.penalties == []


def test_noise_that_changes_no_label_is_a_no_op_that_cannot_win() -> None:
    """G_{r-1} plus tiny noise is a new weights hash (no known-model rule applies), but its canonical labels
    equal G_{r-1}'s on every scoring shard: a no-op."""
    s = make_scenario([LAZY_NOISE, HONEST, HONEST, HONEST], trained=False)
    strong_previous_model(s)
    run = run_round(s)
    o = run.result.outcome
    rider = s.miners[0]
    assert weights_hash(rider.weights) != weights_hash(s.global_weights)
    assert weights_hash(rider.weights) not in s.known_models
    for other in s.miners[1:]:
        assert (labels_by(rider.weights, other.shard_x) == labels_by(s.global_weights, other.shard_x)).all()
    assert o.ranking[0] == rider.address and rider.address not in o.winners
    assert not earns(o, rider) and o.penalties == []
    # a miner whose model changes some label is not a no-op: the same round with a real update wins
    rider.behaviour = HONEST
    rider.weights = [w.copy() for w in trained_weights(300)]
    assert rider.address in run_round(s).result.outcome.winners


# --------------------------------------------------------------------------- copies of earlier models


def test_weights_revealed_in_an_earlier_round_cannot_win() -> None:
    """`known_model` answers True for weights revealed in a recent round (on chain: the fingerprint index);
    the copier ranks first and wins nothing. The same weights, new to the chain, win."""
    s = make_scenario([HONEST, HONEST, COPY, HONEST], trained=False)
    earlier = [w.copy() for w in trained_weights(300)]  # another miner revealed these in round r-1
    copier = s.miners[2]
    copier.weights = earlier
    s.known_models = frozenset({weights_hash(earlier)})
    o = run_round(s).result.outcome
    assert o.ranking[0] == copier.address and copier.address not in o.winners
    assert not earns(o, copier) and o.penalties == []
    s.known_models = frozenset()
    fresh = run_round(s).result.outcome
    assert copier.address in fresh.winners and earns(fresh, copier)


def test_a_miner_re_revealing_anothers_weights_from_the_last_round_wins_nothing_on_chain() -> None:
    """The real executor, two rounds: in round 2 one miner reveals the weights another miner revealed in round
    1. The chain remembers revealed weights (not only global models), so the copy cannot win, and is paid
    nothing; the honest miners, who trained on, are paid and never slashed."""
    s = make_scenario([HONEST, HONEST, HONEST, HONEST], make_params(first_round_height=2))
    c = Chain(s)
    copier = s.miners[0]
    copied = b""
    done = 0
    while done < 2:
        txs = c.miner_txs()
        seen = len(c.events)
        c.block(txs)
        for e in c.events[seen:]:
            if not isinstance(e, RoundFinalized):
                continue
            done = e.round
            if e.round == 1:
                first = c.pocl.record(c.state, 1).outcome
                best = next(a for a in first.ranking if a != copier.address)
                source = s.by_address()[best]  # the best model of round 1 but the copier's own
                copier.behaviour, copier.weights = COPY, [w.copy() for w in source.weights]
                copied = weights_hash(copier.weights)
                for m in s.miners:  # the others train on (noisily): new weights every round
                    if m is not copier:
                        m.weights = perturbed(m.weights, 1_000 + m.index, 0.01)
                assert c.pocl.seen_recently(c.state, copied, 2)  # known to round 2...
                assert c.state.get_model(copied) is None  # ...though no global model has these weights
    o = c.pocl.record(c.state, 2).outcome
    assert o is not None and weights_hash(copier.weights) == copied
    assert o.ranking[0] == copier.address  # by score it would have won...
    assert copier.address not in o.winners and len(o.winners) == s.params.winners  # ...it cannot
    rewards = [e for e in c.events if isinstance(e, RewardPaid) and e.round == 2]
    assert rewards and copier.address not in [e.address for e in rewards]
    assert o.penalties == [] and not [e for e in c.events if isinstance(e, Slashed)]
    for m in s.miners:
        assert c.state.account(m.address).stake == STAKE and c.state.account(m.address).slashed_total == 0


# --------------------------------------------------------------------------- winners: paid for their gain


def test_baseline_and_gains_are_recomputed_from_canonical_inference() -> None:
    """baseline[j] = accuracy of G_{r-1} on valid voter j's shard (against j's committed labels), NO_SCORE for
    an invalid voter; gains[k] = median over winner k's scoring shards of (its accuracy - baseline)."""
    s = make_scenario([HONEST, HONEST, LABEL_LIAR, HONEST, VOTE_LIAR, HONEST], make_params(winners=3))
    o = run_round(s).result.outcome
    by = s.by_address()
    liar = s.miners[4].address
    assert liar in o.voters and liar not in o.valid_voters  # the vote liar is penalised...
    assert [p.miner for p in o.penalties] == [liar]  # ...and only it
    for j, v in enumerate(o.voters):
        expected = acc_bps(s.global_weights, by[v]) if v in o.valid_voters else NO_SCORE
        assert o.baseline[j] == expected, by[v].behaviour
    assert o.information[o.voters.index(liar)] == NO_SCORE  # an invalid voter's shard is not used
    assert len(o.gains) == len(o.winners) == 3
    for k, w in enumerate(o.winners):
        diffs = [
            acc_bps(by[w].weights, by[v]) - acc_bps(s.global_weights, by[v]) for v in o.valid_voters if v != w
        ]
        assert o.gains[k] == median_floor(diffs)
    assert_split(s.params.winners_pool, paid(o, ROLE_WINNER), dict(zip(o.winners, o.gains)))


def test_winners_are_paid_in_proportion_to_their_gain() -> None:
    s = make_scenario([HONEST] * 5, make_params(winners=3))
    o = run_round(s).result.outcome
    assert all(g > 0 for g in o.gains) and len(set(o.gains)) > 1  # unequal gains over the untrained G_0
    amounts = paid(o, ROLE_WINNER)
    assert list(amounts) == o.winners  # ranking order
    assert_split(s.params.winners_pool, amounts, dict(zip(o.winners, o.gains)))
    by_gain = sorted(o.winners, key=lambda w: o.gains[o.winners.index(w)])
    assert [amounts[w] for w in by_gain] == sorted(amounts.values())
    assert o.penalties == []


def test_a_winner_without_gain_is_paid_nothing() -> None:
    """A mediocre G_{r-1}; two miners beat it, two verified winners do not (one gains exactly 0): only the
    two that gained share the winners' pool, in proportion; a winner without gain is not paid as a voter
    either, though its shard carried information."""
    s = make_scenario([HONEST] * 4, make_params(winners=4))
    s.global_weights = perturbed(trained_weights(200), 5, 0.05)
    for m in s.miners[2:]:
        m.weights = perturbed(s.global_weights, 75 + m.index, 0.1)  # worse than G_{r-1}
    o = run_round(s).result.outcome
    gains = dict(zip(o.winners, o.gains))
    assert set(o.winners) == {m.address for m in s.miners}
    ahead, behind = [m.address for m in s.miners[:2]], [m.address for m in s.miners[2:]]
    assert all(gains[w] > 0 for w in ahead) and all(gains[w] <= 0 for w in behind) and 0 in gains.values()
    assert_split(s.params.winners_pool, paid(o, ROLE_WINNER), gains)
    assert set(paid(o, ROLE_WINNER)) == set(ahead)
    informed = [w for w in behind if o.information[o.voters.index(w)] > 0]
    assert informed and not set(informed) & set(paid(o, ROLE_VOTER))
    assert o.total_paid() < s.params.round_reward and o.penalties == []


def test_when_no_winner_gains_the_winners_pool_is_not_issued() -> None:
    s = make_scenario([HONEST] * 4, trained=False)
    strong_previous_model(s)
    run = run_round(s)
    o = run.result.outcome
    assert o.winners and run.result.changed  # a round with winners and a new model...
    assert all(g <= 0 for g in o.gains)  # ...none of which beat G_{r-1}
    assert paid(o, ROLE_WINNER) == {} and paid(o, ROLE_VOTER) == {}
    assert o.total_paid() == 0 < s.params.round_reward
    assert o.penalties == []


# --------------------------------------------------------------------------- voters: paid for information


def test_voter_pay_goes_only_to_winners_whose_shards_informed_in_proportion() -> None:
    s = make_scenario([HONEST] * 4, make_params(winners=2))
    run = run_round(s)
    o, g_new = run.result.outcome, run.result.weights
    by = s.by_address()
    info = {v: information(g_new, s.global_weights, by[v]) for v in o.voters}
    assert [info[v] for v in o.voters] == o.information
    assert all(g > 0 for g in o.gains) and len({info[w] for w in o.winners} - {0}) == 2  # unequal, both paid
    losers = [v for v in o.valid_voters if v not in o.winners]
    assert len(losers) == 2 and all(info[v] > 0 for v in losers)  # honest evaluators whose shards informed...
    assert not set(losers) & {p.miner for p in o.payouts}  # ...and earn nothing: evaluation alone is not paid
    voters = paid(o, ROLE_VOTER)
    assert list(voters) == sorted(voters)  # address order
    assert_split(s.params.voters_pool, voters, {w: info[w] for w in o.winners})
    assert o.total_paid() == s.params.round_reward and o.penalties == []


def _agreeing_shard(
    g_new: list[np.ndarray], g_old: list[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """n held-out digits that G_r and G_{r-1} label alike."""
    x, y = digits()
    pool_x, pool_y = x[600:], y[600:]
    same = labels_by(g_new, pool_x) == labels_by(g_old, pool_x)
    pick = np.flatnonzero(same)[:n]
    assert len(pick) == n
    return pool_x[pick], pool_y[pick]


def test_a_shard_on_which_the_new_model_changes_nothing_earns_nothing() -> None:
    """Information 0: on this winner's shard G_r and G_{r-1} agree on every sample. The winner keeps its
    winner pay (its model gained), but its shard earned nothing; the other winner's shard did."""
    s = make_scenario([HONEST] * 4, make_params(winners=2))
    first = run_round(s)
    w = first.result.outcome.winners[1]
    m = s.by_address()[w]
    m.shard_x, m.shard_y = _agreeing_shard(first.result.weights, s.global_weights, s.params.test_shard_size)
    run = run_round(s)
    o = run.result.outcome
    # the winners (hence G_r) do not depend on w's own shard here: the premise still holds
    assert o.winners == first.result.outcome.winners and o.model_hash == first.result.outcome.model_hash
    assert (labels_by(run.result.weights, m.shard_x) == labels_by(s.global_weights, m.shard_x)).all()
    assert o.information[o.voters.index(w)] == 0 == information(run.result.weights, s.global_weights, m)
    assert w in paid(o, ROLE_WINNER) and w not in paid(o, ROLE_VOTER)
    other = o.winners[0]
    assert o.information[o.voters.index(other)] > 0 and paid(o, ROLE_VOTER) == {other: s.params.voters_pool}
    assert o.penalties == []


# --------------------------------------------------------------------------- everything together


@pytest.mark.parametrize("g_prev", ["untrained", "strong"])
def test_free_riders_never_win_or_earn_and_nobody_honest_is_penalised(g_prev: str) -> None:
    s = make_scenario([HONEST, LAZY, HONEST, LAZY_NOISE, COPY, HONEST, LAZY], make_params(winners=3))
    if g_prev == "strong":
        strong_previous_model(s)
    s.miners[4].weights = [w.copy() for w in trained_weights(300)]
    s.known_models = frozenset({weights_hash(s.miners[4].weights)})  # revealed in an earlier round
    run: RoundRun = run_round(s)
    o = run.result.outcome
    assert o.penalties == []
    riders = {m.address for m in s.miners if m.behaviour != HONEST}
    assert riders <= set(o.ranking) and not riders & set(o.winners)
    assert not riders & {p.miner for p in o.payouts}
    assert set(o.winners) == {m.address for m in s.miners if m.behaviour == HONEST}
    assert 0 <= o.total_paid() <= s.params.round_reward


# --------------------------------------------------------------------------- free riders cannot shrink the clip bound


def test_no_op_sybils_cannot_freeze_the_model_through_the_clip_bound() -> None:
    """Three honest miners and three Sybils revealing G_{r-1} plus tiny noise (new hashes, no label
    changed). If the no-ops counted in the clip bound's reference (the lower median of the round's update
    norms), the bound would fall to the noise's norm and every honest update would be clipped to ~0: the
    model would never move while the honest winners were still paid. No-ops are left out of the reference,
    so G_r is the same as without the Sybils."""
    from pocl.ml.model.aggregate import update_norm

    params = make_params(winners=3)
    alone = run_round(make_scenario([HONEST, HONEST, HONEST], params))
    attacked = run_round(make_scenario([HONEST, HONEST, HONEST, LAZY_NOISE, LAZY_NOISE, LAZY_NOISE], params))
    g0 = make_scenario([HONEST], params).global_weights
    assert attacked.result.changed and attacked.result.outcome.penalties == []
    assert update_norm(attacked.result.weights, g0) > 0.5 * update_norm(alone.result.weights, g0)
    assert attacked.result.outcome.model_hash == alone.result.outcome.model_hash


def test_a_false_claim_made_to_enter_the_clip_reference_is_prediction_fraud() -> None:
    """A no-op model that claims other labels than its own on one sample (to look like it moved and pull the
    clip bound down) is checked on that sample, although it never reaches the winner walk: prediction
    fraud, the whole stake."""
    from tests.support.pocl_scenario import predict_payload as honest_predict_payload

    s = make_scenario([HONEST, HONEST, HONEST, LAZY_NOISE])
    liar = s.miners[3]
    original = honest_predict_payload

    def lying_predict(sc: Scenario, m: Miner, owners: list[bytes]):  # type: ignore[no-untyped-def]
        p = original(sc, m, owners)
        if m is liar:  # flip one claimed label on the first other shard (to a class that is surely wrong)
            from pocl.consensus.pocl.txs import build_predict, labels_array

            first = p.predictions[0].to_numpy(1 << 20).copy()
            first[0] = (first[0] + 1) % 10
            p = build_predict(p.round, p.weights, [first] + [a.to_numpy(1 << 20) for a in p.predictions[1:]])
            assert labels_array(first).to_list() == p.predictions[0].to_list()
        return p

    import tests.support.pocl_scenario as scenario_module

    scenario_module.predict_payload = lying_predict  # type: ignore[assignment]
    try:
        o = run_round(s).result.outcome
    finally:
        scenario_module.predict_payload = original  # type: ignore[assignment]
    k = s.params.winners
    assert o.winners == o.ranking[:k] and o.ranking.index(liar.address) >= k  # the walk never reached it
    assert [(p.miner, p.kind) for p in o.penalties] == [(liar.address, "prediction_fraud")]

