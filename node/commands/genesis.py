"""`pocl-node genesis`: create and validate genesis files."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from pocl.consensus.pocl.execution import PoclExecution
from pocl.consensus.pocl.params import PoclParams, PoclParamsError
from pocl.genesis.schema import (
    SHIPPED_NAMES,
    Genesis,
    build_genesis,
    load_genesis,
    shipped_genesis_path,
    write_genesis,
)
from pocl.ledger.keys import PUBKEY_LEN, KeyFormatError, format_address, parse_address
from pocl.ledger.params import ChainParams
from pocl.ledger.storage.keystore import read_key_info
from pocl.node.commands._common import add_command_parser, add_subcommands, emit, home_of
from pocl.node.errors import UsageError, UserError
from pocl.node.home import INIT_VALIDATOR_BALANCE, INIT_VALIDATOR_STAKE

HELP = "create or validate a genesis file"
DESCRIPTION = """\
genesis new      build a genesis from validators (PUBKEY_HEX:STAKE[:BALANCE]) and accounts (ADDRESS:BALANCE);
                 without --validator, the home's priv_validator_key is the only validator. --model NAME
                 (e.g. cnn-mnist) sets the PoCL model and raises the tx/block limits it needs (a --param
                 given explicitly is kept as given).
genesis validate check a genesis file (default HOME/genesis.json) and print its hash.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "genesis", HELP, DESCRIPTION)
    sub = add_subcommands(p, "genesis_command")

    new = add_command_parser(sub, "new", "build a new genesis file")
    new.add_argument("--chain-id", required=True, help="chain id (1..64 of A-Z a-z 0-9 . _ -)")
    new.add_argument(
        "--validator",
        action="append",
        default=[],
        metavar="PUBKEY:STAKE[:BALANCE]",
        help="a genesis validator (repeat)",
    )
    new.add_argument(
        "--account", action="append", default=[], metavar="ADDRESS:BALANCE", help="a funded account (repeat)"
    )
    new.add_argument(
        "--param", action="append", default=[], metavar="NAME=INT", help="override a chain parameter (repeat)"
    )
    new.add_argument(
        "--model",
        metavar="NAME",
        help="PoCL model, e.g. cnn-mnist (default cnn-digits); tx/block limits follow",
    )
    new.add_argument("--genesis-time-ms", type=int, help="genesis time in unix ms (default: now)")
    new.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    new.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    val = add_command_parser(sub, "validate", "validate a genesis file and print its hash")
    val.add_argument(
        "file", nargs="?", type=Path, help="genesis file or 'localnet' (default: HOME/genesis.json)"
    )
    return p


def _int(text: str, what: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an integer") from None
    if value < 0:
        raise UsageError(f"{what}: must not be negative")
    return value


def _parse_validator(spec: str) -> tuple[bytes, int, int]:
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"--validator {spec!r}: expected PUBKEY_HEX:STAKE[:BALANCE]")
    try:
        pubkey = bytes.fromhex(parts[0].removeprefix("0x"))
    except ValueError:
        raise UsageError(f"--validator {spec!r}: public key is not hex") from None
    if len(pubkey) != PUBKEY_LEN:
        raise UsageError(f"--validator {spec!r}: public key must be {PUBKEY_LEN} bytes")
    stake = _int(parts[1], f"--validator {spec!r} stake")
    balance = _int(parts[2], f"--validator {spec!r} balance") if len(parts) == 3 else 0
    return pubkey, stake, balance


def _parse_account(spec: str) -> tuple[bytes, int]:
    address_text, sep, balance_text = spec.rpartition(":")
    if not sep:
        raise UsageError(f"--account {spec!r}: expected ADDRESS:BALANCE")
    try:
        address = parse_address(address_text)
    except KeyFormatError as exc:
        raise UsageError(f"--account {spec!r}: {exc}") from None
    return address, _int(balance_text, f"--account {spec!r} balance")


def _param_values(specs: list[str]) -> dict[str, int]:
    known = {f.name for f in dataclasses.fields(ChainParams)}
    values: dict[str, int] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep:
            raise UsageError(f"--param {spec!r}: expected NAME=INT")
        if name not in known:
            raise UsageError(f"--param {spec!r}: unknown parameter (known: {', '.join(sorted(known))})")
        values[name] = _int(value, f"--param {name}")
    return values


def _model_genesis(model: str | None, values: dict[str, int]) -> tuple[dict[str, Any], ChainParams]:
    """The `pocl` section and chain params: without a model, the defaults (cnn-digits) and the --param
    values; with one, limits fitted to it (`genesis.models.fit_model`) except the --param ones."""
    params = ChainParams.from_json(values)
    if model is None:
        return {}, params
    from pocl.genesis.models import ModelFitError, fit_model

    try:
        return fit_model(model, None, params, fixed=values.keys())
    except ModelFitError as exc:
        raise UsageError(f"--model: {exc}") from None


