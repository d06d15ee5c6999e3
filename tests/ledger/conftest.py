"""Shared fixtures for ledger tests: deterministic keys, a funded genesis and a block builder."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pocl.ledger.block import Block, Header, txs_root
from pocl.ledger.executor import BlockContext, BlockResult, Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.tx import SignedTx

CHAIN_ID = "pocl-test"
BALANCE = 1_000_000


def key(name: str) -> PrivateKey:
    return PrivateKey.from_seed_text(name)


ALICE = key("alice")
BOB = key("bob")
CAROL = key("carol")
VAL1 = key("val1")
VAL2 = key("val2")
PROPOSER = key("proposer")


def genesis_accounts() -> list[GenesisAccount]:
    return [
        GenesisAccount(ALICE.address, BALANCE),
        GenesisAccount(BOB.address, BALANCE),
        GenesisAccount(CAROL.address, 10),
        GenesisAccount(VAL1.address, BALANCE, 5_000, VAL1.pubkey),
        GenesisAccount(VAL2.address, BALANCE, 3_000, VAL2.pubkey),
    ]


@pytest.fixture
def params() -> ChainParams:
    return ChainParams(unbonding_blocks=3, double_sign_jail_blocks=10, evidence_max_age_blocks=50)


@pytest.fixture
def genesis(params: ChainParams) -> State:
    return State.from_genesis(params, genesis_accounts(), CHAIN_ID)


def build_block(
    executor: Executor,
    state: State,
    txs: Sequence[SignedTx | bytes],
    prev_hash: bytes = b"",
    proposer: bytes = PROPOSER.address,
) -> tuple[Block, BlockResult]:
    """Execute `txs` on a copy of `state` like a proposer and return the finished block (state untouched)."""
    raws = [t.raw if isinstance(t, SignedTx) else t for t in txs]
    height = state.height + 1
    work = state.copy()
    ctx = BlockContext(height, height * 1000, proposer, state.chain_id, state.params)
    result = executor.execute_block(work, ctx, raws)
    header = Header(height, height * 1000, prev_hash, proposer, txs_root(raws), result.state_root, b"", b"")
    return Block(header, raws, None), result


def apply_new_block(executor: Executor, state: State, txs: Sequence[SignedTx | bytes]) -> tuple[State, Block]:
    """Build, then apply+commit a block on `state` (mutated in place; returned for convenience)."""
    block, _ = build_block(executor, state, txs)
    work = state.copy()
    executor.apply_block(work, block)
    return work.commit(), block
