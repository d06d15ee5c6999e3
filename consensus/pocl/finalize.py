"""Deterministic round finalization (DESIGN §5.2 step 4; docs/pocl-protocol.md).

`finalize_round` is a pure function of the round's record and entries, the previous global model, the
params, the chain id and which model hashes are already on chain (nothing of the finalizing block enters);
every node runs it in the execution of the round's last block and must get the same `RoundOutcome` bytes
and the same new model. It re-derives everything it needs from the entries (commitment checks included)
and iterates only in canonical address order, so the order in which txs arrived or entries are passed in
cannot matter.

Steps:
1. violations that need no model: withholding (committed, then no shard, no weights or no labels),
   reveal not matching the model commitment, labels not matching the label commitment; the round seed
   from the salts of the opened label commitments (`round_seed`: no block field, no proposer choice);
2. accuracy matrix A[i][j] (bps, integer) of every revealed predictor i on every voter j's shard, and
   the baseline B[j]: the accuracy of G_{r-1} itself on shard j (canonical inference, every node);
3. vote fraud: a vote whose scores differ from column j of A; such voters are not valid voters;
4. score_i = integer median of A[i][j] over valid voters j != i (even count: floor of the mean of the
   two middle values);
5. candidates = scored predictors with no violation; fewer than 2 → void round (penalties still apply);
6. ranking by score desc, ties by H(seed, address); walk it until K candidates pass: each candidate
   reached is verified on EVERY shard that scored it (no sampling) and is prediction fraud on any
   mismatch. A verified candidate still cannot win (the walk goes on) when its weights are not new -
   G_{r-1}, an earlier global model, weights revealed in the last `memory_rounds` rounds, or weights
   another miner revealed this round - or when it labels every scoring shard exactly as G_{r-1} does
   (a no-op model: G_{r-1} plus noise);
7. robust aggregation (ml.model.aggregate, params.aggregation) of the winners' weights in address order;
   a clipping bound comes from the update norms of all unpenalised, distinct, new revealed models that
   change some label of G_{r-1} (verified, or proved on one sample), not from the winners alone;
8. rewards for verified work only (consensus.pocl.rewards): a winner's gain is the median over its
   scoring shards of A[w][j] - B[j], and only a positive gain is paid; a voter is paid for the
   information its shard carried, I[j] = the samples of shard j that G_r labels right and G_{r-1} got
   wrong, and only if its own model won with a positive gain (a miner that only evaluates - G_{r-1}
   again, noise on it, an old copy - earns nothing); one penalty per violating miner (the most severe).
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
    accuracy_bps,
    check_labels,
    check_test_x,
    label_commitment,
    model_commitment,
    shard_commitment,
    shard_digest,
    weights_digest,
)
from pocl.consensus.pocl.verify import ShardClaim, Verdict, verify_claims
from pocl.ledger import codec
from pocl.ledger.hashing import tagged_hash

TAG_TIEBREAK = b"pocl/tiebreak"
TAG_ROUND_SEED = b"pocl/round-seed"

VOID_TOO_FEW = "fewer than 2 valid participants"
NO_WINNER = "no candidate qualified (verified, with new weights that change G_{r-1}'s labels)"


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
    known_model: Callable[[bytes], bool],
) -> FinalizeResult:
    """`known_model(h)`: are weights with hash `h` not new - a global model the chain already holds, or
    weights revealed in the last `memory_rounds` rounds? G_{r-1} (`record.prev_model_hash`) is never new
    whatever it answers."""
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
    shard_x: dict[bytes, np.ndarray] = {}
    for c in committers:
        entry = data.shards.get(c)
        if entry is None:
            continue
        x = check_test_x(entry.test_x, params)
        if shard_commitment(chain_id, r, c, shard_digest(x)) == data.commits[c].shard_commit:
            shard_x[c] = x
    owners = sorted(shard_x)
    # Withholding is only provable for a phase that actually ran: a round cut short (too few
    # participants) never gave anyone the chance to reveal, so nobody is penalised for not revealing.
    for c in committers:
        if c not in shard_x and rec.shard_start > 0:
            violate(c, PENALTY_WITHHOLD, [data.commits[c].tx_hash, b"shard"])
    predictors = sorted(p for p in data.predictions if p in shard_x)
    revealed: list[bytes] = []
    for p in predictors:
        entry = data.predictions[p]
        digest = weights_digest(entry.weights)
        expected = data.commits[p].model_commit
        if model_commitment(chain_id, r, p, digest) == expected:
            revealed.append(p)
        else:
            violate(p, PENALTY_MODEL_MISMATCH, [entry.tx_hash, expected, digest])
    for c in owners:
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

    # ---- 2. accuracy matrix (rows = revealed predictors, columns = voters) and G_{r-1}'s baseline
    claimed: dict[tuple[bytes, bytes], np.ndarray] = {}
    for i in revealed:
        others = _others(owners, i)
        preds = data.predictions[i].predictions
        if len(preds) != len(others):
            raise ValueError("prediction entry does not cover every other shard owner")
        for owner, arr in zip(others, preds):
            claimed[(i, owner)] = check_labels(arr, params, "predictions")
    acc: dict[tuple[bytes, bytes], int] = {
        (i, j): accuracy_bps(claimed[(i, j)], labels[j]) for i in revealed for j in voters if i != j
    }
    base_labels = _labels_on(spec, global_weights, voters, shard_x)

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
    baseline = {j: accuracy_bps(base_labels[j], labels[j]) for j in valid_voters}

    # ---- 4. scores: median over valid voters j != i
    score: dict[bytes, int] = {}
    for i in revealed:
        column = [acc[(i, j)] for j in valid_voters if j != i]
        if column:
            score[i] = median_bps(column)
    scorers = {i: [j for j in valid_voters if j != i] for i in score}

    def first_change(i: bytes) -> tuple[bytes, int] | None:
        """The first sample (shard owners in address order) where i's claimed label differs from G_{r-1}'s
        on the shards that scored it; None when i claims to label exactly like G_{r-1} (a no-op)."""
        for j in scorers[i]:
            differs = np.flatnonzero(claimed[(i, j)] != base_labels[j])
            if differs.size:
                return j, int(differs[0])
        return None

    decoded: dict[bytes, list[np.ndarray]] = {}

    def weights_of(i: bytes) -> list[np.ndarray]:
        """i's revealed weights, decoded once however many steps need them."""
        if i not in decoded:
            decoded[i] = decode_weights(spec, data.predictions[i].weights)
        return decoded[i]

    def fraud(i: bytes, verdict: Verdict) -> None:
        entry = data.predictions[i]
        violate(
            i,
            PENALTY_PREDICTION_FRAUD,
            [entry.tx_hash, entry.weights_hash, list(verdict.checked_owners), verdict.samples],
        )

    # ---- 5./6. candidates, ranking, verification
    candidates = {i: s for i, s in score.items() if i not in violations}
    ranking = rank_candidates(candidates, seed)
    digest = {i: data.predictions[i].weights_hash for i in revealed}
    copies = Counter(digest.values())
    known = {h for h in copies if h == prev_hash or known_model(h)}

    def new_weights(i: bytes) -> bool:
        return digest[i] not in known and copies[digest[i]] == 1

    winners: list[bytes] = []
    verified: set[bytes] = set()  # candidates whose claims were all checked and true
    reason = ""
    void = len(candidates) < 2
    if void:
        reason = VOID_TOO_FEW
    else:
        for cand in ranking:
            if len(winners) >= params.winners:
                break
            claims = [ShardClaim(o, shard_x[o], claimed[(cand, o)]) for o in scorers[cand]]
            verdict = verify_claims(spec, weights_of(cand), claims)
            if not verdict.ok:
                fraud(cand, verdict)
            else:
                verified.add(cand)
                if new_weights(cand) and first_change(cand) is not None:
                    winners.append(cand)
            # else: weights already known (free-riding), revealed by several miners (Sybils) or labelling
            # like G_{r-1} (noise on it) cannot win; verified all the same, so faked claims are fraud
        if not winners:
            reason = NO_WINNER

    # ---- 7. aggregation
    new_global = global_weights
    changed = False
    if winners:
        rule = params.aggregation_rule()
        models = {w: weights_of(w) for w in sorted(winners)}
        reference = None
        if rule.kind == CLIP:
            # the bound's reference: every unpenalised scored model with new, distinct weights (one per
            # hash, address order) that changes some label of G_{r-1}, so a boosted winner is measured
            # against the whole round, not K = 2, and no-op models (G_{r-1} plus noise) cannot shrink the
            # bound to nothing. A model not verified in the walk proves it moved on one sample.
            fresh: dict[bytes, bytes] = {}
            for i in revealed:
                if i not in violations and i in scorers and digest[i] not in known:
                    fresh.setdefault(digest[i], i)
            reference = []
            for i in sorted(fresh.values()):
                change = first_change(i)
                if change is None:
                    continue
                if i not in verified:  # re-run its model on that one sample: a false claim is fraud
                    o, k = change
                    proof = verify_claims(
                        spec, weights_of(i), [ShardClaim(o, shard_x[o][k : k + 1], claimed[(i, o)][k : k + 1])]
                    )
                    if not proof.ok:
                        fraud(i, proof)
                        continue
                reference.append(update_norm(weights_of(i), global_weights))
        new_global = aggregate(global_weights, list(models.values()), rule, reference).weights
        changed = True
    model_hash = weights_hash(new_global) if changed else prev_hash

    # ---- 8. rewards for verified work, and penalties
    gains = [median_bps([acc[(w, j)] - baseline[j] for j in scorers[w]]) for w in winners]
    information: dict[bytes, int] = {}
    if changed:
        new_labels = _labels_on(spec, new_global, valid_voters, shard_x)
        for j in valid_voters:
            fixed = (new_labels[j] == labels[j]) & (base_labels[j] != labels[j])
            information[j] = int(np.count_nonzero(fixed))
    # a voter is paid for its shard's information only if its own model won AND beat G_{r-1}: evaluation
    # by a miner that contributes no improving model (G_{r-1} again, noise on it, an old copy) earns nothing
    gained = {w for w, g in zip(winners, gains) if g > 0}
    paid_voters = [v for v in valid_voters if v in gained and v not in violations and information.get(v)]
    payouts = compute_payouts(winners, gains, paid_voters, [information[v] for v in paid_voters], params)
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
        baseline=[baseline.get(j, NO_SCORE) for j in voters],
        ranking=ranking,
        winners=winners,
        gains=gains,
        information=[information.get(j, NO_SCORE) for j in voters],
        payouts=payouts,
        penalties=penalties,
        prev_model_hash=prev_hash,
        model_hash=model_hash,
    )
    return FinalizeResult(outcome, new_global, changed)


def _labels_on(
    spec: object,
    weights: list[np.ndarray],
    owners: list[bytes],
    shard_x: dict[bytes, np.ndarray],
) -> dict[bytes, np.ndarray]:
    """Canonical labels of one model on several shards (one batch), by shard owner."""
    from pocl.ml.model.inference import predict

    if not owners:
        return {}
    out, _ = predict(
        spec,
        weights,  # type: ignore[arg-type]
        np.concatenate([shard_x[o] for o in owners], axis=0),
    )
    n = shard_x[owners[0]].shape[0]
    return {o: out[k * n : (k + 1) * n] for k, o in enumerate(owners)}


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
