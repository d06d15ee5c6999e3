"""Run the shell commands of README.md and docs/*.md (tests/docs/test_doc_commands.py).

A fenced code block is *runnable* when the line right before its opening fence (blank lines aside) is
the HTML comment `<!-- runnable -->` (invisible when the Markdown is rendered). Its info string must be
`bash`. Mark only blocks whose every command works as written in a fresh directory within seconds;
synopses (`tx transfer TO AMOUNT`), placeholders (`0x…`), long devnets and benchmarks stay unmarked.

How a document's runnable blocks are run (`run_document`):

- In order, each as one `bash -e` script, all in one fresh working directory (so `./n1` made by one
  block is there for the next) with `HOME` set to a fresh directory (`~/.pocl` is inside it) and
  `POCL_HOME` / `POCL_PASSPHRASE` unset.
- `pocl-node` and `.venv/bin/pocl-node` both name a shim (the working directory holds `.venv/bin/`,
  which is also first on `PATH`) that runs the real console script of the test's environment, except:
  - `pocl-node run …` starts the node in the background, returns once its RPC answers `/health` (or fails
    with the node log's tail if the node exits first), and the node is stopped (SIGTERM) when the block
    ends: a block that starts a node reads like the commands of a first and a second terminal;
  - after `pocl-node init …` the new home's p2p, RPC and metrics ports are moved to free ones, so that
    a node the docs start does not depend on the documented default ports being free; commands that
    find the node through `--home` reach it as written.
- A block fails if any command exits non-zero, or if anything it runs, nodes included, prints a
  Python traceback or a "this is a bug" line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- runnable -->"
REAL_ENV = "DOC_TEST_POCL_NODE"  # path of the real console script, for the shim
STATE_ENV = "DOC_TEST_STATE"  # folder for node pids and logs
NODE_START_TIMEOUT_S = 60.0
NODE_STOP_TIMEOUT_S = 30.0
GLOBAL_VALUE_OPTIONS = ("--home", "--log-level", "--log-format")
BUG_MARKERS = ("Traceback (most recent call last)", "this is a bug")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*(.*)$")


@dataclasses.dataclass(frozen=True)
class CodeBlock:
    doc: str
    line: int  # 1-based line of the opening fence
    info: str  # the fence's info string, e.g. "bash"
    code: str
    runnable: bool


def code_blocks(text: str, doc: str = "") -> list[CodeBlock]:
    """Every fenced code block of a Markdown text. A runnable marker not followed by a block is an error."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    previous = ""  # last non-blank line outside blocks
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            if previous == MARKER and line.strip():
                raise ValueError(f"{doc}:{i + 1}: {MARKER} must be followed by a fenced code block")
            if line.strip():
                previous = line.strip()
            i += 1
            continue
        opener, info = fence.group(1), fence.group(2).strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.fullmatch(rf" {{0,3}}{opener[0]}{{{len(opener)},}}\s*", lines[i]):
            body.append(lines[i])
            i += 1
        blocks.append(CodeBlock(doc, start + 1, info, "\n".join(body) + "\n", previous == MARKER))
        previous = ""
        i += 1
    if previous == MARKER:
        raise ValueError(f"{doc}: {MARKER} at the end, with no code block after it")
    return blocks


def runnable_blocks(path: Path) -> list[CodeBlock]:
    return [b for b in code_blocks(path.read_text(), str(path.relative_to(ROOT))) if b.runnable]


# ------------------------------------------------------------------------------------------ running


@dataclasses.dataclass
class BlockResult:
    block: CodeBlock
    returncode: int
    stdout: str
    stderr: str
    node_logs: dict[str, str]

    def problems(self) -> list[str]:
        out = []
        if self.returncode != 0:
            out.append(f"exit status {self.returncode}")
        for where, text in [("output", self.stdout + self.stderr), *self.node_logs.items()]:
            out.extend(f"{marker!r} in {where}" for marker in BUG_MARKERS if marker in text)
        return out

    def report(self) -> str:
        logs = "".join(f"\n--- {name} (tail)\n{_tail(text, 30)}" for name, text in self.node_logs.items())
        return (
            f"{self.block.doc}:{self.block.line}: {', '.join(self.problems())}\n--- block\n{self.block.code}"
            f"--- stdout\n{_tail(self.stdout, 40)}\n--- stderr\n{_tail(self.stderr, 40)}{logs}"
        )


def _tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:]) + "\n"


def prepare_workdir(workdir: Path) -> dict[str, str]:
    """Create the working directory with its `.venv/bin/pocl-node` shim; return the blocks' environment."""
    bin_dir = workdir / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "pocl-node"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.support.doc_commands import shim_main\nsys.exit(shim_main(sys.argv[1:]))\n"
    )
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    home = workdir.parent / f"{workdir.name}-home"
    state = workdir.parent / f"{workdir.name}-state"
    home.mkdir()
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("POCL_HOME", "POCL_PASSPHRASE", "PYTHONPATH")}
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        **{REAL_ENV: str(Path(sys.executable).parent / "pocl-node"), STATE_ENV: str(state)},
    )
    return env


