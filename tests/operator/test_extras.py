"""Installs without the optional `miner` extra (issue 13, row 2).

`pocl-node run --mine` without TensorFlow / scikit-learn must refuse to start with one line naming the
extra and the missing modules, before it opens the store, P2P or RPC. Nothing is uninstalled: the CLI
runs with a `sitecustomize` that makes those imports fail, as they fail in a validator-only install.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pocl.node.config import Config
from pocl.node.home import NodeHome, init_home
from pocl.node.miner import MINER_EXTRA_HINT, MinerError, check_miner_extra, miner_modules

from tests.support.cli_helpers import POCL_NODE

EXTRA_MODULES = ("sklearn", "tensorflow", "keras", "matplotlib")

# Imported at interpreter start-up (via PYTHONPATH): the miner extra's modules cannot be found.
BLOCKER = f"""
import sys

BLOCKED = {EXTRA_MODULES!r}


class _NoMinerExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NoMinerExtra())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def without_miner_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        if name.split(".")[0] in EXTRA_MODULES:
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_the_check_names_the_extra_and_the_missing_modules(without_miner_extra: None) -> None:
    with pytest.raises(MinerError) as err:
        check_miner_extra("digits", "honest")
    assert str(err.value) == f"{MINER_EXTRA_HINT} (missing module: tensorflow, keras, sklearn)"
    assert MINER_EXTRA_HINT == "mining needs the miner extra: pip install 'pocl[miner]'"
    with pytest.raises(MinerError, match=r"\(missing module: tensorflow, keras\)$"):
        check_miner_extra("npz:/data/x.npz", "honest")  # no digits: scikit-learn is not needed
    check_miner_extra("npz:/data/x.npz", "lazy")  # a behaviour that never trains needs neither


def test_the_check_passes_with_the_extra_installed() -> None:
    for name in miner_modules("digits", "honest"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed here")
    check_miner_extra("digits", "honest")


def test_a_blocked_import_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def find_spec(name: str, *args, **kwargs):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MinerError, match="missing module: tensorflow, keras"):
        check_miner_extra("mnist", "honest")


@pytest.fixture
def blocked_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "no-miner-extra"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env["HOME"] = str(tmp_path / "user-home")
    probe = subprocess.run(
        [sys.executable, "-c", "import sklearn"], env=env, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0 and "No module named 'sklearn'" in probe.stderr, probe.stderr
    return env


@pytest.mark.parametrize(
    ("extra_args", "missing"),
    [
        ((), "tensorflow, keras, sklearn"),
        (("--dataset", "npz:{npz}"), "tensorflow, keras"),
    ],
    ids=["digits", "npz"],
)
def test_run_mine_without_the_extra_is_one_line_before_anything_starts(
    tmp_path: Path, blocked_env: dict[str, str], extra_args: tuple[str, ...], missing: str
) -> None:
    if not POCL_NODE.exists():
        pytest.skip(f"{POCL_NODE} not installed (pip install -e .)")
    home = tmp_path / "home"
    init_home(home, insecure_keys=True, config=Config())
    npz = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x=rng.random((40, 8, 8, 1), dtype=np.float32), y=np.arange(40) % 10)
    rpc_port, p2p_port = _free_port(), _free_port()
    args = [a.format(npz=npz) for a in extra_args]
    res = subprocess.run(
        [
            str(POCL_NODE), "run", "--home", str(home), "--mine", *args,
            "--rpc-listen", f"127.0.0.1:{rpc_port}", "--p2p-listen", f"127.0.0.1:{p2p_port}",
        ],
        env=blocked_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert res.stdout == ""
    assert res.stderr.splitlines() == [f"error: {MINER_EXTRA_HINT} (missing module: {missing})"]
    # refused before the node opened its store, so before P2P and RPC (which start after it)
    assert not (home / Config().storage.db_path).exists()
    for port in (rpc_port, p2p_port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free: nothing listened there


def test_run_mine_without_an_account_key_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """A miner need not validate (`--no-validator` is how a joining miner runs), but it signs its round txs
    with the account key: without one, nothing starts."""
    if not POCL_NODE.exists():
        pytest.skip(f"{POCL_NODE} not installed (pip install -e .)")
    home = tmp_path / "home"
    init_home(home, insecure_keys=True, config=Config())
    account_key = NodeHome.at(home).account_key_path
    account_key.unlink()
    env = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
    env["HOME"] = str(tmp_path / "user-home")
    res = subprocess.run(
        [
            str(POCL_NODE), "run", "--home", str(home), "--mine", "--no-validator",
            "--rpc-listen", f"127.0.0.1:{_free_port()}", "--p2p-listen", f"127.0.0.1:{_free_port()}",
        ],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith(f"error: no account key at {account_key}: mining and validating sign with it")
    assert not (home / Config().storage.db_path).exists()
