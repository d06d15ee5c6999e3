"""Explicit roles (issue 14): a validator is an operator with its own consensus key, registered with a
proof of possession; staking alone makes no validator; votes, evidence and fees map the consensus key
back to its operator."""

from __future__ import annotations

import pytest
from pocl.consensus.bft.messages import make_vote
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger import errors, roles
from pocl.ledger.block import VOTE_PRECOMMIT
from pocl.ledger.executor import Executor
from pocl.ledger.hashing import TAG_VALIDATOR_POP
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.signing_validators import signing_validators
from pocl.ledger.state import State
from pocl.ledger.tx import (
    KIND_VALIDATOR_CREATE,
    CreateValidatorPayload,
    make_create_validator,
    make_register_miner,
    make_stake,
    make_transfer,
    proof_of_possession_message,
)
from pocl.ledger.tx_kinds import BlockContext

from tests.support.ledger_kit import (
    ALICE,
    BALANCE,
    BOB,
    CAROL,
    CHAIN_ID,
    VAL1,
    VAL1_CONSENSUS,
    apply_new_block,
    genesis_accounts,
    key,
)

EX = Executor()
ALICE_CONSENSUS = key("alice/consensus")
BOB_CONSENSUS = key("bob/consensus")
MALLORY = key("mallory")


def code_of(state: State, stx) -> str | None:
    err = EX.check_tx(state, stx)
    return err.code if err else None


def operators(state: State) -> list[bytes]:
    return [v.operator for v in state.validator_set()]


def test_staking_alone_makes_no_validator(genesis: State) -> None:
    state, _ = apply_new_block(EX, genesis, [make_stake(ALICE, CHAIN_ID, 0, 2_000, 1)])
    assert state.account(ALICE.address).stake == 2_000 >= state.params.min_validator_stake
    assert ALICE.address not in operators(state)
    assert roles.consensus_pubkey_of(state, ALICE.address) is None


def test_create_validator_with_stake_joins_the_set_from_the_next_block(genesis: State) -> None:
    state, _ = apply_new_block(EX, genesis, [make_create_validator(ALICE, ALICE_CONSENSUS, CHAIN_ID, 0, 1)])
    assert roles.consensus_pubkey_of(state, ALICE.address) == ALICE_CONSENSUS.pubkey
    assert roles.operator_of(state, ALICE_CONSENSUS.address) == ALICE.address
    assert ALICE.address not in operators(state)  # a record without stake is no validator
    state, _ = apply_new_block(EX, state, [make_stake(ALICE, CHAIN_ID, 1, 2_000, 1)])  # height 2
    [alice] = [v for v in state.validator_set() if v.operator == ALICE.address]
    assert (alice.address, alice.pubkey, alice.power) == (
        ALICE_CONSENSUS.address,
        ALICE_CONSENSUS.pubkey,
        2_000,
    )
    assert ALICE_CONSENSUS.pubkey not in [pk for pk, _ in signing_validators(state)]  # block 2's signers
    state, _ = apply_new_block(EX, state, [])  # height 3: Alice's consensus key signs this block
    assert (ALICE_CONSENSUS.pubkey, 2_000) in signing_validators(state)
    # its votes count with the consensus key; the account key has no voting power
    vals = ValidatorSet((v.pubkey, v.power) for v in state.validator_set())
    vote = make_vote(ALICE_CONSENSUS, CHAIN_ID, VOTE_PRECOMMIT, 3, 0, b"\x01" * 32)
    assert vote.verify_signature() and vals.power_of(vote.validator) == 2_000
    assert vals.power_of(ALICE.pubkey) == 0


def test_consensus_key_must_not_be_the_account_key(genesis: State) -> None:
    stx = make_create_validator(ALICE, ALICE, CHAIN_ID, 0, 1)
    assert code_of(genesis, stx) == errors.CONSENSUS_KEY_IS_ACCOUNT_KEY


