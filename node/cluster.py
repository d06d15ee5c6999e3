"""A local multi-process cluster: the engine behind `pocl-node devnet`, the benchmarks and the
multi-node tests (in the spirit of Bitcoin Core's functional test framework).

Each node is a real `pocl-node run` process on loopback ports from a generated testnet; the cluster
talks to them over their RPC only, exactly like an operator would. Waiting is always for a condition
with a deadline (`wait_until`), never a bare sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pocl.node.config import Config
from pocl.node.rpc.client import http_client, os_reason
from pocl.node.shutdown import DRAIN_SIGNAL, FORCE_SIGNAL
from pocl.node.testnet import Testnet, TestnetNode, generate_testnet

DEFAULT_WAIT_S = 60.0
POLL_S = 0.1
RPC_TIMEOUT_S = 5.0
START_MARKER = "===== start #"
MAX_ERROR_LINE = 300  # characters of a node's last error line in a failure summary
_LEVEL_ERROR = re.compile(r"^\S+ (ERROR|CRITICAL) ")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b(: .*)?$")


class ClusterError(AssertionError):
    """A cluster condition did not hold in time (an AssertionError so pytest reports it as a failure)."""


class RpcUnreachable(ConnectionError):
    """The node's RPC could not be reached (down, starting, reset). An OSError, as urllib's errors were, so
    callers that treat `OSError` as "node not answering" keep working; a timeout is a `TimeoutError`."""


class RpcError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_WAIT_S,
    what: str = "condition",
    interval: float = POLL_S,
) -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or raise ClusterError at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, RpcError, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def last_error_line(log_text: str) -> str:
    """The one line that says why a node stopped, from its log (the last start only): the CLI's final
    `error: ...` line, else the last ERROR/CRITICAL record (with the exception line of a traceback that
    follows it), else a traceback's exception line, else the last line; at most MAX_ERROR_LINE characters."""
    lines = log_text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(START_MARKER)]
    lines = [line.rstrip() for line in lines[starts[-1] + 1 if starts else 0 :] if line.strip()]
    found = ""
    for line in reversed(lines):
        if line.startswith("error:"):
            found = line
            break
    if not found:
        exc_at = next((i for i in range(len(lines) - 1, -1, -1) if _EXCEPTION_LINE.match(lines[i])), None)
        level_at = next((i for i in range(len(lines) - 1, -1, -1) if _LEVEL_ERROR.match(lines[i])), None)
        if level_at is not None:
            found = lines[level_at]
            if exc_at is not None and exc_at > level_at and lines[exc_at] not in found:
                found = f"{found}: {lines[exc_at]}"
        elif exc_at is not None:
            found = lines[exc_at]
        elif lines:
            found = lines[-1]
    found = " ".join(found.split())
    if len(found) > MAX_ERROR_LINE:
        found = found[: MAX_ERROR_LINE - 1] + "…"
    return found or "<empty log>"


