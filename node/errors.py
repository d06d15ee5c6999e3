"""Errors that are the operator's mistake, not a bug: the CLI prints them as one `error: ...` line.

Raise `UserError` (or a subclass) for anything a user can fix by changing arguments, files or the
environment; anything else reaching the CLI's top level is treated as a bug and gets a `--debug` hint.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A mistake the user can fix; `exit_code` is the process status the CLI returns."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    """Bad command-line arguments (exit status 2, like argparse)."""

    exit_code = EXIT_USAGE


class ConfigError(UserError):
    """Invalid `config.toml`; the message names `section.key`."""


class HomeError(UserError):
    """Missing, incomplete or already-initialised home directory."""
