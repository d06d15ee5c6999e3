"""`pocl-node run` on a damaged or full disk (issue 16 rows 1 and 5), as real processes.

A database whose CURRENT file was deleted is refused with its path and the recovery command, and its
table files survive; a node whose data directory fills up (a small tmpfs) reports `disk_low` on `/ready`
first, then stops with one CRITICAL line naming the path and the errno and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pocl.ledger.storage.store import Store
from pocl.node.config import Config, write_config
from pocl.node.fatal import EXIT_FATAL
from pocl.node.home import NodeHome, init_home
from pocl.node.testnet import free_ports

from tests.support.cli_helpers import POCL_NODE, assert_user_error

pytestmark = pytest.mark.skipif(
    not POCL_NODE.exists(), reason=f"{POCL_NODE} not installed (pip install -e .)"
)

TMPFS_BYTES = 3 * 1024 * 1024
DISK_FULL_TIMEOUT_S = 240.0


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
    env["HOME"] = str(tmp_path / "user-home")
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    rpc, p2p = free_ports(2)
    config = (
        Config()
        .replace("rpc", listen_addr=f"127.0.0.1:{rpc}")
        .replace("p2p", listen_addr=f"127.0.0.1:{p2p}", pex=False)
        .replace("metrics", enabled=False)
        .replace("consensus", timeout_commit_ms=20, timeout_propose_ms=500)
    )
    init_home(h, insecure_keys=True, config=config)
    return h


def test_run_refuses_a_database_whose_current_file_was_deleted(home: Path, tmp_path: Path) -> None:
    node_home = NodeHome.at(home)
    db = home / Config().storage.db_path
    genesis = node_home.load_genesis()
    with Store.open(db) as store:
        store.init_genesis(genesis.initial_state(), genesis.hash)
        store._db.compact_range()  # the chain now sits in .ldb table files
    tables = sorted(db.glob("*.ldb"))
    assert tables
    (db / "CURRENT").unlink()
    res = subprocess.run(
        [str(POCL_NODE), "run", "--home", str(home), "--log-level", "error"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    line = assert_user_error(res, f"ledger database at {db} has no CURRENT file")
    assert f"pocl-node unsafe-reset-all --home {home}" in line and "MANIFEST-" in line
    assert sorted(db.glob("*.ldb")) == tables and not (db / "CURRENT").exists()  # nothing created or deleted


# ------------------------------------------------------------------------------------------ disk full


@pytest.fixture
def small_data_dir(home: Path) -> Iterator[Path]:
    """HOME/data on a 3 MiB tmpfs (root only: skipped where mount is not permitted)."""
    data = home / "data"
    saved = home / "data.saved"
    shutil.copytree(data, saved)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(data)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        shutil.copytree(saved, data, dirs_exist_ok=True)
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_a_full_disk_stops_the_node_loudly(home: Path, small_data_dir: Path, tmp_path: Path) -> None:
    config = NodeHome.at(home).load_config().replace("node", min_free_disk_mb=1)
    write_config(home / "config.toml", config)
    rpc = f"http://{config.rpc.listen_addr}"
    log_path = tmp_path / "node.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(POCL_NODE), "run", "--home", str(home)],
            env=_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + DISK_FULL_TIMEOUT_S
        saw_disk_low = False
        filled = False
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                status, ready = _get(f"{rpc}/ready")
            except OSError:
                time.sleep(0.2)
                continue
            if status == 503 and "disk_low" in ready.get("reasons", []):
                saw_disk_low = True
            if not filled and ready.get("height", 0) >= 2:
                # leave ~1/2 MiB: below the 1 MiB threshold, and soon too little for LevelDB's next file
                free = shutil.disk_usage(small_data_dir).free
                (small_data_dir / "filler").write_bytes(b"\0" * max(0, free - 512 * 1024))
                filled = True
            time.sleep(0.1)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log_path.read_text()
    assert rc == EXIT_FATAL, out[-3000:]
    assert saw_disk_low, "/ready never reported disk_low before the disk filled"
    critical = [ln for ln in out.splitlines() if "FATAL:" in ln and "CRITICAL" in ln.upper()]
    assert len(critical) == 1, out[-3000:]
    assert "errno=ENOSPC" in critical[0] and f"path={small_data_dir}" in critical[0], critical[0]
