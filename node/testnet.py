"""Generate an N-validator network: homes, keys, one genesis, peer lists, a port plan.

Like `cometbft testnet`: `OUT/node0 … OUT/node{N-1}` each hold `config.toml`, `genesis.json`, keys and
`data/`; every node lists the others as persistent peers. A funded `faucet` key
(`OUT/faucet_key.json`) lets devnets and tests send transfers at once. Each validator node has an account
key and a separate consensus key; genesis makes every validator's account a registered miner too, so
devnet and cluster nodes are validator-miners from the first round.

Two port plans. On one host (the default) every node listens on 127.0.0.1 and node i's ports are
`base + 10·i` + (0 p2p, 1 rpc, 4 metrics), never one of `init`'s defaults (26656, 26657, 26660), so a
testnet and an `init`ed node run side by side. With `starting_ip` (CometBFT's `--starting-ip-address`)
node i is a host of its own at `starting_ip + i` with the same ports as every other node (by default
`init`'s): its P2P listen and external address, and the others' peer lists, use those IPs, while RPC and
metrics stay on the host's loopback (as `init`'s, and CometBFT's; open one node's RPC to joiners with
`config set rpc.listen_addr`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocl.genesis.schema import Genesis, GenesisValidator, build_genesis
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.params import ChainParams
from pocl.ledger.storage.keystore import DEFAULT_SCRYPT, ScryptParams, save_key
from pocl.node.config import Config, parse_host_port
from pocl.node.home import NodeHome, init_home

PORTS_PER_NODE = 3  # p2p, rpc, metrics
LOCAL_HOST = "127.0.0.1"
# Offsets of a node's p2p, rpc and metrics ports from its first port: init's own layout (26656/57/60).
PORT_OFFSETS = (0, 1, 4)
NODE_PORT_STRIDE = 10  # one host: node i's ports start at base + 10·i (> the largest offset)
DEFAULT_BASE_PORT = 26670  # one host: above init's defaults, so nothing collides
VALIDATOR_STAKE = 1_000_000
VALIDATOR_BALANCE = 1_000_000_000
FAUCET_BALANCE = 10**15
FAUCET_KEY_FILE = "faucet_key.json"
FAUCET_KEY_NAME = "faucet"  # in node0's keys/, the `[faucet] key` default
MANIFEST_FILE = "testnet.json"


@dataclasses.dataclass(frozen=True)
class NodePorts:
    p2p: int
    rpc: int
    metrics: int

    @classmethod
    def from_first(cls, first: int) -> NodePorts:
        return cls(*(first + offset for offset in PORT_OFFSETS))

    def all(self) -> tuple[int, int, int]:
        return (self.p2p, self.rpc, self.metrics)


def init_ports() -> NodePorts:
    """The ports `pocl-node init` writes (the config.toml defaults)."""
    c = Config()
    addrs = (c.p2p.listen_addr, c.rpc.listen_addr, c.metrics.listen_addr)
    return NodePorts(*(parse_host_port(a)[1] for a in addrs))


class PortPlanError(ValueError):
    """A port plan that collides with `init`'s ports or leaves the port range."""


def port_plan(total: int, base_port: int | None, *, one_host: bool) -> list[NodePorts]:
    """Each node's ports. One host: distinct for every node and never `init`'s defaults (a PortPlanError
    says which collides; `base_port=None` picks free ports); several hosts: the same on each (from
    `base_port`, default `init`'s)."""
    if not one_host:
        ports = init_ports() if base_port is None else NodePorts.from_first(base_port)
        if max(ports.all()) > 65535:
            raise PortPlanError(f"base port {base_port}: ports beyond 65535")
        return [ports] * total
    if base_port is None:
        flat = free_ports(total * PORTS_PER_NODE)
        return [NodePorts(*flat[i * PORTS_PER_NODE : (i + 1) * PORTS_PER_NODE]) for i in range(total)]
    plan = [NodePorts.from_first(base_port + i * NODE_PORT_STRIDE) for i in range(total)]
    if max(plan[-1].all()) > 65535:
        raise PortPlanError(f"base port {base_port}: {total} nodes need ports beyond 65535")
    reserved = dict(zip(init_ports().all(), ("p2p", "rpc", "metrics"), strict=True))
    for i, ports in enumerate(plan):
        for port in ports.all():
            if port in reserved:
                raise PortPlanError(
                    f"base port {base_port}: node{i} would use port {port}, init's default {reserved[port]} "
                    f"port; pick a base port above {max(reserved)}"
                )
    return plan


def host_ips(starting_ip: str, count: int) -> list[str]:
    """`starting_ip`, `starting_ip + 1`, … (IPv4, as CometBFT's --starting-ip-address)."""
    try:
        first = ipaddress.IPv4Address(starting_ip)
    except ValueError:
        raise PortPlanError(f"starting IP {starting_ip!r} is not an IPv4 address") from None
    if first.is_unspecified or int(first) + count - 1 >= int(ipaddress.IPv4Address("255.255.255.255")):
        raise PortPlanError(f"starting IP {starting_ip}: no room for {count} consecutive host addresses")
    return [str(first + i) for i in range(count)]


