"""Explicit miner roles (issue 14): the PoCL eligible set holds registered miners only. Staking alone
makes no miner, a validator that does not mine does not hold COMMIT open, (un)registration takes
effect at the next round open, and a registered miner that goes silent is jailed for downtime."""

from __future__ import annotations

import dataclasses

import pytest
from pocl.consensus.pocl.events import Jailed, RoundFinalized
from pocl.consensus.pocl.execution import NS_POCL
from pocl.consensus.pocl.records import PHASE_DONE, RoundRecord, missed_key
from pocl.ledger import codec, errors, roles
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import GenesisAccount
from pocl.ledger.tx import (
    KIND_MINER_REGISTER,
    KIND_MINER_UNREGISTER,
    KIND_STAKE,
    EmptyPayload,
    StakePayload,
)

from tests.support.pocl_chain import BALANCE, STAKE, Chain, key
from tests.support.pocl_scenario import HONEST, make_params, make_scenario, perturbed

ROUNDS = 5
SILENT = key(100)  # stakes, registers at round 1, never commits
LEAVER = key(101)  # stakes, registers at round 1, unregisters during round 2 without committing
VALIDATOR = PrivateKey.from_seed_text("roles-validator")  # a staked validator that does not mine
VALIDATOR_CONSENSUS = PrivateKey.from_seed_text("roles-validator/consensus")


@dataclasses.dataclass
class Run:
    chain: Chain
    records: dict[int, RoundRecord]


def run_rounds() -> Run:
    s = make_scenario([HONEST, HONEST, HONEST], make_params(first_round_height=2))
    validator = GenesisAccount(
        VALIDATOR.address, BALANCE, 10 * STAKE, VALIDATOR.pubkey, consensus_pubkey=VALIDATOR_CONSENSUS.pubkey
    )
    c = Chain(s, outsiders=2, extra=[validator])
    c.block([c.sign(k, KIND_STAKE, StakePayload(STAKE)) for k in (SILENT, LEAVER)])  # height 1
    done = 0
    while done < ROUNDS:
        txs = c.miner_txs()
        st = c.state
        head = c.pocl.head(st)
        if head is not None and head.round == 1 and not roles.is_miner(st, SILENT.address):
            txs += [c.sign(k, KIND_MINER_REGISTER, EmptyPayload()) for k in (SILENT, LEAVER)]
        rec = c.pocl.open_record(st)
        if rec is not None and rec.round == 2 and roles.is_miner(st, LEAVER.address):
            txs.append(c.sign(LEAVER, KIND_MINER_UNREGISTER, EmptyPayload()))
        c.block(txs)
        for e in c.blocks[-1].result.events:
            if isinstance(e, RoundFinalized):
                done = e.round
                for m in s.miners:  # miners train on: weights revealed in a recent round cannot win again
                    m.weights = perturbed(m.weights, 1_000 * e.round + m.index, 0.01)
    return Run(c, {r: c.pocl.record(c.state, r) for r in range(1, ROUNDS + 1)})


@pytest.fixture(scope="module")
def run() -> Run:
    return run_rounds()


def commit_blocks(rec: RoundRecord) -> int:
    assert rec.phase == PHASE_DONE
    return rec.shard_start - rec.start_height


def test_staking_alone_makes_no_miner_and_validators_do_not_hold_commit_open(run: Run) -> None:
    rec = run.records[1]  # SILENT and LEAVER staked, VALIDATOR staked 10x, none registered at round open
    miners = {m.address for m in run.chain.s.miners}
    assert set(rec.eligible) == miners
    assert commit_blocks(rec) == 1  # closes after the miners' commits, not at train_blocks
    assert VALIDATOR.address not in rec.eligible and VALIDATOR_CONSENSUS.address not in rec.eligible
    assert [v.operator for v in run.chain.state.validator_set()] == [VALIDATOR.address]


def test_registration_takes_effect_at_the_next_round_open(run: Run) -> None:
    assert SILENT.address not in run.records[1].eligible  # registered during round 1
    assert {SILENT.address, LEAVER.address} <= set(run.records[2].eligible)


def test_a_miner_that_unregisters_mid_round_stays_in_that_round_and_leaves_the_next(run: Run) -> None:
    c = run.chain
    assert LEAVER.address in run.records[2].eligible  # frozen at the round's open
    assert commit_blocks(run.records[2]) == c.s.params.train_blocks  # it (and SILENT) held COMMIT open
    assert all(LEAVER.address not in run.records[r].eligible for r in range(3, ROUNDS + 1))
    assert not roles.is_miner(c.state, LEAVER.address)
    raw = c.state.get_raw(NS_POCL, missed_key(LEAVER.address))
    assert raw is not None and codec.decode(raw) == 1  # round 2's miss counted, as for any eligible miner
    assert not [e for e in c.events if isinstance(e, Jailed) and e.address == LEAVER.address]


def test_a_silent_registered_miner_is_jailed_and_phases_close_early_again(run: Run) -> None:
    c, p = run.chain, run.chain.s.params
    assert p.max_missed_rounds == 3
    jails = [e for e in c.events if isinstance(e, Jailed)]
    assert [(e.round, e.address) for e in jails] == [(4, SILENT.address)]  # missed rounds 2, 3 and 4
    for r in (3, 4):
        assert SILENT.address in run.records[r].eligible and commit_blocks(run.records[r]) == p.train_blocks
    assert SILENT.address not in run.records[5].eligible and commit_blocks(run.records[5]) == 1
    assert roles.is_miner(c.state, SILENT.address)  # still registered: eligible again after its jail


def test_register_and_unregister_errors() -> None:
    s = make_scenario([HONEST, HONEST], make_params(first_round_height=2), trained=False)
    c = Chain(s, outsiders=1)
    miner, outsider = key(0), key(100)

    def code(k: PrivateKey, kind: str) -> str | None:
        err = c.executor.check_tx(c.state, c.sign(k, kind, EmptyPayload()))
        c._nonces[k.address] -= 1  # checked only
        return err.code if err else None

    assert code(miner, KIND_MINER_REGISTER) == errors.MINER_REGISTERED
    assert code(outsider, KIND_MINER_UNREGISTER) == errors.MINER_NOT_REGISTERED
    assert code(outsider, KIND_MINER_REGISTER) == errors.INSUFFICIENT_STAKE  # balance, no bonded stake
    c.block([c.sign(outsider, KIND_STAKE, StakePayload(s.params.min_miner_stake - 1))])
    assert code(outsider, KIND_MINER_REGISTER) == errors.INSUFFICIENT_STAKE
    c.block([c.sign(outsider, KIND_STAKE, StakePayload(1))])
    assert code(outsider, KIND_MINER_REGISTER) is None
    assert code(miner, KIND_MINER_UNREGISTER) is None
