"""Peer exchange over real sockets: from one seed to the whole network; the book survives restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pocl.p2p import message_ids
from pocl.p2p.addrbook import AddressBook, PeerAddr
from pocl.p2p.host import Host
from pocl.p2p.pex import Addrs, GetAddrs, PeerExchange, PexConfig

from tests.support.hostkit import connected_ids, make_host, running, wait_until

pytestmark = pytest.mark.timeout(60)


def with_pex(host: Host, seeds: tuple[str, ...] = (), interval: float = 0.2) -> PeerExchange:
    return PeerExchange(host, PexConfig(seeds=seeds, interval=interval, request_timeout=2.0))


@pytest.mark.slow
async def test_one_seed_leads_to_everyone() -> None:
    seed = make_host("pex-seed")
    seed_pex = with_pex(seed)
    others = [make_host(f"pex-{i}") for i in range(4)]
    async with running(seed, *others):
        seed_pex.start()
        for h in others[:3]:
            assert await h.connect(seed.listen_addr) is not None
        await wait_until(lambda: len(seed.peers()) == 3, what="seed knows three peers")
        assert len(seed.addrbook) == 3  # learned from their hellos
        newcomer = others[3]
        pex = with_pex(newcomer, seeds=(str(seed.listen_addr),))
        pex.start()
        expected = {seed.node_id} | {h.node_id for h in others[:3]}
        await wait_until(lambda: connected_ids(newcomer) == expected, what="newcomer connected to all")
        assert all(newcomer.peer(nid).outbound for nid in expected)


async def test_get_addrs_answer_is_bounded_and_excludes_requester() -> None:
    a, b = make_host("ga-a"), make_host("ga-b")
    pex_a = with_pex(a)
    pex_a.config.max_addrs = 5
    with_pex(b)
    for i in range(20):
        a.addrbook.add(PeerAddr(bytes([i + 1]) * 32, "127.0.0.1", 1000 + i), source="test")
    async with running(a, b):
        await b.connect(a.listen_addr)
        reply = await b.request(a.node_id, GetAddrs(1000), timeout=5)
        assert isinstance(reply, Addrs) and len(reply.addrs) == 5
        assert all(not s.startswith(b.node_id.hex()) for s in reply.addrs)


async def test_book_persists_and_reconnects_after_restart(tmp_path: Path) -> None:
    book_path = tmp_path / "addrbook.json"
    peers = [make_host(f"book-{i}") for i in range(2)]
    async with running(*peers):
        a = Host(
            make_host("book-a").node_key,
            chain_id=peers[0].chain_id,
            genesis_hash=peers[0].genesis_hash,
            config=make_host("book-a").config,
            addrbook=AddressBook(book_path),
        )
        async with running(a):
            for p in peers:
                await a.connect(p.listen_addr)
            await wait_until(lambda: len(a.peers()) == 2)
        assert book_path.exists()  # saved on stop
        again = Host(
            a.node_key,
            chain_id=a.chain_id,
            genesis_hash=a.genesis_hash,
            config=a.config,
            addrbook=AddressBook(book_path),
        )
        dead_seed = f"{'ab' * 32}@127.0.0.1:1"  # nothing listens there
        pex = with_pex(again, seeds=(dead_seed,))  # only the book knows where the peers are
        async with running(again):
            pex.start()
            await wait_until(
                lambda: connected_ids(again) == {p.node_id for p in peers}, what="reconnect from book"
            )


async def test_malformed_addresses_are_scored() -> None:
    a, b = make_host("badaddr-a"), make_host("badaddr-b")
    with_pex(b)

    def liar(conn: object, body: GetAddrs) -> Addrs:
        return Addrs(["not an address", "zz@1.2.3.4:5"])

    a.register(message_ids.GET_ADDRS, GetAddrs, 64, liar)
    a.register(message_ids.ADDRS, Addrs, 64 * 1024)
    async with running(a, b):
        await b.connect(a.listen_addr)  # b's pex asks every new peer for addresses
        await wait_until(lambda: b.bans.score(a.node_id) > 0, what="liar scored")
        assert len(b.addrbook) == 1  # only a itself
