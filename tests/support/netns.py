"""A small WAN in network namespaces for multi-host tests (tests/multihost/).

Layout (nothing is created or changed in the root namespace):

- one "switch" namespace holding a bridge `br0`, and one namespace per host, each linked to the bridge
  by a veth pair (`hI` on the switch side, `eth0` in the host), with loopback up and the address
  `10.231.X.(10+I)/24`. X is derived from the test process's pid and every namespace name starts with
  `pocltest-PID-TOKEN-`, so parallel runs never collide, and namespaces left by a killed run (whose pid
  is gone) are removed by the next one.
- Loss: each host's nftables table `ip pocl_wan` drops `loss_percent` % of the packets arriving on
  `eth0` from the subnet (`numgen random mod 100 < N`), so every link loses packets in both directions.
- Delay (the kernel has no `netem`): each host runs `tests/support/delay_relay.py` on its loopback, and
  a `nat output` rule of the same table redirects every TCP connection the host opens to another test
  host to that relay, which dials the real destination (from a socket carrying `RELAY_MARK`, which the
  rule skips) and holds each chunk for `delay_ms` ± `jitter_ms` in each direction. Every TCP connection
  is opened by exactly one host, so each crosses one relay: one-way delay ≈ 50 ms, round trip ≈ 100 ms,
  on every link, and the server still sees the client's real address. Only TCP is delayed (the
  project's P2P and RPC are TCP); ICMP and UDP see only the loss.

- Faults (tests/perturb/): `set_loss(N)` changes every host's loss rule; `drop(src, dst)` drops what
  `src` sends to `dst` only (a one-way partition); `black_hole(host)` drops everything in and out of
  `host` without a RST or an ICMP error, as a dead link or a stateful firewall does; `throttle(host,
  kB/s)` drops what arrives at `host` beyond a rate; `heal()` lifts them all. They live in the table's `fault_in`/`fault_out` chains, made on first use. `pause(proc)` and
  `resume(proc)` stop and continue a process group (SIGSTOP/SIGCONT).

Use `netns_network(hosts)` as a context manager (teardown in `finally`, also when the test fails):
`host.run([...])`, `host.popen([...])` (env, cwd; the process is ended at teardown), `host.ip`, and
`host.call(fn, ...)`, which runs `fn` on a thread of the test process that entered the host's namespace
(sockets it opens live there: an HTTP client reaches the host's loopback without a subprocess).
`require_netns()` skips the test with the reason where this machine cannot make namespaces.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "pocltest"
SUBNET_FIRST_OCTETS = "10.231"
HOST_OFFSET = 10  # host I is .(10 + I)
HOST_IFACE = "eth0"
BRIDGE = "br0"
NFT_TABLE = "pocl_wan"
RELAY_PORT = 15999  # on each host's loopback
RELAY_MARK = 0x2A51  # SO_MARK of the relay's own upstream sockets: not redirected again
RELAY_READY_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CLONE_NEWNET = 0x40000000  # setns(2): join a network namespace (this thread only)
FAULT_CHAINS = {"fault_in": ("input", "iifname"), "fault_out": ("output", "oifname")}
T = TypeVar("T")
_NAME = re.compile(rf"^{PREFIX}-(\d+)-")


class NetnsError(RuntimeError):
    """A namespace command failed (with its stderr)."""


def _sh(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def namespaces() -> list[str]:
    """Names of every network namespace (`ip netns list`)."""
    return [line.split()[0] for line in _sh(["ip", "netns", "list"]).splitlines() if line.strip()]


def netns_unavailable_reason() -> str | None:
    """Why this machine cannot run the harness, or None when it can."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (ip netns, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"network-namespace tests need `{tool}` (Debian package {package})"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        _sh(["ip", "netns", "add", probe])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"network namespaces are not permitted here: {exc}"
    try:
        _sh(["ip", "netns", "exec", probe, "nft", "list", "ruleset"])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"nftables is not usable in a network namespace here: {exc}"
    finally:
        _sh(["ip", "netns", "del", probe], check=False)
    return None


