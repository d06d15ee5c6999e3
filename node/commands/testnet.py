"""`pocl-node testnet`: generate the homes of a local N-validator network (like `cometbft testnet`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pocl.node.commands._common import add_command_parser, add_passphrase_args, emit, read_passphrase, table
from pocl.node.errors import UsageError, UserError

HELP = "generate homes, keys, genesis and peer lists for a local N-validator network"
DESCRIPTION = """\
Writes OUT/node0 … OUT/node{N-1} (config.toml, genesis.json, keys/, data/), one shared genesis, every
node listing the others as persistent peers, a funded faucet key OUT/faucet_key.json and a manifest
OUT/testnet.json.

Ports. On one host (default) every node listens on 127.0.0.1 and node i uses --base-port + 10·i
(default 26670) for p2p, +1 rpc, +4 metrics: never init's 26656/26657/26660 (0 picks free ports).
With --starting-ip A.B.C.D node i is its own host at A.B.C.D+i (as CometBFT's --starting-ip-address),
with the same ports on every host (init's, or from --base-port); its P2P listen and external address
and the peer lists use those IPs, RPC and metrics stay on loopback (open one node's RPC to joiners:
pocl-node config set rpc.listen_addr A.B.C.D:26657 --home OUT/node0). Copy OUT/nodeI to host I. Keys are encrypted with the passphrase (--passphrase-file or
$POCL_PASSPHRASE) unless --insecure-unencrypted.

--model names the chain's model (default cnn-digits); the genesis then carries its input shape and
class count, and the tx/block limits (and, if need be, phase windows) its PoCL txs need; each home's
[mining] dataset is set to the model's dataset (cnn-mnist: mnist, pocl-cifar10: cifar10).

examples:
  pocl-node testnet --validators 4 --out ./mynet --insecure-unencrypted
  pocl-node testnet --validators 4 --out ./mnistnet --model cnn-mnist --insecure-unencrypted
  pocl-node run --home ./mynet/node0      (one per terminal, or use: pocl-node devnet)
  pocl-node testnet --validators 4 --out ./wan --starting-ip 10.20.0.1 --insecure-unencrypted
"""
MAX_NODES = 64
DEFAULT_MODEL = "cnn-digits"  # PoclParams' default (an empty genesis `pocl` section)


def model_chain(model: str) -> dict[str, Any]:
    """`generate_testnet` arguments for a chain of `model`: the genesis `pocl` section and chain params
    fitted to it (`genesis.models.fit_model`), and a config whose [mining] dataset trains that model."""
    from pocl.genesis.models import ModelFitError, fit_model
    from pocl.ml.datasets import DEFAULT_MODELS
    from pocl.node.config import Config

    try:
        pocl, params = fit_model(model)
    except ModelFitError as exc:
        raise UsageError(f"--model: {exc}") from None
    config = Config()
    dataset = next((d for d, m in DEFAULT_MODELS.items() if m == model), None)
    if dataset is not None:
        config = config.replace("mining", dataset=dataset)
    return {"pocl": pocl, "params": params, "config": config}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "testnet", HELP, DESCRIPTION)
    p.add_argument("--validators", "-n", type=int, default=4, metavar="N", help="validators (default 4)")
    p.add_argument("--non-validators", type=int, default=0, metavar="M", help="extra full nodes (default 0)")
    p.add_argument(
        "--out", "-o", type=Path, required=True, metavar="DIR", help="output directory (new or empty)"
    )
    p.add_argument(
        "--base-port",
        type=int,
        metavar="P",
        help="first port (default: 26670 on one host, init's 26656 with --starting-ip; 0 = free ports)",
    )
    p.add_argument(
        "--starting-ip",
        metavar="A.B.C.D",
        help="node i is a host of its own at A.B.C.D+i, all on the same ports (a multi-host network)",
    )
    p.add_argument("--chain-id", metavar="ID", help="chain id (default: pocl-testnet-NNNNNN)")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="the chain's model, e.g. cnn-mnist (default cnn-digits); limits follow",
    )
    add_passphrase_args(p, allow_insecure=True)
    return p


def run(args: argparse.Namespace) -> int:
    from pocl.node.testnet import DEFAULT_BASE_PORT, PortPlanError, generate_testnet, host_ips, port_plan

    total = args.validators + args.non_validators
    if args.validators < 1:
        raise UsageError("--validators must be at least 1")
    if args.non_validators < 0:
        raise UsageError("--non-validators must not be negative")
    if total > MAX_NODES:
        raise UsageError(f"at most {MAX_NODES} nodes")
    base_port = args.base_port
    if base_port is None:
        base_port = None if args.starting_ip is not None else DEFAULT_BASE_PORT
    elif base_port == 0:
        if args.starting_ip is not None:
            raise UsageError("--base-port 0 (free ports) is for one host, not with --starting-ip")
        base_port = None
    elif not 1024 <= base_port <= 65535:
        raise UsageError("--base-port must be 0 or in 1024..65535")
    try:
        port_plan(total, base_port, one_host=args.starting_ip is None)  # checked before anything is written
        if args.starting_ip is not None:
            host_ips(args.starting_ip, total)
    except PortPlanError as exc:
        raise UsageError(f"{exc}") from None
    if args.chain_id is not None and not 1 <= len(args.chain_id) <= 64:
        raise UsageError("--chain-id must be 1..64 characters")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty directory")
    chain = model_chain(args.model) if args.model is not None else {}
    passphrase = read_passphrase(args, confirm=True, what="testnet keys")
    net = generate_testnet(
        out,
        args.validators,
        non_validators=args.non_validators,
        base_port=base_port,
        starting_ip=args.starting_ip,
        chain_id=args.chain_id,
        passphrase=passphrase,
        **chain,
    )
    data = net.to_json()
    data["out"] = str(out)
    data["model"] = net.genesis.pocl.get("model", DEFAULT_MODEL)
    rows = [
        [
            f"node{n.index}",
            "validator" if n.index < args.validators else "full",
            n.address,
            n.node_id[:16] + "…",
            n.host,
            str(n.ports.p2p),
            n.rpc_url,
            str(n.ports.metrics),
        ]
        for n in net.nodes
    ]
    pass_hint = "" if passphrase is None else " --passphrase-file FILE"
    human = "\n".join(
        [
            f"testnet {net.chain_id}: {args.validators} validators"
            + (f" + {args.non_validators} full nodes" if args.non_validators else "")
            + f" in {out}, model {data['model']}",
            "",
            table(rows, ["NODE", "ROLE", "ADDRESS", "NODE ID", "HOST", "P2P", "RPC", "METRICS"]),
            "",
            f"faucet key: {net.faucet_key_path} (funded; node0 holds it as keys/faucet.json: "
            f"`pocl-node config set faucet.enabled true --home {net.nodes[0].home}` opens a faucet there)",
            f"manifest:   {out / 'testnet.json'}",
            "",
            "start each node (one terminal each):",
            *(f"  pocl-node run --home {n.home}{pass_hint}" for n in net.nodes),
            "then, e.g.:",
            f"  pocl-node query status --node {net.nodes[0].rpc_url}",
            f"  pocl-node tx transfer {net.nodes[-1].address} 1000 --key {net.faucet_key_path}"
            f" --node {net.nodes[0].rpc_url} --wait",
        ]
    )
    emit(args, data, human)
    return 0
