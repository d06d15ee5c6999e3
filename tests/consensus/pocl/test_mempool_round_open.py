"""A node one block behind the round's first block (normal over a WAN link: here the syncing newcomer)
receives the other miners' `pocl.commit` by gossip before it has executed s_r. Its mempool must admit them
against the round about to open, exactly as the block will, not raise out of the mempool (found by the
multi-host join test: `pocl_no_round` escaped from `apply_commit` as an error with a traceback)."""

from __future__ import annotations

from pocl.consensus.pocl.txs import KIND_POCL_COMMIT
from pocl.node.mempool import Mempool

from tests.support.pocl_chain import Chain
from tests.support.pocl_scenario import HONEST, make_params, make_scenario

FIRST_ROUND_HEIGHT = 3


def test_commits_gossiped_one_block_before_the_round_opens_are_admitted() -> None:
    s = make_scenario([HONEST, HONEST, HONEST], make_params(first_round_height=FIRST_ROUND_HEIGHT))
    c = Chain(s)
    while c.state.height < FIRST_ROUND_HEIGHT - 1:
        c.block([])
    assert c.pocl.open_record(c.state) is None  # the round opens in the next block
    commits = [t for t in c.miner_txs() if t.tx.kind == KIND_POCL_COMMIT]
    assert len(commits) == 3
    pool = Mempool(c.executor, c.state)
    results = [pool.add(t.raw) for t in commits]
    assert [r.error for r in results] == [None, None, None]
    assert all(t.hash in pool for t in commits)
    c.block(commits)  # and the block that opens the round takes them all
    rec = c.pocl.open_record(c.state)
    assert rec is not None and rec.round == 1 and sorted(rec.committers) == sorted(m.address for m in s.miners)


def test_a_queued_commit_crosses_the_round_boundary_without_breaking_the_mempool() -> None:
    """A miner's commit sits in the mempool (after a partition, say) while the chain runs COMMIT to its
    end, the rest of the round and the next round's open without it: every re-check after a block drops
    or keeps it with a reason and never raises to the caller (block sync, the consensus driver)."""
    s = make_scenario([HONEST, HONEST, HONEST], make_params(first_round_height=FIRST_ROUND_HEIGHT))
    c = Chain(s)
    while c.state.height < FIRST_ROUND_HEIGHT - 1:
        c.block([])
    late = s.miners[2].address
    pool = Mempool(c.executor, c.state)
    first = c.miner_txs()
    held = [t for t in first if t.tx.sender_address == late]
    assert [t.tx.kind for t in held] == [KIND_POCL_COMMIT] and pool.add(held[0].raw).error is None
    txs = [t for t in first if t.tx.sender_address != late]
    for _ in range(60):  # the blocks leave the late commit out
        c.block(txs)
        dropped = pool.update(c.state)  # must not raise
        if held[0].hash in dropped:
            break
        txs = [t for t in c.miner_txs(hold={(late, "commit")}) if t.tx.sender_address != late]
    else:
        raise AssertionError("the late commit was never dropped")
    assert held[0].hash not in pool and len(pool) == 0
    assert pool.pending_nonce(late) == c.state.account(late).nonce  # the overlay is the state again
