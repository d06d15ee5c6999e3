"""An in-process single-validator node on free loopback ports, and a small JSON client for its RPC."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from pocl.genesis.schema import Genesis, GenesisValidator, build_genesis
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.node.config import Config
from pocl.node.home import init_home
from pocl.node.node import Node

FAST = ChainParams(
    timeout_propose_ms=300,
    timeout_propose_delta_ms=100,
    timeout_prevote_ms=200,
    timeout_prevote_delta_ms=100,
    timeout_precommit_ms=200,
    timeout_precommit_delta_ms=100,
    timeout_commit_ms=100,
)
FAUCET = PrivateKey.from_seed_text("rpc-test-faucet")
FAUCET_BALANCE = 10**12


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Api:
    """A small aiohttp client bound to the node's RPC port; returns (status, json)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("POST", path, **kwargs)


def make_node(
    home: Path,
    *,
    max_body_bytes: int = 1 << 20,
    genesis: Genesis | None = None,
    peers: tuple[str, ...] = (),
    validator: bool = True,
) -> Node:
    """A node on free ports; by default the only validator (and a registered miner) of its own fresh chain.
    With `genesis` it joins another node's chain dialling `peers`: with its consensus key loaded (a
    validator once its account registers it and stakes), or as a plain full node (`validator=False`).
    Its keys come from `home_keys(home)`."""
    account, consensus = home_keys(home)
    genesis = genesis or build_genesis(
        "rpc-test",
        [GenesisValidator(account.pubkey, consensus.pubkey, 1_000_000, 1_000_000_000, miner=True)],
        accounts=[(FAUCET.address, FAUCET_BALANCE)],
        params=FAST,
        genesis_time_ms=int(time.time() * 1000),
    )
    config = (
        Config()
        .replace("p2p", listen_addr="127.0.0.1:0", pex=False, persistent_peers=list(peers))
        .replace("rpc", listen_addr="127.0.0.1:0", max_body_bytes=max_body_bytes, max_ws_clients=4)
        .replace("metrics", listen_addr="127.0.0.1:0")
    )
    init_home(
        home, genesis=genesis, insecure_keys=True, config=config, account_key=account, consensus_key=consensus
    )
    return Node(
        home=home,
        config=config,
        genesis=genesis,
        node_key=PrivateKey.generate(),
        consensus_key=consensus if validator else None,
        account_key=account,
    )


def home_keys(home: Path) -> tuple[PrivateKey, PrivateKey]:
    """(account key, consensus key) of the node at `home`: two distinct keys from the home's name."""
    return PrivateKey.from_seed_text(f"rpc-acct-{home.name}"), PrivateKey.from_seed_text(
        f"rpc-cons-{home.name}"
    )
