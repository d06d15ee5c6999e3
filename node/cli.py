"""`pocl-node` entry point: argument parsing, logging setup and the top-level error handler.

Every user mistake (bad arguments, missing home, wrong passphrase, invalid genesis/config, missing
file, corrupt database) ends as ONE line `error: ...` on stderr and a non-zero exit (2 for usage);
only unexpected exceptions (bugs) mention `--debug`, which prints the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

from pocl.genesis.schema import GenesisError
from pocl.ledger.codec import CodecError
from pocl.ledger.keys import KeyFormatError
from pocl.ledger.storage.keystore import KeystoreError
from pocl.node import commands
from pocl.node.commands._common import CLIArgumentParser, shared_options_parent
from pocl.node.errors import EXIT_FAILURE, EXIT_USAGE, UserError
from pocl.node.logging import LogConfigError, setup_logging

PROG = "pocl-node"
EXIT_INTERRUPTED = 130
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    KeystoreError,
    GenesisError,
    KeyFormatError,
    CodecError,
    LogConfigError,
)
LAZY_USER_ERRORS = (
    ("plyvel", "Error"),
    ("pocl.ledger.storage.store", "StoreError"),
    ("pocl.consensus.signing_state", "SigningStateError"),
)


OPTIONS_WITH_VALUE = ("--home", "--log-level", "--log-format")


def invoked_command(argv: Sequence[str]) -> str | None:
    """The first positional argument (the command name), skipping top-level options and their values."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in OPTIONS_WITH_VALUE:
            skip = True
        elif token == "--":
            return None
        elif not token.startswith("-"):
            return token
    return None


def build_parser(command: str | None = None) -> tuple[CLIArgumentParser, list[ModuleType]]:
    """The argument parser; with `command`, only that command's module is imported (if it exists)."""
    parser = CLIArgumentParser(
        prog=PROG,
        description="pocl-node: a Proof-of-Collaborative-Learning blockchain node",
        parents=[shared_options_parent(top_level=True)],
    )
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    modules, failures = commands.discover(command)
    for name, exc in failures:
        print(
            f"warning: command module {name!r} failed to load: {type(exc).__name__}: {exc}", file=sys.stderr
        )
    for module in modules:
        command_parser = module.add_parser(sub)
        command_parser.set_defaults(_command_module=module)
    return parser, modules


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _os_error_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return _one_line(exc)


def _user_error_types(modules: Sequence[ModuleType]) -> tuple[type[BaseException], ...]:
    extra: list[type[BaseException]] = []
    for module in modules:
        extra.extend(getattr(module, "USER_ERRORS", ()))
    # Corrupt/locked database or signing-state file: only relevant if the command loaded those modules.
    for module_name, attr in LAZY_USER_ERRORS:
        loaded = sys.modules.get(module_name)
        if loaded is not None and isinstance(getattr(loaded, attr, None), type):
            extra.append(getattr(loaded, attr))
    return USER_ERRORS + tuple(extra)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    modules: list[ModuleType] = []

    def fail(message: str, code: int) -> int:
        print(f"error: {message}", file=sys.stderr)
        if debug:
            import traceback

            traceback.print_exc()
        return code

    try:
        parser, modules = build_parser(invoked_command(argv))
        if not argv:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        args = parser.parse_args(argv)
        debug = debug or bool(getattr(args, "debug", False))
        module = getattr(args, "_command_module", None)
        if module is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        setup_logging(args.log_level or "info", args.log_format or "text")
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()  # output piped into e.g. `head`: not an error worth a message
        return EXIT_FAILURE
    except SystemExit as exc:  # argparse --help / --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILURE)
    except Exception as exc:
        if isinstance(exc, _user_error_types(modules)):
            return fail(_one_line(exc), getattr(exc, "exit_code", EXIT_FAILURE))
        if isinstance(exc, OSError):
            return fail(_os_error_message(exc), EXIT_FAILURE)
        return fail(
            f"unexpected {type(exc).__name__}: {_one_line(exc)} (this is a bug; rerun with --debug for a traceback)",
            EXIT_FAILURE,
        )


def run_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run_main()
