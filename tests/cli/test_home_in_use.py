"""A second `pocl-node run` on a home whose database is open elsewhere (issue 13, row 7).

LevelDB refuses with an fcntl lock on `<db>/LOCK`; the node must say so in one line naming the home and
the process holding it, never with plyvel's raw bytes repr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pocl.ledger.storage.store import Store, StoreError, StoreLocked, lock_holder_pid
from pocl.node.config import Config
from pocl.node.home import init_home

from tests.support.cli_helpers import POCL_NODE, assert_user_error

HOLDER = """
import sys
from pocl.ledger.storage.store import Store

store = Store.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()  # hold the database until the test closes our stdin
store.close()
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    init_home(h, insecure_keys=True, config=Config())
    return h


def _db(home: Path) -> Path:
    return home / Config().storage.db_path


@pytest.fixture
def holder(home: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with the home's database open (as a running node has it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(_db(home))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_store_names_the_process_holding_the_lock(home: Path, holder: subprocess.Popen[str]) -> None:
    db = _db(home)
    assert lock_holder_pid(db) == (holder.pid if sys.platform.startswith("linux") else None)
    with pytest.raises(StoreLocked) as err:
        Store.open(db)
    assert err.value.pid == lock_holder_pid(db)
    message = str(err.value)
    assert "b'" not in message and "IO error" not in message
    assert message.startswith(f"ledger database at {db} is in use by another process")


def test_free_database_has_no_holder(tmp_path: Path) -> None:
    assert lock_holder_pid(tmp_path / "nothing-here") is None
    Store.open(tmp_path / "db").close()
    assert lock_holder_pid(tmp_path / "db") is None


def test_other_plyvel_errors_carry_no_bytes_repr(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        Store.open(tmp_path / "missing", create=False)
    assert "b'" not in str(err.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "CURRENT").write_text("garbage\n")
    with pytest.raises(StoreError) as err:
        Store.open(bad)
    assert not isinstance(err.value, StoreLocked) and "b'" not in str(err.value)


@pytest.mark.skipif(not POCL_NODE.exists(), reason=f"{POCL_NODE} not installed (pip install -e .)")
def test_second_run_on_the_same_home_is_one_clear_line(
    home: Path, holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
    env["HOME"] = str(tmp_path / "user-home")
    res = subprocess.run(
        [str(POCL_NODE), "run", "--home", str(home), "--log-level", "error"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    pid = f" (pid {holder.pid})" if sys.platform.startswith("linux") else ""
    line = assert_user_error(res, f"home {home} is in use by another pocl-node{pid}")
    assert line == f"error: home {home} is in use by another pocl-node{pid}"
    assert holder.poll() is None  # the running one is untouched
