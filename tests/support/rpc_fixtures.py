"""Fixtures of an in-process single-validator node started in the test's event loop, and its RPC client;
a folder's conftest imports them (tests/rpc, tests/explorer)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from pocl.node.node import Node

from tests.support.rpc_node import Api, make_node, wait_for


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = make_node(tmp_path / "node")
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def api(node: Node) -> AsyncIterator[Api]:
    assert node.rpc is not None
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{node.rpc.port}")


@pytest.fixture
def height_at_least(node: Node) -> Callable[[int], Awaitable[int]]:
    async def wait(h: int) -> int:
        await wait_for(lambda: node.chain is not None and node.chain.height >= h, 30, f"height {h}")
        assert node.chain is not None
        return node.chain.height

    return wait