def test_proof_of_possession_is_required_and_bound_to_operator_and_chain(genesis: State) -> None:
    """Attack: Mallory registers Bob's consensus key for herself, so Bob can never register it."""

    def create(sender: PrivateKey, consensus_pubkey: bytes, proof: bytes):
        from pocl.ledger.tx import TX_VERSION, Tx, sign_tx

        payload = CreateValidatorPayload(consensus_pubkey, proof).to_list()
        return sign_tx(sender, Tx(TX_VERSION, CHAIN_ID, KIND_VALIDATOR_CREATE, sender.pubkey, 0, 1, payload))

    own_sig = MALLORY.sign(TAG_VALIDATOR_POP, proof_of_possession_message(CHAIN_ID, MALLORY.address))
    bobs_proof = BOB_CONSENSUS.sign(TAG_VALIDATOR_POP, proof_of_possession_message(CHAIN_ID, BOB.address))
    other_chain = BOB_CONSENSUS.sign(TAG_VALIDATOR_POP, proof_of_possession_message("other", MALLORY.address))
    state, _ = apply_new_block(EX, genesis, [make_transfer(ALICE, CHAIN_ID, 0, MALLORY.address, 100, 1)])
    for proof in (
        own_sig,
        bobs_proof,
        other_chain,
        bytes(64),
    ):  # signed by the wrong key / for Bob / elsewhere
        assert code_of(state, create(MALLORY, BOB_CONSENSUS.pubkey, proof)) == errors.BAD_PROOF_OF_POSSESSION
    assert code_of(state, make_create_validator(BOB, BOB_CONSENSUS, CHAIN_ID, 0, 1)) is None  # Bob still can


def test_one_consensus_key_per_operator_and_one_operator_per_key(genesis: State) -> None:
    state, _ = apply_new_block(EX, genesis, [make_create_validator(ALICE, ALICE_CONSENSUS, CHAIN_ID, 0, 1)])
    second = make_create_validator(ALICE, key("alice/consensus-2"), CHAIN_ID, 1, 1)
    assert code_of(state, second) == errors.VALIDATOR_EXISTS  # a key cannot be replaced
    assert (
        code_of(state, make_create_validator(BOB, ALICE_CONSENSUS, CHAIN_ID, 0, 1))
        == errors.CONSENSUS_KEY_IN_USE
    )
    assert (
        code_of(state, make_create_validator(VAL1, ALICE_CONSENSUS, CHAIN_ID, 0, 1))
        == errors.VALIDATOR_EXISTS
    )
    # a genesis validator's key is taken too
    assert (
        code_of(state, make_create_validator(CAROL, VAL1_CONSENSUS, CHAIN_ID, 0, 1))
        == errors.CONSENSUS_KEY_IN_USE
    )


def test_fees_of_a_proposer_without_operator_are_burned(genesis: State) -> None:
    stranger = key("not-a-validator")
    work = genesis.copy()
    ctx = BlockContext(1, 1_000, stranger.address, CHAIN_ID, genesis.params)
    res = EX.execute_block(work, ctx, [make_transfer(ALICE, CHAIN_ID, 0, BOB.address, 10, 7).raw])
    assert res.fees == 7
    assert work.account(stranger.address) is None  # nobody is credited
    supply = sum(work.balance(a.address) + a.stake for a in genesis_accounts())
    assert supply == sum(a.balance + a.stake for a in genesis_accounts()) - 7


def test_miner_kinds_need_pocl(genesis: State) -> None:
    """The core executor alone reserves the miner kinds: registering needs PoCL's min_miner_stake."""
    assert code_of(genesis, make_register_miner(ALICE, CHAIN_ID, 0, 1)) == errors.KIND_NOT_ENABLED


def test_role_records_reject_double_registration() -> None:
    st = State.from_genesis(ChainParams(), genesis_accounts(), CHAIN_ID).copy()
    roles.register_miner(st, BOB.address)
    roles.register_miner(st, ALICE.address)
    assert roles.miners(st) == sorted([ALICE.address, BOB.address]) and roles.is_miner(st, BOB.address)
    with pytest.raises(ValueError, match="already a registered miner"):
        roles.register_miner(st, BOB.address)
    roles.unregister_miner(st, BOB.address)
    roles.unregister_miner(st, ALICE.address)
    assert roles.miners(st) == [] and not roles.is_miner(st, BOB.address)
    with pytest.raises(ValueError, match="not a registered miner"):
        roles.unregister_miner(st, BOB.address)
    with pytest.raises(ValueError, match="already has a consensus key"):
        roles.set_validator_key(st, VAL1.address, ALICE_CONSENSUS.pubkey)
    with pytest.raises(ValueError, match="already registered"):
        roles.set_validator_key(st, ALICE.address, VAL1_CONSENSUS.pubkey)


def test_genesis_state_refuses_shared_or_account_consensus_keys() -> None:
    params = ChainParams()
    twice = [
        GenesisAccount(ALICE.address, BALANCE, 0, ALICE.pubkey, ALICE_CONSENSUS.pubkey),
        GenesisAccount(BOB.address, BALANCE, 0, BOB.pubkey, ALICE_CONSENSUS.pubkey),
    ]
    with pytest.raises(ValueError, match="already registered"):
        State.from_genesis(params, twice, CHAIN_ID)
    with pytest.raises(ValueError, match="not the account key"):
        State.from_genesis(
            params, [GenesisAccount(ALICE.address, 1, 0, ALICE.pubkey, ALICE.pubkey)], CHAIN_ID
        )
