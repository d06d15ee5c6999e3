"""A stored chain with bulky blocks for the pruning tests: real LevelDB, real block/commit/tx-index writes.

Each block's state change is that of an empty block executed for real (so heights, roots and the store's
consistency checks are genuine); its body carries incompressible blobs of predict-tx size, since a store
keeps whatever bytes a block holds, and every few blocks a "global model" blob is staged with it.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from pocl.ledger.block import Block, Commit, CommitSig, txs_root
from pocl.ledger.executor import Executor
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State
from pocl.ledger.storage.store import Store

from tests.support.ledger_kit import CHAIN_ID, VAL1, build_block, genesis_accounts

EX = Executor()


def fake_commit(block: Block) -> Commit:
    return Commit(block.height, 0, block.hash, [CommitSig(VAL1.pubkey, b"\x07" * 64)])


@dataclasses.dataclass
class GrownChain:
    state: State
    blocks: list[Block]
    models: dict[int, bytes]  # height -> hash of the model staged with that block


def new_store(path: Path, params: ChainParams) -> tuple[Store, State]:
    store = Store.open(path)
    state = State.from_genesis(params, genesis_accounts(), CHAIN_ID)
    store.init_genesis(state, genesis_hash=b"\x05" * 32)
    return store, state


def grow(
    store: Store,
    state: State,
    n: int,
    *,
    blob_bytes: int = 20_000,
    blobs_per_block: int = 2,
    model_every: int = 0,
    model_bytes: int = 50_000,
    seed: int = 1,
) -> GrownChain:
    """Append `n` blocks to `store` (its head must be `state`'s height)."""
    rng = random.Random(seed)
    head = store.head_block()
    prev = head.hash if head is not None else b""
    last_commit = fake_commit(head) if head is not None else None
    blocks: list[Block] = []
    models: dict[int, bytes] = {}
    for _ in range(n):
        empty, _ = build_block(EX, state, [], prev_hash=prev)
        work = state.copy()
        EX.apply_block(work, empty)
        height = empty.height
        if model_every and height % model_every == 0:
            blob = rng.randbytes(model_bytes)
            model_hash = rng.randbytes(32)
            work.put_model(model_hash, blob)
            models[height] = model_hash
        # distinct per height so each tx hash is unique, like real txs (nonces)
        txs = [height.to_bytes(8, "big") + rng.randbytes(blob_bytes) for _ in range(blobs_per_block)]
        header = dataclasses.replace(empty.header, txs_root=txs_root(txs))
        block = Block(header, txs, last_commit if height > 1 else None)
        store.commit_block(block, work.delta(), seen_commit=fake_commit(block))
        state = work.commit()
        blocks.append(block)
        prev = block.hash
        last_commit = fake_commit(block)
    return GrownChain(state, blocks, models)
