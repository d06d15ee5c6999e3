"""What every perturbation test needs: clusters with short timeouts (on loopback, or one validator per
network namespace), a tx load whose every tx must commit exactly once, and the after-checks (no fork:
same block hash and state root at every common height; ready again, or stopped with a clear error).

The clusters are `LocalCluster`s either way: in namespaces each node is an `NsNodeProcess`, which
starts `pocl-node run` under `ip netns exec` and talks to its RPC from a thread that joined the node's
namespace (`Host.call`), so `wait_for_height`, `sync_blocks` and the rest work unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.keystore import load_key
from pocl.ledger.tx import make_transfer
from pocl.node.cluster import ClusterError, LocalCluster, NodeProcess, RpcError, wait_until
from pocl.node.config import Config
from pocl.node.testnet import TestnetNode, generate_testnet

from tests.support.clusters import FAST_PARAMS
from tests.support.netns import Host, Network

# Peers notice a silent (paused, black-holed) link within seconds, not the default minute; the BFT
# timeouts are the devnet's (a height every ~0.5 s, propose timeout 1.5 s).
PING_INTERVAL_S = 1.0
IDLE_TIMEOUT_S = 4.0
DIAL_TIMEOUT_S = 2.0
PERTURB_CONFIG = (
    Config()
    .replace("rpc", unsafe=True)
    .replace("metrics", enabled=False)
    .replace(
        "p2p", ping_interval_s=PING_INTERVAL_S, idle_timeout_s=IDLE_TIMEOUT_S, dial_timeout_s=DIAL_TIMEOUT_S
    )
)
LONGER_THAN_TIMEOUTS_S = 6.0  # a pause or a black hole outlasting the propose timeout and the idle timeout
TX_FEE = 10
RECOVER_TIMEOUT_S = 60.0  # a node back at the head and ready after a fault is lifted


class NsNodeProcess(NodeProcess):
    """A node in a network namespace: started under `ip netns exec`, its RPC reached from inside."""

    def __init__(self, spec: TestnetNode, host: Host) -> None:
        super().__init__(spec)
        self.host = host
        self.command_prefix = ["ip", "netns", "exec", host.name]

    def get_bytes(self, path: str, timeout: float = 5.0, *, method: str = "GET", body: Any = None) -> bytes:
        get = super().get_bytes
        return self.host.call(lambda: get(path, timeout, method=method, body=body))


def netns_cluster(net: Network, out: Path, validators: int) -> LocalCluster:
    """Node i on host i (`--starting-ip` layout: the same ports on every host), short timeouts."""
    testnet = generate_testnet(
        out,
        validators,
        base_port=None,
        starting_ip=net.hosts[0].ip,
        params=FAST_PARAMS,
        config=PERTURB_CONFIG,
    )
    cluster = LocalCluster(testnet)
    cluster.nodes = [NsNodeProcess(spec, net.hosts[spec.index]) for spec in testnet.nodes]
    return cluster


def local_cluster(out: Path, validators: int, **kwargs: Any) -> LocalCluster:
    kwargs.setdefault("params", FAST_PARAMS)
    return LocalCluster.create(out, validators, config=PERTURB_CONFIG, **kwargs)


# ---------------------------------------------------------------------------------------- process faults


def kill_all_at_once(nodes: Sequence[NodeProcess]) -> None:
    """SIGKILL every node back to back (a power cut), then reap them."""
    procs = [n.proc for n in nodes if n.proc is not None]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    for node in nodes:
        node.kill()


def revive(cluster: LocalCluster) -> None:
    """Start every node that is down (a previous test's victim), with its own settings."""
    down = [n.index for n in cluster.nodes if not n.running]
    if down:
        cluster.start(down)


# ---------------------------------------------------------------------------------------- checks


def ready(node: NodeProcess) -> bool:
    """`/ready` answers 200 (an RpcError 503 with its reasons while not)."""
    try:
        return bool(node.get("/ready")["ready"])
    except (OSError, RpcError, ValueError):
        return False


def wait_recovered(cluster: LocalCluster, timeout: float = RECOVER_TIMEOUT_S) -> int:
    """Every running node at one head and ready; returns the head height."""
    top = cluster.sync_blocks(timeout=timeout)
    for node in cluster.running():
        wait_until(lambda n=node: ready(n), timeout, f"node{node.index} /ready 200")
    return top


def wait_blocks(cluster: LocalCluster, blocks: int, nodes: Sequence[NodeProcess], timeout: float) -> int:
    """`blocks` new heights on every one of `nodes` (the chain goes on); returns the target height."""
    target = max(n.height() for n in nodes) + blocks
    cluster.wait_for_height(target, nodes=nodes, timeout=timeout)
    return target


def assert_same_chain(
    cluster: LocalCluster, since: int = 1, nodes: Sequence[NodeProcess] | None = None
) -> int:
    """No fork: at every height all the nodes have (from `since`), the same block hash and state root.
    Returns the highest height checked."""
    group = list(nodes) if nodes is not None else cluster.running()
    top = min(n.height() for n in group)
    for h in range(max(1, since), top + 1):
        seen = {(b["hash"], b["header"]["state_root"]) for b in (n.get(f"/blocks/{h}") for n in group)}
        if len(seen) != 1:
            raise ClusterError(f"fork at height {h}: {seen}")
    return top


def signed_by(node: NodeProcess, consensus_address: str, height: int) -> bool:
    commit = node.get(f"/blocks/{height}/commit")
    return any(s["validator"].lower() == consensus_address.lower() for s in commit["signatures"])


def wait_signing(cluster: LocalCluster, victim: NodeProcess, observer: NodeProcess, timeout: float) -> None:
    """The victim's consensus key is in a commit of a height decided from now on."""
    start = observer.height() + 1
    address = victim.spec.consensus_address

    def signed_since() -> bool:
        top = observer.height() - 1  # a height's commit is stored with the next block
        return any(signed_by(observer, address, h) for h in range(start, top + 1))

    wait_until(signed_since, timeout, f"a commit signed by node{victim.index} from height {start}")


def no_bug_lines(node: NodeProcess) -> None:
    """No traceback and no double sign in the node's log."""
    text = node.log_path.read_text(errors="replace")
    assert "Traceback" not in text, f"node{node.index}: {node.log_tail(60)}"
    assert "double sign detected" not in text, f"node{node.index}: {node.log_tail(60)}"


# ---------------------------------------------------------------------------------------- tx load


@dataclasses.dataclass
class TxLoad:
    """Transfers from the testnet faucet to a fresh recipient: each must commit exactly once (the
    recipient's balance is the sum of the amounts on every node, every tx `committed`)."""

    cluster: LocalCluster
    name: str
    key: PrivateKey = dataclasses.field(init=False)
    recipient: PrivateKey = dataclasses.field(init=False)
    nonce: int = dataclasses.field(init=False)
    hashes: list[str] = dataclasses.field(default_factory=list)
    total: int = 0
    _turn: int = 0

    def __post_init__(self) -> None:
        self.key = load_key(self.cluster.testnet.faucet_key_path, None)
        self.recipient = PrivateKey.from_seed_text(f"perturb/{self.name}/{time.time_ns()}")
        node = wait_until(
            lambda: next((n for n in self.cluster.running() if ready(n)), None),
            RECOVER_TIMEOUT_S,
            "a ready node",
        )
        self.nonce = node.get(f"/accounts/0x{self.key.address.hex()}")["nonce"]

    def submit(self, count: int, via: Sequence[NodeProcess] | None = None) -> None:
        """`count` transfers, round-robin over `via` (default: the running nodes), each retried on another
        node while one is unreachable."""
        for _ in range(count):
            amount = 1_000 + self.nonce
            tx = make_transfer(
                self.key, self.cluster.testnet.chain_id, self.nonce, self.recipient.address, amount, TX_FEE
            )
            wait_until(lambda t=tx, v=via: self._submit_one(t.raw, v), 30, f"tx {self.nonce} accepted")
            self.hashes.append(tx.hash.hex())
            self.total += amount
            self.nonce += 1

    def _submit_one(self, raw: bytes, via: Sequence[NodeProcess] | None) -> bool:
        pool = [n for n in (via or self.cluster.nodes) if n.running]
        node = pool[self._turn % len(pool)]
        self._turn += 1
        try:
            node.submit_tx(raw)
        except RpcError as exc:
            if exc.code != "nonce_too_low":  # a retry of one that went through: the final check counts it
                raise
        return True

    def wait_committed(self, nodes: Sequence[NodeProcess], timeout: float = RECOVER_TIMEOUT_S) -> None:
        """Every tx committed, exactly once, as seen by each of `nodes`."""
        address = f"0x{self.recipient.address.hex()}"
        for node in nodes:
            wait_until(
                lambda n=node: n.get(f"/accounts/{address}")["balance"] == self.total,
                timeout,
                f"node{node.index}: the {len(self.hashes)} transfers committed (balance {self.total})",
            )
            for h in self.hashes:
                assert node.get(f"/txs/{h}")["status"] == "committed", (node.index, h)
