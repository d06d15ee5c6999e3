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
    GenesisValidator,
    build_genesis,
    load_genesis,
    shipped_genesis_path,
    write_genesis,
)
from pocl.ledger.keys import PUBKEY_LEN, KeyFormatError, address_of, format_address, parse_address
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.storage.keystore import read_key_info
from pocl.node.commands._common import add_command_parser, add_subcommands, emit, home_of
from pocl.node.errors import UsageError, UserError
from pocl.node.home import INIT_VALIDATOR_BALANCE, INIT_VALIDATOR_STAKE

HELP = "create or validate a genesis file"
DESCRIPTION = """\
genesis new      build a genesis from validators (ACCOUNT_PUBKEY:CONSENSUS_PUBKEY:STAKE[:BALANCE]), accounts
                 (ADDRESS:BALANCE) and miners (--miner ADDRESS: a validator's or an account's address);
                 without --validator, the home's account is the only validator (with the home's consensus
                 key, keys/priv_validator_key.json) and a registered miner. --model NAME
                 (e.g. cnn-mnist) sets the PoCL model and raises the tx/block limits it needs (a --param
                 given explicitly is kept as given).
genesis validate check a genesis file (default HOME/genesis.json) and print its hash.
genesis hash     print only the hash of a genesis file (default HOME/genesis.json): what a joiner passes
                 to `init --join URL --genesis-hash HASH`.
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
        metavar="ACCOUNT_PUBKEY:CONSENSUS_PUBKEY:STAKE[:BALANCE]",
        help="a genesis validator: its account key and its separate consensus key (repeat)",
    )
    new.add_argument(
        "--miner",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="register this validator's or account's address as a miner at genesis (repeat)",
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
    hsh = add_command_parser(sub, "hash", "print the hash of a genesis file (for init --join --genesis-hash)")
    hsh.add_argument(
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


def _pubkey(text: str, spec: str, what: str) -> bytes:
    try:
        pubkey = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise UsageError(f"--validator {spec!r}: {what} is not hex") from None
    if len(pubkey) != PUBKEY_LEN:
        raise UsageError(f"--validator {spec!r}: {what} must be {PUBKEY_LEN} bytes")
    return pubkey


def _parse_validator(spec: str) -> GenesisValidator:
    parts = spec.split(":")
    if len(parts) not in (3, 4) or len(parts[1].removeprefix("0x")) != 2 * PUBKEY_LEN:
        raise UsageError(
            f"--validator {spec!r}: expected ACCOUNT_PUBKEY:CONSENSUS_PUBKEY:STAKE[:BALANCE] "
            "(a validator signs votes with a consensus key of its own)"
        )
    account = _pubkey(parts[0], spec, "account public key")
    consensus = _pubkey(parts[1], spec, "consensus public key")
    if account == consensus:
        raise UsageError(f"--validator {spec!r}: the consensus key must differ from the account key")
    stake = _int(parts[2], f"--validator {spec!r} stake")
    balance = _int(parts[3], f"--validator {spec!r} balance") if len(parts) == 4 else 0
    return GenesisValidator(account, consensus, stake, balance)


def _parse_miner(spec: str) -> bytes:
    try:
        return parse_address(spec)
    except KeyFormatError as exc:
        raise UsageError(f"--miner {spec!r}: {exc}") from None


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
                "consensus_pubkey": v.consensus_pubkey.hex() if v.consensus_pubkey else None,
                "stake": v.stake,
                "miner": v.miner,
            }
            for v in g.validators
        ],
        "miners": [format_address(a.address) for a in g.miners],
        "accounts": len(g.accounts),
        "total_stake": g.total_stake,
        "total_supply": g.total_supply,
    }


def _home_validator(args: argparse.Namespace) -> GenesisValidator:
    """The home's account with the home's consensus key, as validator and miner (`genesis new` alone)."""
    home = home_of(args)
    paths = (home.account_key_path, home.consensus_key_path)
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(
            f"no --validator given and no {missing[0].name} in {home.keys_dir} "
            "(pass --validator ACCOUNT_PUBKEY:CONSENSUS_PUBKEY:STAKE or --home)"
        )
    account, consensus = (read_key_info(p).pubkey for p in paths)
    return GenesisValidator(account, consensus, INIT_VALIDATOR_STAKE, INIT_VALIDATOR_BALANCE, miner=True)


def _new(args: argparse.Namespace) -> int:
    validators = [_parse_validator(s) for s in args.validator]
    plain = [_parse_account(s) for s in args.account]
    miners = {_parse_miner(s) for s in args.miner}
    pocl, params = _model_genesis(args.model, _param_values(args.param))
    if not validators:
        validators = [_home_validator(args)]
    validators = [dataclasses.replace(v, miner=v.miner or address_of(v.pubkey) in miners) for v in validators]
    known = {address_of(v.pubkey) for v in validators} | {a for a, _ in plain}
    unknown = sorted(miners - known)
    if unknown:
        raise UsageError(
            f"--miner {format_address(unknown[0])}: not a --validator's or an --account's address"
        )
    accounts = [GenesisAccount(address=a, balance=b, miner=a in miners) for a, b in plain]
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


def _genesis_file(args: argparse.Namespace) -> Path:
    """The file of `validate`/`hash`: FILE, a shipped name, else HOME/genesis.json."""
    home = home_of(args)
    path: Path | None = args.file
    if path is None:
        path = home.genesis_path
        if not path.exists():
            home.require()
    elif not path.exists() and str(path) in SHIPPED_NAMES:
        path = shipped_genesis_path(str(path))
    elif not path.exists():
        raise UserError(f"genesis file {path} not found")
    return path


def _hash(args: argparse.Namespace) -> int:
    path = _genesis_file(args)
    genesis = load_genesis(path)
    emit(
        args,
        {"file": str(path), "chain_id": genesis.chain_id, "hash": genesis.hash.hex()},
        genesis.hash.hex(),
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    home = home_of(args)
    path = _genesis_file(args)
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
        f"  miners        {len(genesis.miners)} registered at genesis",
        f"  accounts      {len(genesis.accounts)} (total supply {genesis.total_supply})",
        f"  pocl          {pocl.model}, K={pocl.winners}, at most {pocl.max_round_blocks()} blocks a round, "
        f"{pocl.max_miners} miners",
    ]
    if args.file is None and home.account_key_path.exists():
        own = read_key_info(home.account_key_path).address
        consensus = (
            read_key_info(home.consensus_key_path).pubkey if home.consensus_key_path.exists() else None
        )
        is_val = any(v.address == own and v.consensus_pubkey == consensus for v in genesis.validators)
        is_miner = any(a.address == own for a in genesis.miners)
        summary["this_node_is_validator"] = is_val
        summary["this_node_is_miner"] = is_miner
        roles_text = ", ".join(r for r, yes in (("validator", is_val), ("miner", is_miner)) if yes)
        lines.append(f"  this node     {format_address(own)} ({roles_text or 'no role at genesis'})")
    emit(args, summary, "\n".join(lines))
    return 0


def run(args: argparse.Namespace) -> int:
    return {"new": _new, "validate": _validate, "hash": _hash}[args.genesis_command](args)
