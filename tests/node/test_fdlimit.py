"""The node raises its soft open-file limit to the hard one at start, and warns when even that is low.

Each case runs in a child process whose limits are set before it starts (`preexec_fn`), so the test
process keeps its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")

CHILD = """
import json, logging, resource, sys
from pocl.node.logging import setup_logging
from pocl.node.fdlimit import raise_nofile_limit
setup_logging("info")
result = raise_nofile_limit()
print(json.dumps({"before": result.before, "after": result.after, "hard": result.hard,
                  "now": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))
"""


def run_with_limits(soft: int, hard: int) -> tuple[dict[str, int], str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    res = subprocess.run(
        [sys.executable, "-c", CHILD], preexec_fn=limit, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), res.stderr


def current_hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


@pytest.mark.skipif(current_hard() < 8192, reason="needs a hard open-file limit of at least 8192")
def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    hard = min(current_hard(), 1 << 20)
    got, err = run_with_limits(1024, hard)
    assert got == {"before": 1024, "after": hard, "hard": hard, "now": hard}
    assert f"raised the open-file limit from 1024 to {hard}" in err
    assert "WARNING" not in err


def test_a_low_hard_limit_is_one_warning_saying_how_to_raise_it() -> None:
    got, err = run_with_limits(256, 1024)
    assert got["now"] == 1024 and got["after"] == 1024
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "open-file limit is 1024" in warnings[0] and "LimitNOFILE" in warnings[0]


def test_run_raises_the_limit_before_opening_the_store() -> None:
    """`pocl-node run` calls it right after logging is set up (a source check: running a node is the
    slow abuse test's job, tests/rpc/test_rpc_abuse.py)."""
    import inspect

    from pocl.node.commands import run

    source = inspect.getsource(run._run)
    assert source.index("raise_nofile_limit()") < source.index("Node(")
