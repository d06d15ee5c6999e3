"""Store pruning: blocks, hash index, commits, tx index and model blobs below the retain height go, the
disk shrinks, the rest of the store (state, recent blocks) is untouched, and a kill mid-prune leaves a
consistent store that a second prune finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from pocl.ledger.hashing import TAG_TX, tagged_hash
from pocl.ledger.params import ChainParams
from pocl.ledger.storage.store import PRUNED_MODEL, Store
from pocl.node.pruning import dir_bytes

from tests.support import prune_child
from tests.support.prune_kit import GrownChain, grow, new_store

CHILD = Path(prune_child.__file__)


def tx_hashes(chain: GrownChain, height: int) -> list[bytes]:
    return [tagged_hash(TAG_TX, raw) for raw in chain.blocks[height - 1].txs]


def assert_history_from(store: Store, chain: GrownChain, earliest: int) -> None:
    """Every height >= earliest is whole (block, hash index, commit, tx index); nothing below remains."""
    head = store.head_height
    assert head is not None and store.earliest_height == earliest
    for h in range(1, head + 1):
        block = chain.blocks[h - 1]
        kept = h >= earliest
        assert (store.block(h) == block) is kept, h
        assert (store.height_of(block.hash) == h) is kept, h
        assert (store.commit(h) is not None) is kept, h
        for i, th in enumerate(tx_hashes(chain, h)):
            assert store.tx_location(th) == ((h, i) if kept else None), h


def test_prune_deletes_history_below_the_retain_height_and_the_disk_shrinks(
    tmp_path: Path, params: ChainParams
) -> None:
    store, state = new_store(tmp_path / "db", params)
    chain = grow(store, state, 200, blob_bytes=30_000)  # ~12 MB of incompressible block bodies
    root = store.state_root()
    before = dir_bytes(tmp_path / "db")
    assert before > 10 * 1024 * 1024

    result = store.prune(181)

    after = dir_bytes(tmp_path / "db")
    assert result.earliest_before == 1 and result.earliest_after == 181 and not result.stopped
    assert result.blocks_deleted == 180 and result.txs_deleted == 360
    assert after < before * 0.2, (before, after)  # 10% of the blocks left: the files really shrank
    assert_history_from(store, chain, 181)
    assert store.state_root() == root and store.head_height == 200
    store.close()

    store = Store.open(tmp_path / "db", create=False)  # consistency check on open passes
    assert store.earliest_height == 181 and store.load_state(params).state_root() == root
    assert_history_from(store, chain, 181)
    assert store.prune(150).blocks_deleted == 0 and store.earliest_height == 181  # never goes back
    store.close()


def test_prune_never_deletes_the_head_and_an_unpruned_store_starts_at_one(
    tmp_path: Path, params: ChainParams
) -> None:
    store, state = new_store(tmp_path / "db", params)
    assert store.earliest_height == 1
    assert store.prune(10).blocks_deleted == 0  # genesis only: nothing to delete
    chain = grow(store, state, 5, blob_bytes=100)
    assert store.earliest_height == 1
    result = store.prune(10**9)
    assert result.earliest_after == 5 and store.head_block() == chain.blocks[-1]
    assert store.commit(5) is not None  # the head's seen commit, which consensus builds on
    assert_history_from(store, chain, 5)
    store.close()


def test_pruned_models_leave_a_tombstone_so_their_hash_stays_known(
    tmp_path: Path, params: ChainParams
) -> None:
    store, state = new_store(tmp_path / "db", params)
    chain = grow(store, state, 40, blob_bytes=100, model_every=5, model_bytes=200_000)
    hashes = [chain.models[h] for h in sorted(chain.models)]
    keep = set(hashes[-2:])
    before = dir_bytes(tmp_path / "db")

    result = store.prune(1, keep_models=keep)

    assert result.models_pruned == len(hashes) - 2 and result.blocks_deleted == 0
    assert dir_bytes(tmp_path / "db") < before - 200_000 * (len(hashes) - 3)
    for h in hashes[:-2]:
        assert store.get_model(h) == PRUNED_MODEL and store.model_pruned(h)
    for h in hashes[-2:]:
        assert len(store.get_model(h) or b"") == 200_000 and not store.model_pruned(h)
    # PoCL asks "is this a global model the chain holds?" as `get_model(h) is not None`: unchanged
    loaded = store.load_state(params)
    assert all(loaded.get_model(h) is not None for h in hashes)
    assert loaded.get_model(b"\x00" * 32) is None
    assert store.prune(1, keep_models=keep).models_pruned == 0  # tombstones are not pruned twice
    store.put_model(hashes[0], b"weights again")  # a model that comes back gets its bytes back
    assert store.get_model(hashes[0]) == b"weights again" and not store.model_pruned(hashes[0])
    store.close()


def test_kill_mid_prune_leaves_a_consistent_store_that_the_next_prune_finishes(
    tmp_path: Path, params: ChainParams
) -> None:
    store, state = new_store(tmp_path / "db", params)
    chain = grow(store, state, 120, blob_bytes=2_000)
    root = store.state_root()
    store.close()

    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path / "db"), "101"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(8):  # let a few batches (2 heights each) through, then kill it mid-prune
        assert proc.stdout.readline() == "batch\n", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    store = Store.open(tmp_path / "db", create=False)
    earliest = store.earliest_height
    assert 1 < earliest < 101, earliest  # it was killed part-way
    assert_history_from(store, chain, earliest)
    assert store.state_root() == root and store.load_state(params).state_root() == root
    result = store.prune(101)
    assert result.earliest_before == earliest and result.earliest_after == 101
    assert_history_from(store, chain, 101)
    store.close()


def test_bench_pruning_smoke(tmp_path: Path, capsys) -> None:
    from scripts.bench import pruning as bench

    out = tmp_path / "pruning.json"
    args = ["--heights", "120", "--round-blocks", "4", "--predict-bytes", "20000", "--retain-blocks", "10"]
    args += [
        "--evidence-max-age",
        "10",
        "--unbonding-blocks",
        "10",
        "--interval-blocks",
        "20",
        "--json",
        str(out),
    ]
    assert bench.main(args) == 0
    data = json.loads(out.read_text())
    assert data["pruned"]["earliest_height"] == 111 and data["archive"]["earliest_height"] == 1
    assert data["disk_mb_per_1000_blocks_pruned"] < data["disk_mb_per_1000_blocks"] / 2
    assert "per 1000 blocks" in capsys.readouterr().out
