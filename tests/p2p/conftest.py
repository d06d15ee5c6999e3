"""Fixtures for P2P tests: `p2p_node(name, **kw)` makes a recording `TNode`, `frame_proxy(port)` a
tampering proxy; both are stopped at teardown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.transport_kit import FrameProxy, TNode


@pytest.fixture
async def p2p_node():
    nodes: list[TNode] = []

    def make(name: str, **kwargs: Any) -> TNode:
        node = TNode(name, **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()


@pytest.fixture
async def frame_proxy():
    proxies: list[FrameProxy] = []

    async def make(target_port: int) -> FrameProxy:
        proxy = FrameProxy(target_port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.stop()