def run_block(block: CodeBlock, workdir: Path, env: dict[str, str], timeout: float = 120.0) -> BlockResult:
    """Run one block with `bash -e`, then stop every node it started and collect their logs."""
    state = Path(env[STATE_ENV])
    script = state / f"block-{block.line}.sh"
    script.write_text(block.code)
    proc = subprocess.Popen(
        ["bash", "-e", str(script)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        code, stderr = -1, stderr + f"\n(doc test: block timed out after {timeout:.0f}s)\n"
    finally:
        logs = stop_nodes(state)
    return BlockResult(block, code, stdout, stderr, logs)


def run_document(path: Path, workdir: Path) -> list[BlockResult]:
    env = prepare_workdir(workdir)
    results = []
    for block in runnable_blocks(path):
        result = run_block(block, workdir, env)
        results.append(result)
        if result.problems():
            break
    return results


def stop_nodes(state: Path) -> dict[str, str]:
    """SIGTERM every node a shim started (waiting for it to exit, SIGKILL after a timeout); their logs."""
    pids_file = state / "pids"
    entries = (
        [line.split(" ", 1) for line in pids_file.read_text().splitlines()] if pids_file.exists() else []
    )
    pids_file.unlink(missing_ok=True)
    for pid, _ in entries:
        _signal(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + NODE_STOP_TIMEOUT_S
    for pid, _ in entries:
        if not _wait_exit(int(pid), deadline - time.monotonic()):
            _signal(int(pid), signal.SIGKILL)
            _wait_exit(int(pid), 5.0)
    return {log: Path(log).read_text(errors="replace") for _, log in entries}


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child (the shim that started it has exited) to exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        return bool(readable)
    finally:
        os.close(fd)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------- the shim


def command_of(args: Sequence[str]) -> str | None:
    """The sub-command of a `pocl-node` command line (global options may come first)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in GLOBAL_VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def home_of(args: Sequence[str]) -> Path:
    """The home a command line uses: `--home DIR` / `--home=DIR`, else $POCL_HOME, else ~/.pocl."""
    for i, arg in enumerate(args):
        if arg == "--home" and i + 1 < len(args):
            return Path(args[i + 1]).expanduser()
        if arg.startswith("--home="):
            return Path(arg.split("=", 1)[1]).expanduser()
    return Path(os.environ.get("POCL_HOME") or "~/.pocl").expanduser()


def _option(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def shim_main(args: list[str]) -> int:
    real = os.environ[REAL_ENV]
    command = command_of(args)
    if command == "run" and not {"-h", "--help"} & set(args):
        return _start_node(real, args)
    code = subprocess.call([real, *args])
    if command == "init" and code == 0 and not {"-h", "--help"} & set(args):
        _move_to_free_ports(home_of(args) / "config.toml")
    return code


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _move_to_free_ports(config_path: Path) -> None:
    import tomli_w

    config = tomllib.loads(config_path.read_text())
    ports = iter(_free_ports(3))
    for section, default_host in (("p2p", "0.0.0.0"), ("rpc", "127.0.0.1"), ("metrics", "127.0.0.1")):
        table = config.setdefault(section, {})
        host = str(table.get("listen_addr", f"{default_host}:0")).rsplit(":", 1)[0]
        table["listen_addr"] = f"{host}:{next(ports)}"
    config_path.write_text(tomli_w.dumps(config))


def _rpc_url(args: Sequence[str]) -> str:
    addr = _option(args, "--rpc-listen")
    if addr is None:
        config = tomllib.loads((home_of(args) / "config.toml").read_text())
        addr = config.get("rpc", {}).get("listen_addr", "127.0.0.1:26657")
    host, port = addr.rsplit(":", 1)
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def _start_node(real: str, args: list[str]) -> int:
    state = Path(os.environ[STATE_ENV])
    log = state / f"node-{len(list(state.glob('node-*.log')))}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([real, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    with (state / "pids").open("a") as pids:
        pids.write(f"{proc.pid} {log}\n")
    try:
        url: str | None = _rpc_url(args) + "/health"
    except (OSError, tomllib.TOMLDecodeError, ValueError):
        url = None  # no readable home: the node exits with its own error, reported below
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if url is None:
                raise OSError("no RPC address")
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    print(
                        f"(doc test) node started in the background: pid {proc.pid}, log {log}",
                        file=sys.stderr,
                    )
                    return 0
        except OSError:
            pass
        try:
            code = proc.wait(timeout=0.1)  # wait for the node to exit or to answer, whichever comes first
        except subprocess.TimeoutExpired:
            continue
        print(
            f"(doc test) the node exited with status {code}; its log:\n{_tail(log.read_text(), 30)}",
            file=sys.stderr,
        )
        return 1
    print(f"(doc test) the node did not answer {url} within {NODE_START_TIMEOUT_S:.0f}s", file=sys.stderr)
    return 1
