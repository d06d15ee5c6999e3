"""`pocl-node stop`: stop the node running on a home, letting its miner finish a round it committed to.

Sends SIGTERM (with --force: SIGQUIT, which stops at once) to the process that holds the home's chain
database (`node.pidfile`), then waits until it has exited. A node whose miner committed to the open
PoCL round finishes that round first (up to `[mining] drain_timeout_s`, `node.shutdown`); the command
says so, with what stopping at once would cost, when the node's RPC answers.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from pocl.node.commands._common import add_command_parser, emit, home_of
from pocl.node.errors import UserError
from pocl.node.shutdown import DRAIN_SIGNAL, FORCE_SIGNAL

HELP = "stop the node running on this home (a miner finishes the round it committed to, unless --force)"
DESCRIPTION = """\
Stops the `pocl-node run` process of this home and waits until it has exited.

A miner that has committed to the open PoCL round is penalised if it stops before its shard, reveal and
vote are in (a withholding slash and a jail). So by default the node first finishes that round (at most
[mining] drain_timeout_s, then it stops anyway); --force stops it at once and pays the penalty.
Running `stop` again while the node drains also stops it at once.

examples:
  pocl-node stop --home ~/.pocl
  pocl-node stop --home ~/.pocl --force
"""

EXTRA_WAIT_S = 30.0  # beyond the drain: the node's own shutdown (miner, P2P, database)
POLL_S = 0.2
RPC_TIMEOUT_S = 2.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "stop", HELP, DESCRIPTION)
    parser.add_argument("--force", action="store_true", help="stop at once, even in the middle of a round")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds to wait for the node to exit (default: [mining] drain_timeout_s + {EXTRA_WAIT_S:g})",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from pocl.node.pidfile import pid_file_path, process_alive, running_node_pid

    home = home_of(args)
    config = home.load_config()
    timeout = args.timeout if args.timeout is not None else config.mining.drain_timeout_s + EXTRA_WAIT_S
    if timeout <= 0:
        raise UserError("--timeout must be positive")
    pid = running_node_pid(home.db_path(config), pid_file_path(home.data_dir))
    if pid is None:
        raise UserError(f"no pocl-node is running on home {home.root}")
    commitment = _open_commitment(config)
    sig = FORCE_SIGNAL if args.force else DRAIN_SIGNAL
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise UserError(f"the node (pid {pid}) exited before it was signalled") from None
    except PermissionError:
        raise UserError(f"not allowed to signal the node (pid {pid}): it runs as another user") from None
    if not args.json:
        print(f"sent {sig.name} to pocl-node pid {pid} (home {home.root})")
        if commitment is not None:
            cost = commitment["cost_if_left"]
            what = (
                f"round {commitment['round']} (phase {commitment['phase']}, {commitment['due']} due); leaving it "
                f"costs a slash of {cost['slash_bps']} bps = {cost['amount']} and a jail of {cost['jail_rounds']} "
                "rounds"
            )
            if args.force:
                print(f"stopping at once with an open commitment in {what}")
            else:
                print(f"its miner finishes {what}; waiting up to {timeout:g}s")
    t0 = time.monotonic()
    while process_alive(pid):
        if time.monotonic() - t0 > timeout:
            raise UserError(
                f"the node (pid {pid}) is still running after {timeout:g}s; "
                f"to stop it now: pocl-node stop --home {home.root} --force"
            )
        time.sleep(POLL_S)  # polling a process we cannot wait on (not our child)
    elapsed = time.monotonic() - t0
    emit(
        args,
        {
            "pid": pid,
            "signal": sig.name,
            "stopped": True,
            "seconds": round(elapsed, 2),
            "open_commitment": commitment,
        },
        f"stopped (pid {pid}) after {elapsed:.1f}s",
    )
    return 0


def _open_commitment(config: Any) -> dict[str, Any] | None:
    """The miner's open commitment from the node's RPC (None when it has none or does not answer)."""
    from pocl.node.rpc.client import RpcClient, url_from_config

    if not config.rpc.enabled:
        return None
    try:
        with RpcClient(url_from_config(config), RPC_TIMEOUT_S) as client:
            return client.get("/miner/mining").get("open_commitment")
    except (UserError, AttributeError):
        return None
