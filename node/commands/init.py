"""`pocl-node init`: create a node home (keys, genesis, config)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pocl.ledger.keys import format_address
from pocl.node.commands._common import add_command_parser, add_passphrase_args, emit, home_of, read_passphrase
from pocl.node.config import Config
from pocl.node.errors import UsageError
from pocl.node.home import init_home, resolve_genesis_source
from pocl.node.join import JoinSource, check_genesis_hash, fetch_join_source, parse_genesis_hash

HELP = "create a node home: keys, genesis.json, config.toml"
DESCRIPTION = """\
Create a node home directory with three keys: the account (keys/account_key.json: txs, stake, mining),
the consensus key (keys/priv_validator_key.json: signs proposals and votes) and the P2P node key.
Without --genesis, writes a single-validator genesis whose only validator (and miner) is this node's
account with its consensus key, so the node can run a one-node chain at once. With --genesis FILE (or
the shipped name localnet), joins that chain instead.

Keys are encrypted with a passphrase from --passphrase-file, $POCL_PASSPHRASE or a prompt;
--insecure-unencrypted stores them in clear (throwaway devnets only). Existing keys are reused.

--join URL --genesis-hash HASH joins a live network from its node's RPC: fetches URL/genesis, refuses
it unless its hash is HASH (ask the network's operators for it), and writes as persistent peers the
node that answered and the peers it reports (URL/net_info). Nothing is written on any failure.
--peers, --seeds, --external-addr, --p2p-laddr and --rpc-laddr set config.toml at once (later:
pocl-node config set KEY VALUE).

examples:
  pocl-node init --home ./n1 --insecure-unencrypted
  pocl-node init --home ./joiner --join http://10.20.0.1:26657 --genesis-hash 3f2a…
      --external-addr 203.0.113.7:26656
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "init", HELP, DESCRIPTION)
    p.add_argument(
        "--chain-id", help="chain id of the new single-validator genesis (default: pocl-local-XXXXXX)"
    )
    p.add_argument("--genesis", metavar="FILE", help="join the chain of this genesis file (or: localnet)")
    p.add_argument("--moniker", help="human-readable node name (config node.moniker)")
    p.add_argument(
        "--force", action="store_true", help="rewrite config.toml and genesis.json of an existing home"
    )
    network = p.add_argument_group("network (config.toml [p2p] and [rpc])")
    network.add_argument("--join", metavar="URL", help="fetch genesis and peers from this node's RPC URL")
    network.add_argument(
        "--genesis-hash",
        metavar="HEX",
        help="the genesis hash to accept (with or without 0x; required with --join, checked with --genesis)",
    )
    network.add_argument("--peers", metavar="ID@HOST:PORT,…", help="persistent peers, comma-separated")
    network.add_argument("--seeds", metavar="ID@HOST:PORT,…", help="seed nodes, comma-separated")
    network.add_argument("--external-addr", metavar="HOST:PORT", help="the address peers should dial")
    network.add_argument(
        "--p2p-laddr", metavar="HOST:PORT", help="P2P listen address (default 0.0.0.0:26656)"
    )
    network.add_argument(
        "--rpc-laddr", metavar="HOST:PORT", help="RPC listen address (default 127.0.0.1:26657)"
    )
    add_passphrase_args(p, allow_insecure=True)
    return p


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _network_config(args: argparse.Namespace, joined: JoinSource | None) -> Config:
    """config.toml's defaults with the network flags and the peers `--join` found (validated here, so a
    bad flag fails before anything is written)."""
    config = Config()
    peers = [*(joined.peers if joined else ()), *_split_list(args.peers)]
    p2p: dict[str, Any] = {"persistent_peers": list(dict.fromkeys(peers)), "seeds": _split_list(args.seeds)}
    if args.external_addr is not None:
        p2p["external_addr"] = args.external_addr
    if args.p2p_laddr is not None:
        p2p["listen_addr"] = args.p2p_laddr
    config = config.replace("p2p", **p2p)
    if args.rpc_laddr is not None:
        config = config.replace("rpc", listen_addr=args.rpc_laddr)
    return config


