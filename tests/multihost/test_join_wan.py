"""A new miner joins a live 4-validator network from another machine, with only the commands of
docs/join.md, over a WAN of 50 ms ± 10 ms delay and 1 % loss on every link (tests/support/netns.py).

Five network namespaces on one bridge: hosts 0..3 run the validators of `pocl-node testnet
--starting-ip` (node i on host i's address, the same ports on every host), each mining its own shard;
node0's RPC listens on its host's address with the faucet enabled (`pocl-node config set`). Host 4 is
the newcomer: it runs the page's `<!-- join-test -->` commands (tests/multihost/join_page.py) with the
network's URL, genesis hash and its own address filled in — init --join, run --mine, faucet, stake,
register-miner, query miner — and must be paid a round reward within a few rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.multihost.join_page import is_node_start, join_script
from tests.support.doc_commands import BUG_MARKERS
from tests.support.netns import Host, Network

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VALIDATORS = 4
JOINER = VALIDATORS  # host index of the newcomer
POCL_NODE = Path(sys.executable).parent / "pocl-node"
PASSPHRASE = "join-test-passphrase"
COMMAND_TIMEOUT_S = 120.0  # one CLI command, --wait included, over the slow links
START_TIMEOUT_S = 120.0  # a node's RPC answering (loading TensorFlow on a busy machine)
CHAIN_TIMEOUT_S = 120.0  # the validators finding each other and making blocks
REWARD_TIMEOUT_S = 420.0  # the newcomer's first reward: sync, TensorFlow start-up, a few rounds
LOG_TAIL_LINES = 40

# Polls a JSON RPC URL inside a namespace until `eval(EXPR)` holds for its answer `j` (no proxies: the
# addresses are private); prints the last answer; exit 3 at the deadline.
PROBE = """
import json, sys, time, urllib.request
url, timeout, expr = sys.argv[1], float(sys.argv[2]), sys.argv[3]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline, last = time.monotonic() + timeout, None
while True:
    try:
        with opener.open(url, timeout=10) as resp:
            last = json.loads(resp.read())
        if eval(expr, {}, {"j": last}):
            print(json.dumps(last))
            sys.exit(0)
    except Exception as exc:
        last = repr(exc)
    if time.monotonic() > deadline:
        print(json.dumps({"timed_out": True, "last": last}))
        sys.exit(3)
    time.sleep(1)
"""


def probe(host: Host, url: str, expr: str = "True", timeout: float = 0.0) -> Any:
    """`url`'s JSON from inside `host`, once `expr` holds for it (`j`); fails the test at the deadline."""
    proc = host.run([sys.executable, "-c", PROBE, url, timeout, expr], timeout=timeout + 30, check=False)
    answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    if proc.returncode != 0:
        raise AssertionError(f"{url} from {host.name}: `{expr}` not true within {timeout:.0f}s: {answer}")
    return answer


def wait_up(host: Host, url: str, proc: subprocess.Popen[Any], log: Path) -> None:
    """A node's RPC answers `/health`; a node that exits first fails the test with its log's tail."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the node of {host.name} exited ({proc.returncode}):\n{tail(log)}")
        try:
            probe(host, f"{url}/health", timeout=2.0)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POCL_HOME", "POCL_PASSPHRASE", "PYTHONPATH") and not k.lower().endswith("_proxy")
    }
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def cli(host: Host, *args: Any, env: dict[str, str] | None = None) -> str:
    return host.run([POCL_NODE, *args], env=env or clean_env(), timeout=COMMAND_TIMEOUT_S).stdout


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class Transcript:
    """What the newcomer ran and what it printed, and every node's log, for a failure report."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.logs: dict[str, Path] = {}
        self.started = time.monotonic()

    def report(self) -> str:
        logs = "".join(f"\n----- {name} ({path})\n{tail(path)}" for name, path in self.logs.items())
        return "\n===== join commands =====\n" + "\n".join(self.entries) + logs


def rpc_url(host: Host, home: Path | None, env: dict[str, str] | None = None) -> str:
    """The RPC URL of the home's `rpc.listen_addr` (None: the env's default home), from inside its host."""
    args = ("--home", home) if home is not None else ()
    listen = cli(host, "config", "get", "rpc.listen_addr", *args, env=env).strip().strip('"')
    ip, port = listen.rsplit(":", 1)
    return f"http://{'127.0.0.1' if ip in ('0.0.0.0', '') else ip}:{port}"


def start_validators(net: Network, out: Path, transcript: Transcript) -> str:
    """Node i in host i, mining share i of the validators + newcomer; node0's RPC on its host's address
    with the faucet on (the testnet put its faucet key in node0's home). Returns node0's RPC URL."""
    node0 = out / "node0"
    port = rpc_url(net.hosts[0], node0).rsplit(":", 1)[1]
    cli(net.hosts[0], "config", "set", "rpc.listen_addr", f"{net.hosts[0].ip}:{port}", "--home", node0)
    cli(net.hosts[0], "config", "set", "faucet.enabled", "true", "--home", node0)
    assert (node0 / "keys" / "faucet.json").is_file()  # testnet gives node0 the funded faucet key
    procs = []
    for i in range(VALIDATORS):
        home = out / f"node{i}"
        log = home / "node.log"
        transcript.logs[f"node{i}"] = log
        with log.open("ab") as sink:
            procs.append(
                net.hosts[i].popen(
                    [POCL_NODE, "run", "--home", home, "--mine", "--shard", f"{i}/{VALIDATORS + 1}"],
                    env=clean_env(),
                    cwd=out,
                    stdout=sink,
                )
            )
    for i, proc in enumerate(procs):
        home = out / f"node{i}"
        wait_up(net.hosts[i], rpc_url(net.hosts[i], home), proc, home / "node.log")
    url = f"http://{net.hosts[0].ip}:{port}"
    probe(net.hosts[JOINER], f"{url}/status", "j['height'] >= 3", timeout=CHAIN_TIMEOUT_S)
    return url


