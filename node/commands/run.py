"""`pocl-node run`: start the node daemon from a home directory until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from ledger.store import StoreError
from node.commands._common import (
    add_command_parser,
    add_passphrase_args,
    home_of,
    setup_command_logging,
    unlock_key,
)
from node.errors import UserError

HELP = "run the node (validator if its key is in the validator set)"
USER_ERRORS: tuple[type[Exception], ...] = (StoreError,)

log = logging.getLogger("pocl.node")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "run", HELP)
    add_passphrase_args(parser, allow_insecure=False)
    parser.add_argument(
        "--no-validator", action="store_true", help="run as a full node even with a validator key"
    )
    parser.add_argument("--p2p-listen", metavar="HOST:PORT", help="override [p2p] listen_addr")
    parser.add_argument("--rpc-listen", metavar="HOST:PORT", help="override [rpc] listen_addr")
    parser.add_argument(
        "--unsafe-double-sign",
        action="store_true",
        help=argparse.SUPPRESS,  # TEST-ONLY: equivocate on every prevote (slashing tests)
    )
    return parser


async def _serve(node: Any) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    try:
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await node.stop()


def run(args: argparse.Namespace) -> int:
    from node.node import Node, NodeError  # lazy: keeps `pocl-node --help` fast

    try:
        return _run(args, Node)
    except NodeError as exc:
        raise UserError(str(exc)) from None


def _run(args: argparse.Namespace, Node: Any) -> int:  # the Node class, imported lazily
    home = home_of(args)
    config = home.load_config()
    if args.p2p_listen:
        config = config.replace("p2p", listen_addr=args.p2p_listen)
    if args.rpc_listen:
        config = config.replace("rpc", listen_addr=args.rpc_listen)
    config.check()
    setup_command_logging(args, config)
    genesis = home.load_genesis()
    node_key = unlock_key(home.node_key_path, args)
    validator_key = None
    if not args.no_validator:
        if not home.validator_key_path.exists():
            raise UserError(
                f"no validator key at {home.validator_key_path} (use --no-validator for a full node)"
            )
        validator_key = unlock_key(home.validator_key_path, args)
    node = Node(
        home=home.root,
        config=config,
        genesis=genesis,
        node_key=node_key,
        validator_key=validator_key,
        double_sign=args.unsafe_double_sign,
    )
    asyncio.run(_serve(node))
    return 0
