"""Stateful rules for PoCL transactions: who may send what, when (DESIGN §5.2).

Each `accept_*` checks a decoded payload against the open round record and returns the updated record
plus the entry to store; it raises `PayloadError` (stable `code`) for a tx that must be rejected.

Rules:
- the payload's round is the open round, and the round is in the phase for the kind;
- commit: sender is eligible and has not committed;
- shard: sender committed and has not opened its shard; the inputs open its shard commitment, and the
  shard is new: no shard with the same digest (`txs.shard_digest`, row order ignored) was opened in this
  round or in the last `memory_rounds` rounds. A shard that fails either is rejected, so its committer
  ends the phase without a shard and is penalised as a withholder;
- predict: sender opened its shard and has not predicted; exactly one prediction per OTHER shard owner;
- vote: sender revealed valid weights and has not voted; exactly one score per OTHER revealed predictor.

A weights or labels reveal that does not match its commitment (weights vs model_commit, labels vs
label_commit) is NOT
rejected: it is accepted, flagged in the entry (`reveal_ok` / `labels_ok`) and penalised at
finalization. Rejecting it would let the cheater walk away with at most a withholding penalty and
leave no evidence on chain; accepting it records the proof in the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import (
    CommitEntry,
    PredictEntry,
    RoundRecord,
    ShardEntry,
    VoteEntry,
    insert_sorted,
)
from pocl.consensus.pocl.schedule import tx_in_phase
from pocl.consensus.pocl.txs import (
    KIND_POCL_COMMIT,
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    KIND_POCL_VOTE,
    CommitPayload,
    PayloadError,
    PredictPayload,
    ShardPayload,
    VotePayload,
    check_commit_payload,
    check_predict_payload,
    check_shard_payload,
    check_vote_payload,
    label_commitment,
    model_commitment,
    shard_commitment,
    shard_digest,
    weights_digest,
)

# ---- stable error codes (stateful)
E_NO_ROUND = "pocl_no_round"  # no round is open (between rounds, or PoCL not started)
E_WRONG_ROUND = "pocl_wrong_round"
E_WRONG_PHASE = "pocl_wrong_phase"
E_NOT_ELIGIBLE = "pocl_not_eligible"
E_DUPLICATE = "pocl_duplicate"  # one tx per miner per phase
E_NOT_COMMITTER = "pocl_not_committer"
E_NO_SHARD = "pocl_no_shard"  # only miners that opened their shard predict
E_SHARD_MISMATCH = "pocl_shard_mismatch"  # the inputs do not open the sender's shard commitment
E_SHARD_SEEN = "pocl_shard_seen"  # the same shard was opened in this round or a recent one
E_NOT_REVEALED = "pocl_not_revealed"  # only miners whose weights matched their commitment vote
E_WRONG_COUNT = "pocl_wrong_count"  # predictions / scores list length


def _check_round_phase(rec: RoundRecord | None, kind: str, round_: int) -> RoundRecord:
    if rec is None:
        raise PayloadError(E_NO_ROUND, "no PoCL round is open")
    if round_ != rec.round:
        raise PayloadError(E_WRONG_ROUND, f"round {round_} is not the open round {rec.round}")
    if not tx_in_phase(rec, kind):
        raise PayloadError(
            E_WRONG_PHASE, f"{kind} not accepted in phase {rec.phase_name} of round {rec.round}"
        )
    return rec


def _contains(sorted_list: list[bytes], item: bytes) -> bool:
    return item in set(sorted_list)


def _check_one_per_other(count: int, group: list[bytes], what: str) -> None:
    """A prediction or vote judges every OTHER member of its group, so it carries len(group) - 1 items."""
    expected = len(group) - 1
    if count != expected:
        raise PayloadError(E_WRONG_COUNT, f"expected {expected} {what}, got {count}")


def accept_commit(
    rec: RoundRecord | None,
    sender: bytes,
    p: CommitPayload,
    params: PoclParams,
    height: int,
    tx_hash: bytes,
) -> tuple[RoundRecord, CommitEntry]:
    check_commit_payload(p, params)
    rec = _check_round_phase(rec, KIND_POCL_COMMIT, p.round)
    if not _contains(rec.eligible, sender):
        raise PayloadError(E_NOT_ELIGIBLE, f"sender is not an eligible miner of round {rec.round}")
    if _contains(rec.committers, sender):
        raise PayloadError(E_DUPLICATE, "sender already committed in this round")
    entry = CommitEntry(sender, height, tx_hash, p.model_commit, p.label_commit, p.shard_commit, p.n_train)
    return dataclasses.replace(rec, committers=insert_sorted(rec.committers, sender)), entry


def accept_shard(
    rec: RoundRecord | None,
    sender: bytes,
    p: ShardPayload,
    commit: CommitEntry | None,
    params: PoclParams,
    chain_id: str,
    height: int,
    tx_hash: bytes,
    seen: Callable[[bytes], bool],
) -> tuple[RoundRecord, ShardEntry]:
    """`seen(digest)`: was a shard with this digest opened in this round or the last `memory_rounds`?"""
    x = check_shard_payload(p, params)
    rec = _check_round_phase(rec, KIND_POCL_SHARD, p.round)
    if commit is None or not _contains(rec.committers, sender):
        raise PayloadError(E_NOT_COMMITTER, "only miners that committed this round may open a shard")
    if _contains(rec.shard_owners, sender):
        raise PayloadError(E_DUPLICATE, "sender already opened its shard in this round")
    digest = shard_digest(x)
    if shard_commitment(chain_id, rec.round, sender, digest) != commit.shard_commit:
        raise PayloadError(E_SHARD_MISMATCH, "the shard does not open the sender's shard commitment")
    if seen(digest):
        raise PayloadError(
            E_SHARD_SEEN, f"this shard was already used in round {rec.round} or the {params.memory_rounds} before"
        )
    entry = ShardEntry(sender, height, tx_hash, p.test_x, digest)
    return dataclasses.replace(rec, shard_owners=insert_sorted(rec.shard_owners, sender)), entry


def accept_predict(
    rec: RoundRecord | None,
    sender: bytes,
    p: PredictPayload,
    commit: CommitEntry | None,
    params: PoclParams,
    chain_id: str,
    height: int,
    tx_hash: bytes,
) -> tuple[RoundRecord, PredictEntry]:
    rec = _check_round_phase(rec, KIND_POCL_PREDICT, p.round)
    if commit is None or not _contains(rec.committers, sender):
        raise PayloadError(E_NOT_COMMITTER, "only miners that committed this round may predict")
    if not _contains(rec.shard_owners, sender):
        raise PayloadError(E_NO_SHARD, "only miners that opened their shard may predict")
    if _contains(rec.predictors, sender):
        raise PayloadError(E_DUPLICATE, "sender already predicted in this round")
    _check_one_per_other(
        len(p.predictions), rec.shard_owners, "prediction arrays (one per other shard owner)"
    )
    check_predict_payload(p, params)
    digest = weights_digest(p.weights)
    ok = model_commitment(chain_id, rec.round, sender, digest) == commit.model_commit
    entry = PredictEntry(sender, height, tx_hash, p.weights, digest, ok, list(p.predictions))
    new = dataclasses.replace(
        rec,
        predictors=insert_sorted(rec.predictors, sender),
        revealed=insert_sorted(rec.revealed, sender) if ok else rec.revealed,
    )
    return new, entry


def accept_vote(
    rec: RoundRecord | None,
    sender: bytes,
    p: VotePayload,
    commit: CommitEntry | None,
    params: PoclParams,
    chain_id: str,
    height: int,
    tx_hash: bytes,
) -> tuple[RoundRecord, VoteEntry]:
    check_vote_payload(p, params)
    rec = _check_round_phase(rec, KIND_POCL_VOTE, p.round)
    if commit is None or not _contains(rec.revealed, sender):
        raise PayloadError(
            E_NOT_REVEALED, "only miners whose revealed weights matched their commitment may vote"
        )
    if _contains(rec.voters, sender):
        raise PayloadError(E_DUPLICATE, "sender already voted in this round")
    _check_one_per_other(len(p.scores), rec.revealed, "scores (one per other revealed predictor)")
    ok = label_commitment(chain_id, rec.round, sender, p.labels, p.salt) == commit.label_commit
    entry = VoteEntry(sender, height, tx_hash, p.labels, p.salt, list(p.scores), ok)
    return dataclasses.replace(rec, voters=insert_sorted(rec.voters, sender)), entry
