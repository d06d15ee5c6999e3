"""The top-level handler: bugs get a --debug hint, --debug shows the traceback, user errors stay one line."""

from __future__ import annotations

import argparse
import types
from typing import Any

import pytest
from pocl.node import cli, commands
from pocl.node.commands._common import add_command_parser
from pocl.node.errors import UserError


def _fake_module(exc: BaseException) -> types.ModuleType:
    module = types.ModuleType("node.commands.explode")

    def add_parser(subparsers: Any) -> argparse.ArgumentParser:
        return add_command_parser(subparsers, "explode", "raise something")

    def run(args: argparse.Namespace) -> int:
        raise exc

    module.add_parser = add_parser  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


@pytest.fixture
def with_command(monkeypatch: pytest.MonkeyPatch):
    def install(exc: BaseException) -> None:
        monkeypatch.setattr(commands, "discover", lambda only=None: ([_fake_module(exc)], []))

    return install


def test_unexpected_exception_hint(with_command, capsys: pytest.CaptureFixture[str]) -> None:
    with_command(RuntimeError("kaboom"))
    assert cli.main(["explode"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: unexpected RuntimeError: kaboom (this is a bug; rerun with --debug for a traceback)"
    ]


def test_debug_prints_traceback(with_command, capsys: pytest.CaptureFixture[str]) -> None:
    with_command(RuntimeError("kaboom"))
    assert cli.main(["explode", "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError") and "Traceback" in err


def test_user_error_exit_code(with_command, capsys: pytest.CaptureFixture[str]) -> None:
    with_command(UserError("multi\nline problem", exit_code=3))
    assert cli.main(["explode"]) == 3
    assert capsys.readouterr().err == "error: multi line problem\n"


def test_os_error_is_one_line(with_command, capsys: pytest.CaptureFixture[str]) -> None:
    with_command(PermissionError(13, "Permission denied", "/root/secret"))
    assert cli.main(["explode"]) == 1
    assert capsys.readouterr().err == "error: Permission denied: /root/secret\n"


def test_broken_module_does_not_break_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        commands,
        "discover",
        lambda only=None: ([_fake_module(UserError("x"))], [("half", ImportError("nope"))]),
    )
    assert cli.main(["explode"]) == 1
    err = capsys.readouterr().err
    assert "warning: command module 'half' failed to load" in err


def test_real_discovery_finds_core_commands() -> None:
    modules, failures = commands.discover()
    names = [commands.command_name(m) for m in modules]
    assert {"init", "keys", "genesis", "version"} <= set(names)
    assert not [f for f in failures if f[0] in ("init", "keys", "genesis", "version")]


def test_corrupt_database_error_is_one_line(with_command, capsys: pytest.CaptureFixture[str]) -> None:
    store = pytest.importorskip("pocl.ledger.storage.store")
    with_command(store.StoreError("database /x/chain.db is corrupt: bad block at height 7"))
    assert cli.main(["explode"]) == 1
    assert capsys.readouterr().err == "error: database /x/chain.db is corrupt: bad block at height 7\n"


def test_only_the_invoked_command_is_imported() -> None:
    assert cli.invoked_command(["--home", "/h", "--log-level", "debug", "keys", "list"]) == "keys"
    assert cli.invoked_command(["--debug", "--json"]) is None
    modules, _ = commands.discover("keys")
    assert [commands.command_name(m) for m in modules] == ["keys"]
    modules, _ = commands.discover("no-such-command")  # unknown: all, so argparse can list the choices
    assert len(modules) >= 4
