"""Child process for the crash-safety test: appends blocks to a real store forever (until SIGKILL).

    python tests/support/crash_child.py DB_DIR

Resumes from the store's head. Each block carries transfers, sometimes a stake/unstake, and stages a
"global model" blob plus its hash in state, so a torn write would show up as a missing model, a state
root mismatch or a head without its block.
"""

from __future__ import annotations

import sys

from pocl.ledger.block import Block, Commit, CommitSig, Header, txs_root
from pocl.ledger.executor import Executor
from pocl.ledger.hashing import tagged_hash
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.storage.store import Store
from pocl.ledger.tx import make_stake, make_transfer, make_unstake
from pocl.ledger.tx_kinds import BlockContext

CHAIN_ID = "crash-test"
PARAMS = ChainParams(unbonding_blocks=3)
KEYS = [PrivateKey.from_seed_text(f"crash-{i}") for i in range(40)]
PROPOSER = PrivateKey.from_seed_text("crash-proposer")
TXS_PER_BLOCK = 30


def genesis() -> State:
    return State.from_genesis(PARAMS, [GenesisAccount(k.address, 10**9, 0, None) for k in KEYS], CHAIN_ID)


def block_txs(state: State, height: int) -> list[bytes]:
    txs = []
    for j in range(TXS_PER_BLOCK):
        key = KEYS[(height * 7 + j) % len(KEYS)]
        acct = state.account(key.address)
        nonce = acct.nonce if acct is not None else 0
        to = KEYS[(height * 7 + j + 1 + j % 5) % len(KEYS)].address
        if j == 0 and height % 3 == 0:
            txs.append(make_stake(key, CHAIN_ID, nonce, 1_000 + height, 1).raw)
        elif j == 0 and height % 3 == 1 and acct is not None and acct.stake > 0:
            txs.append(make_unstake(key, CHAIN_ID, nonce, acct.stake // 2 + 1, 1).raw)
        else:
            txs.append(make_transfer(key, CHAIN_ID, nonce, to, 1 + height % 97, 1).raw)
    return txs


def main(path: str) -> None:
    store = Store.open(path)
    if not store.initialized:
        store.init_genesis(genesis())
    state = store.load_state(PARAMS)
    executor = Executor()
    prev = store.head_block()
    print("ready", store.head_height, flush=True)
    while True:
        h = state.height + 1
        txs = block_txs(state, h)
        work = state.copy()
        ctx = BlockContext(h, h * 1000, PROPOSER.address, CHAIN_ID, PARAMS)
        result = executor.execute_block(work, ctx, txs)
        model = tagged_hash(b"crash-model", h.to_bytes(8, "big")) * 64
        model_hash = tagged_hash(b"crash-model-hash", model)
        work.put_model(model_hash, model)
        work.set_global_model_hash(model_hash)
        root = work.state_root()
        last_commit = None
        if prev is not None:
            last_commit = Commit(prev.height, 0, prev.hash, [CommitSig(PROPOSER.pubkey, b"\x01" * 64)])
        header = Header(
            h,
            h * 1000,
            prev.hash if prev else b"",
            PROPOSER.address,
            txs_root(txs),
            root,
            last_commit.hash if last_commit else b"",
            b"",
        )
        block = Block(header, txs, last_commit)
        seen = Commit(h, 0, block.hash, [CommitSig(PROPOSER.pubkey, b"\x02" * 64)])
        store.commit_block(block, work.delta(), seen_commit=seen, tx_hashes=result.tx_hashes)
        state = work.commit()
        prev = block


if __name__ == "__main__":
    main(sys.argv[1])
