"""`pocl-node` subcommands: one module per command (group), discovered automatically.

To add a command, create `node/commands/NAME.py` with:

    COMMAND = "name"                  # optional; default: module name with '_' -> '-'
    HELP = "one-line description"     # optional; default: first docstring line
    USER_ERRORS = (StoreError,)       # optional: exception types printed as one `error:` line
    def add_parser(subparsers) -> argparse.ArgumentParser: ...
    def run(args) -> int: ...         # exit status

`add_parser` must create its parser with `node.commands._common.add_command_parser(subparsers, ...)`
(which adds the shared options --home/--json/--debug/--log-level/--log-format) and may nest its own
sub-subcommands; `run` dispatches on whatever it stored in `args`. Modules whose names start with `_`
are helpers, not commands. No registry file to edit: dropping the module in is enough.

The module name must be the command name with '-' -> '_' (the CLI imports only the invoked command's
module, found by name; `--help` imports all). Keep module top levels light anyway: import heavy things
(node.node, aiohttp, TensorFlow) inside `run`, or `pocl-node --help` pays for them.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

# Help lists commands in this order; unknown ones follow alphabetically.
ORDER = (
    "init",
    "config",
    "run",
    "stop",
    "miner",
    "keys",
    "tx",
    "query",
    "faucet",
    "genesis",
    "testnet",
    "devnet",
    "model",
    "unsafe_reset_all",
    "version",
)


def command_name(module: ModuleType) -> str:
    return getattr(module, "COMMAND", module.__name__.rsplit(".", 1)[-1].replace("_", "-"))


def _sort_key(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def module_names() -> list[str]:
    """Command module names, in help order (cheap: nothing is imported)."""
    return sorted(
        (info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")),
        key=_sort_key,
    )


def discover(only: str | None = None) -> tuple[list[ModuleType], list[tuple[str, BaseException]]]:
    """Command modules (all, or just the module of command `only` when it exists), plus
    (module name, error) for modules that failed to import.

    Importing only the invoked command keeps `pocl-node keys list` fast and unaffected by the
    imports of unrelated commands.
    """
    names = module_names()
    if only is not None and only.replace("-", "_") in names:
        names = [only.replace("-", "_")]
    modules: list[ModuleType] = []
    failures: list[tuple[str, BaseException]] = []
    for name in names:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except Exception as exc:  # a broken command must not take the whole CLI down
            failures.append((name, exc))
            continue
        if callable(getattr(module, "add_parser", None)) and callable(getattr(module, "run", None)):
            modules.append(module)
    return modules, failures
