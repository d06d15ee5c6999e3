"""PoCL round records kept in state, with their canonical encodings (DESIGN §4, §5.2).

A round is stored as one small `RoundRecord` (phase, heights, participant sets, and once finalized the
`RoundOutcome`) plus one entry per miner per phase (`CommitEntry`, `PredictEntry`, `VoteEntry`) under
their own keys, so a tx only rewrites its own entry and the (small) record, never every miner's weights.
Participant lists are kept sorted by address: that canonical order is what predictions and scores
are indexed by, and it makes the record independent of tx arrival order.

`RoundData` is the in-memory bundle (record + entries) that `finalize_round` consumes.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable
from typing import ClassVar

from pocl.consensus.pocl.txs import NdArray
from pocl.ledger.codec import Struct
from pocl.ledger.hashing import HASH_LEN
from pocl.ledger.keys import ADDRESS_LEN

PHASE_COMMIT = 1
PHASE_SHARD = 2
PHASE_PREDICT = 3
PHASE_VOTE = 4
PHASE_DONE = 5
PHASE_NAMES = {
    PHASE_COMMIT: "commit",
    PHASE_SHARD: "shard",
    PHASE_PREDICT: "predict",
    PHASE_VOTE: "vote",
    PHASE_DONE: "done",
}

# penalty kinds (stable strings: they appear in state, RPC and reports)
PENALTY_WITHHOLD = "withhold"  # committed, then did not reveal its shard, weights or labels
PENALTY_MODEL_MISMATCH = "model_mismatch"  # revealed weights do not hash to the model commitment
PENALTY_LABEL_MISMATCH = "label_mismatch"  # revealed labels/salt do not hash to the label commitment
PENALTY_PREDICTION_FRAUD = "prediction_fraud"  # claimed labels not produced by the revealed model
PENALTY_VOTE_FRAUD = "vote_fraud"  # scores differ from the ones every node recomputes
# most severe first: a miner with several violations in one round is penalised once, for the worst
PENALTY_SEVERITY = (
    PENALTY_PREDICTION_FRAUD,
    PENALTY_VOTE_FRAUD,
    PENALTY_MODEL_MISMATCH,
    PENALTY_LABEL_MISMATCH,
    PENALTY_WITHHOLD,
)

ROLE_WINNER = "winner"
ROLE_VOTER = "voter"

NO_SCORE = -1  # accuracy/score cell with no value (diagonal, or no valid voter)


def insert_sorted(items: list[bytes], item: bytes) -> list[bytes]:
    """A new sorted list with `item` added (the record's lists are canonical: sorted, no duplicates)."""
    out = list(items)
    i = bisect.bisect_left(out, item)
    if i < len(out) and out[i] == item:
        return out
    out.insert(i, item)
    return out


# --------------------------------------------------------------------------- per-miner entries


@dataclasses.dataclass(frozen=True)
class CommitEntry(Struct):
    miner: bytes
    height: int
    tx_hash: bytes
    model_commit: bytes
    label_commit: bytes
    shard_commit: bytes
    n_train: int

    BYTES_LEN: ClassVar[dict[str, int]] = {
        "miner": ADDRESS_LEN,
        "model_commit": HASH_LEN,
        "label_commit": HASH_LEN,
        "shard_commit": HASH_LEN,
    }
    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class ShardEntry(Struct):
    """An opened shard commitment (only matching, fresh shards are accepted: `validate.accept_shard`)."""

    miner: bytes
    height: int
    tx_hash: bytes
    test_x: NdArray
    digest: bytes  # txs.shard_digest(test_x)

    BYTES_LEN: ClassVar[dict[str, int]] = {"miner": ADDRESS_LEN, "digest": HASH_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class PredictEntry(Struct):
    miner: bytes
    height: int
    tx_hash: bytes
    weights: bytes  # canonical weight bytes as revealed
    weights_hash: bytes
    reveal_ok: bool  # weights hash to the model commitment (else a model_mismatch violation)
    predictions: list[NdArray]  # one per other shard owner, canonical order

    BYTES_LEN: ClassVar[dict[str, int]] = {"miner": ADDRESS_LEN, "weights_hash": HASH_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class VoteEntry(Struct):
    miner: bytes
    height: int
    tx_hash: bytes
    labels: NdArray
    salt: bytes
    scores: list[int]  # as claimed, one per other revealed predictor, canonical order
    labels_ok: bool  # labels/salt hash to the label commitment (else a label_mismatch violation)

    BYTES_LEN: ClassVar[dict[str, int]] = {"miner": ADDRESS_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hash": HASH_LEN}


# --------------------------------------------------------------------------- outcome


@dataclasses.dataclass(frozen=True)
class Penalty(Struct):
    miner: bytes
    kind: str  # PENALTY_*
    slash_bps: int  # fraction of the miner's bonded stake (incl. unbonding) to slash
    jail_rounds: int  # the miner is ineligible for rounds r+1 .. r+jail_rounds
    evidence: bytes  # canonical encoding of the facts every node can recheck (see docs/pocl-protocol.md)

    BYTES_LEN: ClassVar[dict[str, int]] = {"miner": ADDRESS_LEN}


@dataclasses.dataclass(frozen=True)
class Payout(Struct):
    miner: bytes
    role: str  # ROLE_WINNER | ROLE_VOTER
    amount: int

    BYTES_LEN: ClassVar[dict[str, int]] = {"miner": ADDRESS_LEN}


@dataclasses.dataclass(frozen=True)
class RoundOutcome(Struct):
    round: int
    void: bool  # fewer than 2 valid participants: model unchanged, nothing paid (penalties still apply)
    reason: str  # why void / why unchanged ("" when a new model was aggregated)
    seed: bytes
    predictors: list[bytes]  # accuracy rows: miners whose revealed weights matched their commitment
    voters: list[bytes]  # accuracy columns: voters whose labels matched their commitment
    accuracy: list[list[int]]  # accuracy[i][j] in bps of predictors[i] on voters[j]'s shard; -1 if i == j
    valid_voters: list[bytes]  # voters whose scores matched the recomputed ones
    scores: list[int]  # per predictor: median over valid voters j != i (NO_SCORE if none)
    baseline: list[int]  # per voter: accuracy (bps) of G_{r-1} on its shard (NO_SCORE if not a valid voter)
    ranking: list[bytes]  # candidates by score desc, ties by H(seed, address)
    winners: list[bytes]  # verified winners, in ranking order
    gains: list[int]  # per winner: median over its scoring shards of (its accuracy - G_{r-1}'s), bps
    information: list[int]  # per voter: samples of its shard G_r labels right and G_{r-1} wrong (-1: none)
    payouts: list[Payout]  # winners (ranking order) then voters (address order); at most round_reward
    penalties: list[Penalty]  # one per penalised miner, address order
    prev_model_hash: bytes
    model_hash: bytes  # H(G_r); equals prev_model_hash when nothing was aggregated

    BYTES_LEN: ClassVar[dict[str, int]] = {"prev_model_hash": HASH_LEN, "model_hash": HASH_LEN}

    def total_paid(self) -> int:
        return sum(p.amount for p in self.payouts)


# --------------------------------------------------------------------------- the round record


@dataclasses.dataclass(frozen=True)
class RoundRecord(Struct):
    round: int
    start_height: int  # s_r: first COMMIT height
    phase: int  # PHASE_*
    shard_start: int  # first SHARD height (0 until then; stays 0 when the phase was skipped)
    predict_start: int  # first PREDICT height (0 until then; stays 0 when the phase was skipped)
    vote_start: int  # first VOTE height (0 until then / skipped)
    end_height: int  # height whose execution finalized the round (0 until then)
    prev_model_hash: bytes  # H(G_{r-1})
    eligible: list[bytes]  # fixed from the state before s_r, sorted
    committers: list[bytes]  # sorted
    shard_owners: list[bytes]  # committers whose shard reveal was accepted, sorted
    predictors: list[bytes]  # every accepted pocl.predict sender, sorted
    revealed: list[bytes]  # predictors whose weights matched their commitment, sorted
    voters: list[bytes]  # every accepted pocl.vote sender, sorted
    outcome: RoundOutcome | None

    BYTES_LEN: ClassVar[dict[str, int]] = {"prev_model_hash": HASH_LEN}

    @classmethod
    def open(
        cls, round_: int, start_height: int, eligible: Iterable[bytes], prev_model_hash: bytes
    ) -> RoundRecord:
        return cls(
            round=round_,
            start_height=start_height,
            phase=PHASE_COMMIT,
            shard_start=0,
            predict_start=0,
            vote_start=0,
            end_height=0,
            prev_model_hash=prev_model_hash,
            eligible=sorted(set(eligible)),
            committers=[],
            shard_owners=[],
            predictors=[],
            revealed=[],
            voters=[],
            outcome=None,
        )

    @property
    def phase_name(self) -> str:
        return PHASE_NAMES.get(self.phase, "unknown")


@dataclasses.dataclass(frozen=True)
class PoclHead(Struct):
    """The chain's PoCL pointer: the current (or next) round and the current global model."""

    round: int  # the round in progress, or the next one to open
    next_start: int  # s_round when that round is not open yet (0 once it is)
    model_round: int  # r of the current global model G_r (0 = genesis model)
    model_hash: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"model_hash": HASH_LEN}


@dataclasses.dataclass
class RoundData:
    """A round's record and entries, keyed by miner; what finalization reads."""

    record: RoundRecord
    commits: dict[bytes, CommitEntry]
    shards: dict[bytes, ShardEntry]
    predictions: dict[bytes, PredictEntry]
    votes: dict[bytes, VoteEntry]

    @classmethod
    def build(
        cls,
        record: RoundRecord,
        commits: Iterable[CommitEntry],
        shards: Iterable[ShardEntry],
        predictions: Iterable[PredictEntry],
        votes: Iterable[VoteEntry],
    ) -> RoundData:
        """Key entries by miner (any input order); a duplicate miner is a caller bug."""

        def by_miner(entries: Iterable[Struct]) -> dict[bytes, Struct]:
            out: dict[bytes, Struct] = {}
            for e in entries:
                if e.miner in out:  # type: ignore[attr-defined]
                    raise ValueError("two entries for one miner")
                out[e.miner] = e  # type: ignore[attr-defined]
            return out

        return cls(
            record, by_miner(commits), by_miner(shards), by_miner(predictions), by_miner(votes)  # type: ignore[arg-type]
        )


# --------------------------------------------------------------------------- state keys


def round_key(round_: int) -> bytes:
    return b"r" + round_.to_bytes(8, "big")


def entry_key(prefix: bytes, round_: int, miner: bytes) -> bytes:
    return prefix + round_.to_bytes(8, "big") + miner


def commit_key(round_: int, miner: bytes) -> bytes:
    return entry_key(b"c", round_, miner)


def shard_key(round_: int, miner: bytes) -> bytes:
    return entry_key(b"s", round_, miner)


def predict_key(round_: int, miner: bytes) -> bytes:
    return entry_key(b"p", round_, miner)


def vote_key(round_: int, miner: bytes) -> bytes:
    return entry_key(b"v", round_, miner)


def missed_key(miner: bytes) -> bytes:
    """The miner's count of consecutive missed COMMITs (codec int; absent = 0; see schedule.downtime)."""
    return b"m" + miner


def seen_key(fingerprint: bytes) -> bytes:
    """A shard digest or revealed weights hash seen in a recent round (codec int: the latest round)."""
    return b"f" + fingerprint


def seen_round_key(round_: int) -> bytes:
    """The fingerprints first recorded in round `round_` (codec list), to forget them `memory_rounds` later."""
    return b"F" + round_.to_bytes(8, "big")


HEAD_KEY = b"head"

