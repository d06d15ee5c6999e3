"""`pocl-node faucet`: ask a testnet node's faucet (`POST /faucet`) for coins, optionally wait for them.

Needs no passphrase: the recipient is public. By default it is this home's account
(`HOME/keys/account_key.json`, the key that stakes and mines), so a newcomer runs `init`, then this.
"""

from __future__ import annotations

import argparse
from typing import Any

from pocl.ledger.keys import KeyFormatError, format_address, parse_address
from pocl.ledger.storage.keystore import read_key_info
from pocl.node.commands._common import add_command_parser, emit, home_of, looks_like_address, named_key_info
from pocl.node.commands.tx import DEFAULT_WAIT_S, wait_committed
from pocl.node.errors import UsageError, UserError
from pocl.node.rpc.client import add_node_args, client_for

HELP = "get coins from a testnet node's faucet (default recipient: this home's account)"
DESCRIPTION = """\
Asks the node at --node URL (default: this home's RPC address) to send its faucet amount to ADDRESS: a
0x address, the name of a key in HOME/keys, or, without ADDRESS, this home's account key
(HOME/keys/account_key.json). The faucet must be enabled on that node ([faucet] enabled = true) and
grants one address, and one client, once per interval. --wait waits until the transfer is committed and
prints the new balance.

examples:
  pocl-node faucet --node http://203.0.113.7:26657 --home ~/.pocl --wait
  pocl-node faucet 0x1234…abcd --node http://203.0.113.7:26657
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "faucet", HELP, DESCRIPTION)
    p.add_argument(
        "address",
        nargs="?",
        metavar="ADDRESS",
        help="recipient: 0x address or key name in HOME/keys (default: HOME/keys/account_key.json)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait until the transfer is committed; print the balance"
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"give up waiting after S seconds (default {DEFAULT_WAIT_S:g})",
    )
    add_node_args(p)
    return p


def recipient(args: argparse.Namespace) -> bytes:
    text: str | None = args.address
    if text is not None:
        if looks_like_address(text):
            try:
                return parse_address(text)
            except KeyFormatError as exc:
                raise UserError(f"bad address: {exc}") from None
        return named_key_info(args, text, "recipient ").address
    home = home_of(args)
    path = home.account_key_path
    if not path.exists():
        raise UserError(
            f"no account key at {path}: give the recipient ADDRESS, or --home of a node home (pocl-node init)"
        )
    return read_key_info(path).address


def run(args: argparse.Namespace) -> int:
    if args.wait_timeout <= 0:
        raise UsageError("--wait-timeout must be positive")
    address = format_address(recipient(args))
    client = client_for(args)
    grant = client.post("/faucet", {"address": address})
    out: dict[str, Any] = {**grant, "status": "submitted"}
    human = f"the faucet sent {grant['amount']} to {grant['address']}\ntx hash: {grant['tx_hash']}"
    if args.wait:
        info = wait_committed(client, grant["tx_hash"], args.wait_timeout)
        balance = int(client.account(address)["balance"])
        out.update({"status": "committed", "height": info["height"], "balance": balance})
        human += f"\ncommitted at height {info['height']}\nbalance of {address}: {balance}"
    emit(args, out, human)
    return 0
