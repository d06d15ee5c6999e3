"""Clean node logs (issue 13, row 7): no `miner: miner:` prefixes, no TensorFlow start-up notices.

A node's stderr is its `node.log` (the devnet and testnet redirect it there); the training worker is a
child process writing to the same file descriptor.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
from collections.abc import Iterator

import pytest
from pocl.consensus.pocl.events import RewardPaid, Slashed
from pocl.ml.train_worker import TrainingWorker, drop_tf_noise
from pocl.node.events import BlockCommitted
from pocl.node.logging import setup_logging
from pocl.node.miner import Miner

ADDRESS = b"\x07" * 20

# What TensorFlow 2.21's native libraries print while `import tensorflow` runs, whatever
# TF_CPP_MIN_LOG_LEVEL says (captured from this environment).
TF_IMPORT_NOISE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796255142.541931    7546 port.cc:153] oneDNN custom operations are on. You may see slightly \
different numerical results due to floating-point round-off errors from different computation orders. To \
turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796255142.609634    7546 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use \
available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the \
appropriate compiler flags.
W0000 00:00:1796255142.700000    7546 gpu_device.cc:2344] Cannot dlopen some GPU libraries.
"""


@pytest.fixture
def node_log() -> Iterator[io.StringIO]:
    """The node's text log, as `run` sets it up, into a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    setup_logging("info", "text", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _bare_miner() -> Miner:
    """A Miner with just the state its logging paths touch (no chain, no data, no worker)."""
    m = Miner.__new__(Miner)
    m.address = ADDRESS
    m.stats = {}
    m._said = set()
    m._unsubscribe = None
    m._task = m._train_task = m._warmup_task = None
    m.worker = None
    m._wake = asyncio.Event()
    return m


def test_miner_lines_carry_the_logger_name_once(node_log: io.StringIO) -> None:
    m = _bare_miner()
    m._once(4, "not staked enough to mine; waiting")
    m._on_event(
        BlockCommitted(
            height=9, hash=b"\x00" * 32, time_ms=0, txs=0, round=0, interval_s=0.0, synced=False,
            tx_hashes=(),
            events=(
                RewardPaid(round=3, address=ADDRESS, role="winner", amount=5),
                Slashed(round=3, address=ADDRESS, kind="withhold", slashed=2, jailed_until_round=5),
            ),
        )
    )  # fmt: skip
    asyncio.run(m.stop())
    lines = node_log.getvalue().splitlines()
    assert len(lines) == 4, lines
    for line in lines:
        assert " miner: " in line and line.count("miner:") == 1, line
    assert lines[0].endswith("miner: round 4 not staked enough to mine; waiting")
    assert lines[1].endswith("miner: round 3 rewarded 5 as winner")
    assert lines[2].endswith("miner: round 3 SLASHED 2 for withhold")
    assert lines[3].endswith("miner: stopped")


def test_drop_tf_noise_keeps_everything_else() -> None:
    assert drop_tf_noise(TF_IMPORT_NOISE) == ""
    real = (
        "E0000 00:00:1796255142.609634    7546 cuda_executor.cc:1] failed call to cuInit\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ImportError: libfoo.so: cannot open shared object file\n"
        "/site-packages/keras/x.py:3: UserWarning: something the operator should see\n"
    )
    assert drop_tf_noise(TF_IMPORT_NOISE + real) == real
    assert drop_tf_noise("no newline at the end") == "no newline at the end"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs the miner extra")
def test_training_worker_start_writes_no_tensorflow_notices(capfd: pytest.CaptureFixture[str]) -> None:
    async def start_and_close() -> None:
        worker = TrainingWorker(threads=1)
        try:
            await worker.start()
            assert worker.pid is not None
        finally:
            await worker.close()

    capfd.readouterr()
    asyncio.run(start_and_close())
    err = capfd.readouterr().err  # the worker process inherits this file descriptor 2
    for notice in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "To enable the following"):
        assert notice not in err, err


def test_http_client_libraries_log_no_line_per_request() -> None:
    """The RPC client and the devnet follower poll over httpx: its INFO line per request must not reach the
    node's or the devnet's output."""
    import logging

    from pocl.node.logging import QUIET_LIBRARIES, setup_logging

    setup_logging("info")
    for name in ("httpx", "httpcore"):
        assert name in QUIET_LIBRARIES
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
        assert logging.getLogger(name).isEnabledFor(logging.WARNING)
