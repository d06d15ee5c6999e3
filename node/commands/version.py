"""`pocl-node version`: package, protocol and Python versions."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
from typing import Any

from pocl.genesis.schema import GENESIS_ENCODING_VERSION
from pocl.ledger.storage.keystore import KEYSTORE_VERSION
from pocl.node.commands._common import add_command_parser, emit

HELP = "print version information"


def package_version() -> str:
    try:
        return importlib.metadata.version("pocl")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    return add_command_parser(subparsers, "version", HELP)


def run(args: argparse.Namespace) -> int:
    info = {
        "version": package_version(),
        "genesis_encoding": GENESIS_ENCODING_VERSION,
        "keystore": KEYSTORE_VERSION,
        "python": platform.python_version(),
    }
    emit(args, info, f"pocl-node {info['version']} (python {info['python']})")
    return 0
