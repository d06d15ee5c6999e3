"""The node's view of the chain: store, committed state, block validity and commit (DESIGN §4, §5.1).

Consensus (`valid(v)`, `Decide`) and block sync both go through `Chain`, so a block is judged and
persisted by one piece of code whichever way it arrived:

- `check_block(block)` is the paper's valid(v): header linkage, the proposer is a validator (named by its
  consensus address, never its operator's account address), the parent's
  commit certificate (`last_commit`) verifies against the validator set that signed the parent, and the
  block executes on a copy of the state to the header's `state_root`. Results are cached per block hash,
  so the block that wins is not executed twice.
- `commit_block(block, commit)` persists block, commit and state delta in one synced batch (the store's
  guarantee) and swaps in the new state.

The validator set that signed height h is recorded in state by the executor
(`ledger.signing_validators`), so `last_commit` of any block can be checked after a restart without
replaying history.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping

from cachetools import FIFOCache
from pocl.consensus.bft.commit import CommitError, verify_commit
from pocl.consensus.bft.votes import ValidatorSet
from pocl.consensus.pocl.execution import PoclExecution, build_executor
from pocl.consensus.pocl.params import PoclParams
from pocl.genesis.schema import Genesis
from pocl.ledger.block import Block, Commit
from pocl.ledger.block_builder import build_block, no_round_info
from pocl.ledger.errors import BlockError
from pocl.ledger.executor import BlockResult, Executor
from pocl.ledger.keys import address_of
from pocl.ledger.params import ChainParams
from pocl.ledger.signing_validators import signing_validators
from pocl.ledger.state import State
from pocl.ledger.storage.store import Store
from pocl.ledger.tx import SignedTx

log = logging.getLogger(__name__)

RESULT_CACHE_SIZE = 16


class InvalidBlock(Exception):
    """A block that must not be accepted; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def validator_set_of(state: State, height: int | None = None) -> ValidatorSet | None:
    vals = state.validator_set(height)
    if not vals:
        return None
    return ValidatorSet((v.pubkey, v.power) for v in vals)


def signing_validator_set(state: State) -> ValidatorSet | None:
    """The validator set that signed the block at `state.height` (None at genesis)."""
    pairs = signing_validators(state)
    return None if pairs is None else ValidatorSet(pairs)


@dataclasses.dataclass
class _Checked:
    state: State  # the overlay after executing the block
    result: BlockResult


