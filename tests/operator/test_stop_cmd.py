"""`pocl-node stop` and `pocl-node miner`: finding the node of a home, signalling it, waiting for it.

The fast tests stand a small signal-recording process in for the node (it names pocl-node in its
command line and writes the home's pid file, as `run` does); the slow one stops a real node."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pocl.node.config import Config
from pocl.node.home import NodeHome, init_home
from pocl.node.pidfile import pid_file_path, process_alive, read_pid_file, running_node_pid, write_pid_file

from tests.support.cli_helpers import run_cli

STAND_IN = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def on_signal(sig, _frame):
    out.write_text(signal.Signals(sig).name)
    if sys.argv[2] == "exit":
        sys.exit(0)
for sig in (signal.SIGTERM, signal.SIGQUIT):
    signal.signal(sig, on_signal)
pathlib.Path(sys.argv[3]).write_text("ready")
while True:
    time.sleep(0.02)
"""


@pytest.fixture
def home(tmp_path: Path) -> NodeHome:
    h = tmp_path / "home"
    init_home(h, insecure_keys=True, config=Config().replace("rpc", listen_addr="127.0.0.1:1"))
    return NodeHome.at(h)


def stand_in(tmp_path: Path, home: NodeHome, on_signal: str = "exit") -> tuple[subprocess.Popen[bytes], Path]:
    """A process that records the signal it gets (and exits on it, unless `on_signal` is "stay")."""
    script, out, ready = tmp_path / "stand_in.py", tmp_path / "signal.txt", tmp_path / "ready"
    script.write_text(STAND_IN)
    proc = subprocess.Popen([sys.executable, str(script), str(out), on_signal, str(ready), "pocl.node.cli"])
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "stand-in did not start"
        time.sleep(0.02)
    write_pid_file(pid_file_path(home.data_dir), proc.pid)
    return proc, out


def test_stop_signals_the_node_of_the_home_and_waits_for_it(tmp_path: Path, home: NodeHome, capsys) -> None:
    proc, out = stand_in(tmp_path, home)
    try:
        code, stdout, err = run_cli(capsys, "stop", "--home", home.root, "--timeout", "20")
        assert code == 0, err
        assert out.read_text() == "SIGTERM"
        assert f"sent SIGTERM to pocl-node pid {proc.pid}" in stdout and f"stopped (pid {proc.pid})" in stdout
        assert not process_alive(proc.pid)  # exited (a zombie until this test, its parent, reaps it)
    finally:
        proc.kill()
        proc.wait()


def test_stop_force_sends_the_stop_now_signal(tmp_path: Path, home: NodeHome, capsys) -> None:
    proc, out = stand_in(tmp_path, home)
    try:
        code, _stdout, err = run_cli(capsys, "stop", "--home", home.root, "--force", "--timeout", "20")
        assert code == 0, err
        assert out.read_text() == "SIGQUIT"
    finally:
        proc.kill()
        proc.wait()


def test_stop_that_times_out_says_how_to_force(tmp_path: Path, home: NodeHome, capsys) -> None:
    proc, out = stand_in(tmp_path, home, on_signal="stay")
    try:
        code, _stdout, err = run_cli(capsys, "stop", "--home", home.root, "--timeout", "0.5")
        assert code == 1 and out.read_text() == "SIGTERM"
        assert err.startswith("error: ") and "still running after 0.5s" in err and "--force" in err
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_stop_without_a_running_node_is_one_error_line(tmp_path: Path, home: NodeHome, capsys) -> None:
    code, _out, err = run_cli(capsys, "stop", "--home", home.root)
    assert code == 1 and err.strip() == f"error: no pocl-node is running on home {home.root}"
    # a stale pid file (its process exited, or the pid now belongs to something else) is ignored
    write_pid_file(pid_file_path(home.data_dir), 999_999_999)
    assert running_node_pid(home.db_path(home.load_config()), pid_file_path(home.data_dir)) is None
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_pid_file(pid_file_path(home.data_dir), other.pid)
        assert running_node_pid(home.db_path(home.load_config()), pid_file_path(home.data_dir)) is None
    finally:
        other.kill()
        other.wait()


def test_miner_command_reports_an_unreachable_node(home: NodeHome, capsys) -> None:
    code, _out, err = run_cli(capsys, "miner", "status", "--home", home.root)
    assert code == 1 and "cannot reach the node" in err and f"is the node of {home.root} running?" in err


@pytest.mark.slow
def test_stop_stops_a_real_node_and_removes_its_pid_file(tmp_path: Path) -> None:
    home = NodeHome.at(tmp_path / "n1")
    cfg = Config().replace("rpc", listen_addr="127.0.0.1:0").replace("p2p", listen_addr="127.0.0.1:0")
    init_home(home.root, insecure_keys=True, config=cfg.replace("metrics", enabled=False))
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115 - handed to the child
    node = subprocess.Popen(
        [sys.executable, "-m", "pocl.node.cli", "run", "--home", str(home.root)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        pid_path = pid_file_path(home.data_dir)
        deadline = time.monotonic() + 60
        while read_pid_file(pid_path) != node.pid:
            assert node.poll() is None and time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.1)
        res = subprocess.run(
            [sys.executable, "-m", "pocl.node.cli", "stop", "--home", str(home.root), "--timeout", "60"],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        assert node.wait(10) == 0
        assert f"stopped (pid {node.pid})" in res.stdout
        assert not pid_path.exists()
        assert "shutdown requested (SIGTERM)" in (tmp_path / "node.log").read_text()
    finally:
        node.kill()
        node.wait()
        log.close()