def require_netns() -> None:
    """Skip the calling test, with the reason, where namespaces or nftables are not permitted."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def remove_stale_namespaces() -> list[str]:
    """Delete this harness's namespaces whose creating process is gone (a run that was killed)."""
    removed = []
    for name in namespaces():
        match = _NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _sh(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclasses.dataclass(frozen=True)
class WanSpec:
    delay_ms: float = 50.0
    jitter_ms: float = 10.0
    loss_percent: int = 1
    seed: int = 0


@dataclasses.dataclass
class Host:
    """One machine of the test WAN: a network namespace with one address on the bridge."""

    index: int
    name: str  # the namespace
    ip: str
    _processes: list[subprocess.Popen[Any]]
    _thread: concurrent.futures.ThreadPoolExecutor | None = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on a thread of this process that joined this host's network namespace
        (setns applies to the calling thread only), so the sockets it opens are the host's."""
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=self.name, initializer=_enter_netns, initargs=(self.name,)
            )
        return self._thread.submit(fn, *args, **kwargs).result()

    def close_thread(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._thread = None

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        timeout: float = COMMAND_TIMEOUT_S,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this namespace to completion (output captured as text)."""
        proc = subprocess.run(
            self.argv(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise NetnsError(
                f"{self.name}: `{' '.join(map(str, argv))}` exited {proc.returncode}\n"
                f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
            )
        return proc

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.STDOUT,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        """Start a process in this namespace, in its own process group; it is ended at teardown."""
        proc = subprocess.Popen(
            self.argv(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=text,
            start_new_session=True,
        )
        self._processes.append(proc)
        return proc


@dataclasses.dataclass
class Network:
    token: str  # `pocltest-PID-RAND`: every namespace name starts with it
    subnet: str  # 10.231.X.0/24
    switch: str  # the namespace holding the bridge
    hosts: list[Host]
    spec: WanSpec
    _processes: list[subprocess.Popen[Any]]

    @property
    def names(self) -> list[str]:
        return [self.switch, *(h.name for h in self.hosts)]

    def drop_counts(self) -> dict[str, int]:
        """Packets each host's loss rule has dropped so far (nftables counters)."""
        return self._counts("drop")

    def relayed_counts(self) -> dict[str, int]:
        """TCP connections each host has opened through its delaying relay so far (the redirect rule's
        counter: a nat rule sees only a connection's first packet)."""
        return self._counts("redirect")

    def _counts(self, verdict: str, faults: bool = False) -> dict[str, int]:
        """Per host, the packets counted by the rules with `verdict`: the fault rules', or the others'."""
        out = {}
        for host in self.hosts:
            data = json.loads(host.run(["nft", "-j", "list", "table", "ip", NFT_TABLE]).stdout)
            out[host.name] = sum(
                _rule_counter(item, verdict)
                for item in data["nftables"]
                if (item.get("rule", {}).get("chain") in FAULT_CHAINS) == faults
            )
        return out

    # ------------------------------------------------------------------ faults (tests/perturb/)

    def set_loss(self, percent: int) -> None:
        """Every host now drops `percent` % of the packets arriving from the subnet."""
        for host in self.hosts:
            host.run(["nft", "flush", "chain", "ip", NFT_TABLE, "loss"])
            rule = f'iifname "{HOST_IFACE}" ip saddr {self.subnet} numgen random mod 100 < {percent} counter drop'
            host.run(["nft", "add", "rule", "ip", NFT_TABLE, "loss", *rule.split()])

    def drop(self, src: Host, dst: Host) -> None:
        """A one-way partition: every packet `src` sends to `dst` is dropped on arrival; `dst` -> `src`
        still flows (so TCP's replies and ACKs from `src` are lost, its data from `dst` arrives)."""
        _fault_chains(dst)
        _fault_rule(dst, "fault_in", f'iifname "{HOST_IFACE}" ip saddr {src.ip} counter drop')

    def black_hole(self, host: Host) -> None:
        """Everything in and out of `host` on the bridge is dropped silently (no RST, no ICMP)."""
        _fault_chains(host)
        _fault_rule(host, "fault_in", f'iifname "{HOST_IFACE}" counter drop')
        _fault_rule(host, "fault_out", f'oifname "{HOST_IFACE}" counter drop')

    def throttle(self, host: Host, kbytes_per_s: int) -> None:
        """What arrives at `host` beyond `kbytes_per_s` is dropped (a slow, congested link: TCP backs off)."""
        _fault_chains(host)
        _fault_rule(
            host,
            "fault_in",
            f'iifname "{HOST_IFACE}" limit rate over {kbytes_per_s} kbytes/second counter drop',
        )

    def heal(self) -> None:
        """Lift every `drop`, `black_hole` and `throttle` (the loss and delay stay)."""
        for host in self.hosts:
            for chain in FAULT_CHAINS:
                host.run(["nft", "flush", "chain", "ip", NFT_TABLE, chain], check=False)

    def fault_drops(self) -> dict[str, int]:
        """Packets the `drop`, `black_hole` and `throttle` rules have dropped so far, per host."""
        return self._counts("drop", faults=True)

    def close(self) -> None:
        """End every process started in the namespaces, then delete the namespaces (and so the veths)."""
        for host in self.hosts:
            host.close_thread()
        for proc in reversed(self._processes):
            _stop_group(proc)
        self._processes.clear()
        for name in self.names:
            for pid in _sh(["ip", "netns", "pids", name], check=False).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)  # only processes of this run are in there
            _sh(["ip", "netns", "del", name], check=False)


