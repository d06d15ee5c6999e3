"""`pocl-node miner on|off|status`: switch mining of a running node without losing a round.

Talks to the node of this home through its RPC on this machine (`/miner/mining`, which refuses requests
from elsewhere). `off` sends `miner.unregister` at once and lets the miner finish the round it committed
to (an unregistered miner is not jailed for the rounds it sits out); `on` sends `miner.register` if the
account is not registered and mines from the next round. A node started without `--mine` starts its
miner on `on` ([mining] settings of config.toml; it needs the `miner` extra).
"""

from __future__ import annotations

import argparse
from typing import Any

from pocl.node.commands._common import add_command_parser, add_subcommands, emit, home_of
from pocl.node.errors import UserError

HELP = "switch mining on or off on the running node of this home, or show its mining state"
DESCRIPTION = """\
examples:
  pocl-node miner status --home ~/.pocl
  pocl-node miner off --home ~/.pocl     (unregister, and finish the committed round)
  pocl-node miner on --home ~/.pocl      (register if needed, mine from the next round)
"""
ACTIONS = {"on": True, "off": False}
RPC_TIMEOUT_S = 120.0  # `on` may start the miner (loading the dataset, the training worker)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "miner", HELP, DESCRIPTION)
    sub = add_subcommands(parser, "miner_command")
    add_command_parser(sub, "on", "register (if needed) and mine from the next round")
    add_command_parser(sub, "off", "unregister and stop mining after finishing the round committed to")
    add_command_parser(sub, "status", "mining state, registration and the open commitment")
    return parser


def run(args: argparse.Namespace) -> int:
    from pocl.node.rpc.client import RpcClient, url_from_config

    home = home_of(args)
    config = home.load_config()
    if not config.rpc.enabled:
        raise UserError(f"the node's RPC is disabled in {home.config_path} ([rpc] enabled = false)")
    url = url_from_config(config)
    hint = f"is the node of {home.root} running?"
    with RpcClient(url, RPC_TIMEOUT_S, hint=hint) as client:
        if args.miner_command == "status":
            state = client.get("/miner/mining")
        else:
            state = client.post("/miner/mining", {"mining": ACTIONS[args.miner_command]})
    emit(args, state, describe(state, args.miner_command))
    return 0


def describe(state: dict[str, Any], action: str) -> str:
    """The human answer: what the node does now and what is still to come."""
    lines = []
    if action == "on":
        lines.append("mining switched on")
    elif action == "off":
        lines.append("mining switched off")
    registered = state.get("registered")
    lines.append(f"mining:      {'on' if state.get('mining') else 'off'}")
    lines.append(f"address:     {state.get('address') or '-'}")
    lines.append(f"registered:  {'-' if registered is None else 'yes' if registered else 'no'}")
    commitment = state.get("open_commitment")
    if commitment:
        cost = commitment["cost_if_left"]
        lines.append(
            f"committed:   round {commitment['round']} (phase {commitment['phase']}, {commitment['due']} due; "
            f"leaving it costs {cost['slash_bps']} bps = {cost['amount']} and {cost['jail_rounds']} rounds of jail)"
        )
    else:
        lines.append("committed:   no open commitment")
    if state.get("pending"):
        lines.append(f"pending:     {state['pending']}")
    return "\n".join(lines)
