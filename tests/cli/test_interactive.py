"""Interactive passphrase prompts through a pseudo-terminal (getpass path of `keys new` / `keys export`)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest
from pocl.ledger.storage.keystore import ScryptParams
from pocl.node.home import init_home

from tests.support.cli_helpers import POCL_NODE, Runner, assert_ok


def _run_on_pty(
    args: list[str], answers: list[str], env: dict[str, str], timeout: float = 30.0
) -> tuple[int, str]:
    """Run with stdin/stdout on a pty in a new session (no controlling tty, so getpass uses stdin)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(POCL_NODE), *args], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: child closed the pty
                    break
                if not chunk:
                    break
                output += chunk
                if pending and output.endswith(b": "):  # a prompt waits (answers end it with a newline)
                    os.write(master, pending.pop(0).encode() + b"\n")
            elif proc.poll() is not None:
                break
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit; output so far: {output!r}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, output.decode(errors="replace")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    if not POCL_NODE.exists():
        pytest.skip("pocl-node not installed")
    e = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
    e["HOME"] = str(tmp_path / "user-home")
    return e


def test_prompted_passphrase_round_trip(cli: Runner, tmp_path: Path, env: dict[str, str]) -> None:
    home = tmp_path / "h"
    init_home(home, passphrase="pw", kdf=ScryptParams(n=2**10))
    rc, out = _run_on_pty(["keys", "new", "erin", "--home", str(home)], ["typed-pass", "typed-pass"], env)
    assert rc == 0, out
    assert "Passphrase for the new key erin" in out and "Repeat passphrase" in out and "typed-pass" not in out
    rc, out = _run_on_pty(
        ["keys", "export", "erin", "--home", str(home), "--format", "seed-hex", "--unsafe"],
        ["typed-pass"],
        env,
    )
    assert rc == 0, out
    shown = json.loads(assert_ok(cli("keys", "show", "erin", "--home", home, "--json")).stdout)
    assert shown["encrypted"] is True
    # the passphrase typed on the terminal also works non-interactively
    assert_ok(
        cli(
            "keys",
            "export",
            "erin",
            "--home",
            home,
            "--format",
            "seed-hex",
            "--unsafe",
            passphrase="typed-pass",
        )
    )


def test_prompt_mismatch_is_one_line_error(cli: Runner, tmp_path: Path, env: dict[str, str]) -> None:
    home = tmp_path / "h"
    init_home(home, passphrase="pw", kdf=ScryptParams(n=2**10))
    rc, out = _run_on_pty(["keys", "new", "frank", "--home", str(home)], ["one", "two"], env)
    assert rc == 1 and "error: passphrases do not match" in out and "Traceback" not in out
    assert not (home / "keys" / "frank.json").exists()
