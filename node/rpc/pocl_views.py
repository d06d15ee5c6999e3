"""JSON of a PoCL round record for `/rounds/{n}`: phase, heights, participants and, once final, the
score matrix (with G_{r-1}'s baseline accuracy and each voter's information), winners with their gains
over G_{r-1}, rewards and slashes with their decoded evidence."""

from __future__ import annotations

from typing import Any

from pocl.consensus.pocl.records import NO_SCORE, RoundRecord
from pocl.ledger import codec
from pocl.ledger.keys import format_address
from pocl.node.rpc.json_view import hexstr, to_json


def evidence_json(raw: bytes) -> Any:
    """Evidence is the canonical encoding of `[kind, round, ...]`: shown decoded."""
    try:
        return to_json(codec.decode(raw))
    except codec.CodecError:
        return None


def _score(value: int) -> int | None:
    return value if value != NO_SCORE else None


def _addresses(values: list[bytes]) -> list[str]:
    return [format_address(a) for a in values]


def round_json(rec: RoundRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "round": rec.round,
        "phase": rec.phase_name,
        "start_height": rec.start_height,
        "shard_start": rec.shard_start,
        "predict_start": rec.predict_start,
        "vote_start": rec.vote_start,
        "end_height": rec.end_height,
        "final": rec.outcome is not None,
        "prev_model_hash": hexstr(rec.prev_model_hash),
        "global_model_hash": hexstr(rec.prev_model_hash),
        "participants": {
            "eligible": _addresses(rec.eligible),
            "committers": _addresses(rec.committers),
            "shard_owners": _addresses(rec.shard_owners),
            "predictors": _addresses(rec.predictors),
            "revealed": _addresses(rec.revealed),
            "voters": _addresses(rec.voters),
        },
        "void": None,
        "reason": "",
        "scores": {},
        "score_matrix": None,
        "gains": {},
        "ranking": [],
        "winners": [],
        "rewards": [],
        "slashes": [],
    }
    o = rec.outcome
    if o is None:
        return out
    out.update(
        void=o.void,
        reason=o.reason,
        seed=hexstr(o.seed),
        global_model_hash=hexstr(o.model_hash),
        model_changed=o.model_hash != o.prev_model_hash,
        scores={format_address(p): _score(s) for p, s in zip(o.predictors, o.scores, strict=False)},
        score_matrix={
            "rows": _addresses(o.predictors),
            "columns": _addresses(o.voters),
            "accuracy_bps": [[_score(c) for c in row] for row in o.accuracy],
            "valid_voters": _addresses(o.valid_voters),
            "baseline_bps": [_score(b) for b in o.baseline],
            "information": [_score(i) for i in o.information],
        },
        gains={format_address(w): g for w, g in zip(o.winners, o.gains, strict=False)},
        ranking=_addresses(o.ranking),
        winners=_addresses(o.winners),
        rewards=[{"address": format_address(p.miner), "role": p.role, "amount": p.amount} for p in o.payouts],
        total_reward=o.total_paid(),
        slashes=[
            {
                "address": format_address(p.miner),
                "kind": p.kind,
                "slash_bps": p.slash_bps,
                "jail_rounds": p.jail_rounds,
                "evidence": evidence_json(p.evidence),
                "evidence_hex": hexstr(p.evidence),
            }
            for p in o.penalties
        ],
    )
    return out