def _join(args: argparse.Namespace) -> JoinSource | None:
    """Fetch and check the network's genesis (`--join`), or check `--genesis FILE` against --genesis-hash."""
    if args.join is not None and args.genesis is not None:
        raise UsageError("--join and --genesis are exclusive: --join fetches the genesis")
    if args.genesis_hash is None:
        if args.join is not None:
            raise UsageError("--join needs --genesis-hash HASH (ask the network's operators for it)")
        return None
    expected = parse_genesis_hash(args.genesis_hash)
    if args.join is not None:
        return fetch_join_source(args.join, expected)
    if args.genesis is None:
        raise UsageError("--genesis-hash goes with --join URL or --genesis FILE")
    check_genesis_hash(resolve_genesis_source(args.genesis), expected, str(args.genesis))
    return None


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    joined = _join(args)
    config = _network_config(args, joined)
    passphrase = None
    needs_keys = not home.has_own_keys()
    if needs_keys and not (home.is_initialised() and not args.force):
        passphrase = read_passphrase(args, confirm=True, what="new node keys")
    result = init_home(
        home,
        genesis=joined.genesis if joined else args.genesis,
        config=config,
        chain_id=args.chain_id,
        moniker=args.moniker,
        passphrase=passphrase,
        insecure_keys=args.insecure_unencrypted,
        force=args.force,
    )
    g = result.genesis
    data = {
        "home": str(home.root),
        "chain_id": g.chain_id,
        "genesis_hash": g.hash.hex(),
        "account_address": format_address(result.account_key.address),
        "account_pubkey": result.account_key.pubkey.hex(),
        "consensus_address": format_address(result.consensus_key.address),
        "consensus_pubkey": result.consensus_key.pubkey.hex(),
        "node_id": result.node_key.pubkey.hex(),
        "keys_encrypted": result.account_key.encrypted,
        "created_keys": list(result.created_keys),
        "is_genesis_validator": result.is_genesis_validator,
        "is_genesis_miner": result.is_genesis_miner,
    }
    created = ", ".join(result.created_keys) or "none (existing keys reused)"
    lines = [
        f"initialised {home.root}",
        f"  chain id        {g.chain_id}",
        f"  genesis hash    {g.hash.hex()}",
        f"  account         {format_address(result.account_key.address)}  (keys/account_key.json)",
        f"  consensus key   {format_address(result.consensus_key.address)}  (keys/priv_validator_key.json)",
        f"  node id         {result.node_key.pubkey.hex()}",
        f"  keys created    {created}" + ("" if result.account_key.encrypted else "  (UNENCRYPTED)"),
        "  roles           "
        + (
            ", ".join(
                r
                for r, yes in (("validator", result.is_genesis_validator), ("miner", result.is_genesis_miner))
                if yes
            )
            or "none at genesis (full node: see pocl-node tx create-validator / tx register-miner)"
        ),
    ]
    if joined is None:
        lines.append(f"next: pocl-node genesis validate --home {home.root}")
    else:
        data["joined"] = {
            "url": joined.url,
            "node_id": joined.node_id,
            "persistent_peers": list(joined.peers),
        }
        lines += join_report(joined, home.root, config)
    emit(args, data, "\n".join(lines))
    return 0


def join_report(joined: JoinSource, home: Path, config: Config) -> list[str]:
    """What `--join` did, and the steps from here to a mining (or validating) node (docs/join.md)."""
    from pocl.consensus.pocl.params import PoclParams

    g = joined.genesis
    min_miner = PoclParams.from_json(g.pocl).min_miner_stake
    url, h = joined.url, f"--home {home}"
    peers = config.p2p.persistent_peers
    return [
        f"  joined via      {url}: genesis hash verified, {len(peers)} persistent peer(s) in config.toml:",
        *(f"                  {peer}" for peer in peers),
        *(
            []
            if config.p2p.external_addr
            else [
                "  note: no --external-addr: others can dial you only after you dialled them (config set p2p.external_addr)"
            ]
        ),
        "next steps (docs/join.md):",
        f"  1. run and sync:    pocl-node run {h} --mine      (leave it running; a second terminal for the rest)",
        f"  2. get coins:       pocl-node faucet --node {url} {h} --wait",
        f"  3. stake:           pocl-node tx stake {min_miner} --node {url} {h} --wait"
        f"   (miners need {min_miner}, validators {g.params.min_validator_stake})",
        f"  4. become a miner:  pocl-node tx register-miner --node {url} {h} --wait",
        f"     or a validator:  pocl-node tx create-validator --node {url} {h} --wait",
    ]
