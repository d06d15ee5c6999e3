"""Round finalization: scores, verification, penalties, void rounds, rewards, determinism."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from pocl.consensus.pocl.finalize import (
    NO_WINNER,
    VOID_TOO_FEW,
    finalize_round,
    median_bps,
    rank_candidates,
    round_seed,
    tiebreak_key,
)
from pocl.consensus.pocl.records import (
    NO_SCORE,
    PENALTY_LABEL_MISMATCH,
    PENALTY_MODEL_MISMATCH,
    PENALTY_PREDICTION_FRAUD,
    PENALTY_VOTE_FRAUD,
    PENALTY_WITHHOLD,
    ROLE_VOTER,
    ROLE_WINNER,
    RoundData,
    RoundOutcome,
)
from pocl.consensus.pocl.verify import ShardClaim, verify_claims
from pocl.ledger import codec
from pocl.ml.model.inference import predict
from pocl.ml.model.weights import encode_weights, weights_hash

from tests.support.pocl_scenario import (
    ABSENT,
    CHAIN_ID,
    HONEST,
    KNN,
    KNN_ZERO,
    LABEL_LIAR,
    LABEL_MISMATCH,
    LAZY,
    LAZY_NOISE,
    MODEL_MISMATCH,
    SHARD_WITHHOLDER,
    SILENT_VOTER,
    SPEC,
    VOTE_LIAR,
    WITHHOLD,
    RoundRun,
    Scenario,
    make_params,
    make_scenario,
    run_round,
)


def idx(s: Scenario, addrs: list[bytes]) -> list[int]:
    by = s.by_address()
    return [by[a].index for a in addrs]


def penalties_by_index(s: Scenario, run: RoundRun) -> dict[int, str]:
    by = s.by_address()
    return {by[p.miner].index: p.kind for p in run.result.outcome.penalties}


def assert_paid_by_the_rules(s: Scenario, o: RoundOutcome) -> None:
    """Pay for verified work only: each pool is issued whole or not at all, winners paid only for a positive
    gain, voters only if they won with a positive gain and their shard carried information; zero payouts
    are left out."""
    p = s.params
    assert all(x.amount > 0 for x in o.payouts)
    assert p.winners_pool + p.voters_pool == p.round_reward
    winner_pay = {x.miner: x.amount for x in o.payouts if x.role == ROLE_WINNER}
    voter_pay = {x.miner: x.amount for x in o.payouts if x.role == ROLE_VOTER}
    assert [x.role for x in o.payouts] == [ROLE_WINNER] * len(winner_pay) + [ROLE_VOTER] * len(voter_pay)
    assert len(o.gains) == len(o.winners)
    gained = {w for w, g in zip(o.winners, o.gains) if g > 0}
    assert set(winner_pay) == gained and list(winner_pay) == [w for w in o.winners if w in gained]
    assert sum(winner_pay.values()) == (p.winners_pool if gained else 0)
    penalised = {x.miner for x in o.penalties}
    informed = {
        v
        for v, info in zip(o.voters, o.information)
        if v in o.valid_voters and v in gained and v not in penalised and info > 0
    }
    assert set(voter_pay) == informed and list(voter_pay) == sorted(informed)
    assert sum(voter_pay.values()) == (p.voters_pool if informed else 0)
    assert 0 <= o.total_paid() <= p.round_reward
    assert not penalised & (set(winner_pay) | set(voter_pay))


# --------------------------------------------------------------------------- units


def test_median_odd_even() -> None:
    assert median_bps([5]) == 5
    assert median_bps([9, 1, 5]) == 5
    assert median_bps([1, 2, 4, 9]) == 3  # floor((2 + 4) / 2)
    assert median_bps([1, 2, 5, 9]) == 3  # floor(3.5)
    assert median_bps([7000, 7001]) == 7000
    with pytest.raises(ValueError):
        median_bps([])


def test_ties_are_broken_by_seeded_hash() -> None:
    a, b, c = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
    scores = {a: 5000, b: 7000, c: 5000}
    for seed in (b"\x00" * 32, b"\x01" * 32, b"\x02" * 32):
        order = rank_candidates(scores, seed)
        assert order[0] == b
        assert order[1:] == sorted([a, c], key=lambda x: tiebreak_key(seed, x))
    orders = {tuple(rank_candidates(scores, bytes([i]) * 32)) for i in range(16)}
    assert len(orders) == 2  # the seed, not the address, decides ties


def test_round_seed_binds_chain_round_and_every_salt() -> None:
    salts = [b"\x00" * 32, b"\x01" * 32]
    base = round_seed("c", 1, salts)
    assert len(base) == 32
    variants = {
        base,
        round_seed("d", 1, salts),
        round_seed("c", 2, salts),
        round_seed("c", 1, salts[:1]),  # a withheld salt changes it (the one-bit last-revealer choice)
        round_seed("c", 1, [b"\x00" * 32, b"\x02" * 32]),
    }
    assert len(variants) == 5


# --------------------------------------------------------------------------- honest rounds


@pytest.fixture(scope="module")
def honest_run() -> tuple[Scenario, RoundRun]:
    s = make_scenario([HONEST, HONEST, HONEST, HONEST])
    return s, run_round(s)


def test_honest_round(honest_run) -> None:  # type: ignore[no-untyped-def]
    s, run = honest_run
    o = run.result.outcome
    assert not o.void and o.reason == "" and o.penalties == []
    assert len(o.predictors) == len(o.voters) == len(o.valid_voters) == 4
    assert all(v > 7000 for v in o.scores)  # the "trained" models are well above chance
    assert len(o.winners) == s.params.winners and o.winners == o.ranking[: s.params.winners]
    assert o.accuracy[0][0] == NO_SCORE and all(row[i] == NO_SCORE for i, row in enumerate(o.accuracy))
    # trained models beat the untrained G_0, and the winners' shards carry what G_1 learned
    assert all(g > 0 for g in o.gains) and all(o.information[o.voters.index(w)] > 0 for w in o.winners)
    assert o.total_paid() == s.params.round_reward  # so both pools are issued
    paid = [(p.miner, p.role) for p in o.payouts]
    # winners in ranking order, then the voters that won (address order); the two honest voters that did
    # not win evaluated only, and evaluation alone earns nothing
    assert paid == [(w, ROLE_WINNER) for w in o.winners] + [(v, ROLE_VOTER) for v in sorted(o.winners)]
    assert_paid_by_the_rules(s, o)
    assert run.result.changed and o.model_hash == weights_hash(run.result.weights) != o.prev_model_hash
    assert RoundOutcome.decode(o.encode()) == o
    assert run.record.outcome == o


def test_scores_are_medians_of_the_matrix(honest_run) -> None:  # type: ignore[no-untyped-def]
    _, run = honest_run
    o = run.result.outcome
    for i, row in enumerate(o.accuracy):
        column = [v for j, v in enumerate(row) if j != i]
        assert o.scores[i] == median_bps(column)


def test_winners_are_aggregated_in_address_order(honest_run) -> None:  # type: ignore[no-untyped-def]
    from pocl.ml.model.aggregate import aggregate, update_norm

    s, run = honest_run
    models = [s.by_address()[w].weights for w in sorted(run.result.outcome.winners)]
    # the clip bound's reference: every (unpenalised, distinct) revealed model, in address order
    reference = [update_norm(m.weights, s.global_weights) for m in sorted(s.miners, key=lambda m: m.address)]
    expected = aggregate(s.global_weights, models, s.params.aggregation_rule(), reference).weights
    assert encode_weights(expected) == encode_weights(run.result.weights)


def test_determinism_and_input_order(honest_run) -> None:  # type: ignore[no-untyped-def]
    s, run = honest_run
    d = run.data
    again = finalize_round(d, s.global_weights, s.params, CHAIN_ID, s.known_models.__contains__)
    assert again.outcome.encode() == run.result.outcome.encode()
    rng = random.Random(7)
    for _ in range(3):
        c, sh = list(d.commits.values()), list(d.shards.values())
        p, v = list(d.predictions.values()), list(d.votes.values())
        rng.shuffle(c), rng.shuffle(sh), rng.shuffle(p), rng.shuffle(v)
        rec = dataclasses.replace(d.record, committers=list(reversed(d.record.committers)))
        shuffled = RoundData.build(rec, c, sh, p, v)
        res = finalize_round(shuffled, s.global_weights, s.params, CHAIN_ID, s.known_models.__contains__)
        assert res.outcome.encode() == run.result.outcome.encode()
        assert encode_weights(res.weights) == encode_weights(run.result.weights)


def test_wrong_global_model_is_refused(honest_run) -> None:  # type: ignore[no-untyped-def]
    s, run = honest_run
    with pytest.raises(ValueError):
        finalize_round(
            run.data, [w + np.float32(1) for w in s.global_weights], s.params, CHAIN_ID, lambda h: False
        )


# --------------------------------------------------------------------------- liars


def test_lying_label_minority_cannot_move_scores_out_of_the_honest_range() -> None:
    s = make_scenario([HONEST, HONEST, HONEST, HONEST, LABEL_LIAR])
    o = run_round(s).result.outcome
    liar = s.miners[4].address
    assert o.penalties == []  # consistent lies about one's own labels are not provable...
    j_liar = o.voters.index(liar)
    for i, p in enumerate(o.predictors):
        if p == liar:
            continue
        honest = [v for j, v in enumerate(o.accuracy[i]) if j not in (i, j_liar)]
        assert o.accuracy[i][j_liar] < min(honest)  # ...the liar's column is garbage...
        assert min(honest) <= o.scores[i] <= max(honest)  # ...but the median stays in the honest range


def test_vote_fraud_is_slashed_and_ignored() -> None:
    s = make_scenario([HONEST, HONEST, HONEST, HONEST, VOTE_LIAR])
    run = run_round(s)
    o = run.result.outcome
    liar = s.miners[4].address
    assert penalties_by_index(s, run) == {4: PENALTY_VOTE_FRAUD}
    pen = o.penalties[0]
    assert pen.slash_bps == s.params.slash_vote_fraud_bps and pen.jail_rounds == s.params.jail_rounds
    kind, r, _tx_hash, predictor, claimed, recomputed = codec.decode(pen.evidence)
    assert (kind, r) == (PENALTY_VOTE_FRAUD, 1) and claimed != recomputed
    assert o.accuracy[o.predictors.index(predictor)][o.voters.index(liar)] == recomputed
    assert liar in o.voters and liar not in o.valid_voters
    assert liar not in o.ranking and liar not in [p.miner for p in o.payouts]
    for i, p in enumerate(o.predictors):  # scores use valid voters only
        column = [o.accuracy[i][o.voters.index(j)] for j in o.valid_voters if j != p]
        assert o.scores[i] == median_bps(column)
    assert_paid_by_the_rules(s, o)


# --------------------------------------------------------------------------- frauds and withholding


@pytest.mark.parametrize(
    ("behaviour", "kind", "slash_field"),
    [
        (WITHHOLD, PENALTY_WITHHOLD, "slash_withhold_bps"),
        (SILENT_VOTER, PENALTY_WITHHOLD, "slash_withhold_bps"),
        (MODEL_MISMATCH, PENALTY_MODEL_MISMATCH, "slash_mismatch_bps"),
        (LABEL_MISMATCH, PENALTY_LABEL_MISMATCH, "slash_mismatch_bps"),
        (SHARD_WITHHOLDER, PENALTY_WITHHOLD, "slash_withhold_bps"),
    ],
)
def test_each_violation_is_penalised_with_evidence(behaviour: str, kind: str, slash_field: str) -> None:
    s = make_scenario([HONEST, HONEST, HONEST, behaviour], make_params(winners=3))
    run = run_round(s)
    o = run.result.outcome
    assert penalties_by_index(s, run) == {3: kind}
    pen = o.penalties[0]
    assert pen.slash_bps == getattr(s.params, slash_field) and pen.jail_rounds == s.params.jail_rounds
    ev = codec.decode(pen.evidence)
    assert ev[0] == kind and ev[1] == 1
    cheat = s.miners[3].address
    assert cheat not in o.ranking and cheat not in [p.miner for p in o.payouts]
    assert not o.void and len(o.winners) == 3
    assert_paid_by_the_rules(s, o)


def test_knn_attack_is_caught_and_honest_miners_are_never_slashed() -> None:
    s = make_scenario([HONEST, KNN, HONEST, HONEST, HONEST])
    s.miners[2].predict_batch = 7  # another "machine": different batching, same canonical inference
    s.miners[3].predict_batch = 1
    run = run_round(s)
    o = run.result.outcome
    knn = s.miners[1].address
    assert o.ranking[0] == knn  # its borrowed answers are perfect, so it is checked first...
    assert penalties_by_index(s, run) == {1: PENALTY_PREDICTION_FRAUD}  # ...and caught
    pen = o.penalties[0]
    assert pen.slash_bps == s.params.slash_prediction_fraud_bps
    kind, _r, _tx, whash, owners, samples = codec.decode(pen.evidence)
    assert kind == PENALTY_PREDICTION_FRAUD and whash == weights_hash(s.global_weights)
    others = len(s.miners) - 1  # exhaustive: every shard that scored it
    assert len(owners) == others and samples == others * s.params.test_shard_size
    assert o.winners == o.ranking[1 : 1 + s.params.winners]  # verification skipped it and went on
    assert knn not in [p.miner for p in o.payouts]
    assert_paid_by_the_rules(s, o)


def test_zero_model_knn_attack_is_caught_though_every_logit_ties() -> None:
    s = make_scenario([HONEST, KNN_ZERO, HONEST, HONEST])
    zero = s.miners[1]
    labels, z = predict(SPEC, zero.weights, s.miners[0].shard_x)
    assert (z == z[:, :1]).all() and (labels == 0).all()  # all ties: exact, to the lowest class
    run = run_round(s)
    assert penalties_by_index(s, run) == {1: PENALTY_PREDICTION_FRAUD}


def test_a_single_mismatched_label_is_fraud() -> None:
    zero = [np.zeros_like(w) for w in s_weights()]
    x = make_scenario([HONEST], trained=False).miners[0].shard_x
    labels, _ = predict(SPEC, zero, x)  # all class 0 (every logit ties)
    one_off = labels.copy()
    one_off[3] = 5
    ok = verify_claims(SPEC, zero, [ShardClaim(b"o" * 20, x, labels)])
    bad = verify_claims(SPEC, zero, [ShardClaim(b"o" * 20, x, one_off)])
    assert ok.ok and ok.mismatches == 0
    assert not bad.ok and bad.mismatches == 1


def s_weights() -> list[np.ndarray]:
    return make_scenario([HONEST], trained=False).global_weights


def test_lazy_and_untrained_honest_miners_are_not_slashed() -> None:
    s = make_scenario([HONEST, HONEST, HONEST, HONEST], make_params(winners=4), trained=False)
    s.miners[0].weights = [w.copy() for w in s.global_weights]  # lazy: reveals G_{r-1} itself
    s.miners[1].predict_batch = 3
    run = run_round(s)
    o = run.result.outcome
    assert o.penalties == []  # nobody is slashed...
    lazy = s.miners[0].address
    assert lazy in o.ranking and lazy not in o.winners and len(o.winners) == 3  # ...but G_{r-1} cannot win
    assert lazy not in [p.miner for p in o.payouts]  # nor earn anything as a voter
    assert_paid_by_the_rules(s, o)


# --------------------------------------------------------------------------- void rounds


def test_void_when_only_one_miner_commits() -> None:
    s = make_scenario([HONEST, ABSENT, ABSENT])
    run = run_round(s)
    o = run.result.outcome
    assert o.void and o.reason == VOID_TOO_FEW and o.payouts == [] and o.penalties == []
    assert not run.result.changed and o.model_hash == o.prev_model_hash
    assert run.transitions[-1] == (s.start_height + s.params.train_blocks - 1, "finalize")


def test_void_when_a_withholder_leaves_one_revealer_but_it_is_still_penalised() -> None:
    s = make_scenario([HONEST, WITHHOLD])
    run = run_round(s)
    o = run.result.outcome
    assert o.void and o.payouts == [] and not run.result.changed
    assert penalties_by_index(s, run) == {1: PENALTY_WITHHOLD}
    assert [t[1] for t in run.transitions] == ["shard", "predict", "finalize"]  # VOTE skipped


def test_void_when_a_shard_withholder_leaves_one_shard_but_it_is_still_penalised() -> None:
    s = make_scenario([HONEST, SHARD_WITHHOLDER])
    run = run_round(s)
    o = run.result.outcome
    assert o.void and o.reason == VOID_TOO_FEW and o.payouts == [] and not run.result.changed
    assert penalties_by_index(s, run) == {1: PENALTY_WITHHOLD}
    assert codec.decode(o.penalties[0].evidence)[-1] == b"shard"
    assert [t[1] for t in run.transitions] == ["shard", "finalize"]  # PREDICT and VOTE skipped
    assert run.record.shard_owners == [s.miners[0].address] and run.record.predictors == []


def test_void_when_too_few_valid_participants_remain() -> None:
    s = make_scenario([HONEST, VOTE_LIAR, VOTE_LIAR])
    run = run_round(s)
    o = run.result.outcome
    assert o.void and o.reason == VOID_TOO_FEW and o.payouts == [] and not run.result.changed
    assert penalties_by_index(s, run) == {1: PENALTY_VOTE_FRAUD, 2: PENALTY_VOTE_FRAUD}


def test_no_verified_winner_pays_nothing() -> None:
    s = make_scenario([KNN, KNN_ZERO, SILENT_VOTER])
    run = run_round(s)
    o = run.result.outcome
    assert not o.void and o.reason == NO_WINNER and o.winners == [] and o.payouts == []
    assert o.gains == [] and o.information == [NO_SCORE] * len(o.voters)  # nothing aggregated
    assert o.model_hash == o.prev_model_hash and not run.result.changed
    assert penalties_by_index(s, run) == {
        0: PENALTY_PREDICTION_FRAUD,
        1: PENALTY_PREDICTION_FRAUD,
        2: PENALTY_WITHHOLD,
    }


def test_one_penalty_per_miner_the_most_severe() -> None:
    s = make_scenario([HONEST, HONEST, HONEST, KNN])
    run = run_round(s)
    base = penalties_by_index(s, run)
    assert base == {3: PENALTY_PREDICTION_FRAUD}
    # same miner also lies in its vote: still one penalty, the worst
    d = run.data
    cheat = s.miners[3].address
    bad_vote = dataclasses.replace(d.votes[cheat], scores=[0] * len(d.votes[cheat].scores))
    votes = {**d.votes, cheat: bad_vote}
    res = finalize_round(
        RoundData(d.record, d.commits, d.shards, d.predictions, votes),
        s.global_weights,
        s.params,
        CHAIN_ID,
        s.known_models.__contains__,
    )
    # a vote fraudster is not a candidate, so it is never verified: the vote fraud is what is proven
    assert [(p.miner, p.kind) for p in res.outcome.penalties] == [(cheat, PENALTY_VOTE_FRAUD)]


# --------------------------------------------------------------------------- random mixes

CHEATS = {
    WITHHOLD: {PENALTY_WITHHOLD},
    SHARD_WITHHOLDER: {PENALTY_WITHHOLD},
    SILENT_VOTER: {PENALTY_WITHHOLD},
    MODEL_MISMATCH: {PENALTY_MODEL_MISMATCH},
    LABEL_MISMATCH: {PENALTY_LABEL_MISMATCH},
    VOTE_LIAR: {PENALTY_VOTE_FRAUD},
    KNN: {PENALTY_PREDICTION_FRAUD},
    KNN_ZERO: {PENALTY_PREDICTION_FRAUD},
}


@pytest.mark.parametrize("seed", range(6))
def test_random_behaviour_mixes_keep_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    kinds = [HONEST, HONEST, ABSENT, LABEL_LIAR, LAZY, LAZY_NOISE, *CHEATS]
    behaviours = [rng.choice(kinds) for _ in range(rng.randint(2, 6))]
    s = make_scenario(behaviours, make_params(winners=rng.randint(1, 3)), trained=rng.random() < 0.5)
    run = run_round(s)
    o = run.result.outcome
    pens = penalties_by_index(s, run)
    assert_paid_by_the_rules(s, o)
    for m in s.miners:
        if m.behaviour in (HONEST, ABSENT, LABEL_LIAR, LAZY, LAZY_NOISE):
            assert m.index not in pens, (behaviours, pens)  # honest miners are never penalised
        if m.behaviour in (LAZY, LAZY_NOISE):  # free riders never win and are never paid
            assert m.address not in o.winners and m.address not in [p.miner for p in o.payouts]
        elif m.index in pens:
            assert pens[m.index] in CHEATS[m.behaviour], (behaviours, pens)
        if m.index in pens:
            assert m.address not in o.winners and m.address not in [p.miner for p in o.payouts]
    if o.void:
        assert o.payouts == [] and not run.result.changed
    else:
        assert len(o.ranking) >= 2 and len(o.winners) <= s.params.winners
    assert run.result.changed == bool(o.winners)
    # every candidate up to the last winner was verified: no borrowed-answer cheat among them got away
    verified = o.ranking[: o.ranking.index(o.winners[-1]) + 1] if o.winners else o.ranking
    for m in s.miners:
        if m.behaviour in (KNN, KNN_ZERO) and m.address in verified:
            assert pens.get(m.index) == PENALTY_PREDICTION_FRAUD
