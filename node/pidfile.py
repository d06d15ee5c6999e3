"""Which process runs the node of a home (`pocl-node stop` signals it).

The authority is the chain database's lock: a running node holds LevelDB's fcntl lock on
`data/chain.db/LOCK`, and on Linux the kernel names the holder (`ledger.storage.store.lock_holder_pid`).
`run` also writes its pid to `HOME/data/node.pid` once the node has started (removed when it exits), for
systems where the lock does not name its holder; a pid file whose process is gone, or is not a
pocl-node, is stale and ignored.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pocl.ledger.storage.store import lock_holder_pid

PID_FILE = "node.pid"
PROC = Path("/proc")
NODE_MODULE_MARKERS = (b"pocl-node", b"pocl.node.cli")


def pid_file_path(data_dir: Path) -> Path:
    return data_dir / PID_FILE


def write_pid_file(path: Path, pid: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid or os.getpid()}\n")
    os.replace(tmp, path)


def remove_pid_file(path: Path, pid: int | None = None) -> None:
    """Remove the pid file if it still names `pid` (this process by default)."""
    if read_pid_file(path) == (pid or os.getpid()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie has exited: only its parent has to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, run by another user
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def looks_like_node(pid: int) -> bool:
    """The process's command line names pocl-node (True where /proc cannot tell)."""
    try:
        cmdline = (PROC / str(pid) / "cmdline").read_bytes()
    except FileNotFoundError:
        return not PROC.is_dir()
    except OSError:
        return True
    return any(marker in cmdline for marker in NODE_MODULE_MARKERS)


def running_node_pid(db_path: Path, pid_path: Path) -> int | None:
    """The pid of the node running on this home, or None: the database lock's holder, else a live
    pocl-node named by the pid file."""
    holder = lock_holder_pid(db_path) if db_path.exists() else None
    if holder is not None:
        return holder
    pid = read_pid_file(pid_path)
    if pid is not None and pid != os.getpid() and process_alive(pid) and looks_like_node(pid):
        return pid
    return None
