"""Run `pocl-node` in tests, in-process (`pocl.node.cli.main`) or as the installed console script, and
check its output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pocl.node.cli import main

POCL_NODE = Path(sys.executable).parent / "pocl-node"

Runner = Callable[..., subprocess.CompletedProcess]


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: object) -> Any:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr}"
    assert "Traceback" not in res.stdout + res.stderr
    return res


def assert_user_error(res: subprocess.CompletedProcess, contains: str, code: int = 1) -> str:
    """Exactly one `error: ...` line on stderr, the given exit status, and no traceback anywhere."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode == code, f"rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    assert contains in lines[0], lines[0]
    return lines[0]
