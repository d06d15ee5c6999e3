"""`pocl-node unsafe-reset-all`: wipe a node's chain data, keeping its keys, config and genesis.

Removes the block/state database, the address book, the ban list and the validator's last-signed state
(so the node resyncs from height 0). Dangerous for a validator: with the signing state gone, only a full resync
before it signs again keeps it from double-signing. Datasets under [mining] data_dir are kept (they are
inputs, not chain data). Refuses to run against a database that a running node holds open.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from pocl.node.commands._common import add_command_parser, emit, home_of
from pocl.node.errors import UserError

HELP = "DANGER: delete the chain database, address book, ban list and signing state (keeps keys, config, genesis)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "unsafe-reset-all", HELP, __doc__)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    return p


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _check_not_running(db: Path) -> None:
    if not db.exists():
        return
    import plyvel

    try:
        plyvel.DB(str(db), create_if_missing=False).close()
    except plyvel.IOError as exc:
        if "lock" in str(exc).lower():
            raise UserError(f"{db} is in use: stop the node first") from None
    except plyvel.Error:
        pass  # a corrupt database is exactly what a reset is for


def targets(home_data: Path, db: Path, keep: list[Path]) -> list[Path]:
    """What to delete: everything in data/ except kept inputs, plus the database if it lives elsewhere."""
    out: list[Path] = []
    if home_data.is_dir():
        for entry in sorted(home_data.iterdir()):
            if any(entry.resolve() == k.resolve() or _inside(k, entry) for k in keep):
                if entry.is_dir() and not any(entry.resolve() == k.resolve() for k in keep):
                    out.extend(targets(entry, db, keep))  # descend: keep only the kept subtree
                continue
            out.append(entry)
    if db.exists() and not _inside(db, home_data):
        out.append(db)
    return out


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    config = home.load_config()
    db = home.db_path(config)
    keep = [config.resolve(home.root, config.mining.data_dir)]
    _check_not_running(db)
    doomed = targets(home.data_dir, db, keep)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("refusing to delete chain data without confirmation: pass --yes")
        print(f"This deletes the chain data of {home.root}:", file=sys.stderr)
        for path in doomed:
            print(f"  {path}", file=sys.stderr)
        answer = input("Type 'yes' to continue: ")
        if answer.strip().lower() != "yes":
            raise UserError("aborted")
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    home.data_dir.mkdir(mode=0o700, exist_ok=True)
    emit(
        args,
        {"home": str(home.root), "removed": [str(p) for p in doomed], "kept": [str(k) for k in keep]},
        f"reset {home.root}: removed {len(doomed)} item(s) from the chain data; keys, config and genesis kept",
    )
    return 0