def run_join_page(
    joiner: Host, values: dict[str, str], workdir: Path, transcript: Transcript
) -> tuple[dict[str, str], str]:
    """Run the page's commands as a newcomer would, in a fresh HOME; returns their env and the URL of the
    newcomer's own node."""
    script = join_script()
    home = workdir / "home"
    home.mkdir(parents=True)
    env = clean_env(
        HOME=str(home),
        PATH=f"{POCL_NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        POCL_PASSPHRASE=PASSPHRASE,  # the page: "export POCL_PASSPHRASE=… to type it once"
        **script.env(values),
    )
    own_url = ""
    for command in script.commands:
        transcript.entries.append(f"$ {command}    (at {time.monotonic() - transcript.started:.1f}s)")
        if is_node_start(command):
            log = workdir / "node.log"
            transcript.logs["newcomer"] = log
            with log.open("ab") as sink:
                node = joiner.popen(["bash", "-c", f"exec {command}"], env=env, cwd=workdir, stdout=sink)
            own_url = rpc_url(joiner, None, env)
            wait_up(joiner, own_url, node, log)
            continue
        proc = joiner.run(
            ["bash", "-ec", command], env=env, cwd=workdir, timeout=COMMAND_TIMEOUT_S, check=False
        )
        transcript.entries.append((proc.stdout + proc.stderr).rstrip())
        assert proc.returncode == 0, f"`{command}` exited {proc.returncode}"
    assert own_url, "docs/join.md starts no node (`pocl-node run`)"
    return env, own_url


@pytest.fixture
def transcript(request: pytest.FixtureRequest) -> Any:
    t = Transcript()
    yield t
    from tests.support.clusters import TEST_FAILED

    if request.node.stash.get(TEST_FAILED, False):
        print(t.report())


def test_a_new_miner_joins_over_the_wan_with_the_commands_of_the_join_page(
    wan: Callable[..., Network], tmp_path: Path, transcript: Transcript
) -> None:
    net = wan(VALIDATORS + 1)
    out = tmp_path / "net"
    subprocess.run(
        [
            POCL_NODE,
            "testnet",
            "--validators",
            str(VALIDATORS),
            "--out",
            out,
            "--insecure-unencrypted",
            "--starting-ip",
            net.hosts[0].ip,
        ],
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    genesis_hash = json.loads((out / "testnet.json").read_text())["genesis_hash"]
    for i in range(VALIDATORS):  # node i on host i: --starting-ip counts up
        peers = cli(net.hosts[i], "config", "get", "p2p.persistent_peers", "--home", out / f"node{i}")
        assert "127.0.0.1" not in peers, peers
        assert all(net.hosts[j].ip in peers for j in range(VALIDATORS) if j != i), peers
    url = start_validators(net, out, transcript)

    joiner = net.hosts[JOINER]
    values = {"NODE": url, "GENESIS_HASH": genesis_hash, "MY_IP": joiner.ip}
    env, own_url = run_join_page(joiner, values, tmp_path / "newcomer", transcript)

    address = json.loads(cli(joiner, "query", "miner", "--json", env=env))["address"]
    # the network (node0, another host) pays the newcomer a round reward within a few rounds
    standing = probe(
        joiner,
        f"{url}/miners/{address}",
        "j['registered'] and j['last_reward'] is not None",
        timeout=REWARD_TIMEOUT_S,
    )
    assert standing["last_reward"]["amount"] > 0
    assert standing["stake"] >= standing["min_miner_stake"]
    rec = probe(joiner, f"{url}/rounds/{standing['last_reward']['round']}")
    assert address in rec["participants"]["committers"]
    # the newcomer follows the same chain, and node0 sees it as a peer on its own address over the bridge
    own = probe(joiner, f"{own_url}/status")
    assert own["genesis_hash"].removeprefix("0x") == genesis_hash.removeprefix("0x")
    peers = probe(joiner, f"{url}/net_info")
    assert joiner.ip in json.dumps(peers)
    transcript.entries.append(f"reward seen at {time.monotonic() - transcript.started:.1f}s")
    transcript.entries.append(f"newcomer {address} paid in round {standing['last_reward']['round']}")
    # every link carried the WAN's conditions: each host's connections crossed its delaying relay
    assert all(n > 0 for n in net.relayed_counts().values()), net.relayed_counts()
    assert sum(net.drop_counts().values()) > 0, net.drop_counts()
    for name, log in transcript.logs.items():  # as tests/docs: no node prints a traceback or a bug line
        text = log.read_text(errors="replace")
        assert not [m for m in BUG_MARKERS if m in text], f"{name}: {tail(log)}"
