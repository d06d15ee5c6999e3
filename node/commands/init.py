"""`pocl-node init`: create a node home (keys, genesis, config)."""

from __future__ import annotations

import argparse
from typing import Any

from pocl.ledger.keys import format_address
from pocl.node.commands._common import add_command_parser, add_passphrase_args, emit, home_of, read_passphrase
from pocl.node.home import init_home

HELP = "create a node home: keys, genesis.json, config.toml"
DESCRIPTION = """\
Create a node home directory. Without --genesis, writes a single-validator genesis whose only
validator is this node's new key, so the node can run a one-node chain at once. With --genesis FILE
(or the shipped name localnet), joins that chain instead.

Keys are encrypted with a passphrase from --passphrase-file, $POCL_PASSPHRASE or a prompt;
--insecure-unencrypted stores them in clear (throwaway devnets only). Existing keys are reused.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "init", HELP, DESCRIPTION)
    p.add_argument(
        "--chain-id", help="chain id of the new single-validator genesis (default: pocl-local-XXXXXX)"
    )
    p.add_argument("--genesis", metavar="FILE", help="join the chain of this genesis file (or: localnet)")
    p.add_argument("--moniker", help="human-readable node name (config node.moniker)")
    p.add_argument(
        "--force", action="store_true", help="rewrite config.toml and genesis.json of an existing home"
    )
    add_passphrase_args(p, allow_insecure=True)
    return p


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    passphrase = None
    needs_keys = not (home.validator_key_path.exists() and home.node_key_path.exists())
    if needs_keys and not (home.is_initialised() and not args.force):
        passphrase = read_passphrase(args, confirm=True, what="new node keys")
    result = init_home(
        home,
        genesis=args.genesis,
        chain_id=args.chain_id,
        moniker=args.moniker,
        passphrase=passphrase,
        insecure_keys=args.insecure_unencrypted,
        force=args.force,
    )
    g = result.genesis
    data = {
        "home": str(home.root),
        "chain_id": g.chain_id,
        "genesis_hash": g.hash.hex(),
        "validator_address": format_address(result.validator_key.address),
        "validator_pubkey": result.validator_key.pubkey.hex(),
        "node_id": result.node_key.pubkey.hex(),
        "keys_encrypted": result.validator_key.encrypted,
        "created_keys": list(result.created_keys),
        "is_genesis_validator": result.is_genesis_validator,
    }
    created = ", ".join(result.created_keys) or "none (existing keys reused)"
    lines = [
        f"initialised {home.root}",
        f"  chain id        {g.chain_id}",
        f"  genesis hash    {g.hash.hex()}",
        f"  validator       {format_address(result.validator_key.address)}",
        f"  node id         {result.node_key.pubkey.hex()}",
        f"  keys created    {created}" + ("" if result.validator_key.encrypted else "  (UNENCRYPTED)"),
    ]
    if not result.is_genesis_validator:
        lines.append("  note: this node's key is not a genesis validator; it will run as a full node")
    lines.append(f"next: pocl-node genesis validate --home {home.root}")
    emit(args, data, "\n".join(lines))
    return 0
