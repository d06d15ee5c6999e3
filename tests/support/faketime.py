"""A skewed wall clock for one node process (libfaketime preloaded), for tests/integration/test_block_time.py
and tests/perturb/test_clock.py.

Debian's `faketime` package ships the wrapper and the preload library; the library is preloaded directly so
the node is the process LocalCluster starts and stops (the wrapper forks and would not pass SIGTERM on).
"""

from __future__ import annotations

import glob
import os
import shutil

from pocl.node.cluster import NodeProcess

FAKETIME_LIBS = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
SLACK_MS = 3_000  # a block's time vs the test's real clock: read before/after, plus scheduling noise


def faketime_lib() -> str | None:
    if shutil.which("faketime") is None:
        return None
    found = sorted(p for pattern in FAKETIME_LIBS for p in glob.glob(pattern))
    return found[0] if found else None


def skew_clock(node: NodeProcess, lib: str, offset: str) -> None:
    """Run `node` with its wall clock `offset` ahead (libfaketime syntax: "+1h", "+365d"); monotonic time
    stays real, so timers and timeouts behave."""
    node.env = dict(os.environ) | {
        "LD_PRELOAD": lib,
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