@dataclasses.dataclass(frozen=True)
class TestnetNode:
    index: int
    home: Path
    node_id: str  # hex
    address: str  # the node's account (operator, miner) address 0x…
    consensus_address: str  # its consensus key's address 0x… (commit signatures, block proposers)
    ports: NodePorts
    host: str = LOCAL_HOST  # the IP this node's P2P listens on and is dialled at

    @property
    def rpc_url(self) -> str:
        """Its RPC, which listens on loopback: a URL for a client on the node's own host."""
        return f"http://{LOCAL_HOST}:{self.ports.rpc}"


@dataclasses.dataclass(frozen=True)
class Testnet:
    out: Path
    chain_id: str
    genesis: Genesis
    nodes: list[TestnetNode]
    faucet_key_path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis.hash.hex(),
            "faucet_key": str(self.faucet_key_path),
            "nodes": [
                {
                    "index": n.index,
                    "home": str(n.home),
                    "node_id": n.node_id,
                    "address": n.address,
                    "consensus_address": n.consensus_address,
                    "host": n.host,
                    "p2p": n.ports.p2p,
                    "rpc": n.ports.rpc,
                    "metrics": n.ports.metrics,
                }
                for n in self.nodes
            ],
        }


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS reports free right now (bound then released)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def generate_testnet(
    out: Path | str,
    validators: int,
    *,
    chain_id: str | None = None,
    base_port: int | None = DEFAULT_BASE_PORT,
    starting_ip: str | None = None,
    params: ChainParams | None = None,
    pocl: dict[str, Any] | None = None,
    passphrase: str | None = None,
    config: Config | None = None,
    non_validators: int = 0,
    kdf: ScryptParams = DEFAULT_SCRYPT,
    accounts: Sequence[tuple[bytes, int]] = (),
) -> Testnet:
    """Write the homes. `base_port=None` picks free ports on one host (tests) and, with `starting_ip`
    (node i at starting_ip + i), means `init`'s ports on every host; keys are unencrypted without a passphrase.
    `accounts` adds extra funded (address, balance) genesis accounts (load generators, benchmarks)."""
    if validators < 1:
        raise ValueError("a testnet needs at least one validator")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    total = validators + non_validators
    ports = port_plan(total, base_port, one_host=starting_ip is None)
    hosts = [LOCAL_HOST] * total if starting_ip is None else host_ips(starting_ip, total)
    account_keys = [PrivateKey.generate() for _ in range(total)]
    consensus_keys = [PrivateKey.generate() for _ in range(total)]
    node_keys = [PrivateKey.generate() for _ in range(total)]
    faucet = PrivateKey.generate()
    chain_id = chain_id or f"pocl-testnet-{int(time.time()) % 1_000_000:06d}"
    genesis = build_genesis(
        chain_id,
        [
            GenesisValidator(
                account_keys[i].pubkey,
                consensus_keys[i].pubkey,
                VALIDATOR_STAKE,
                VALIDATOR_BALANCE,
                miner=True,
            )
            for i in range(validators)
        ],
        accounts=[(faucet.address, FAUCET_BALANCE), *accounts],
        params=params,
        genesis_time_ms=int(time.time() * 1000),
        pocl=pocl,
    )
    base = config or Config()
    out.mkdir(parents=True, exist_ok=True)
    nodes: list[TestnetNode] = []
    for i in range(total):
        peers = [f"{node_keys[j].pubkey.hex()}@{hosts[j]}:{ports[j].p2p}" for j in range(total) if j != i]
        ip = hosts[i]
        cfg = base.replace("node", moniker=f"node{i}")
        cfg = cfg.replace("p2p", listen_addr=f"{ip}:{ports[i].p2p}", persistent_peers=peers)
        if starting_ip is not None:  # a host of its own: advertise the address the others dial
            cfg = cfg.replace("p2p", external_addr=f"{ip}:{ports[i].p2p}")
        cfg = cfg.replace("rpc", listen_addr=f"{LOCAL_HOST}:{ports[i].rpc}")  # never exposed by default
        cfg = cfg.replace("metrics", listen_addr=f"{LOCAL_HOST}:{ports[i].metrics}")
        home = NodeHome.at(out / f"node{i}")
        init_home(
            home,
            genesis=genesis,
            passphrase=passphrase,
            insecure_keys=passphrase is None,
            config=cfg,
            account_key=account_keys[i],
            consensus_key=consensus_keys[i],
            node_key=node_keys[i],
            kdf=kdf,
        )
        nodes.append(
            TestnetNode(
                i,
                home.root,
                node_keys[i].pubkey.hex(),
                format_address(account_keys[i].address),
                format_address(consensus_keys[i].address),
                ports[i],
                host=hosts[i],
            )
        )
    faucet_path = out / FAUCET_KEY_FILE
    save_key(faucet_path, faucet, passphrase, insecure_unencrypted=passphrase is None, kdf=kdf)
    # node0 holds it too, under the name `[faucet] key` defaults to: `config set faucet.enabled true`
    # on node0 is all a public faucet takes.
    save_key(
        NodeHome.at(nodes[0].home).key_path(FAUCET_KEY_NAME),
        faucet,
        passphrase,
        insecure_unencrypted=passphrase is None,
        kdf=kdf,
    )
    net = Testnet(out, chain_id, genesis, nodes, faucet_path)
    (out / MANIFEST_FILE).write_text(json.dumps(net.to_json(), indent=2) + "\n", encoding="utf-8")
    return net