class Chain:
    def __init__(
        self,
        store: Store,
        state: State,
        executor: Executor,
        params: ChainParams,
        genesis_time_ms: int = 0,
        round_info: Callable[[State], bytes] | None = None,
    ) -> None:
        self.store = store
        self._round_info = round_info or no_round_info
        self.state = state
        self.executor = executor
        self.params = params
        self.genesis_time_ms = genesis_time_ms
        self._checked: FIFOCache[bytes, _Checked] = FIFOCache(RESULT_CACHE_SIZE)  # oldest evicted first
        head = store.head_block()
        self.head_hash: bytes = head.hash if head is not None else b""
        self.head_time_ms: int = head.header.time_ms if head is not None else genesis_time_ms

    # ------------------------------------------------------------------ views

    @property
    def height(self) -> int:
        return self.state.height

    def validators(self) -> ValidatorSet | None:
        """Validator set for the next block."""
        return validator_set_of(self.state)

    def get_block_with_commit(self, height: int) -> tuple[bytes, bytes] | None:
        """Raw block and its commit, for serving block sync (commit from the next block or the seen one)."""
        raw = self.store.block_raw(height)
        commit = self.store.commit(height)
        if raw is None or commit is None:
            return None
        return raw, commit.encode()

    # ------------------------------------------------------------------ building (proposer)

    def build_block(
        self,
        txs: list[SignedTx],
        proposer: bytes,
        time_ms: int,
        last_commit: Commit | None,
        verified: set[bytes] | None = None,
    ) -> Block:
        """The next block on our head from `txs` (any that fail are dropped), remembered as checked."""
        built = build_block(
            self.executor,
            self.state,
            txs,
            proposer=proposer,
            time_ms=max(time_ms, self.head_time_ms + 1),
            prev_hash=self.head_hash,
            last_commit=last_commit,
            verified_sigs=verified,
            round_info=self._round_info,
        )
        self._remember(built.block.hash, _Checked(built.state, built.result))
        return built.block

    # ------------------------------------------------------------------ validity (valid(v))

    def check_block(
        self,
        block: Block,
        verified: set[bytes] | None = None,
        known_txs: Mapping[bytes, SignedTx] | None = None,
    ) -> BlockResult:
        """Raise InvalidBlock unless `block` is a valid next block; returns its execution result.
        `known_txs` (raw -> decoded, the mempool's) only saves decoding."""
        cached = self._checked.get(block.hash)
        if cached is not None:
            return cached.result
        h = block.header
        if h.height != self.height + 1:
            raise InvalidBlock("wrong_height", f"block {h.height} on head {self.height}")
        if h.prev_hash != self.head_hash:
            raise InvalidBlock("wrong_parent", "prev_hash is not our head")
        if h.time_ms <= self.head_time_ms:
            raise InvalidBlock("time_not_increasing", f"{h.time_ms} <= parent {self.head_time_ms}")
        vals = self.validators()
        if vals is None or not any(address_of(v.pubkey) == h.proposer for v in vals):
            raise InvalidBlock("bad_proposer", "proposer is not a validator of this height")
        self._check_last_commit(block)
        overlay = self.state.copy()
        try:
            result = self.executor.apply_block(
                overlay, block, self.params, verified_sigs=verified, known_txs=known_txs
            )
        except BlockError as exc:
            raise InvalidBlock("bad_execution", str(exc)) from exc
        if h.round_info != self._round_info(overlay):
            raise InvalidBlock("bad_round_info", "round_info does not match the executed round state")
        self._remember(block.hash, _Checked(overlay, result))
        return result

    def _check_last_commit(self, block: Block) -> None:
        h = block.header
        if h.height == 1:
            if block.last_commit is not None or h.last_commit_hash != b"":
                raise InvalidBlock("bad_last_commit", "height 1 has no parent commit")
            return
        commit = block.last_commit
        if commit is None:
            raise InvalidBlock("bad_last_commit", "missing the parent's commit")
        if commit.hash != h.last_commit_hash:
            raise InvalidBlock("bad_last_commit", "last_commit_hash does not match last_commit")
        signers = signing_validator_set(self.state)
        if signers is None:
            raise InvalidBlock("bad_last_commit", "no validator set recorded for the parent")
        try:
            verify_commit(self.state.chain_id, commit, signers, self.head_hash, self.height)
        except CommitError as exc:
            raise InvalidBlock("bad_last_commit", exc.reason) from exc

    def verify_commit_for(self, block: Block, commit: Commit) -> None:
        """Check a commit certificate for the next block against the current validator set (sync)."""
        vals = self.validators()
        if vals is None:
            raise InvalidBlock("no_validators", "no validator set")
        try:
            verify_commit(self.state.chain_id, commit, vals, block.hash, block.height)
        except CommitError as exc:
            raise InvalidBlock("bad_commit", exc.reason) from exc

    def _remember(self, block_hash: bytes, checked: _Checked) -> None:
        self._checked[block_hash] = checked

    # ------------------------------------------------------------------ commit

    def commit_block(self, block: Block, commit: Commit, verified: set[bytes] | None = None) -> BlockResult:
        """Persist a decided block (already valid or re-checked here) and advance the state."""
        result = self.check_block(block, verified)
        checked = self._checked.pop(block.hash)
        delta = checked.state.delta()
        self.store.commit_block(block, delta, seen_commit=commit, tx_hashes=result.tx_hashes)
        self.state = checked.state.commit()
        self.head_hash = block.hash
        self.head_time_ms = block.header.time_ms
        self._checked.clear()  # every other candidate was built on the old head
        return result


def open_genesis_chain(path: str | os.PathLike[str], genesis: Genesis) -> tuple[Chain, PoclExecution]:
    """A `Chain` on the store at `path` (initialised from `genesis` when new) with the executor and PoCL
    hooks a node wires: for benchmarks and tests that drive a chain without a node around it."""
    store = Store.open(path)
    if not store.initialized:
        store.init_genesis(genesis.initial_state(), genesis.hash)
    pocl = PoclExecution(PoclParams.from_json(genesis.pocl), genesis.params)
    chain = Chain(
        store,
        store.load_state(genesis.params),
        build_executor(pocl),
        genesis.params,
        genesis.genesis_time_ms,
        round_info=pocl.round_info,
    )
    return chain, pocl
