"""JSON of PoCL round records: `/rounds/{n}` (phase, heights, participants and, once final, the score
matrix with G_{r-1}'s baseline accuracy and each voter's information, winners with their gains over
G_{r-1}, rewards and slashes with their decoded evidence), and what the explorer reads over many rounds:
one-line summaries (`/rounds`), the miners' leaderboard (`/miners`) and one account's rewards and slashes
(`/accounts/{address}/rounds`)."""

from __future__ import annotations

from typing import Any

from pocl.consensus.pocl.records import NO_SCORE, RoundRecord
from pocl.ledger import codec
from pocl.ledger.keys import format_address
from pocl.node.rpc.json_view import hexstr, to_json
from pocl.node.rpc.types import AccountSlashView, LeaderView, MinerRewardView, RoundSummaryView


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


def _median(values: list[int]) -> int | None:
    """The lower median of the scored values (NO_SCORE left out), or None."""
    scored = sorted(v for v in values if v != NO_SCORE)
    return scored[(len(scored) - 1) // 2] if scored else None


def round_summary(rec: RoundRecord) -> RoundSummaryView:
    """A round in one line for `/rounds`: counts, winners, what was paid and slashed, and G_{r-1}'s and the
    candidates' accuracy (what the explorer's chart draws)."""
    o = rec.outcome
    scores = o.scores if o is not None else []
    return {
        "round": rec.round,
        "phase": rec.phase_name,
        "final": o is not None,
        "void": o.void if o is not None else None,
        "start_height": rec.start_height,
        "end_height": rec.end_height,
        "eligible": len(rec.eligible),
        "committers": len(rec.committers),
        "predictors": len(rec.predictors),
        "voters": len(rec.voters),
        "winners": _addresses(o.winners) if o is not None else [],
        "total_reward": o.total_paid() if o is not None else 0,
        "slashes": len(o.penalties) if o is not None else 0,
        "global_model_hash": hexstr(o.model_hash if o is not None else rec.prev_model_hash),
        "baseline_median_bps": _median(o.baseline) if o is not None else None,
        "score_median_bps": _median(scores),
        "best_score_bps": max((s for s in scores if s != NO_SCORE), default=None),
    }


def leaderboard(records: list[RoundRecord]) -> list[LeaderView]:
    """Per miner over the given rounds (final ones count): eligibility, commits, wins, rewards, slashes and
    scores; most rewarded first, then most wins."""
    board: dict[bytes, dict[str, Any]] = {}

    def entry(miner: bytes) -> dict[str, Any]:
        return board.setdefault(
            miner,
            {
                "eligible": 0,
                "committed": 0,
                "wins": 0,
                "rewards": 0,
                "rounds_paid": set(),
                "kinds": [],
                "scores": [],
            },
        )

    for rec in sorted(records, key=lambda r: r.round):
        o = rec.outcome
        if o is None:
            continue
        for m in rec.eligible:
            entry(m)["eligible"] += 1
        for m in rec.committers:
            entry(m)["committed"] += 1
        for m in o.winners:
            entry(m)["wins"] += 1
        for p in o.payouts:
            e = entry(p.miner)
            e["rewards"] += p.amount
            e["rounds_paid"].add(rec.round)
        for pen in o.penalties:
            entry(pen.miner)["kinds"].append(pen.kind)
        for m, s in zip(o.predictors, o.scores, strict=False):
            if s != NO_SCORE:
                entry(m)["scores"].append(s)
    out: list[LeaderView] = []
    for miner, e in board.items():
        scores: list[int] = e["scores"]
        out.append(
            {
                "address": format_address(miner),
                "eligible": e["eligible"],
                "committed": e["committed"],
                "wins": e["wins"],
                "rewards": e["rewards"],
                "rewarded_rounds": len(e["rounds_paid"]),
                "slashes": len(e["kinds"]),
                "slash_kinds": sorted(set(e["kinds"])),
                "mean_score_bps": sum(scores) // len(scores) if scores else None,
                "best_score_bps": max(scores) if scores else None,
                "last_score_bps": scores[-1] if scores else None,
            }
        )
    out.sort(key=lambda v: (-v["rewards"], -v["wins"], v["address"]))
    return out


def account_rounds(
    records: list[RoundRecord], address: bytes
) -> tuple[list[int], list[MinerRewardView], list[AccountSlashView]]:
    """One account's wins, rewards and slashes in the given rounds, newest first."""
    wins: list[int] = []
    rewards: list[MinerRewardView] = []
    slashes: list[AccountSlashView] = []
    for rec in sorted(records, key=lambda r: -r.round):
        o = rec.outcome
        if o is None:
            continue
        if address in o.winners:
            wins.append(rec.round)
        paid = [p for p in o.payouts if p.miner == address]
        if paid:
            rewards.append(
                {
                    "round": rec.round,
                    "amount": sum(p.amount for p in paid),
                    "roles": sorted({p.role for p in paid}),
                }
            )
        slashes += [
            {
                "round": rec.round,
                "kind": p.kind,
                "slash_bps": p.slash_bps,
                "jail_rounds": p.jail_rounds,
                "evidence": evidence_json(p.evidence),
            }
            for p in o.penalties
            if p.miner == address
        ]
    return wins, rewards, slashes