def check_pocl(genesis: Genesis, path: Path) -> PoclParams:
    """The genesis `pocl` section as every node will load it (`PoclExecution`): model known, economics that
    deter cheating, windows and tx sizes that fit the chain params; a refusal is one line naming the field."""
    try:
        params = PoclParams.from_json(genesis.pocl)
        PoclExecution(params, genesis.params)
    except PoclParamsError as exc:
        raise UserError(f"invalid genesis {path}: {exc}") from None
    return params


def _summary(g: Genesis) -> dict[str, Any]:
    return {
        "chain_id": g.chain_id,
        "hash": g.hash.hex(),
        "genesis_time_ms": g.genesis_time_ms,
        "validators": [
            {
                "address": format_address(v.address),
                "pubkey": v.pubkey.hex() if v.pubkey else None,
                "stake": v.stake,
            }
            for v in g.validators
        ],
        "accounts": len(g.accounts),
        "total_stake": g.total_stake,
        "total_supply": g.total_supply,
    }


def _new(args: argparse.Namespace) -> int:
    validators = [_parse_validator(s) for s in args.validator]
    accounts = [_parse_account(s) for s in args.account]
    pocl, params = _model_genesis(args.model, _param_values(args.param))
    if not validators:
        home = home_of(args)
        if not home.validator_key_path.exists():
            raise UserError(
                f"no --validator given and no validator key in {home.keys_dir} (pass --validator PUBKEY:STAKE or --home)"
            )
        info = read_key_info(home.validator_key_path)
        validators = [(info.pubkey, INIT_VALIDATOR_STAKE, INIT_VALIDATOR_BALANCE)]
    genesis = build_genesis(
        args.chain_id,
        validators,
        accounts=accounts,
        params=params,
        genesis_time_ms=args.genesis_time_ms if args.genesis_time_ms is not None else int(time.time() * 1000),
        pocl=pocl,
    )
    check_pocl(genesis, args.out or Path("(stdout)"))  # never write a genesis every node would refuse
    if args.out is None:
        sys.stdout.write(genesis.to_json_text())
        return 0
    if args.out.exists() and not args.force:
        raise UserError(f"{args.out} already exists (use --force to overwrite)")
    write_genesis(args.out, genesis)
    pocl_params = PoclParams.from_json(genesis.pocl)
    emit(
        args,
        {"file": str(args.out), **_summary(genesis), "model": pocl_params.model},
        f"wrote {args.out}\n  chain id      {genesis.chain_id}\n  genesis hash  {genesis.hash.hex()}\n"
        f"  model         {pocl_params.model} (max_pocl_tx_bytes {genesis.params.max_pocl_tx_bytes}, "
        f"max_block_bytes {genesis.params.max_block_bytes})",
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    home = home_of(args)
    path = args.file
    if path is None:
        path = home.genesis_path
        if not path.exists():
            home.require()
    elif not path.exists() and str(path) in SHIPPED_NAMES:
        path = shipped_genesis_path(str(path))
    elif not path.exists():
        raise UserError(f"genesis file {path} not found")
    genesis = load_genesis(path)
    pocl = check_pocl(genesis, path)
    summary = {"file": str(path), "valid": True, **_summary(genesis)}
    summary["pocl"] = {
        "model": pocl.model,
        "max_round_blocks": pocl.max_round_blocks(),
        "max_miners": pocl.max_miners,
    }
    lines = [
        f"genesis OK: {path}",
        f"  chain id      {genesis.chain_id}",
        f"  genesis hash  {genesis.hash.hex()}",
        f"  validators    {len(genesis.validators)} (total stake {genesis.total_stake})",
        f"  accounts      {len(genesis.accounts)} (total supply {genesis.total_supply})",
        f"  pocl          {pocl.model}, K={pocl.winners}, at most {pocl.max_round_blocks()} blocks a round, "
        f"{pocl.max_miners} miners",
    ]
    if args.file is None and home.validator_key_path.exists():
        own = read_key_info(home.validator_key_path).address
        is_val = any(v.address == own for v in genesis.validators)
        summary["this_node_is_validator"] = is_val
        lines.append(
            f"  this node     {format_address(own)} ({'validator' if is_val else 'not a validator'})"
        )
    emit(args, summary, "\n".join(lines))
    return 0


def run(args: argparse.Namespace) -> int:
    return {"new": _new, "validate": _validate}[args.genesis_command](args)
