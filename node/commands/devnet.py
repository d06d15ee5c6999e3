"""`pocl-node devnet`: N validator-miners learning together on this machine (see pocl.node.devnet.runner)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pocl.node.commands._common import shared_options_parent
from pocl.node.errors import UsageError, UserError

HELP = "run a local PoCL network of N validator-miners with a live view, a report and a plot"
EPILOG = """\
examples:
  pocl-node devnet                                   # digits, cnn-digits, 4 miners, 5 rounds
  pocl-node devnet --dataset mnist --data-dir DIR    # cnn-mnist, block limits raised for its txs
  pocl-node devnet --rounds 3 --adversary knn:1 --report report.json
  pocl-node devnet --json > report.json              # the report on stdout, progress on stderr

The output directory (--out, else a new temp dir) is printed first; it keeps report.json,
accuracy.png and logs/. The node homes in it are removed at the end unless --keep (or a node died).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from pocl.node.devnet.params import DESCRIPTION, build_parser

    # the shared `--json` flag prints the report as JSON on stdout; `--home` is refused (parse_params):
    # a devnet makes its own homes under --out
    p = subparsers.add_parser(
        "devnet",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[shared_options_parent()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",
    )
    p.add_argument(
        "--home",
        type=Path,
        default=argparse.SUPPRESS,
        help="refused: a devnet makes its node homes under --out",
    )
    build_parser(p, json_flag=False)
    return p


def run(args: argparse.Namespace) -> int:
    from pocl.node.devnet.params import DevnetError, parse_params
    from pocl.node.devnet.runner import run_devnet

    try:
        params = parse_params(args)
    except DevnetError as exc:
        raise UsageError(str(exc)) from None
    try:
        return run_devnet(params)
    except DevnetError as exc:
        raise UserError(str(exc)) from None