class NodeProcess:
    def __init__(
        self, spec: TestnetNode, *, extra_args: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> None:
        self.spec = spec
        self.index = spec.index
        self.home = spec.home
        self.extra_args = list(extra_args)
        self.env = env
        # argv run before the node's own (it must exec it, so `proc` is the node): `ip netns exec NS`,
        # `prlimit --nofile=S:H --` (tests/perturb/)
        self.command_prefix: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "node.log"
        self.starts = 0
        self._http: Any = None  # httpx.Client, made on first use

    # ------------------------------------------------------------------ process control

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, extra_args: Sequence[str] = ()) -> None:
        if self.running:
            raise ClusterError(f"node{self.index} is already running")
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        cmd = [
            *self.command_prefix,
            sys.executable,
            "-m",
            "pocl.node.cli",
            "run",
            "--home",
            str(self.home),
            *self.extra_args,
            *extra_args,
        ]
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()

    def stop(self, timeout: float = 20.0, *, force: bool = False) -> int | None:
        """Graceful stop (SIGTERM: a miner first finishes a round it committed to; with `force`, SIGQUIT:
        stop now), escalating to SIGKILL after `timeout`."""
        self.signal_stop(force=force)
        return self.wait_stopped(timeout)

    def wait_stopped(self, timeout: float = 20.0) -> int | None:
        """Wait for a signalled process to exit (SIGKILL after `timeout`); its exit code."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def signal_stop(self, *, force: bool = False) -> None:
        """Ask the process to stop (see `stop`) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(FORCE_SIGNAL if force else DRAIN_SIGNAL)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up (crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, extra_args: Sequence[str] = ()) -> None:
        self.stop()
        self.start(extra_args)

    def failure(self, when: str = "") -> str:
        """One line for a node that stopped (`when`: e.g. "at start"): its exit status, last error line and
        log path, never a traceback or a log tail."""
        code = self.proc.poll() if self.proc is not None else None
        status = f" (status {code})" if code is not None else ""
        try:
            last = last_error_line(self.log_path.read_text(errors="replace"))
        except OSError:
            last = "<no log>"
        return f"node{self.index} exited{' ' + when if when else ''}{status}: {last} (log: {self.log_path})"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    # ------------------------------------------------------------------ RPC

    @property
    def rpc_url(self) -> str:
        return self.spec.rpc_url

    def rpc(self, method: str, path: str, body: Any = None, timeout: float = RPC_TIMEOUT_S) -> Any:
        raw = self.get_bytes(path, timeout, method=method, body=body)
        return json.loads(raw)

    def get_bytes(
        self, path: str, timeout: float = RPC_TIMEOUT_S, *, method: str = "GET", body: Any = None
    ) -> bytes:
        """The raw answer; an error answer is `RpcError`, no answer an OSError (`RpcUnreachable`,
        `TimeoutError`)."""
        import httpx

        if self._http is None:
            self._http = http_client(RPC_TIMEOUT_S, trust_env=False)  # loopback only: no proxies
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            resp = self._http.request(
                method, self.rpc_url + path, content=content, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"node{self.index} RPC {path}: timed out after {timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise RpcUnreachable(f"node{self.index} RPC {path}: {os_reason(exc)}") from exc
        if resp.status_code >= 400:
            try:
                err = json.loads(resp.content)["error"]
                raise RpcError(resp.status_code, err["code"], err["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise RpcError(
                    resp.status_code, "http_error", f"HTTP {resp.status_code} {resp.reason_phrase}"
                ) from None
        return resp.content

    def get(self, path: str) -> Any:
        return self.rpc("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.rpc("POST", path, body)

    def status(self) -> dict[str, Any] | None:
        """The node's /status, or None while it is down or starting."""
        try:
            return self.get("/status")
        except (OSError, RpcError, ValueError):
            return None

    def height(self) -> int:
        st = self.status()
        return st["height"] if st else -1

    def block_hash(self, height: int) -> str:
        return self.get(f"/blocks/{height}")["hash"]

    def submit_tx(self, raw: bytes) -> str:
        return self.post("/txs", {"tx": raw.hex()})["hash"]


class LocalCluster:
    def __init__(self, testnet: Testnet, *, extra_args: Sequence[str] = ()) -> None:
        self.testnet = testnet
        self.nodes = [NodeProcess(n, extra_args=extra_args) for n in testnet.nodes]

    @classmethod
    def create(
        cls,
        out: Path | str,
        validators: int,
        *,
        non_validators: int = 0,
        config: Config | None = None,
        extra_args: Sequence[str] = (),
        **testnet_kwargs: Any,
    ) -> LocalCluster:
        cfg = (config or Config()).replace("rpc", unsafe=True)
        net = generate_testnet(
            out, validators, base_port=None, non_validators=non_validators, config=cfg, **testnet_kwargs
        )
        return cls(net, extra_args=extra_args)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # ------------------------------------------------------------------ lifecycle

    def start(self, indices: Sequence[int] | None = None, wait: bool = True) -> None:
        targets = [self.nodes[i] for i in (indices if indices is not None else range(len(self.nodes)))]
        for node in targets:
            node.start()
        if wait:
            for node in targets:
                wait_until(
                    lambda n=node: n.status() is not None or not n.running,
                    60,
                    f"node{node.index} RPC to come up",
                )
                if not node.running:
                    raise ClusterError(node.failure("at start"))

    def stop_all(self, *, force: bool = False) -> None:
        """Stop every node, one after the other: a miner draining its round needs the others' quorum to
        finish it. With `force` (no drain) all are signalled at once first."""
        if not force:
            for node in self.nodes:
                with contextlib.suppress(Exception):
                    node.stop()
            return
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.signal_stop(force=True)
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.wait_stopped()

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.running]

    # ------------------------------------------------------------------ conditions

    def heights(self, nodes: Sequence[NodeProcess] | None = None) -> list[int]:
        return [n.height() for n in (nodes if nodes is not None else self.running())]

    def wait_for_height(
        self, height: int, nodes: Sequence[NodeProcess] | None = None, timeout: float = DEFAULT_WAIT_S
    ) -> None:
        group = list(nodes) if nodes is not None else self.running()
        wait_until(
            lambda: all(n.height() >= height for n in group),
            timeout,
            f"height {height} on nodes {[n.index for n in group]} (now {self.heights(group)})",
        )

    def sync_blocks(self, nodes: Sequence[NodeProcess] | None = None, timeout: float = DEFAULT_WAIT_S) -> int:
        """Wait until the nodes agree on the same head (height and hash); returns that height."""
        group = list(nodes) if nodes is not None else self.running()

        def same_head() -> int | None:
            sts = [n.status() for n in group]
            if any(s is None for s in sts):
                return None
            heads = {(s["height"], s["latest_block_hash"]) for s in sts}  # type: ignore[index]
            return sts[0]["height"] if len(heads) == 1 else None  # type: ignore[index]

        return wait_until(same_head, timeout, f"nodes {[n.index for n in group]} to share a head")

    def assert_no_fork(self, nodes: Sequence[NodeProcess] | None = None, up_to: int | None = None) -> None:
        """Every height that all the nodes have carries the same block hash on each of them."""
        group = list(nodes) if nodes is not None else self.running()
        top = min(n.height() for n in group) if up_to is None else up_to
        for h in range(1, top + 1):
            hashes = {n.block_hash(h) for n in group}
            if len(hashes) != 1:
                raise ClusterError(f"fork at height {h}: {hashes}")

    # ------------------------------------------------------------------ network faults

    def partition(self, *groups: Sequence[int]) -> None:
        """Cut every link between different groups (by node index), via each node's unsafe RPC."""
        where = {i: g for g, members in enumerate(groups) for i in members}
        for i, node in enumerate(self.nodes):
            if i not in where or not node.running:
                continue
            others = [self.nodes[j].spec.node_id for j in where if where[j] != where[i]]
            node.post("/unsafe/p2p/block", {"node_ids": others})

    def heal(self) -> None:
        ids = [n.spec.node_id for n in self.nodes]
        for node in self.running():
            node.post("/unsafe/p2p/unblock", {"node_ids": ids})

    def disconnect(self, a: int, b: int) -> None:
        self.nodes[a].post("/unsafe/p2p/block", {"node_ids": [self.nodes[b].spec.node_id]})
        self.nodes[b].post("/unsafe/p2p/block", {"node_ids": [self.nodes[a].spec.node_id]})

    def connect(self, a: int, b: int) -> None:
        self.nodes[a].post("/unsafe/p2p/unblock", {"node_ids": [self.nodes[b].spec.node_id]})
        self.nodes[b].post("/unsafe/p2p/unblock", {"node_ids": [self.nodes[a].spec.node_id]})

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"----- node{n.index} ({n.log_path}) -----\n{n.log_tail(lines)}" for n in self.nodes)
