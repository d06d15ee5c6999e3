"""Generate a local N-validator network: homes, keys, one genesis, peer lists, distinct ports.

Like `cometbft testnet`: `OUT/node0 … OUT/node{N-1}` each hold `config.toml`, `genesis.json`, keys and
`data/`; every node lists the others as persistent peers on 127.0.0.1. A funded `faucet` key
(`OUT/faucet_key.json`) lets devnets and tests send transfers at once.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocl.genesis.schema import Genesis, build_genesis
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.params import ChainParams
from pocl.ledger.storage.keystore import DEFAULT_SCRYPT, ScryptParams, save_key
from pocl.node.config import Config
from pocl.node.home import NodeHome, init_home

DEFAULT_BASE_PORT = 26656
PORTS_PER_NODE = 3  # p2p, rpc, metrics
VALIDATOR_STAKE = 1_000_000
VALIDATOR_BALANCE = 1_000_000_000
FAUCET_BALANCE = 10**15
FAUCET_KEY_FILE = "faucet_key.json"
MANIFEST_FILE = "testnet.json"


@dataclasses.dataclass(frozen=True)
class NodePorts:
    p2p: int
    rpc: int
    metrics: int


@dataclasses.dataclass(frozen=True)
class TestnetNode:
    index: int
    home: Path
    node_id: str  # hex
    address: str  # validator address 0x…
    ports: NodePorts

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.rpc}"


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
    params: ChainParams | None = None,
    pocl: dict[str, Any] | None = None,
    passphrase: str | None = None,
    config: Config | None = None,
    non_validators: int = 0,
    kdf: ScryptParams = DEFAULT_SCRYPT,
    accounts: Sequence[tuple[bytes, int]] = (),
) -> Testnet:
    """Write the homes. `base_port=None` picks free ports (tests); keys are unencrypted without a passphrase.
    `accounts` adds extra funded (address, balance) genesis accounts (load generators, benchmarks)."""
    if validators < 1:
        raise ValueError("a testnet needs at least one validator")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    total = validators + non_validators
    flat = (
        free_ports(total * PORTS_PER_NODE)
        if base_port is None
        else [base_port + i for i in range(total * PORTS_PER_NODE)]
    )
    ports = [NodePorts(*flat[i * PORTS_PER_NODE : (i + 1) * PORTS_PER_NODE]) for i in range(total)]
    val_keys = [PrivateKey.generate() for _ in range(validators)]
    node_keys = [PrivateKey.generate() for _ in range(total)]
    faucet = PrivateKey.generate()
    chain_id = chain_id or f"pocl-testnet-{int(time.time()) % 1_000_000:06d}"
    genesis = build_genesis(
        chain_id,
        [(k.pubkey, VALIDATOR_STAKE, VALIDATOR_BALANCE) for k in val_keys],
        accounts=[(faucet.address, FAUCET_BALANCE), *accounts],
        params=params,
        genesis_time_ms=int(time.time() * 1000),
        pocl=pocl,
    )
    base = config or Config()
    out.mkdir(parents=True, exist_ok=True)
    nodes: list[TestnetNode] = []
    for i in range(total):
        peers = [f"{node_keys[j].pubkey.hex()}@127.0.0.1:{ports[j].p2p}" for j in range(total) if j != i]
        cfg = base.replace("node", moniker=f"node{i}")
        cfg = cfg.replace("p2p", listen_addr=f"127.0.0.1:{ports[i].p2p}", persistent_peers=peers)
        cfg = cfg.replace("rpc", listen_addr=f"127.0.0.1:{ports[i].rpc}")
        cfg = cfg.replace("metrics", listen_addr=f"127.0.0.1:{ports[i].metrics}")
        vkey = val_keys[i] if i < validators else PrivateKey.generate()
        home = NodeHome.at(out / f"node{i}")
        init_home(
            home,
            genesis=genesis,
            passphrase=passphrase,
            insecure_keys=passphrase is None,
            config=cfg,
            validator_key=vkey,
            node_key=node_keys[i],
            kdf=kdf,
        )
        nodes.append(
            TestnetNode(i, home.root, node_keys[i].pubkey.hex(), format_address(vkey.address), ports[i])
        )
    faucet_path = out / FAUCET_KEY_FILE
    save_key(faucet_path, faucet, passphrase, insecure_unencrypted=passphrase is None, kdf=kdf)
    net = Testnet(out, chain_id, genesis, nodes, faucet_path)
    (out / MANIFEST_FILE).write_text(json.dumps(net.to_json(), indent=2) + "\n", encoding="utf-8")
    return net
