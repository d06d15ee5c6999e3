"""Shared pieces of the `pocl-node` commands: common options, passphrases, output."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.keystore import KeyInfo, read_key_info
from pocl.ledger.storage.keystore import load_key as _load_key
from pocl.node.config import Config
from pocl.node.errors import UsageError, UserError
from pocl.node.home import NodeHome
from pocl.node.logging import FORMATS, setup_logging

PASSPHRASE_ENV = "POCL_PASSPHRASE"
MAX_PASSPHRASE_FILE_BYTES = 4096
CACHED_PASSPHRASE_ATTR = "_unlocked_passphrase"


class CLIArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage mistakes as one `error:` line (exit 2) instead of usage + exit."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _shared_options(top_level: bool) -> argparse.ArgumentParser:
    """Options accepted both before and after the command name.

    Leaf parsers use SUPPRESS defaults so an option given before the command is not reset by the
    subparser's default.
    """
    parent = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS
    parent.add_argument(
        "--home",
        type=Path,
        default=None if top_level else default,
        help="node home directory (default: $POCL_HOME or ~/.pocl)",
    )
    parent.add_argument(
        "--json", action="store_true", default=False if top_level else default, help="machine-readable output"
    )
    parent.add_argument(
        "--debug",
        action="store_true",
        default=False if top_level else default,
        help="show tracebacks on errors",
    )
    parent.add_argument(
        "--log-level",
        default=None if top_level else default,
        metavar="SPEC",
        help="log level, e.g. info or info,p2p=debug (default: from config, else info)",
    )
    parent.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None if top_level else default,
        help="log line format (default: from config, else text)",
    )
    return parent


def shared_options_parent(top_level: bool = False) -> argparse.ArgumentParser:
    return _shared_options(top_level)


def add_command_parser(
    subparsers: Any, name: str, help: str, description: str | None = None
) -> CLIArgumentParser:
    """A (sub)command parser carrying the shared options."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        parents=[shared_options_parent()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_subcommands(parser: argparse.ArgumentParser, dest: str, title: str = "commands") -> Any:
    return parser.add_subparsers(dest=dest, title=title, required=True, metavar="COMMAND")


def home_of(args: argparse.Namespace) -> NodeHome:
    return NodeHome.at(getattr(args, "home", None))


# ---------------------------------------------------------------------------------------------
# passphrases


def add_passphrase_args(parser: argparse.ArgumentParser, *, allow_insecure: bool) -> None:
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help=f"read the key passphrase from FILE (first line); else ${PASSPHRASE_ENV}, else a prompt",
    )
    if allow_insecure:
        parser.add_argument(
            "--insecure-unencrypted",
            action="store_true",
            help="store keys UNENCRYPTED (throwaway devnets only)",
        )


def read_passphrase(args: argparse.Namespace, *, confirm: bool = False, what: str = "key") -> str | None:
    """The passphrase from --passphrase-file, $POCL_PASSPHRASE or an interactive prompt.

    None when --insecure-unencrypted was given. `confirm` asks twice on a terminal (new keys).
    """
    if getattr(args, "insecure_unencrypted", False):
        if getattr(args, "passphrase_file", None) is not None:
            raise UsageError("--insecure-unencrypted and --passphrase-file are mutually exclusive")
        return None
    path: Path | None = getattr(args, "passphrase_file", None)
    if path is not None:
        try:
            raw = path.read_bytes()[: MAX_PASSPHRASE_FILE_BYTES + 1]
        except FileNotFoundError:
            raise UserError(f"passphrase file {path} not found") from None
        except OSError as exc:
            raise UserError(f"cannot read passphrase file {path}: {exc.strerror}") from None
        if len(raw) > MAX_PASSPHRASE_FILE_BYTES:
            raise UserError(f"passphrase file {path} is too large")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"passphrase file {path} is not UTF-8 text") from None
        passphrase = text.splitlines()[0] if text.splitlines() else ""
        if not passphrase:
            raise UserError(f"passphrase file {path} is empty")
        return passphrase
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        if not env:
            raise UserError(f"${PASSPHRASE_ENV} is set but empty")
        return env
    if not sys.stdin.isatty():
        raise UserError(
            f"a passphrase is needed for the {what}: use --passphrase-file FILE or ${PASSPHRASE_ENV}"
            + (", or --insecure-unencrypted on devnets" if hasattr(args, "insecure_unencrypted") else "")
        )
    passphrase = getpass.getpass(f"Passphrase for the {what}: ")
    if not passphrase:
        raise UserError("empty passphrase")
    if confirm and getpass.getpass("Repeat passphrase: ") != passphrase:
        raise UserError("passphrases do not match")
    return passphrase


def unlock_key(path: Path, args: argparse.Namespace) -> PrivateKey:
    """Decrypt a key file, asking for the passphrase only when the file is encrypted."""
    info = read_key_info(path)
    passphrase = None
    if info.encrypted:
        # One prompt per command: a home's three keys (account, consensus, node) share the passphrase.
        passphrase = getattr(args, CACHED_PASSPHRASE_ATTR, None) or read_passphrase(
            args, what=f"key {path.stem}"
        )
    key = _load_key(path, passphrase)
    if passphrase is not None:
        setattr(args, CACHED_PASSPHRASE_ATTR, passphrase)
    return key


def setup_command_logging(args: argparse.Namespace, config: Config | None = None) -> None:
    """Re-apply logging for a command that loaded config.toml: CLI flags win, then [node], then defaults."""
    level = getattr(args, "log_level", None) or (config.node.log_level if config else "info")
    fmt = getattr(args, "log_format", None) or (config.node.log_format if config else "text")
    setup_logging(level, fmt)


# ---------------------------------------------------------------------------------------------
# output


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, data: dict[str, Any] | list[Any], human: str) -> None:
    """Print `data` as JSON with --json, else the human text."""
    if wants_json(args):
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(human)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def looks_like_address(text: str) -> bool:
    """`0x…`, or 40 hex digits: meant as an address rather than a key name."""
    return text.startswith("0x") or (len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text))


def named_key_info(args: argparse.Namespace, name: str, what: str = "") -> KeyInfo:
    """The KeyInfo of key `name` in this home; `what` prefixes the error (e.g. "recipient ")."""
    home = home_of(args)
    try:
        path = home.key_path(name)
    except UserError:
        raise UserError(f"{what}{name!r} is neither a 0x address nor a key name") from None
    if not path.exists():
        raise UserError(f"{what}{name!r} is neither a 0x address nor a key in {home.keys_dir}")
    return home.key_info(name)
