"""Large txs by announcement over real sockets (`node/reactors/tx_announce.py`): in a full mesh each node
fetches a large tx exactly once, small txs are left to the batched flood, and a peer answering with
another body than it announced is scored while the tx still arrives from another announcer."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from pocl.ledger.errors import TxError
from pocl.node.compact_block import tx_hash
from pocl.node.mempool import AddResult
from pocl.node.reactors.tx_announce import GetTx, TxAnnounce, TxAnnouncer, TxBody
from pocl.node.reactors.tx_gossip import is_malicious
from pocl.p2p.gossip import INVALID_PENALTY
from pocl.p2p.host import Host

from tests.support.hostkit import make_host, running, wait_until

BIG = 20_000


@dataclasses.dataclass
class Pool:
    """A mempool stand-in: admits anything once, remembers how often each tx was offered."""

    txs: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    offered: dict[bytes, int] = dataclasses.field(default_factory=dict)

    def add(self, raw: bytes) -> AddResult:
        h = tx_hash(raw)
        self.offered[h] = self.offered.get(h, 0) + 1
        if raw.startswith(b"bad"):
            return AddResult(h, TxError("malformed_tx", "junk"))
        new = h not in self.txs
        self.txs[h] = raw
        return AddResult(h, None, is_new=new)


class ServingCounter:
    """Counts the GetTx requests a host serves (wraps its announcer's handler)."""

    def __init__(self, announcer: TxAnnouncer) -> None:
        self.count = 0
        inner = announcer._serve

        def serve(conn: object, req: GetTx) -> TxBody:
            self.count += 1
            return inner(conn, req)

        announcer.host._handlers[GetTx] = serve


def node(name: str) -> tuple[Host, TxAnnouncer, Pool]:
    host = make_host(name)
    pool = Pool()
    announcer = TxAnnouncer(host, pool.add, pool.txs.get, 1 << 20, is_malicious=is_malicious)
    return host, announcer, pool


async def mesh(*hosts: Host) -> None:
    for a, b in itertools.combinations(hosts, 2):
        await a.connect(b.listen_addr)
    await wait_until(lambda: all(len(h.peers()) == len(hosts) - 1 for h in hosts), what="a full mesh")


async def test_in_a_full_mesh_each_node_fetches_a_large_tx_once() -> None:
    nodes = [node(f"ann-{i}") for i in range(4)]
    counters = [ServingCounter(a) for _h, a, _p in nodes]
    raw = b"weights" + bytes(BIG)
    h = tx_hash(raw)
    async with running(*(n[0] for n in nodes)):
        await mesh(*(n[0] for n in nodes))
        origin_pool = nodes[0][2]
        origin_pool.add(raw)
        nodes[0][1].publish(raw)
        await wait_until(lambda: all(h in p.txs for _h, _a, p in nodes), what="the tx everywhere")
        await wait_until(lambda: all(not a._in_flight for _h, a, _p in nodes), what="fetches settled")
    assert [p.offered.get(h) for _h, _a, p in nodes[1:]] == [1, 1, 1]  # each body arrived once
    assert sum(c.count for c in counters) == 3  # three fetches in all, one per receiving node
    assert all(a.stats.fetched == 1 for _h, a, _p in nodes[1:])


async def test_small_txs_are_not_announced() -> None:
    _host, announcer, _pool = node("ann-small")
    assert announcer.wants(bytes(BIG)) and not announcer.wants(bytes(200))


async def test_a_body_with_another_hash_scores_the_peer_and_another_announcer_serves_it() -> None:
    (me, mine, pool), (liar, _la, _lp), (honest, _h, honest_pool) = (
        node("ann-me"),
        node("ann-liar"),
        node("ann-honest"),
    )
    raw = b"weights" + bytes(BIG)
    h = tx_hash(raw)
    honest_pool.txs[h] = raw
    release = asyncio.Event()

    async def lie(_conn: object, _req: GetTx) -> TxBody:
        await release.wait()  # answer once the honest peer has announced too
        return TxBody(True, b"other" + bytes(BIG))

    liar._handlers[GetTx] = lie
    async with running(me, liar, honest):
        await me.connect(liar.listen_addr)
        await me.connect(honest.listen_addr)
        await wait_until(lambda: len(me.peers()) == 2, what="connections")
        liar.send_to(me.node_id, TxAnnounce([h]))
        await wait_until(lambda: mine._in_flight.get(h) == liar.node_id, what="the fetch from the liar")
        honest.send_to(me.node_id, TxAnnounce([h]))
        await wait_until(
            lambda: honest.node_id in mine._alternates.get(h, ()), what="the honest announcer noted"
        )
        release.set()
        await wait_until(lambda: h in pool.txs, what="the tx from the honest peer")
        assert me.bans.score(liar.node_id) >= INVALID_PENALTY * 0.9  # scores decay
        assert me.bans.score(honest.node_id) == 0
    assert pool.txs[h] == raw and mine.stats.bad == 1 and pool.offered[h] == 1


async def test_a_tx_no_honest_node_forwards_scores_the_announcer() -> None:
    (me, mine, pool), (peer, _a, peer_pool) = node("ann-me2"), node("ann-junk")
    raw = b"bad" + bytes(BIG)
    peer_pool.txs[tx_hash(raw)] = raw
    async with running(me, peer):
        await me.connect(peer.listen_addr)
        await wait_until(lambda: len(me.peers()) == 1, what="connection")
        peer.send_to(me.node_id, TxAnnounce([tx_hash(raw)]))
        await wait_until(lambda: mine.stats.bad == 1, what="the junk refused")
        assert me.bans.score(peer.node_id) > 0
    assert tx_hash(raw) not in pool.txs
