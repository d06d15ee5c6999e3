"""`pocl-node config get|set`: read or change one `config.toml` setting without hand-editing the file.

A value is parsed for the type of its key and the whole config is validated by the same typed model
that `run` loads (`node.config.Config`) before anything is written, so `config set` can never leave a
file the node would refuse.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

import tomli_w
from pocl.node.commands._common import add_command_parser, add_subcommands, emit, home_of
from pocl.node.config import Config, write_config
from pocl.node.errors import ConfigError

HELP = "read or change a config.toml setting (e.g. p2p.persistent_peers)"
DESCRIPTION = """\
config get [KEY]       print a setting (KEY = SECTION.NAME, e.g. p2p.external_addr), a whole section
                       (p2p), or the whole config with every default filled in
config set KEY VALUE   change a setting in HOME/config.toml; VALUE is parsed for KEY's type:
                       lists comma-separated (or a TOML array), booleans true/false, numbers as
                       written, "" or none to unset an optional value. Restart the node to apply.

examples:
  pocl-node config set p2p.persistent_peers ID1@10.0.0.1:26656,ID2@10.0.0.2:26656 --home ./n1
  pocl-node config set p2p.external_addr 203.0.113.7:26656 --home ./n1
  pocl-node config get rpc.listen_addr --home ./n1
"""
UNSET_WORDS = ("", "none", "unset")
TRUE_WORDS = ("true", "yes", "on")
FALSE_WORDS = ("false", "no", "off")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "config", HELP, DESCRIPTION)
    sub = add_subcommands(p, "config_command")
    get = add_command_parser(sub, "get", "print a setting, a section or the whole config")
    get.add_argument("key", nargs="?", metavar="KEY", help="SECTION.NAME or SECTION (default: everything)")
    put = add_command_parser(sub, "set", "change a setting in config.toml (validated first)")
    put.add_argument("key", metavar="KEY", help="SECTION.NAME, e.g. p2p.persistent_peers")
    put.add_argument("value", metavar="VALUE", help="the new value, parsed for the key's type")
    return p


def split_key(config: Config, key: str, *, whole_section: bool = False) -> tuple[str, str | None]:
    """`section.name` → (section, name), checked against the typed config; a clear error otherwise."""
    section, dot, name = key.partition(".")
    sections = type(config).model_fields
    if section not in sections:
        raise ConfigError(f"config: unknown section {section!r} in {key!r} (known: {', '.join(sections)})")
    if not dot:
        if whole_section:
            return section, None
        raise ConfigError(
            f"config: {key!r} is a section; name a key, e.g. {section}.{_first_field(config, section)}"
        )
    fields = type(getattr(config, section)).model_fields
    if name not in fields:
        raise ConfigError(f"config: unknown key {key!r} (known in [{section}]: {', '.join(fields)})")
    return section, name


def _first_field(config: Config, section: str) -> str:
    return next(iter(type(getattr(config, section)).model_fields))


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the base type, whether None is allowed) of a field annotation."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base, _ = _unwrap(args[0])
        return base, len(args) < len(typing.get_args(hint))
    return hint, False


def parse_value(key: str, text: str, hint: Any) -> Any:
    """The Python value of `text` for a field of type `hint` (the model then validates it)."""
    base, optional = _unwrap(hint)
    word = text.strip().lower()
    if optional and word in UNSET_WORDS:
        return None
    if typing.get_origin(base) is list:
        return _parse_list(key, text)
    if base is bool:
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(f"config {key}: must be true or false, got {text!r}")
    if base in (int, float):
        try:
            return base(text.strip().replace("_", ""))
        except ValueError:
            kind = "an integer" if base is int else "a number"
            raise ConfigError(f"config {key}: must be {kind}, got {text!r}") from None
    return text


def _parse_list(key: str, text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        import tomllib

        try:
            value = tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {key}: not a TOML array ({exc})") from None
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"config {key}: must be a list of strings")
        return value
    return [item.strip() for item in stripped.split(",") if item.strip()]


def format_value(value: Any) -> str:
    """A value as `get` prints it: plain text that `set` accepts back."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _get(args: argparse.Namespace) -> int:
    home = home_of(args)
    config = home.load_config()
    if args.key is None:
        emit(args, config.model_dump(), tomli_w.dumps(config.to_toml_dict()).rstrip())
        return 0
    section, name = split_key(config, args.key, whole_section=True)
    body = getattr(config, section)
    if name is None:
        emit(args, body.model_dump(), tomli_w.dumps(body.model_dump(exclude_none=True)).rstrip())
        return 0
    value = getattr(body, name)
    emit(args, {"key": args.key, "value": value}, format_value(value))
    return 0


def _set(args: argparse.Namespace) -> int:
    home = home_of(args)
    config = home.load_config()
    section, name = split_key(config, args.key)
    assert name is not None
    body = getattr(config, section)
    value = parse_value(args.key, args.value, type(body).model_fields[name].annotation)
    previous = getattr(body, name)
    updated = config.replace(section, **{name: value})  # validates: a bad value is a ConfigError here
    new = getattr(getattr(updated, section), name)
    write_config(home.config_path, updated)
    emit(
        args,
        {"key": args.key, "value": new, "previous": previous, "file": str(home.config_path)},
        f"{args.key} = {format_value(new) or '(unset)'}  (was {format_value(previous) or '(unset)'}) in "
        f"{home.config_path}; restart the node to apply",
    )
    return 0


def run(args: argparse.Namespace) -> int:
    return {"get": _get, "set": _set}[args.config_command](args)
