"""Crash safety: SIGKILL a process appending blocks to a real LevelDB store at random moments; after each
kill the store must reopen with a whole head block whose state root matches a from-scratch recomputation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pocl.ledger.hashing import TAG_TX, tagged_hash
from pocl.ledger.storage.store import Store

from tests.support import crash_child

KILLS = 22
CHILD = Path(crash_child.__file__)


def _wait_ready(proc: subprocess.Popen) -> int:
    """Block until the child prints 'ready HEAD' (store opened); pytest's timeout bounds the wait."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"child did not start: {line!r}, stderr={err}")
    return int(line.split()[1])


def _check_store(path: Path) -> tuple[int, bytes]:
    store = Store.open(path, create=False)  # consistency: head block, header root, bucket root
    try:
        head = store.head_height
        assert head is not None
        state = store.load_state(crash_child.PARAMS)  # from-scratch recomputation vs stored root
        assert state.height == head
        root = store.verify_state()
        if head > 0:
            block = store.head_block()
            assert block is not None and block.height == head
            assert block.header.state_root == root == state.state_root()
            for i, raw in enumerate(block.txs):  # tx index written in the same batch
                assert store.tx_location(tagged_hash(TAG_TX, raw)) == (head, i)
            model_hash = state.global_model_hash
            assert model_hash is not None and store.has_model(model_hash)  # staged model in same batch
            assert store.commit(head) is not None  # seen commit in same batch
            if head > 1:
                assert store.commit(head - 1) == block.last_commit
        return head, root
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_never_tears_the_store(tmp_path: Path) -> None:
    rng = random.Random(1234)
    path = tmp_path / "db"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    heads = []
    started = time.monotonic()
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            head_at_start = _wait_ready(proc)
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        head, _ = _check_store(path)
        assert head >= head_at_start
        heads.append(head)
    assert heads[-1] > 0 and heads == sorted(heads)
    print("heads after each kill:", heads)
    assert len(set(heads)) > KILLS // 3, heads  # kills landed at many different points of the chain
    assert time.monotonic() - started < 120
