"""`pocl-node run`: start the node daemon from a home directory until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from pocl.ledger.storage.store import StoreError
from pocl.node.commands._common import (
    add_command_parser,
    add_passphrase_args,
    home_of,
    setup_command_logging,
    unlock_key,
)
from pocl.node.errors import UserError

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
    mining = parser.add_argument_group("mining (override [mining] in config.toml)")
    mining.add_argument("--mine", action="store_true", help="take part in PoCL rounds (needs TensorFlow)")
    mining.add_argument("--dataset", help="digits | mnist | fashion-mnist | cifar10 | npz:PATH")
    mining.add_argument("--data-dir", metavar="DIR", help="where dataset files are")
    mining.add_argument("--shard", metavar="I/N", help="this miner's share I of N (0-based), e.g. 0/4")
    mining.add_argument("--partition", help="iid | dirichlet:ALPHA | shards:K | decreasing | grouped")
    mining.add_argument("--behavior", help="honest (default) or an adversarial behaviour, e.g. knn")
    mining.add_argument("--epochs", type=int, help="local training epochs per round")
    mining.add_argument("--batch-size", type=int, help="local training batch size")
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
    from pocl.node.node import Node, NodeError  # lazy: keeps `pocl-node --help` fast

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
    config = _mining_overrides(config, args)
    config.check()
    if config.mining.enabled:  # checked before keys, store, P2P or RPC: one line, nothing started
        if args.no_validator:
            raise UserError("mining needs the account key (the validator key); drop --no-validator")
        check_mining_extra(config)
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


def check_mining_extra(config: Any) -> None:
    """`run --mine` without the optional `miner` extra: a UserError naming the missing modules."""
    from pocl.node.miner import MinerError, check_miner_extra

    try:
        check_miner_extra(config.mining.dataset, config.mining.behavior)
    except MinerError as exc:
        raise UserError(str(exc)) from None


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` with 0 <= I < N."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 0/4")
    i, n = int(index), int(count)
    if not 0 <= i < n:
        raise UserError(f"--shard {text!r}: I must be between 0 and N-1")
    return i, n


def _mining_overrides(config: Any, args: argparse.Namespace) -> Any:
    changes: dict[str, Any] = {}
    if getattr(args, "mine", False):
        changes["enabled"] = True
    for name in ("dataset", "data_dir", "partition", "behavior", "epochs", "batch_size"):
        value = getattr(args, name, None)
        if value is not None:
            if isinstance(value, int) and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
            changes[name] = value
    if getattr(args, "shard", None):
        changes["shard"], changes["num_shards"] = parse_shard(args.shard)
    return config.replace("mining", **changes) if changes else config