def _rule_counter(item: dict[str, Any], verdict: str) -> int:
    rule = item.get("rule")
    if not rule or not any(verdict in expr for expr in rule["expr"]):
        return 0
    return sum(expr["counter"]["packets"] for expr in rule["expr"] if "counter" in expr)


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _fault_chains(host: Host) -> None:
    """The filter chains the fault rules go into (`nft add` leaves existing ones as they are); they run
    before the loss chain, and drop regardless of the relay's mark."""
    for chain, (hook, _) in FAULT_CHAINS.items():
        spec = f"{{ type filter hook {hook} priority -10; policy accept; }}"
        host.run(["nft", "add", "chain", "ip", NFT_TABLE, chain, spec])


def _fault_rule(host: Host, chain: str, rule: str) -> None:
    host.run(["nft", "add", "rule", "ip", NFT_TABLE, chain, *rule.split()])


def pause(proc: subprocess.Popen[Any]) -> None:
    """SIGSTOP the process's group: it holds its sockets and state but runs nothing (a VM paused, a
    stop-the-world GC, a laptop lid closed)."""
    os.killpg(proc.pid, signal.SIGSTOP)


def resume(proc: subprocess.Popen[Any]) -> None:
    os.killpg(proc.pid, signal.SIGCONT)


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # and whatever the process left in its group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def nft_ruleset(subnet: str, spec: WanSpec) -> str:
    """The per-host table: loss on arrival, and the redirect of outgoing TCP to the delaying relay."""
    lines = [f"table ip {NFT_TABLE} {{"]
    lines += [
        "  chain loss {",
        "    type filter hook input priority filter; policy accept;",
        f'    iifname "{HOST_IFACE}" ip saddr {subnet} numgen random mod 100 < {spec.loss_percent}'
        " counter drop",
        "  }",
    ]
    if spec.delay_ms > 0:
        lines += [
            "  chain delay {",
            "    type nat hook output priority -100; policy accept;",
            f'    oifname "{HOST_IFACE}" ip daddr {subnet} meta l4proto tcp meta mark != {RELAY_MARK}'
            f" counter redirect to :{RELAY_PORT}",
            "  }",
        ]
    return "\n".join([*lines, "}", ""])


def _start_relay(host: Host, spec: WanSpec) -> None:
    proc = host.popen(
        [
            sys.executable,
            "-m",
            "tests.support.delay_relay",
            "--port",
            RELAY_PORT,
            "--mark",
            RELAY_MARK,
            "--delay-ms",
            spec.delay_ms,
            "--jitter-ms",
            spec.jitter_ms,
            "--seed",
            spec.seed * 1000 + host.index,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], RELAY_READY_TIMEOUT_S)
    line = proc.stdout.readline().strip() if ready else ""
    if line != "READY":
        raise NetnsError(f"{host.name}: the delay relay did not start (exit {proc.poll()}, said {line!r})")


def create_network(hosts: int, spec: WanSpec = WanSpec()) -> Network:
    """Namespaces, bridge, veths, addresses, loss and delay; on any failure what was made is removed."""
    if not 1 <= hosts <= 200:
        raise ValueError("1..200 hosts")
    remove_stale_namespaces()
    pid = os.getpid()
    token = f"{PREFIX}-{pid}-{secrets.token_hex(2)}"
    subnet_prefix = f"{SUBNET_FIRST_OCTETS}.{1 + pid % 250}"
    subnet = f"{subnet_prefix}.0/24"
    processes: list[subprocess.Popen[Any]] = []
    net = Network(
        token=token,
        subnet=subnet,
        switch=f"{token}-sw",
        hosts=[
            Host(i, f"{token}-h{i}", f"{subnet_prefix}.{HOST_OFFSET + i}", processes) for i in range(hosts)
        ],
        spec=spec,
        _processes=processes,
    )
    try:
        sw = net.switch
        _sh(["ip", "netns", "add", sw])
        _sh(["ip", "-n", sw, "link", "set", "lo", "up"])
        _sh(["ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge"])
        _sh(["ip", "-n", sw, "link", "set", BRIDGE, "up"])
        for host in net.hosts:
            port = f"h{host.index}"
            _sh(["ip", "netns", "add", host.name])
            _sh(
                [
                    "ip",
                    "-n",
                    sw,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    HOST_IFACE,
                    "netns",
                    host.name,
                ]
            )
            _sh(["ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up"])
            _sh(["ip", "-n", host.name, "link", "set", "lo", "up"])
            _sh(["ip", "-n", host.name, "addr", "add", f"{host.ip}/24", "dev", HOST_IFACE])
            _sh(["ip", "-n", host.name, "link", "set", HOST_IFACE, "up"])
            if spec.delay_ms > 0:
                _start_relay(host, spec)
            _sh(["ip", "netns", "exec", host.name, "nft", "-f", "-"], stdin=nft_ruleset(subnet, spec))
    except BaseException:
        net.close()
        raise
    return net


@contextlib.contextmanager
def netns_network(hosts: int, spec: WanSpec = WanSpec()) -> Iterator[Network]:
    """`create_network`, torn down on exit whatever happened inside."""
    net = create_network(hosts, spec)
    try:
        yield net
    finally:
        net.close()


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until truthy (returned), or fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
