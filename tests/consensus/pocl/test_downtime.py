"""Liveness (issue 12 attack #8): eligible miners that skip COMMIT are jailed after `max_missed_rounds`
consecutive misses, so an absentee stops holding COMMIT open; honest miners are never jailed."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.pocl.events import Jailed, RoundFinalized, Slashed
from pocl.consensus.pocl.execution import NS_POCL
from pocl.consensus.pocl.records import PHASE_DONE, missed_key
from pocl.consensus.pocl.schedule import downtime
from pocl.ledger import codec
from pocl.ledger.tx import SignedTx

from tests.support.pocl_chain import STAKE, Chain
from tests.support.pocl_scenario import ABSENT, HONEST, make_params, make_scenario, perturbed

A, B, C = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20


def test_downtime_counts_consecutive_misses_only() -> None:
    p = make_params(max_missed_rounds=3)
    counts, jailed = downtime([A, B, C], [A], {B: 1, C: 2}, p)
    assert counts == {A: 0, B: 2, C: 0} and jailed == [C]  # C reached 3 and is jailed (count reset)
    counts, jailed = downtime([A, B], [B], {A: 2, B: 2}, p)
    assert counts == {A: 0, B: 0} and jailed == [A]
    counts, jailed = downtime([A], [A], {A: 2, B: 2}, p)  # a committer's streak ends; B not eligible: kept
    assert counts == {A: 0} and jailed == []
    assert downtime([B, A], [], {}, make_params(max_missed_rounds=1)) == ({A: 0, B: 0}, [A, B])


def test_max_missed_rounds_must_be_positive() -> None:
    from pocl.consensus.pocl.params import PoclParamsError

    with pytest.raises(PoclParamsError) as exc:
        make_params(max_missed_rounds=0)
    assert exc.value.field == "max_missed_rounds"


@dataclasses.dataclass
class Run:
    chain: Chain
    absent: bytes
    missed_after: dict[int, int]  # round -> the absentee's counter in state after that round


def run_rounds(rounds: int) -> Run:
    s = make_scenario([HONEST, HONEST, HONEST, ABSENT], make_params(first_round_height=2))
    c = Chain(s)
    absent = s.miners[3].address
    missed_after: dict[int, int] = {}
    done = 0
    while done < rounds:
        c.block([t for t in c.miner_txs() if t.sender_address != absent])
        for e in c.blocks[-1].result.events:
            if isinstance(e, RoundFinalized):
                done = e.round
                raw = c.state.get_raw(NS_POCL, missed_key(absent))
                missed_after[e.round] = codec.decode(raw) if raw is not None else 0
                for m in s.miners:  # miners train on: weights revealed in a recent round cannot win again
                    m.weights = perturbed(m.weights, 1_000 * e.round + m.index, 0.01)
    return Run(c, absent, missed_after)


@pytest.fixture(scope="module")
def run() -> Run:
    return run_rounds(7)


def test_absent_miner_is_jailed_after_n_consecutive_misses(run: Run) -> None:
    c, p = run.chain, run.chain.s.params
    assert p.max_missed_rounds == 3 and p.jail_rounds == 3
    assert [run.missed_after[r] for r in range(1, 8)] == [1, 2, 0, 0, 0, 0, 1]
    jails = [e for e in c.events if isinstance(e, Jailed)]
    assert jails == [Jailed(round=3, address=run.absent, missed_rounds=3, jailed_until_round=6)]
    assert not [e for e in c.events if isinstance(e, Slashed)]  # downtime burns no stake
    assert c.state.account(run.absent).stake == STAKE


def test_jailed_absentee_is_not_eligible_and_no_longer_holds_commit_open(run: Run) -> None:
    c, p = run.chain, run.chain.s.params
    for r in range(1, 8):
        rec = c.pocl.record(c.state, r)
        assert rec is not None and rec.phase == PHASE_DONE
        commit_blocks = rec.shard_start - rec.start_height
        if r in (4, 5, 6):  # jailed: out of the eligible set, COMMIT closes after one block
            assert run.absent not in rec.eligible and len(rec.eligible) == 3
            assert commit_blocks == 1
        else:  # eligible and absent: COMMIT runs to its maximum
            assert run.absent in rec.eligible and len(rec.eligible) == 4
            assert commit_blocks == p.train_blocks
        assert not rec.outcome.void and rec.outcome.winners


def test_honest_miners_are_never_jailed_or_penalised(run: Run) -> None:
    c = run.chain
    for m in c.s.miners[:3]:
        acct = c.state.account(m.address)
        assert acct.jailed_until_round == 0 and acct.stake == STAKE and acct.slashed_total == 0
        assert c.state.get_raw(NS_POCL, missed_key(m.address)) is None
    for r in range(1, 8):
        assert not c.pocl.record(c.state, r).outcome.penalties


def test_downtime_jailing_is_deterministic_state(run: Run) -> None:
    replay = Chain(dataclasses.replace(run.chain.s))
    for blk in run.chain.blocks:
        replay.block([SignedTx.decode(raw) for raw in blk.txs])
    assert replay.roots == run.chain.roots
    assert [e for e in replay.events if isinstance(e, Jailed)] == [
        e for e in run.chain.events if isinstance(e, Jailed)
    ]
