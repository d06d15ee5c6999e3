"""Ledger test kit: deterministic keys, a funded genesis and a proposer-style block builder.

VAL1 and VAL2 are validator operators (account keys: stake, fees); each signs votes with its own
consensus key (VAL1_CONSENSUS, VAL2_CONSENSUS). Blocks are proposed by VAL1's consensus key, so their
fees reach VAL1's account."""

from __future__ import annotations

from collections.abc import Sequence

from pocl.ledger.block import Block
from pocl.ledger.block_builder import build_block as build_block_on
from pocl.ledger.executor import BlockResult, Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import GenesisAccount
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
VAL1_CONSENSUS = key("val1/consensus")
VAL2_CONSENSUS = key("val2/consensus")
PROPOSER = VAL1_CONSENSUS  # the default proposer: headers name its consensus address
PROPOSER_OPERATOR = VAL1  # ... whose account receives the fees


def genesis_accounts() -> list[GenesisAccount]:
    return [
        GenesisAccount(ALICE.address, BALANCE),
        GenesisAccount(BOB.address, BALANCE),
        GenesisAccount(CAROL.address, 10),
        GenesisAccount(VAL1.address, BALANCE, 5_000, VAL1.pubkey, VAL1_CONSENSUS.pubkey),
        GenesisAccount(VAL2.address, BALANCE, 3_000, VAL2.pubkey, VAL2_CONSENSUS.pubkey),
    ]


def build_block(
    executor: Executor,
    state: State,
    txs: Sequence[SignedTx | bytes],
    prev_hash: bytes = b"",
    proposer: bytes = PROPOSER.address,
) -> tuple[Block, BlockResult]:
    """The proposer's block (the real builder) from `txs` on `state`, at time height * 1000; state untouched.
    Fails if the builder dropped a tx: a test that builds a block means every tx in it."""
    built = build_block_on(
        executor,
        state,
        txs,
        proposer=proposer,
        time_ms=1000 * (state.height + 1),
        prev_hash=prev_hash,
        last_commit=None,
    )
    assert not built.result.rejected and not built.result.deferred, built.result.rejected
    return built.block, built.result


def apply_new_block(executor: Executor, state: State, txs: Sequence[SignedTx | bytes]) -> tuple[State, Block]:
    """Build, then apply+commit a block on `state` (mutated in place; returned for convenience)."""
    block, _ = build_block(executor, state, txs)
    work = state.copy()
    executor.apply_block(work, block)
    return work.commit(), block
