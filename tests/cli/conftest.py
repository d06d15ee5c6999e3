"""The `cli` fixture: run the installed `pocl-node` console script as a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli_helpers import POCL_NODE, Runner


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
