"""`GET /miners/{address}`: one account's standing as a PoCL miner, read from the committed state.

What an operator asks before and while mining: is the account registered, is it in the open round's
eligible set, will it be in the next round's (and if not, why not), its stake and jail, how many rounds
in a row it missed, and its last reward and penalty. Eligibility for the next round is computed exactly
as the chain will when that round opens (`PoclExecution.eligible_miners`), so the answer is the chain's.
"""

from __future__ import annotations

from pocl.consensus.pocl.execution import NS_POCL, PoclExecution
from pocl.consensus.pocl.records import missed_key
from pocl.ledger import codec, roles
from pocl.ledger.keys import format_address
from pocl.ledger.state import State
from pocl.node.rpc.types import MinerPenaltyView, MinerRewardView, MinerView

# How many final rounds back `last_reward` / `last_penalty` look (a bounded scan per request).
HISTORY_ROUNDS = 256


def _rounds(pocl: PoclExecution, state: State) -> tuple[int, int, int]:
    """(open round or 0, the next round to open, its start height or 0 when it waits for the open one)."""
    head = pocl.head(state)
    if head is None:
        return 0, 1, max(pocl.params.first_round_height, state.height + 1)
    if head.next_start == 0:
        return head.round, head.round + 1, 0
    return 0, head.round, head.next_start


def _not_eligible_reasons(
    pocl: PoclExecution, state: State, address: bytes, next_round: int, eligible: bool
) -> list[str]:
    if eligible:
        return []
    acct = state.account(address)
    stake = acct.stake if acct is not None else 0
    reasons = []
    if not roles.is_miner(state, address):
        reasons.append("not registered (pocl-node tx register-miner)")
    if stake < pocl.params.min_miner_stake:
        reasons.append(f"stake {stake} < min_miner_stake {pocl.params.min_miner_stake}")
    if acct is not None and acct.jailed_until_round >= next_round:
        reasons.append(f"jailed through round {acct.jailed_until_round}")
    return reasons or [f"outside the top {pocl.params.max_miners} stakes"]


def _history(
    pocl: PoclExecution, state: State, address: bytes, latest: int
) -> tuple[MinerRewardView | None, MinerPenaltyView | None]:
    reward: MinerRewardView | None = None
    penalty: MinerPenaltyView | None = None
    for r in range(latest, max(0, latest - HISTORY_ROUNDS), -1):
        rec = pocl.record(state, r)
        if rec is None or rec.outcome is None:
            continue
        if reward is None:
            paid = [p for p in rec.outcome.payouts if p.miner == address]
            if paid:
                reward = {
                    "round": r,
                    "amount": sum(p.amount for p in paid),
                    "roles": sorted({p.role for p in paid}),
                }
        if penalty is None:
            pen = next((p for p in rec.outcome.penalties if p.miner == address), None)
            if pen is not None:
                penalty = {
                    "round": r,
                    "kind": pen.kind,
                    "slash_bps": pen.slash_bps,
                    "jail_rounds": pen.jail_rounds,
                }
        if reward is not None and penalty is not None:
            break
    return reward, penalty


def miner_status(pocl: PoclExecution, state: State, address: bytes) -> MinerView:
    acct = state.account(address)
    open_round, next_round, next_start = _rounds(pocl, state)
    open_rec = pocl.record(state, open_round) if open_round else None
    eligible_next = address in pocl.eligible_miners(state, next_round)
    raw_missed = state.get_raw(NS_POCL, missed_key(address))
    latest_final = next_round - 1 if open_round == 0 else open_round - 1
    reward, penalty = _history(pocl, state, address, latest_final)
    return {
        "address": format_address(address),
        "exists": acct is not None,
        "registered": roles.is_miner(state, address),
        "stake": acct.stake if acct is not None else 0,
        "min_miner_stake": pocl.params.min_miner_stake,
        "open_round": open_round,
        "eligible_now": open_rec is not None and address in open_rec.eligible,
        "next_round": next_round,
        "next_round_start": next_start,
        "eligible_next": eligible_next,
        "not_eligible_reasons": _not_eligible_reasons(pocl, state, address, next_round, eligible_next),
        "jailed_until_height": acct.jailed_until_height if acct is not None else 0,
        "jailed_until_round": acct.jailed_until_round if acct is not None else 0,
        "missed_rounds": int(codec.decode(raw_missed)) if raw_missed is not None else 0,
        "max_missed_rounds": pocl.params.max_missed_rounds,
        "last_reward": reward,
        "last_penalty": penalty,
        "height": state.height,
    }
