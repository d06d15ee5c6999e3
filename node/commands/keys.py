"""`pocl-node keys`: create, inspect, import and export key files in HOME/keys/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pocl.ledger.keys import SEED_LEN, PrivateKey, format_address
from pocl.ledger.storage.keystore import (
    KeyInfo,
    KeystoreError,
    parse_key_document,
    read_key_document,
    read_key_info,
    save_key,
    write_private_file,
)
from pocl.node.commands._common import (
    add_command_parser,
    add_passphrase_args,
    add_subcommands,
    emit,
    home_of,
    read_passphrase,
    table,
    unlock_key,
)
from pocl.node.errors import UsageError, UserError
from pocl.node.home import ACCOUNT_KEY, EXTRA_KEY_ROLE, KEY_ROLES, NODE_KEY, NodeHome

HELP = "manage keys (new, show, list, import, export)"
DESCRIPTION = """\
Key files live in HOME/keys/NAME.json: account_key (the operator account: txs, stake, mining, rewards),
priv_validator_key (the consensus key: signs block proposals and votes once `tx create-validator` binds
it to the account), node_key (P2P identity) and any account keys you add. The consensus key is never the
account key. Addresses and public keys are readable without the passphrase; exporting a secret needs
--unsafe.
"""
EXPORT_FORMATS = ("keystore", "seed-hex")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "keys", HELP, DESCRIPTION)
    sub = add_subcommands(p, "keys_command")

    new = add_command_parser(sub, "new", "create a new random key")
    new.add_argument("name", help="key name (file HOME/keys/NAME.json)")
    add_passphrase_args(new, allow_insecure=True)

    show = add_command_parser(sub, "show", "show a key's address and public key")
    show.add_argument("name", nargs="?", default=ACCOUNT_KEY, help=f"key name (default: {ACCOUNT_KEY})")

    add_command_parser(sub, "list", "list the keys in HOME/keys")

    imp = add_command_parser(sub, "import", "import a raw seed (hex) or a keystore file")
    imp.add_argument("name", help="name to store the key under")
    src = imp.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--seed-hex-file",
        type=Path,
        metavar="FILE",
        help="file holding the 32-byte seed as hex ('-' = stdin)",
    )
    src.add_argument("--keystore", type=Path, metavar="FILE", help="a pocl keystore JSON file (copied as is)")
    imp.add_argument(
        "--force", action="store_true", help="overwrite an existing key of that name (destroys it)"
    )
    add_passphrase_args(imp, allow_insecure=True)

    exp = add_command_parser(sub, "export", "export a key (secret output needs --unsafe)")
    exp.add_argument("name", nargs="?", default=ACCOUNT_KEY, help=f"key name (default: {ACCOUNT_KEY})")
    exp.add_argument(
        "--format", choices=EXPORT_FORMATS, default="keystore", help="keystore file or raw seed hex"
    )
    exp.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (mode 0600) instead of stdout")
    exp.add_argument("--unsafe", action="store_true", help="confirm that a SECRET may be printed or written")
    add_passphrase_args(exp, allow_insecure=False)
    return p


def _home_keys(args: argparse.Namespace) -> NodeHome:
    home = home_of(args)
    if not home.root.exists():
        raise UserError(f"home {home.root} does not exist (run: pocl-node init --home {home.root})")
    return home


def _existing_key(home: NodeHome, name: str) -> Path:
    path = home.key_path(name)
    if not path.exists():
        known = ", ".join(home.key_names()) or "none"
        raise UserError(f"no key named {name!r} in {home.keys_dir} (known: {known})")
    return path


def key_role(name: str) -> str:
    """What a key of the home is for: the three own keys by name, any other is an extra account."""
    return KEY_ROLES.get(name, EXTRA_KEY_ROLE)


def _info_json(name: str, info: KeyInfo) -> dict[str, Any]:
    data = {**info.to_json(), "name": name, "role": key_role(name)}
    if name == NODE_KEY:
        data["node_id"] = info.pubkey.hex()  # P2P peers are named node_id@host:port
    return data


def _info_text(name: str, info: KeyInfo) -> str:
    return "\n".join(
        [
            f"name       {name}",
            f"role       {key_role(name)}",
            f"address    {format_address(info.address)}",
            f"pubkey     {info.pubkey.hex()}",
            *([f"node id    {info.pubkey.hex()}"] if name == NODE_KEY else []),
            f"encrypted  {'yes' if info.encrypted else 'NO (insecure)'}",
            f"file       {info.path}",
        ]
    )


def _new(args: argparse.Namespace) -> int:
    home = _home_keys(args)
    path = home.key_path(args.name)
    if path.exists():
        raise UserError(f"key {args.name!r} already exists: {path}")
    passphrase = read_passphrase(args, confirm=True, what=f"new key {args.name}")
    info = save_key(path, PrivateKey.generate(), passphrase, insecure_unencrypted=args.insecure_unencrypted)
    emit(args, _info_json(args.name, info), _info_text(args.name, info))
    return 0


def _show(args: argparse.Namespace) -> int:
    home = _home_keys(args)
    info = read_key_info(_existing_key(home, args.name))
    emit(args, _info_json(args.name, info), _info_text(args.name, info))
    return 0


def _list(args: argparse.Namespace) -> int:
    home = _home_keys(args)
    entries: list[tuple[str, KeyInfo | None, str]] = []
    for name in home.key_names():
        try:
            entries.append((name, read_key_info(home.key_path(name)), ""))
        except KeystoreError as exc:  # one bad file must not hide the others
            entries.append((name, None, str(exc)))
    data = [_info_json(name, info) if info else {"name": name, "error": err} for name, info, err in entries]
    rows = [
        [name, key_role(name), format_address(info.address), "yes" if info.encrypted else "NO"]
        if info
        else [name, key_role(name), f"<{err}>", "?"]
        for name, info, err in entries
    ]
    emit(
        args,
        data,
        table(rows, ["NAME", "ROLE", "ADDRESS", "ENCRYPTED"]) if rows else f"no keys in {home.keys_dir}",
    )
    return 0


def _read_seed_hex(path: Path) -> PrivateKey:
    text = (
        sys.stdin.read(4096)
        if str(path) == "-"
        else path.read_text(encoding="utf-8", errors="replace")[:4096]
    )
    body = text.strip()
    if body.startswith(("0x", "0X")):
        body = body[2:]
    try:
        seed = bytes.fromhex(body)
    except ValueError:
        raise UserError(f"seed in {path} is not hex") from None
    if len(seed) != SEED_LEN:
        raise UserError(
            f"seed in {path} must be {SEED_LEN} bytes ({2 * SEED_LEN} hex digits), got {len(seed)} bytes"
        )
    return PrivateKey(seed)


def _import(args: argparse.Namespace) -> int:
    home = _home_keys(args)
    path = home.key_path(args.name)
    if path.exists() and not args.force:
        raise UserError(f"key {args.name!r} already exists: {path} (use --force to replace it)")
    if args.keystore is not None:
        if args.insecure_unencrypted or args.passphrase_file is not None:
            raise UsageError(
                "--keystore copies the file as is: --passphrase-file/--insecure-unencrypted do not apply"
            )
        doc = read_key_document(args.keystore)
        parse_key_document(doc, args.keystore)  # refuse anything that is not a valid key file
        write_private_file(path, (json.dumps(doc, indent=2) + "\n").encode(), overwrite=args.force)
        info = read_key_info(path)
    else:
        key = _read_seed_hex(args.seed_hex_file)
        passphrase = read_passphrase(args, confirm=True, what=f"imported key {args.name}")
        info = save_key(
            path, key, passphrase, insecure_unencrypted=args.insecure_unencrypted, overwrite=args.force
        )
    emit(args, _info_json(args.name, info), f"imported key {args.name!r}\n" + _info_text(args.name, info))
    return 0


def _export(args: argparse.Namespace) -> int:
    home = _home_keys(args)
    path = _existing_key(home, args.name)
    info = read_key_info(path)
    if args.format == "seed-hex":
        if not args.unsafe:
            raise UsageError("exporting the raw seed prints a SECRET: add --unsafe to confirm")
        secret = unlock_key(path, args).seed.hex() + "\n"
    else:
        if not info.encrypted and not args.unsafe:
            raise UsageError(
                f"key {args.name!r} is stored UNENCRYPTED, so exporting it reveals a SECRET: add --unsafe"
            )
        doc = read_key_document(path)
        parse_key_document(doc, path)
        secret = json.dumps(doc, indent=2) + "\n"
    if args.out is not None:
        write_private_file(args.out, secret.encode())
        print(f"wrote {args.format} of key {args.name!r} to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(secret)
    return 0


HANDLERS = {"new": _new, "show": _show, "list": _list, "import": _import, "export": _export}


def run(args: argparse.Namespace) -> int:
    return HANDLERS[args.keys_command](args)
