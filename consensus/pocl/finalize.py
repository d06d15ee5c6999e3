"""Deterministic round finalization (DESIGN §5.2 step 4; docs/pocl-protocol.md).

`finalize_round` is a pure function of the round's record and entries, the previous global model, the
params, the chain id and which model hashes are already on chain (nothing of the finalizing block enters);
every node runs it in the execution of the round's last block and must get the same `RoundOutcome` bytes
and the same new model. It re-derives everything it needs from the entries (commitment checks included)
and iterates only in canonical address order, so the order in which txs arrived or entries are passed in
cannot matter.

Steps:
1. violations that need no model: withholding (committed, no reveal; revealed, no vote), reveal not
   matching the model commitment, labels not matching the label commitment; the round seed from the
   salts of the opened label commitments (`round_seed`: no block field, no proposer choice);
2. accuracy matrix A[i][j] (bps, integer) of every revealed predictor i on every voter j's shard;
3. vote fraud: a vote whose scores differ from column j of A; such voters are not valid voters;
4. score_i = integer median of A[i][j] over valid voters j != i (even count: floor of the mean of the
   two middle values);
5. candidates = scored predictors with no violation; fewer than 2 → void round (penalties still apply);
6. ranking by score desc, ties by H(seed, address); walk it until K candidates pass: each candidate
   reached is verified on EVERY shard that scored it (no sampling) and is prediction fraud on any
   mismatch; one whose weights are a model already on chain (G_{r-1} or earlier) or are revealed by more
   than one miner this round passes no one: it cannot win, the walk goes on;
7. robust aggregation (ml.model.aggregate, params.aggregation) of the winners' weights in address order;
   a clipping bound comes from the update norms of all unpenalised, distinct, new revealed models, not
   from the winners alone;
8. payouts (consensus.pocl.rewards) and one penalty per violating miner (the most severe).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

import numpy as np
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import (
    NO_SCORE,
    PENALTY_LABEL_MISMATCH,
    PENALTY_MODEL_MISMATCH,
    PENALTY_PREDICTION_FRAUD,
    PENALTY_SEVERITY,
    PENALTY_VOTE_FRAUD,
    PENALTY_WITHHOLD,
    Penalty,
    RoundData,
    RoundOutcome,
)
from pocl.consensus.pocl.rewards import compute_payouts
from pocl.consensus.pocl.txs import (
    TEST_X_DTYPE,
    accuracy_bps,
    check_array,
    check_labels,
    label_commitment,
    model_commitment,
    weights_digest,
)
from pocl.consensus.pocl.verify import ShardClaim, Verdict, verify_claims
from pocl.ledger import codec
from pocl.ledger.hashing import tagged_hash

TAG_TIEBREAK = b"pocl/tiebreak"
TAG_ROUND_SEED = b"pocl/round-seed"

VOID_TOO_FEW = "fewer than 2 valid participants"
NO_WINNER = "no candidate passed verification"


@dataclasses.dataclass(frozen=True)
class FinalizeResult:
    outcome: RoundOutcome
    weights: list[np.ndarray]  # G_r (the previous model itself when nothing was aggregated)
    changed: bool  # a new model was aggregated


def round_seed(chain_id: str, round_: int, salts: list[bytes]) -> bytes:
    """The finalization seed, bound to chain and round, from the salts of every label commitment opened
    in VOTE, in voter address order (docs/pocl-protocol.md §4). Each salt was committed in COMMIT, before
    any outcome could be known, and revealed afterwards; no block field enters, so no proposer picks it.
    A miner that withholds its vote is slashed as a withholder and its salt is simply absent (the one-bit
    "last revealer" choice, priced in §12); a salt that does not open its commitment is not used."""
    return tagged_hash(TAG_ROUND_SEED, codec.encode([chain_id, round_, list(salts)]))


def median_bps(values: list[int]) -> int:
    """Integer median; with an even count, floor of the mean of the two middle values."""
    if not values:
        raise ValueError("median of nothing")
    s = sorted(values)
    n = len(s)
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) // 2


def tiebreak_key(seed: bytes, address: bytes) -> bytes:
    return tagged_hash(TAG_TIEBREAK, seed + address)


def rank_candidates(scores: dict[bytes, int], seed: bytes) -> list[bytes]:
    return sorted(scores, key=lambda a: (-scores[a], tiebreak_key(seed, a), a))


def _others(committers: list[bytes], me: bytes) -> list[bytes]:
    return [c for c in committers if c != me]


def finalize_round(
    data: RoundData,
    global_weights: list[np.ndarray],
    params: PoclParams,
    chain_id: str,
    on_chain: Callable[[bytes], bool],
) -> FinalizeResult:
    """`on_chain(h)`: is `h` the hash of a global model the chain already holds (any earlier round)?
    G_{r-1} (`record.prev_model_hash`) counts as on chain whatever it answers."""
    from pocl.ml.model.aggregate import CLIP, aggregate, update_norm
    from pocl.ml.model.weights import decode_weights, weights_hash

    rec = data.record
    r = rec.round
    spec = params.model_spec()
    prev_hash = weights_hash(global_weights)
    if prev_hash != rec.prev_model_hash:
        raise ValueError("global weights do not match the round's prev_model_hash")

    violations: dict[bytes, dict[str, bytes]] = {}

    def violate(miner: bytes, kind: str, evidence: list[object]) -> None:
        violations.setdefault(miner, {}).setdefault(kind, codec.encode([kind, r, *evidence]))

    # ---- 1. participants and commitment checks (re-derived from the entries, never trusted)
    committers = sorted(data.commits)
    predictors = sorted(p for p in data.predictions if p in data.commits)
    revealed: list[bytes] = []
    for p in predictors:
        entry = data.predictions[p]
        digest = weights_digest(entry.weights)
        expected = data.commits[p].model_commit
        if model_commitment(chain_id, r, p, digest) == expected:
            revealed.append(p)
        else:
            violate(p, PENALTY_MODEL_MISMATCH, [entry.tx_hash, expected, digest])
    # Withholding is only provable for a phase that actually ran: a round cut short (too few
    # participants) never gave anyone the chance to reveal, so nobody is penalised for not revealing.
    for c in committers:
        if c not in data.predictions and rec.predict_start > 0:
            violate(c, PENALTY_WITHHOLD, [data.commits[c].tx_hash, b"weights"])
    revealed_set = set(revealed)
    voters: list[bytes] = []
    labels: dict[bytes, np.ndarray] = {}
    for v in sorted(m for m in data.votes if m in revealed_set):
        entry = data.votes[v]
        got = label_commitment(chain_id, r, v, entry.labels, entry.salt)
        if got != data.commits[v].label_commit:
            violate(v, PENALTY_LABEL_MISMATCH, [entry.tx_hash, data.commits[v].label_commit, got])
            continue
        voters.append(v)
        labels[v] = check_labels(entry.labels, params, "labels")
    for p in revealed:
        if p not in data.votes and rec.vote_start > 0:
            violate(p, PENALTY_WITHHOLD, [data.commits[p].tx_hash, b"labels"])
    seed = round_seed(chain_id, r, [data.votes[v].salt for v in voters])

    # ---- 2. accuracy matrix: rows = revealed predictors, columns = voters with committed labels
    claimed: dict[tuple[bytes, bytes], np.ndarray] = {}
    for i in revealed:
        others = _others(committers, i)
        preds = data.predictions[i].predictions
        if len(preds) != len(others):
            raise ValueError("prediction entry does not cover every other committer")
        for owner, arr in zip(others, preds):
            claimed[(i, owner)] = check_labels(arr, params, "predictions")
    acc: dict[tuple[bytes, bytes], int] = {
        (i, j): accuracy_bps(claimed[(i, j)], labels[j]) for i in revealed for j in voters if i != j
    }

    # ---- 3. vote fraud: claimed scores vs recomputed column
    valid_voters: list[bytes] = []
    for j in voters:
        rows = _others(revealed, j)
        scores = data.votes[j].scores
        if len(scores) != len(rows):
            raise ValueError("vote entry does not score every other revealed predictor")
        bad = next((k for k, i in enumerate(rows) if scores[k] != acc[(i, j)]), None)
        if bad is None:
            valid_voters.append(j)
        else:
            i = rows[bad]
            violate(j, PENALTY_VOTE_FRAUD, [data.votes[j].tx_hash, i, scores[bad], acc[(i, j)]])

    # ---- 4. scores: median over valid voters j != i
    score: dict[bytes, int] = {}
    for i in revealed:
        column = [acc[(i, j)] for j in valid_voters if j != i]
        if column:
            score[i] = median_bps(column)

    # ---- 5./6. candidates, ranking, verification
    candidates = {i: s for i, s in score.items() if i not in violations}
    ranking = rank_candidates(candidates, seed)
    digest = {i: data.predictions[i].weights_hash for i in revealed}
    copies = Counter(digest.values())
    known = {h for h in copies if h == prev_hash or on_chain(h)}
    winners: list[bytes] = []
    reason = ""
    void = len(candidates) < 2
    if void:
        reason = VOID_TOO_FEW
    else:
        scorers = {i: [j for j in valid_voters if j != i] for i in ranking}
        for cand in ranking:
            if len(winners) >= params.winners:
                break
            entry = data.predictions[cand]
            verdict = _verify_candidate(data, cand, scorers[cand], claimed, spec, params)
            if not verdict.ok:
                violate(
                    cand,
                    PENALTY_PREDICTION_FRAUD,
                    [entry.tx_hash, entry.weights_hash, list(verdict.checked_owners), verdict.samples],
                )
            elif digest[cand] not in known and copies[digest[cand]] == 1:
                winners.append(cand)
            # else: a model already on chain (free-riding) or revealed by several miners (Sybils) cannot
            # win; it is verified all the same, so faked claims behind it are still prediction fraud
        if not winners:
            reason = NO_WINNER

    # ---- 7. aggregation
    new_weights = global_weights
    changed = False
    if winners:
        rule = params.aggregation_rule()
        models = {w: decode_weights(spec, data.predictions[w].weights) for w in sorted(winners)}
        reference = None
        if rule.kind == CLIP:
            # the bound's reference: every unpenalised revealed model with new, distinct weights (one per
            # hash, address order), so a boosted winner is measured against the whole round, not K = 2
            fresh: dict[bytes, bytes] = {}
            for i in revealed:
                if i not in violations and digest[i] not in known:
                    fresh.setdefault(digest[i], i)
            reference = []
            for i in sorted(fresh.values()):
                w = models[i] if i in models else decode_weights(spec, data.predictions[i].weights)
                reference.append(update_norm(w, global_weights))
        new_weights = aggregate(global_weights, list(models.values()), rule, reference).weights
        changed = True
    model_hash = weights_hash(new_weights) if changed else prev_hash

    # ---- 8. payouts and penalties
    honest_voters = [v for v in valid_voters if v not in violations]
    payouts = compute_payouts(winners, [score[w] for w in winners], honest_voters, params)
    penalties = [_penalty(m, violations[m], params) for m in sorted(violations)]

    outcome = RoundOutcome(
        round=r,
        void=void,
        reason=reason,
        seed=seed,
        predictors=revealed,
        voters=voters,
        accuracy=[[acc.get((i, j), NO_SCORE) for j in voters] for i in revealed],
        valid_voters=valid_voters,
        scores=[score.get(i, NO_SCORE) for i in revealed],
        ranking=ranking,
        winners=winners,
        payouts=payouts,
        penalties=penalties,
        prev_model_hash=prev_hash,
        model_hash=model_hash,
    )
    return FinalizeResult(outcome, new_weights, changed)


def _verify_candidate(
    data: RoundData,
    cand: bytes,
    owners: list[bytes],
    claimed: dict[tuple[bytes, bytes], np.ndarray],
    spec: object,
    params: PoclParams,
) -> Verdict:
    """Canonical inference of the candidate's revealed weights on all its scoring shards vs its claims."""
    from pocl.ml.model.weights import decode_weights

    shape = (params.test_shard_size, *params.input_shape)
    claims = [
        ShardClaim(o, check_array(data.commits[o].test_x, TEST_X_DTYPE, shape, "test_x"), claimed[(cand, o)])
        for o in owners
    ]
    weights = decode_weights(spec, data.predictions[cand].weights)  # type: ignore[arg-type]
    return verify_claims(spec, weights, claims)


def slash_bps_for(kind: str, params: PoclParams) -> int:
    return {
        PENALTY_WITHHOLD: params.slash_withhold_bps,
        PENALTY_MODEL_MISMATCH: params.slash_mismatch_bps,
        PENALTY_LABEL_MISMATCH: params.slash_mismatch_bps,
        PENALTY_PREDICTION_FRAUD: params.slash_prediction_fraud_bps,
        PENALTY_VOTE_FRAUD: params.slash_vote_fraud_bps,
    }[kind]


def _penalty(miner: bytes, kinds: dict[str, bytes], params: PoclParams) -> Penalty:
    worst = next(k for k in PENALTY_SEVERITY if k in kinds)
    return Penalty(miner, worst, slash_bps_for(worst, params), params.jail_rounds, kinds[worst])
