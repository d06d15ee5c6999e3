"""Helpers to run the installed `pocl-node` console script as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

POCL_NODE = Path(sys.executable).parent / "pocl-node"

Runner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def cli(tmp_path: Path) -> Runner:
    """cli(*args, input=None, passphrase="pw", env=None) → CompletedProcess (text, never raises)."""
    if not POCL_NODE.exists():
        pytest.skip(f"{POCL_NODE} not installed (pip install -e .)")

    def run(
        *args: str | Path, input: str | None = None, passphrase: str | None = "pw", env: dict | None = None
    ):
        full_env = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
        full_env["HOME"] = str(tmp_path / "user-home")  # never touch the real ~/.pocl
        if passphrase is not None:
            full_env["POCL_PASSPHRASE"] = passphrase
        full_env.update(env or {})
        return subprocess.run(
            [str(POCL_NODE), *map(str, args)],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=full_env,
            timeout=60,
        )

    return run


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
