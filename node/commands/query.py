"""`pocl-node query`: read a node's state over RPC (human tables by default, `--json` for scripts)."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from pocl.node.commands._common import (
    add_command_parser,
    add_subcommands,
    emit,
    looks_like_address,
    named_key_info,
    table,
)
from pocl.node.errors import UsageError, UserError
from pocl.node.home import ACCOUNT_KEY
from pocl.node.rpc.client import RpcClient, RpcRequestError, add_node_args, client_for

HELP = "query a node over RPC (status, account, block, tx, validators, round, miner, peers, mempool)"
DESCRIPTION = """\
Reads from a running node (--node URL, default: this home's RPC address).

examples:
  pocl-node query status
  pocl-node query account 0x1234…abcd
  pocl-node query block 42          (or: latest, or a block hash)
  pocl-node query tx 9f86…
  pocl-node query validators --json
  pocl-node query round             (the open PoCL round, or: a round number)
  pocl-node query miner             (this home's account as a miner, or: an address)
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "query", HELP, DESCRIPTION)
    sub = add_subcommands(p, "query_command")
    add_node_args(add_command_parser(sub, "status", "the node's status"))
    a = add_command_parser(sub, "account", "an account's balance, nonce and stake")
    a.add_argument("address", metavar="ADDRESS", help="0x address, or the name of a key in HOME/keys")
    add_node_args(a)
    b = add_command_parser(sub, "block", "a block by height or hash")
    b.add_argument("ref", nargs="?", default="latest", metavar="HEIGHT|HASH", help="default: latest")
    b.add_argument("--commit", action="store_true", help="show the block's commit certificate instead")
    add_node_args(b)
    t = add_command_parser(sub, "tx", "a transaction by hash (committed or pending)")
    t.add_argument("hash", metavar="HASH")
    add_node_args(t)
    add_node_args(add_command_parser(sub, "validators", "the validator set for the next block"))
    r = add_command_parser(sub, "round", "a PoCL round: phase, participants, winners, rewards, slashes")
    r.add_argument("round", nargs="?", default="latest", metavar="N", help="round number (default: latest)")
    add_node_args(r)
    m = add_command_parser(
        sub, "miner", "a miner: registration, eligibility, next round, stake, jail, last reward and penalty"
    )
    m.add_argument(
        "address",
        nargs="?",
        default=ACCOUNT_KEY,
        metavar="ADDRESS",
        help=f"0x address, or the name of a key in HOME/keys (default: {ACCOUNT_KEY}, this home's account)",
    )
    add_node_args(m)
    add_node_args(add_command_parser(sub, "peers", "connected peers"))
    add_node_args(add_command_parser(sub, "mempool", "pending transactions"))
    return p


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _kv(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _status(client: RpcClient) -> tuple[dict[str, Any], str]:
    st = client.status()
    val = st.get("validator")
    rows = [
        ("chain id", st["chain_id"]),
        ("moniker", st.get("moniker", "")),
        ("node id", st["node_id"]),
        ("height", st["height"]),
        ("latest block", st["latest_block_hash"] or "-"),
        ("block time", _time(st["latest_block_time_ms"]) if st.get("latest_block_time_ms") else "-"),
        ("peers", st["peers"]),
        ("syncing", "yes" if st["syncing"] else "no"),
        ("mempool", f"{st.get('mempool', {}).get('txs', 0)} txs"),
        ("validator", _own_validator_text(val)),
        ("p2p", st.get("p2p", "")),
    ]
    return st, _kv(rows)


def _own_validator_text(val: dict[str, Any] | None) -> str:
    """The node as a validator: operator, consensus address, power (or why it does not validate)."""
    if not val:
        return "no (full node: no consensus key loaded)"
    operator = val.get("operator") or "?"
    if not val.get("registered", True):
        return f"no: consensus key {val['address']} not bound to an account (pocl-node tx create-validator)"
    state = f"power {val['voting_power']}" if val["active"] else "inactive: not in the validator set"
    return f"{operator} (consensus key {val['address']}, {state})"


def jail_text(acct: dict[str, Any]) -> str:
    """`height H` (double-sign jail), `round R` (PoCL miner jail), both, or "" when not jailed.

    A zero bound means "no jail of that kind", so it is left out rather than shown as `height 0`.
    """
    bounds = {kind: acct.get(f"jailed_until_{kind}") or 0 for kind in ("height", "round")}
    return ", ".join(f"{kind} {until}" for kind, until in bounds.items() if until)


def _account(client: RpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    text: str = args.address
    if not looks_like_address(text):
        text = named_key_info(args, text).address_hex
    acct = client.account(text)
    rows = [
        ("address", acct["address"]),
        ("exists", "yes" if acct["exists"] else "no"),
        ("balance", acct["balance"]),
        ("stake", acct["stake"]),
        ("nonce", acct["nonce"]),
        ("pending nonce", acct["pending_nonce"]),
    ]
    for u in acct.get("unbonding", []):
        rows.append(("unbonding", f"{u['amount']} (released at height {u['release_height']})"))
    jail = jail_text(acct)
    if jail:
        rows.append(("jailed until", jail))
    if acct.get("slashed_total"):
        rows.append(("slashed total", acct["slashed_total"]))
    return acct, _kv(rows)


def _block(client: RpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    ref: str = args.ref
    if args.commit:
        if ref == "latest":
            ref = str(client.status()["height"])
        c = client.get(f"/blocks/{ref}/commit")
        sigs = [[s["validator"], s["signature"][:16] + "…"] for s in c["signatures"]]
        human = _kv([("height", c["height"]), ("round", c["round"]), ("block hash", c["block_hash"])])
        return c, human + "\n\n" + table(sigs, ["VALIDATOR", "SIGNATURE"])
    b = client.get(f"/blocks/{ref}")
    h = b["header"]
    rows = [
        ("height", h["height"]),
        ("hash", b["hash"]),
        ("time", _time(h["time_ms"])),
        ("proposer", h["proposer"]),
        ("prev hash", h["prev_hash"]),
        ("state root", h["state_root"]),
        ("txs", b["num_txs"]),
        ("signatures", len(b["last_commit"]["signatures"]) if b.get("last_commit") else 0),
    ]
    human = _kv(rows)
    txs = b.get("txs") or []
    if txs:
        human += "\n\n" + table(
            [
                [
                    t.get("hash", "")[:16] + "…",
                    t.get("kind", "?"),
                    t.get("sender", ""),
                    str(t.get("nonce", "")),
                ]
                for t in txs
            ],
            ["TX", "KIND", "SENDER", "NONCE"],
        )
    return b, human


def _tx(client: RpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    t = client.tx(args.hash)
    rows = [
        ("hash", t["hash"]),
        ("status", t["status"] + (f" at height {t['height']} (index {t['index']})" if "height" in t else "")),
        ("kind", t["kind"]),
        ("sender", t["sender"]),
        ("nonce", t["nonce"]),
        ("fee", t["fee"]),
        ("payload", t["payload"]),
        ("size", f"{t['size']} bytes"),
    ]
    return t, _kv(rows)


def _validators(client: RpcClient) -> tuple[dict[str, Any], str]:
    v = client.get("/validators")
    total = v["total_power"] or 1
    rows = [
        [x.get("operator", ""), x["address"], str(x["power"]), f"{100 * x['power'] / total:.1f}%"]
        for x in v["validators"]
    ]
    human = f"validator set for height {v['height']} (total power {v['total_power']})\n\n"
    return v, human + table(rows, ["OPERATOR", "CONSENSUS ADDRESS", "POWER", "SHARE"])


def _round(client: RpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    ref: str = args.round
    if ref != "latest" and not ref.isdigit():
        raise UsageError(f"round must be a number or 'latest', got {ref!r}")
    r = client.get(f"/rounds/{ref}")
    parts = r.get("participants", {})
    rows: list[tuple[str, Any]] = [
        ("round", r["round"]),
        ("phase", r["phase"] + (" (final)" if r.get("final") else "")),
        ("heights", f"{r['start_height']} .. {r['end_height'] or '?'}"),
        ("eligible", len(parts.get("eligible", []))),
        ("committed", len(parts.get("committers", []))),
        ("shards opened", len(parts.get("shard_owners", []))),
        ("predicted", len(parts.get("predictors", []))),
        ("voted", len(parts.get("voters", []))),
        ("global model", r.get("global_model_hash", "") or "-"),
    ]
    if r.get("final"):
        rows.append(
            ("outcome", "void" + (f" ({r['reason']})" if r.get("reason") else "") if r.get("void") else "ok")
        )
        rows.append(("winners", ", ".join(r.get("winners", [])) or "-"))
        rows.append(("total reward", r.get("total_reward", 0)))
    human = _kv(rows)
    if r.get("rewards"):
        human += "\n\n" + table(
            [[x["address"], x["role"], str(x["amount"])] for x in r["rewards"]],
            ["REWARDED", "ROLE", "AMOUNT"],
        )
    if r.get("slashes"):
        human += "\n\n" + table(
            [
                [x["address"], x["kind"], f"{x['slash_bps'] / 100:g}%", str(x["jail_rounds"])]
                for x in r["slashes"]
            ],
            ["SLASHED", "KIND", "SLASH", "JAIL ROUNDS"],
        )
    return r, human


def _miner(client: RpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    text: str = args.address
    if not looks_like_address(text):
        text = named_key_info(args, text).address_hex
    try:
        m = client.get(f"/miners/{text}")
    except RpcRequestError as exc:
        if exc.code == "miner_not_found":
            raise UserError(
                f"{text} is not known to the chain: no account, never registered as a miner "
                "(fund it, stake, then: pocl-node tx register-miner)"
            ) from None
        raise
    return m, miner_text(m)


def miner_text(m: dict[str, Any]) -> str:
    """`query miner`'s summary: one line per question an operator asks."""
    registered = "yes" if m["registered"] else "no (pocl-node tx register-miner)"
    if m["open_round"]:
        now = f"round {m['open_round']}: " + ("eligible" if m["eligible_now"] else "not eligible")
    else:
        now = "no round open"
    start = f" (opens at height {m['next_round_start']})" if m["next_round_start"] else ""
    nxt = "eligible" if m["eligible_next"] else "not eligible: " + "; ".join(m["not_eligible_reasons"])
    stake = f"{m['stake']} (min_miner_stake {m['min_miner_stake']})"
    jail = jail_text(m)
    rows: list[tuple[str, Any]] = [
        ("address", m["address"]),
        ("registered", registered),
        ("stake", stake),
        ("open round", now),
        (f"next round {m['next_round']}", nxt + start),
        ("jailed until", jail or "not jailed"),
        ("missed rounds", f"{m['missed_rounds']} in a row (jailed at {m['max_missed_rounds']})"),
    ]
    r = m.get("last_reward")
    rows.append(
        ("last reward", f"{r['amount']} in round {r['round']} ({', '.join(r['roles'])})" if r else "none")
    )
    p = m.get("last_penalty")
    rows.append(
        (
            "last penalty",
            f"{p['kind']} in round {p['round']} (slashed {p['slash_bps'] / 100:g}%, jailed {p['jail_rounds']} rounds)"
            if p
            else "none",
        )
    )
    rows.append(("at height", m["height"]))
    return _kv(rows)


def _peers(client: RpcClient) -> tuple[dict[str, Any], str]:
    p = client.get("/peers")
    rows = [
        [
            x["node_id"][:16] + "…",
            "out" if x["outbound"] else "in",
            x.get("listen_addr", ""),
            x.get("agent", ""),
        ]
        for x in p["peers"]
    ]
    return p, f"{len(rows)} peers\n\n" + table(
        rows, ["NODE ID", "DIR", "LISTEN", "AGENT"]
    ) if rows else "no peers"


def _mempool(client: RpcClient) -> tuple[dict[str, Any], str]:
    m = client.get("/mempool")
    rows = [[t["hash"][:16] + "…", t["kind"], t["sender"], str(t["nonce"]), str(t["fee"])] for t in m["txs"]]
    human = f"{m['count']} txs, {m['bytes']} bytes"
    if rows:
        human += "\n\n" + table(rows, ["TX", "KIND", "SENDER", "NONCE", "FEE"])
    return m, human


def run(args: argparse.Namespace) -> int:
    client = client_for(args)
    cmd = args.query_command
    if cmd == "status":
        data, human = _status(client)
    elif cmd == "account":
        data, human = _account(client, args)
    elif cmd == "block":
        data, human = _block(client, args)
    elif cmd == "tx":
        data, human = _tx(client, args)
    elif cmd == "validators":
        data, human = _validators(client)
    elif cmd == "round":
        data, human = _round(client, args)
    elif cmd == "miner":
        data, human = _miner(client, args)
    elif cmd == "peers":
        data, human = _peers(client)
    elif cmd == "mempool":
        data, human = _mempool(client)
    else:
        raise UsageError(f"unknown query {cmd!r}")
    emit(args, data, human)
    return 0
