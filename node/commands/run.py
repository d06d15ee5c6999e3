"""`pocl-node run`: start the node daemon from a home directory until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
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
from pocl.node.fatal import WATCHDOG_S
from pocl.node.fdlimit import raise_nofile_limit
from pocl.node.home import ACCOUNT_KEY, CONSENSUS_KEY, NodeHome
from pocl.node.memtrace import MemoryTrace
from pocl.node.pidfile import pid_file_path, remove_pid_file, write_pid_file
from pocl.node.shutdown import DRAIN_SIGNAL, FORCE_SIGNAL

HELP = "run the node (validator if its consensus key is in the validator set)"
USER_ERRORS: tuple[type[Exception], ...] = (StoreError,)

log = logging.getLogger("pocl.node")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "run", HELP)
    add_passphrase_args(parser, allow_insecure=False)
    parser.add_argument(
        "--no-validator",
        action="store_true",
        help="never sign proposals or votes, even if the consensus key is in the validator set",
    )
    parser.add_argument("--p2p-listen", metavar="HOST:PORT", help="override [p2p] listen_addr")
    parser.add_argument("--rpc-listen", metavar="HOST:PORT", help="override [rpc] listen_addr")
    parser.add_argument(
        "--state-sync",
        action="store_true",
        help="restore state from peers' snapshots before block sync (an empty store; sets [statesync] enable)",
    )
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


STOP_SIGNALS = (signal.SIGINT, DRAIN_SIGNAL)  # drain a committed PoCL round first; again: stop now


async def _serve(node: Any) -> None:
    """Run until a stop request has been served (`node.shutdown`: a miner that committed to the open
    round finishes it first), with the node's pid in `HOME/data/node.pid` while it runs."""
    loop = asyncio.get_running_loop()
    shutdown = node.shutdown
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, shutdown.request_stop, sig.name)
    loop.add_signal_handler(FORCE_SIGNAL, lambda: shutdown.request_stop(FORCE_SIGNAL.name, force=True))
    pid_path = pid_file_path(NodeHome.at(node.home).data_dir)
    trace = MemoryTrace.from_env()  # debug only: off unless POCL_MEMTRACE is set
    trace_task = asyncio.create_task(trace.run()) if trace is not None else None
    try:
        await node.start()
        write_pid_file(pid_path)
        await shutdown.stopping.wait()
    finally:
        if trace_task is not None:
            trace_task.cancel()
        await node.stop()
        remove_pid_file(pid_path)


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
    if args.state_sync:
        config = config.replace("statesync", enable=True)
    config = _mining_overrides(config, args)
    config.check()
    # The consensus key signs proposals and votes; the account key the miner's txs and double-sign
    # evidence. A full node that does not mine needs neither. Missing keys and a missing miner extra are
    # refused before the store, P2P or RPC start: one line, nothing started.
    wanted = ([] if args.no_validator else [CONSENSUS_KEY]) + (
        [ACCOUNT_KEY] if config.mining.enabled or not args.no_validator else []
    )
    for name in wanted:
        _require_key(home, name)
    if config.mining.enabled:
        check_mining_extra(config)
    faucet_path = _faucet_key_path(home, config)
    setup_command_logging(args, config)
    raise_nofile_limit()  # before anything opens files: EMFILE must not stop signing
    genesis = home.load_genesis()
    node_key = unlock_key(home.node_key_path, args)
    keys = {name: unlock_key(home.key_path(name), args) for name in wanted}
    consensus_key, account_key = keys.get(CONSENSUS_KEY), keys.get(ACCOUNT_KEY)
    node = Node(
        home=home.root,
        config=config,
        genesis=genesis,
        node_key=node_key,
        consensus_key=consensus_key,
        account_key=account_key,
        double_sign=args.unsafe_double_sign,
        faucet_key=unlock_key(faucet_path, args) if faucet_path is not None else None,
    )
    node.fatal.watchdog_s = WATCHDOG_S  # a real process must end even if the orderly stop hangs
    asyncio.run(_serve(node))
    return node.fatal.exit_code  # EXIT_FATAL after a storage/signing-state fault (node.fatal)


def _require_key(home: NodeHome, name: str) -> None:
    """A missing key of the home is a one-line error saying what to do."""
    path = home.key_path(name)
    if path.exists():
        return
    if name == CONSENSUS_KEY:
        raise UserError(f"no consensus key at {path} (use --no-validator for a full node)")
    raise UserError(
        f"no account key at {path}: mining and validating sign with it "
        "(a home made before account keys were separate: make a new one with pocl-node init)"
    )


def _faucet_key_path(home: NodeHome, config: Any) -> Path | None:
    """With `[faucet] enabled`, the key file that funds it (it must exist: one line, nothing started)."""
    if not config.faucet.enabled:
        return None
    path = home.key_path(config.faucet.key)
    if not path.exists():
        raise UserError(
            f"[faucet] enabled = true but its key {path} does not exist (set faucet.key to the name of a "
            f"funded key in {home.keys_dir}, or copy the key file there)"
        )
    return path


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
