"""`pocl-node devnet`: N validator-miners learning together on this machine (see pocl.node.devnet.runner)."""

from __future__ import annotations

import argparse
from typing import Any

from pocl.node.commands._common import shared_options_parent
from pocl.node.errors import UserError

HELP = "run a local PoCL network of N validator-miners with a live view, a report and a plot"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from pocl.node.devnet.params import build_parser

    # `--json PATH` (the report) replaces the shared `--json` flag for this command
    p = subparsers.add_parser(
        "devnet",
        help=HELP,
        description=HELP,
        parents=[shared_options_parent()],
        conflict_handler="resolve",
    )
    build_parser(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pocl.node.devnet.params import DevnetError, parse_params
    from pocl.node.devnet.runner import run_devnet

    try:
        return run_devnet(parse_params(args))
    except DevnetError as exc:
        raise UserError(str(exc)) from None
