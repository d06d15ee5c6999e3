"""An in-process node serving a faucet (`[faucet] enabled`) funded by the support chain's FAUCET key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from pocl.node.node import Node

from tests.support.rpc_node import FAUCET, Api, make_node

AMOUNT = 5_000
FEE = 10


def faucet_node(home: Path, **faucet: Any) -> Node:
    """The support node (sole validator of its chain, FAUCET funded at genesis) serving FAUCET's funds.
    The faucet key is handed over as `pocl-node run` does after loading `HOME/keys/<faucet.key>.json`."""
    node = make_node(home)
    settings = {"enabled": True, "amount": AMOUNT, "fee": FEE} | faucet
    node.config = node.config.replace("faucet", **settings)
    node.faucet_key = FAUCET
    return node


@asynccontextmanager
async def serving(node: Node) -> AsyncIterator[Api]:
    """Start `node`, yield a client of its RPC, stop it."""
    await node.start()
    try:
        assert node.rpc is not None
        async with aiohttp.ClientSession() as session:
            yield Api(session, f"http://127.0.0.1:{node.rpc.port}")
    finally:
        await node.stop()
