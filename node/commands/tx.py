"""`pocl-node tx`: build and sign a transaction locally, send it over RPC, optionally wait for it.

The key never leaves this process: the nonce (`pending_nonce`, counting the sender's txs already in
the node's mempool) and the chain id come from the node's RPC, the signature is made here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pocl.ledger.keys import KeyFormatError, PrivateKey, address_of, format_address, parse_address
from pocl.ledger.tx import (
    MAX_AMOUNT,
    SignedTx,
    make_create_validator,
    make_register_miner,
    make_stake,
    make_transfer,
    make_unregister_miner,
    make_unstake,
)
from pocl.node.commands._common import (
    add_command_parser,
    add_passphrase_args,
    add_subcommands,
    emit,
    home_of,
    looks_like_address,
    named_key_info,
    unlock_key,
)
from pocl.node.errors import UsageError, UserError
from pocl.node.home import ACCOUNT_KEY, CONSENSUS_KEY
from pocl.node.rpc.client import RpcClient, RpcRequestError, add_node_args, client_for

HELP = (
    "sign a transaction locally and send it to a node "
    "(transfer, stake, unstake, create-validator, register-miner, unregister-miner)"
)
DESCRIPTION = """\
Signs with a key from HOME/keys (--from NAME, default account_key) or a key file (--key FILE),
takes the nonce and chain id from the node (--node URL, default: this home's RPC address) and submits
the transaction. --wait polls until it is committed and prints the height.

Roles are explicit: stake alone makes neither a validator nor a miner.
  create-validator  binds this home's consensus key (keys/priv_validator_key.json) to the account; with
                    enough stake the account's node then signs blocks with that key
  register-miner    the account takes part in PoCL rounds (with enough stake) from the next round
  unregister-miner  leaves the eligible set from the next round (no downtime jailing once out)

examples:
  pocl-node tx transfer 0x1234…abcd 1000 --wait
  pocl-node tx stake 5000 --from mykey
  pocl-node tx create-validator --wait && pocl-node tx stake 1000000 --wait
  pocl-node tx register-miner --wait
  pocl-node tx unstake 5000 --key ./faucet_key.json --node http://127.0.0.1:26657
"""
ROLE_COMMANDS = ("create-validator", "register-miner", "unregister-miner")
DEFAULT_FEE = 10
EXIT_REJECTED = 3  # the node refused the tx (distinct from 1 = unreachable/other, 2 = usage)
DEFAULT_WAIT_S = 60.0
POLL_S = 0.25


def _amount(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer amount: {text!r}") from None
    if not 0 < value <= MAX_AMOUNT:
        raise argparse.ArgumentTypeError(f"amount must be between 1 and {MAX_AMOUNT}, got {value}")
    return value


def _fee(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer fee: {text!r}") from None
    if not 0 <= value <= MAX_AMOUNT:
        raise argparse.ArgumentTypeError(f"fee must be between 0 and {MAX_AMOUNT}, got {value}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--from",
        dest="from_key",
        metavar="NAME",
        help=f"sign with HOME/keys/NAME.json (default: {ACCOUNT_KEY})",
    )
    src.add_argument("--key", type=Path, metavar="FILE", help="sign with this key file instead")
    p.add_argument("--fee", type=_fee, default=DEFAULT_FEE, help=f"fee (default {DEFAULT_FEE})")
    p.add_argument(
        "--nonce", type=int, metavar="N", help="use this nonce (default: the node's pending nonce)"
    )
    p.add_argument("--wait", action="store_true", help="wait until the tx is committed; print its height")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"give up waiting after S seconds (default {DEFAULT_WAIT_S:g})",
    )
    add_node_args(p)
    add_passphrase_args(p, allow_insecure=False)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "tx", HELP, DESCRIPTION)
    sub = add_subcommands(p, "tx_command")
    t = add_command_parser(sub, "transfer", "send coins to an address")
    t.add_argument("to", metavar="TO", help="recipient: 0x address, or the name of a key in HOME/keys")
    t.add_argument("amount", type=_amount, metavar="AMOUNT")
    _common(t)
    s = add_command_parser(
        sub, "stake", "bond coins from the balance as stake (a validator's power, a miner's eligibility)"
    )
    s.add_argument("amount", type=_amount, metavar="AMOUNT")
    _common(s)
    u = add_command_parser(sub, "unstake", "start unbonding stake (released after the unbonding period)")
    u.add_argument("amount", type=_amount, metavar="AMOUNT")
    _common(u)
    cv = add_command_parser(
        sub, "create-validator", "bind this home's consensus key to the account (it validates once staked)"
    )
    cv.add_argument(
        "--consensus-key",
        type=Path,
        metavar="FILE",
        help=f"the consensus key file (default: HOME/keys/{CONSENSUS_KEY}.json)",
    )
    _common(cv)
    _common(add_command_parser(sub, "register-miner", "register the account as a PoCL miner"))
    _common(add_command_parser(sub, "unregister-miner", "leave the PoCL miners from the next round"))
    return p


def signing_key(args: argparse.Namespace) -> PrivateKey:
    if args.key is not None:
        if not args.key.exists():
            raise UserError(f"key file {args.key} not found")
        return unlock_key(args.key, args)
    home = home_of(args)
    path = home.key_path(args.from_key or ACCOUNT_KEY)
    if not path.exists():
        raise UserError(
            f"no key {path.stem!r} in {home.keys_dir} (see: pocl-node keys list, or use --key FILE)"
        )
    return unlock_key(path, args)


def consensus_key(args: argparse.Namespace, account: PrivateKey) -> PrivateKey:
    """The key `create-validator` binds: --consensus-key FILE, else the home's; never the account key."""
    path: Path = args.consensus_key or home_of(args).key_path(CONSENSUS_KEY)
    if not path.exists():
        raise UserError(
            f"no consensus key at {path} (pocl-node init makes one; or pass --consensus-key FILE)"
        )
    key = unlock_key(path, args)
    if key.pubkey == account.pubkey:
        raise UserError(f"{path} holds the account key itself: the consensus key must be a separate key")
    return key


def recipient(args: argparse.Namespace) -> bytes:
    text: str = args.to
    if looks_like_address(text):
        try:
            return parse_address(text)
        except KeyFormatError as exc:
            raise UserError(f"bad recipient address: {exc}") from None
    return named_key_info(args, text, "recipient ").address


def build(args: argparse.Namespace, key: PrivateKey, chain_id: str, nonce: int) -> SignedTx:
    if args.tx_command == "transfer":
        return make_transfer(key, chain_id, nonce, recipient(args), args.amount, args.fee)
    if args.tx_command == "stake":
        return make_stake(key, chain_id, nonce, args.amount, args.fee)
    if args.tx_command == "unstake":
        return make_unstake(key, chain_id, nonce, args.amount, args.fee)
    if args.tx_command == "create-validator":
        return make_create_validator(key, consensus_key(args, key), chain_id, nonce, args.fee)
    if args.tx_command == "register-miner":
        return make_register_miner(key, chain_id, nonce, args.fee)
    if args.tx_command == "unregister-miner":
        return make_unregister_miner(key, chain_id, nonce, args.fee)
    raise UsageError(f"unknown tx command {args.tx_command!r}")


def wait_committed(client: RpcClient, tx_hash: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = client.tx(tx_hash)
            if info.get("status") == "committed":
                return info
        except RpcRequestError as exc:
            if exc.code != "tx_not_found":
                raise
        if time.monotonic() >= deadline:
            raise UserError(
                f"tx {tx_hash} not committed within {timeout:g}s (it may still be; "
                f"check: pocl-node query tx {tx_hash})"
            )
        time.sleep(POLL_S)


def run(args: argparse.Namespace) -> int:
    if args.wait_timeout <= 0:
        raise UsageError("--wait-timeout must be positive")
    if args.nonce is not None and args.nonce < 0:
        raise UsageError("--nonce must not be negative")
    if args.tx_command == "transfer":
        recipient(args)  # fail on a bad recipient before asking for a passphrase
    key = signing_key(args)
    client = client_for(args)
    chain_id = client.status()["chain_id"]
    sender = format_address(key.address)
    nonce = args.nonce if args.nonce is not None else int(client.account(sender)["pending_nonce"])
    stx = build(args, key, chain_id, nonce)
    try:
        tx_hash = client.submit_tx(stx.raw)["hash"]
    except RpcRequestError as exc:
        raise UserError(f"tx rejected: {exc.message} ({exc.code})", exit_code=EXIT_REJECTED) from None
    out: dict[str, Any] = {
        "hash": tx_hash,
        "kind": stx.tx.kind,
        "sender": sender,
        "nonce": nonce,
        "fee": args.fee,
        "status": "submitted",
    }
    if args.tx_command in ROLE_COMMANDS:
        what = f"{stx.tx.kind} for {sender}"
    else:
        out["amount"] = args.amount
        what = f"{stx.tx.kind} of {args.amount}"
    if args.tx_command == "create-validator":
        out["consensus_address"] = format_address(address_of(bytes(stx.tx.payload[0])))
        what += f" (consensus key {out['consensus_address']})"
    if args.tx_command == "transfer":
        out["to"] = format_address(recipient(args))
        what += f" to {out['to']}"
    human = f"submitted {what} (nonce {nonce}, fee {args.fee})\ntx hash: {tx_hash}"
    if args.wait:
        info = wait_committed(client, tx_hash, args.wait_timeout)
        out.update({"status": "committed", "height": info["height"], "index": info["index"]})
        human += f"\ncommitted at height {info['height']}"
    emit(args, out, human)
    return 0
