"""Building the next block as its proposer (DESIGN §5.1): the one block builder of the project.

The proposer executes candidate txs on a copy of the state, dropping invalid ones and deferring those
that would overflow the block, then writes the header over what actually ran. Pure: the node's
`Chain.build_block` adds the chain view (head hash, time floor, validity cache) and tests call it directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from pocl.ledger.block import Block, Commit, Header, txs_root
from pocl.ledger.executor import BlockResult, Executor
from pocl.ledger.state import State
from pocl.ledger.tx import SignedTx
from pocl.ledger.tx_kinds import BlockContext


@dataclasses.dataclass(frozen=True)
class BuiltBlock:
    block: Block
    result: BlockResult
    state: State  # the executed overlay on the parent state: commit it once the block is final, or drop it


def no_round_info(_state: State) -> bytes:
    return b""


def build_block(
    executor: Executor,
    state: State,
    candidate_txs: Sequence[bytes | SignedTx],
    *,
    proposer: bytes,
    time_ms: int,
    prev_hash: bytes,
    last_commit: Commit | None,
    verified_sigs: set[bytes] | frozenset[bytes] | None = None,
    round_info: Callable[[State], bytes] = no_round_info,
) -> BuiltBlock:
    """Execute `candidate_txs` on a copy of `state` (invalid ones dropped, overflow deferred: see
    `result.rejected` / `result.deferred`) and assemble the block on top of `prev_hash`. `round_info`
    summarises the executed state for the header (PoCL's round summary; empty by default)."""
    overlay = state.copy()
    height = state.height + 1
    ctx = BlockContext(height, time_ms, proposer, state.chain_id, state.params)
    result = executor.execute_block(overlay, ctx, candidate_txs, verified_sigs, skip_invalid=True)
    header = Header(
        height=height,
        time_ms=time_ms,
        prev_hash=prev_hash,
        proposer=proposer,
        txs_root=txs_root(result.txs),
        state_root=result.state_root,
        last_commit_hash=last_commit.hash if last_commit is not None else b"",
        round_info=round_info(overlay),
    )
    return BuiltBlock(Block(header, result.txs, last_commit), result, overlay)
