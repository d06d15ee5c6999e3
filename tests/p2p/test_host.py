"""The peer manager over real sockets: connect, dispatch, limits, self/duplicate detection, bans."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey
from pocl.p2p import dial
from pocl.p2p.addrbook import PeerAddr
from pocl.p2p.bans import BanList
from pocl.p2p.connection import PeerConnection
from pocl.p2p.errors import REASON_SELF, HandshakeError
from pocl.p2p.host import REASON_BANNED, Host, PeerInfo
from pocl.p2p.message_ids import MessageId
from pocl.p2p.messages import PROTOCOL_VERSION, Hello

from tests.support.hostkit import (
    CHAIN_ID,
    FAST_TRANSPORT,
    GENESIS_HASH,
    make_host,
    running,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


@dataclasses.dataclass(frozen=True)
class Echo(Struct):
    text: str


@dataclasses.dataclass(frozen=True)
class EchoReply(Struct):
    text: str


@dataclasses.dataclass(frozen=True)
class Note(Struct):
    text: str


def with_echo(host: Host, notes: list[tuple[bytes, str]] | None = None) -> Host:
    async def on_echo(conn: object, body: Echo) -> EchoReply:
        return EchoReply(body.text.upper())

    def on_note(conn: PeerConnection, body: Note) -> None:
        if notes is not None:
            notes.append((conn.node_id, body.text))

    host.register(MessageId(100, "echo", "test"), Echo, 1024, on_echo)
    host.register(MessageId(101, "echo_reply", "test"), EchoReply, 1024)
    host.register(MessageId(102, "note", "test"), Note, 1024, on_note)
    return host


async def test_connect_request_send_and_events() -> None:
    notes: list[tuple[bytes, str]] = []
    a, b = with_echo(make_host("a"), notes), with_echo(make_host("b"))
    events: list[tuple[str, bytes]] = []
    a.on_connect(lambda p: events.append(("up", p.node_id)))

    async def on_down(p: PeerInfo) -> None:
        events.append(("down", p.node_id))

    a.on_disconnect(on_down)
    async with running(a, b):
        peer = await b.connect(a.listen_addr)
        assert peer is not None and peer.outbound and peer.node_id == a.node_id
        await wait_until(lambda: a.is_connected(b.node_id), what="a sees b")
        [info] = a.peers()
        assert not info.outbound and info.remote_ip == "127.0.0.1"
        assert info.dial_addr == b.listen_addr  # learned from b's hello
        assert b.listen_addr in a.addrbook.addrs()
        reply = await b.request(a.node_id, Echo("hi"), timeout=5)
        assert reply == EchoReply("HI")
        assert b.send_to(a.node_id, Note("one")) and b.send_to(a.node_id, Note("two"))
        assert b.broadcast(Note("three")) == 1
        await wait_until(lambda: len(notes) == 3, what="notes delivered")
        assert notes == [(b.node_id, "one"), (b.node_id, "two"), (b.node_id, "three")]
        await b.stop()
        await wait_until(lambda: ("down", b.node_id) in events, what="disconnect event")
        assert events == [("up", b.node_id), ("down", b.node_id)]
        assert a.peers() == []


async def test_self_connection_is_refused() -> None:
    a = make_host("self")
    async with running(a):
        assert await a.connect(a.listen_addr) is None
        # An address that claims another id but leads back to us: the dial must fail, not connect.
        other = PrivateKey.from_seed_text("someone-else").pubkey
        a.addrbook.add(PeerAddr(other, "127.0.0.1", a.listen_port), source="pex")
        assert await a.connect(PeerAddr(other, "127.0.0.1", a.listen_port)) is None
        assert other not in a.addrbook  # wrong id at that address: forgotten
        # A raw dial with our own key is refused by the transport's self check.
        hello = a._hello()
        with pytest.raises(HandshakeError) as err:
            await dial.dial(
                "127.0.0.1",
                a.listen_port,
                node_key=a.node_key,
                local_hello=hello,
                registry=a.registry,
                handler=a._dispatch,
                config=FAST_TRANSPORT,
            )
        assert err.value.reason == REASON_SELF
        await asyncio.sleep(0.1)
        assert a.peers() == []
        assert not a.bans.is_banned("127.0.0.1")


async def test_duplicate_connections_are_closed() -> None:
    a, b = with_echo(make_host("dup-a")), with_echo(make_host("dup-b"))
    async with running(a, b):
        results = await asyncio.gather(
            b.connect(a.listen_addr),
            b.connect(a.listen_addr),
            a.connect(b.listen_addr),
            a.connect(b.listen_addr),
        )
        assert any(r is not None for r in results)
        await b.connect(a.listen_addr)
        await a.connect(b.listen_addr)

        def settled() -> bool:
            pa, pb = a.peer(b.node_id), b.peer(a.node_id)
            return (
                len(a.peers()) == 1
                and len(b.peers()) == 1
                and pa is not None
                and pb is not None
                and pa.outbound != pb.outbound
            )

        await wait_until(settled, what="one connection per pair")
        # Both ends agree: the survivor was dialled by the node with the smaller id.
        low = min(a, b, key=lambda h: h.node_id)
        assert low.peers()[0].outbound
        assert await a.request(b.node_id, Echo("x"), timeout=5) == EchoReply("X")
        assert await b.request(a.node_id, Echo("y"), timeout=5) == EchoReply("Y")


async def test_inbound_and_outbound_limits() -> None:
    hub = make_host("hub", max_inbound=2, max_outbound=1)
    clients = [make_host(f"client-{i}") for i in range(3)]
    async with running(hub, *clients):
        for c in clients:
            await c.connect(hub.listen_addr)
        await wait_until(lambda: hub.count(outbound=False) == 2, what="two inbound")
        await asyncio.sleep(0.2)
        assert hub.count(outbound=False) == 2
        await wait_until(lambda: sum(len(c.peers()) for c in clients) == 2, what="third refused")
        # Outbound: one slot.
        others = [make_host(f"other-{i}") for i in range(2)]
        async with running(*others):
            assert await hub.connect(others[0].listen_addr) is not None
            assert await hub.connect(others[1].listen_addr) is None
            assert hub.count(outbound=True) == 1


async def test_chain_mismatch_refused() -> None:
    a = make_host("chain-a")
    b = Host(
        PrivateKey.from_seed_text("chain-b"),
        chain_id="other-chain",
        genesis_hash=GENESIS_HASH,
        config=make_host("chain-b").config,
    )
    async with running(a, b):
        assert await b.connect(a.listen_addr) is None
        assert a.peers() == [] and b.peers() == []
        assert not a.bans.is_banned("127.0.0.1")


async def assert_refused_as_banned(a: Host, b: Host) -> None:
    """b dials a, which has banned it: the connection is closed right after the handshake."""
    peer = await b.connect(a.listen_addr)
    if peer is not None:
        await asyncio.wait_for(peer.conn.wait_closed(), 5)
        assert peer.conn.remote_close_reason == REASON_BANNED
    await wait_until(lambda: b.peers() == [], what="b dropped")
    assert a.peers() == []


async def test_banned_peer_refused_right_after_handshake() -> None:
    a, b = make_host("ban-a"), make_host("ban-b")
    async with running(a, b):
        a.bans.ban(b.node_id, "test")
        await assert_refused_as_banned(a, b)
        # A connected peer that gets banned is disconnected at once.
        a.bans.unban(b.node_id)
        assert await b.connect(a.listen_addr) is not None
        await wait_until(lambda: a.is_connected(b.node_id), what="reconnected")
        assert a.punish(b.node_id, 1000, "test offence")
        assert not a.is_connected(b.node_id)
        await wait_until(lambda: b.peers() == [], what="b sees the ban")


async def raw_dial(host: Host, key: PrivateKey) -> PeerConnection:
    """A bare transport connection to `host`, for misbehaving on purpose."""
    hello = Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS_HASH, key.pubkey, 0, bytes(32), "127.0.0.1:1", "raw")

    async def ignore(conn: object, body: object) -> None:
        return None

    return await dial.dial(
        "127.0.0.1",
        host.listen_port,
        node_key=key,
        local_hello=hello,
        registry=host.registry,
        handler=ignore,
        expected_node_id=host.node_id,
        config=FAST_TRANSPORT,
    )


async def test_malformed_frames_repeat_offender_banned() -> None:
    a = make_host("frames-a")
    bad = PrivateKey.from_seed_text("garbage-sender")
    async with running(a):
        for attempt in range(10):  # noqa: B007 (checked after the loop)
            if a.bans.is_banned(bad.pubkey):
                break
            conn = await raw_dial(a, bad)
            await wait_until(lambda: a.is_connected(bad.pubkey), what="garbage sender admitted")
            # A well-formed frame header followed by bytes that fail authentication.
            conn._proto.transport.write((40).to_bytes(4, "big") + bytes(40))
            await asyncio.wait_for(conn.wait_closed(), 5)
            await wait_until(lambda: not a.is_connected(bad.pubkey), what="garbage sender dropped")
        assert a.bans.is_banned(bad.pubkey) and attempt >= 2  # repeat offender, not a first slip
        conn = await raw_dial(a, bad)  # handshake completes, then the ban closes it
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert conn.remote_close_reason == REASON_BANNED
        assert a.peers() == []


async def test_failed_handshakes_ban_the_ip() -> None:
    a = make_host("hs-a")
    async with running(a):
        attempts = 0
        while not a.bans.is_banned("127.0.0.1"):
            attempts += 1
            assert attempts <= 20
            reader, writer = await asyncio.open_connection("127.0.0.1", a.listen_port)
            writer.write(b"NOPE" + bytes(64))
            await asyncio.wait_for(reader.read(), 5)  # the host closes on us
            writer.close()
            await asyncio.sleep(0)
            await wait_until(
                lambda n=attempts: a.bans.score("127.0.0.1") > 0 or a.bans.is_banned("127.0.0.1")
            )
        assert attempts > 1
        # While banned the connection is closed before any handshake byte is sent.
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listen_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_unknown_message_type_is_scored() -> None:
    a = make_host("unk-a")
    b = with_echo(make_host("unk-b"))  # b knows a type that a does not
    async with running(a, b):
        await b.connect(a.listen_addr)
        await wait_until(lambda: a.is_connected(b.node_id))
        b.send_to(a.node_id, Note("?"))
        await wait_until(lambda: a.bans.score(b.node_id) > 0, what="penalty for unknown type")


async def test_persistent_peer_redialled_after_restart() -> None:
    b = make_host("persist-b")
    await b.start()
    port = b.listen_port
    a = make_host("persist-a", persistent_peers=(str(b.listen_addr),))
    try:
        async with running(a):
            await wait_until(lambda: a.is_connected(b.node_id), what="first connection")
            await b.stop()
            await wait_until(lambda: not a.is_connected(b.node_id), what="a notices b is gone")
            await asyncio.sleep(0.5)  # a few failed redials: backoff must not give up
            b2 = make_host("persist-b", listen_port=port)
            async with running(b2):
                await wait_until(lambda: a.is_connected(b2.node_id), timeout=10, what="redial after restart")
                assert a.peer(b2.node_id).outbound
    finally:
        await b.stop()


def test_reconnect_backoff_grows_and_caps() -> None:
    h = make_host("backoff", reconnect_base=1.0, reconnect_max=10.0)
    delays = [h.reconnect_delay(i) for i in range(8)]
    for i, d in enumerate(delays):
        nominal = min(10.0, 2.0**i)
        assert nominal / 2 <= d <= nominal


async def test_persistent_peer_that_refuses_us_is_not_hammered() -> None:
    b = make_host("refuser-b")
    admitted: list[bytes] = []
    admit = b._admit

    def counting_admit(conn: PeerConnection, **kwargs: object) -> PeerInfo | None:
        admitted.append(conn.node_id)
        return admit(conn, **kwargs)  # type: ignore[arg-type]

    b._admit = counting_admit  # type: ignore[method-assign]
    async with running(b):
        a = make_host(
            "refuser-a", persistent_peers=(str(b.listen_addr),), reconnect_base=0.05, reconnect_max=0.4
        )
        b.bans.ban(a.node_id, "test")
        async with running(a):
            await wait_until(lambda: len(admitted) >= 3, what="a keeps trying")
            start = len(admitted)
            await asyncio.sleep(1.0)  # measuring a rate: with backoff at most ~1/0.2 s dials per second
            assert len(admitted) - start <= 8
            assert a.peers() == [] and b.peers() == []


@pytest.mark.parametrize(
    ("advertised", "remote_ip", "expected"),
    [
        ("10.0.0.5:26656", "10.0.0.5", ("10.0.0.5", 26656)),
        ("0.0.0.0:26656", "10.0.0.5", ("10.0.0.5", 26656)),
        ("127.0.0.1:26656", "10.0.0.5", ("10.0.0.5", 26656)),  # it does not know its address
        ("127.0.0.1:26656", "127.0.0.1", ("127.0.0.1", 26656)),  # a local cluster
        ("node.example:7000", "10.0.0.5", ("node.example", 7000)),
        ("garbage", "10.0.0.5", None),
    ],
)
def test_inbound_advertised_address(
    advertised: str, remote_ip: str, expected: tuple[str, int] | None
) -> None:
    nid = bytes(32)
    hello = Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS_HASH, nid, 0, bytes(32), advertised, "t")
    got = Host._advertised_addr(nid, hello, remote_ip)
    assert (None if got is None else (got.host, got.port)) == expected


async def test_a_ban_survives_the_banning_nodes_restart(tmp_path) -> None:
    path = tmp_path / "bans.json"

    def host_with_ban_file(name: str) -> Host:
        template = make_host(name, persist_interval_s=0.05)
        return Host(
            template.node_key,
            chain_id=template.chain_id,
            genesis_hash=template.genesis_hash,
            config=template.config,
            bans=BanList(path=path),
        )

    a, b = host_with_ban_file("restart-a"), make_host("restart-b")
    async with running(a, b):
        assert await b.connect(a.listen_addr) is not None
        await wait_until(lambda: a.is_connected(b.node_id), what="connected")
        assert a.punish(b.node_id, 10_000, "forged block")
        await wait_until(path.exists, what="ban written by the periodic save, before any stop")
    a2 = host_with_ban_file("restart-a")  # same node, new process: bans come back from the file
    assert a2.bans.is_banned(b.node_id)
    async with running(a2, b):
        await assert_refused_as_banned(a2, b)


async def test_external_address_port_is_advertised() -> None:
    """Behind a NAT or relay that forwards another port, peers must learn the forwarded one, not ours."""
    a, b = make_host("ext-a", external_host="127.0.0.1", external_port=40404), make_host("ext-b")
    async with running(a, b):
        assert a.listen_addr.port == 40404 and a.listen_port != 40404
        await a.connect(b.listen_addr)
        await wait_until(lambda: b.is_connected(a.node_id), what="b sees a")
        [info] = b.peers()
        assert info.dial_addr is not None and info.dial_addr.port == 40404  # learned from a's hello
