"""Flood gossip: exactly-once delivery over lines and rings, validate-before-relay, rate limits."""

from __future__ import annotations

import collections
import dataclasses

import pytest
from pocl.ledger.codec import Struct
from pocl.p2p.gossip import Gossip, SeenCache, TokenBucket
from pocl.p2p.host import Host
from pocl.p2p.message_ids import MessageId

from tests.support.hostkit import make_host, running, wait_until

pytestmark = pytest.mark.timeout(60)

RUMOUR = MessageId(200, "rumour", "test")


@dataclasses.dataclass(frozen=True)
class Rumour(Struct):
    origin: str
    payload: bytes


class Node:
    """A host with a gossip router that counts deliveries and validations per message."""

    def __init__(self, name: str, **gossip_kwargs: float) -> None:
        self.name = name
        self.host: Host = make_host(name)
        self.gossip = Gossip(self.host, **gossip_kwargs)
        self.delivered: collections.Counter[Rumour] = collections.Counter()
        self.validated: collections.Counter[Rumour] = collections.Counter()
        self.gossip.register(
            RUMOUR, Rumour, 4096, validate=self._validate, deliver=self._deliver
        )

    async def _validate(self, body: Rumour, sender: bytes) -> bool:
        self.validated[body] += 1
        return body.payload != b"bad"

    def _deliver(self, body: Rumour, sender: bytes) -> None:
        self.delivered[body] += 1


def quiescent(nodes: list[Node], extra_sent: int = 0) -> bool:
    """Every copy queued anywhere has been received somewhere: nothing is in flight."""
    sent = sum(n.gossip.stats.sent for n in nodes) + extra_sent
    received = sum(n.gossip.stats.received for n in nodes)
    return received == sent


async def build(topology: str, n: int = 8) -> list[Node]:
    nodes = [Node(f"{topology}-{i}") for i in range(n)]
    for node in nodes:
        await node.host.start()
    edges = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if topology == "ring" else [])
    for i, j in edges:
        assert await nodes[i].host.connect(nodes[j].host.listen_addr) is not None
    for i, node in enumerate(nodes):
        degree = sum(i in e for e in edges)
        await wait_until(lambda node=node, d=degree: len(node.host.peers()) == d, what=f"{node.name} degree")
    return nodes


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["line", "ring"])
async def test_every_host_gets_each_message_exactly_once(topology: str) -> None:
    nodes = await build(topology)
    try:
        rumours = [Rumour(n.name, f"hello from {n.name}".encode()) for n in nodes]
        for node, rumour in zip(nodes, rumours):
            assert node.gossip.publish(rumour)
            assert not node.gossip.publish(rumour)  # already seen: not sent again
        # A misbehaving origin pushes an invalid message straight onto the wire at node 0.
        bad = Rumour("liar", b"bad")
        extra = nodes[0].host.broadcast(bad)
        assert extra == (2 if topology == "ring" else 1)

        def all_delivered() -> bool:
            return all(node.delivered[r] >= 1 for node in nodes for r in rumours if r.origin != node.name)

        await wait_until(all_delivered, what="every rumour everywhere")
        await wait_until(lambda: quiescent(nodes, extra), what="gossip in flight to land")
        for node in nodes:
            for r in rumours:
                expected = 0 if r.origin == node.name else 1
                assert node.delivered[r] == expected, (node.name, r.origin)
                assert node.validated[r] == expected  # duplicates are dropped before validation
            assert node.delivered[bad] == 0
        # The invalid message was validated only by node 0's neighbours and went no further.
        neighbours = {1, 7} if topology == "ring" else {1}
        for i, node in enumerate(nodes):
            assert node.validated[bad] == (1 if i in neighbours else 0), node.name
        # Flooding sends each message over each link at most once per direction.
        links = 8 if topology == "ring" else 7
        assert sum(n.gossip.stats.received for n in nodes) <= len(rumours) * 2 * links + extra
    finally:
        for node in nodes:
            await node.host.stop()


async def test_invalid_gossip_gets_sender_banned() -> None:
    a, b = Node("inv-a"), Node("inv-b")
    async with running(a.host, b.host):
        await b.host.connect(a.host.listen_addr)
        await wait_until(lambda: a.host.is_connected(b.host.node_id))
        sent = 0
        while a.host.is_connected(b.host.node_id):
            assert sent < 50, "never banned"
            b.host.broadcast(Rumour("b", b"bad"))  # same body: dedup would hide repeats
            b.host.broadcast(Rumour(f"b{sent}", b"bad"))
            sent += 1
            await wait_until(
                lambda s=sent: a.gossip.stats.invalid >= s or not a.host.is_connected(b.host.node_id)
            )
        assert a.host.bans.is_banned(b.host.node_id)
        assert a.gossip.stats.invalid >= 5  # a repeat offender, not a single slip
        assert sum(a.delivered.values()) == 0
        assert await b.host.connect(a.host.listen_addr) is None or not a.host.is_connected(b.host.node_id)


async def test_flooding_peer_is_throttled() -> None:
    a = Node("flood-a", rate_msgs=5.0, burst_msgs=10.0)
    b = Node("flood-b")
    async with running(a.host, b.host):
        await b.host.connect(a.host.listen_addr)
        await wait_until(lambda: a.host.is_connected(b.host.node_id))
        for i in range(40):
            b.gossip.publish(Rumour("b", f"msg {i}".encode()))
        await wait_until(lambda: a.gossip.stats.received == 40, what="all 40 arrive")
        assert a.gossip.stats.throttled >= 25
        assert 10 <= sum(a.delivered.values()) <= 15
        assert a.host.bans.score(b.host.node_id) > 0


def test_seen_cache_is_bounded_lru() -> None:
    cache = SeenCache(3)
    assert cache.add(b"a") and cache.add(b"b") and cache.add(b"c")
    assert not cache.add(b"a")  # refreshes a
    assert cache.add(b"d")  # evicts b, the least recently seen
    assert b"b" not in cache and b"a" in cache and len(cache) == 3
    cache.discard(b"a")
    assert b"a" not in cache


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=4.0, clock=lambda: now[0])
    assert all(bucket.take() for _ in range(4))
    assert not bucket.take()
    now[0] += 1.0
    assert bucket.take() and bucket.take() and not bucket.take()
    now[0] += 100.0
    assert sum(bucket.take() for _ in range(10)) == 4  # never more than the burst
    assert not TokenBucket(1.0, 10.0, clock=lambda: 0.0).take(11)
