"""Secret handshake and hello exchange over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pocl.ledger import codec
from pocl.ledger.keys import PrivateKey
from pocl.p2p import errors
from pocl.p2p.connection import ConnectionConfig
from pocl.p2p.dial import REASON_CONNECT_FAILED, accept, listen
from pocl.p2p.errors import HandshakeError
from pocl.p2p.frames import DEFAULT_MAX_FRAME_BYTES, FrameProtocol
from pocl.p2p.handshake import (
    HANDSHAKE_VERSION,
    LOW_ORDER_POINTS,
    MAGIC,
    derive_session_keys,
    secret_handshake,
    x25519_shared,
)
from pocl.p2p.hello_policy import check_hello
from pocl.p2p.messages import Ping

from tests.support.hostkit import wait_until
from tests.support.transport_kit import CHAIN_ID, Echo, make_hello, make_registry


async def test_handshake_succeeds_and_exchanges_hellos(p2p_node):
    a, b = p2p_node("a"), p2p_node("b")
    port = await b.listen()
    conn = await a.dial(port, expected_node_id=b.key.pubkey)
    await wait_until(lambda: b.inbound, what="inbound connection")
    inbound = b.inbound[0]
    assert conn.node_id == b.key.pubkey and inbound.node_id == a.key.pubkey
    assert conn.outbound and not inbound.outbound
    assert conn.remote_hello == b.hello and inbound.remote_hello == a.hello
    assert conn.remote_addr == ("127.0.0.1", port)
    assert inbound.remote_addr[0] == "127.0.0.1"
    assert await conn.request(Echo(b"hi"), 2.0) == Echo(b"hi")
    assert await inbound.request(Echo(b"back"), 2.0) == Echo(b"back")


async def test_wrong_expected_node_id_is_refused(p2p_node):
    a, b = p2p_node("a"), p2p_node("b")
    port = await b.listen()
    with pytest.raises(HandshakeError) as info:
        await a.dial(port, expected_node_id=PrivateKey.from_seed_text("someone-else").pubkey)
    assert info.value.reason == errors.REASON_NODE_ID
    await wait_until(lambda: b.handshake_errors, what="listener handshake error")
    assert not b.inbound


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("chain_id", "other-chain", errors.REASON_CHAIN_ID),
        ("genesis_hash", b"\x99" * 32, errors.REASON_GENESIS),
        ("protocol_version", 999, errors.REASON_PROTOCOL_VERSION),
    ],
)
async def test_hello_mismatch_refused_with_reason(p2p_node, field, value, reason):
    b = p2p_node("b")
    a_key = PrivateKey.from_seed_text("a")
    a = p2p_node("a", hello=dataclasses.replace(make_hello(a_key), **{field: value}))
    port = await b.listen()
    with pytest.raises(HandshakeError) as info:
        await a.dial(port)
    assert info.value.reason == reason
    await wait_until(lambda: b.handshake_errors, what="listener handshake error")
    assert b.handshake_errors[0].reason == reason
    assert not b.inbound


async def test_local_hello_must_carry_own_node_id(p2p_node):
    b = p2p_node("b")
    a = p2p_node("a")
    a.hello = dataclasses.replace(a.hello, node_id=b.key.pubkey)
    port = await b.listen()
    with pytest.raises(ValueError):
        await a.dial(port)


def test_check_hello_predicate():
    key = PrivateKey.from_seed_text("x")
    local = make_hello(PrivateKey.from_seed_text("local"))
    remote = make_hello(key)
    assert check_hello(local, remote, key.pubkey) is None
    assert check_hello(local, remote, b"\x00" * 32) == errors.REASON_BAD_HELLO
    assert check_hello(local, dataclasses.replace(remote, chain_id="x"), key.pubkey) == errors.REASON_CHAIN_ID


async def test_self_connection_is_refused(p2p_node):
    a = p2p_node("a")
    port = await a.listen()
    twin = p2p_node("a")  # same key
    with pytest.raises(HandshakeError) as info:
        await twin.dial(port)
    assert info.value.reason == errors.REASON_SELF


async def test_bad_identity_signature_is_refused(p2p_node):
    class Forger(PrivateKey):
        def sign(self, tag: bytes, message: bytes) -> bytes:
            return super().sign(tag, b"not the challenge")

    b = p2p_node("b")
    port = await b.listen()
    a = p2p_node("a")
    a.key = Forger(PrivateKey.from_seed_text("a").seed)
    with pytest.raises(HandshakeError):
        await a.dial(port)
    await wait_until(lambda: b.handshake_errors, what="listener handshake error")
    assert b.handshake_errors[0].reason == errors.REASON_AUTH_FAILED
    assert not b.inbound


def test_session_keys_mirror_each_other():
    x, y = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    xp, yp = x.public_key().public_bytes_raw(), y.public_key().public_bytes_raw()
    kx = derive_session_keys(xp, yp, x25519_shared(x, yp))
    ky = derive_session_keys(yp, xp, x25519_shared(y, xp))
    assert kx.send_key == ky.recv_key and kx.recv_key == ky.send_key
    assert kx.challenge == ky.challenge
    assert kx.send_key != kx.recv_key
    with pytest.raises(HandshakeError):
        derive_session_keys(xp, xp, os.urandom(32))


def test_low_order_points_rejected():
    key = X25519PrivateKey.generate()
    for point in LOW_ORDER_POINTS:
        with pytest.raises(HandshakeError) as info:
            x25519_shared(key, point)
        assert info.value.reason == errors.REASON_LOW_ORDER_POINT
        high_bit = point[:31] + bytes([point[31] | 0x80])
        with pytest.raises(HandshakeError):
            x25519_shared(key, high_bit)


async def _raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_low_order_point_on_the_wire_refused(p2p_node):
    b = p2p_node("b")
    port = await b.listen()
    reader, writer = await _raw_connect(port)
    writer.write(MAGIC + bytes([HANDSHAKE_VERSION]) + bytes(32))
    await wait_until(lambda: b.handshake_errors, what="listener handshake error")
    assert b.handshake_errors[0].reason == errors.REASON_LOW_ORDER_POINT
    data = await asyncio.wait_for(reader.read(), 2.0)  # its preamble, then it hangs up
    assert len(data) == 37 and data.startswith(MAGIC)
    writer.close()


async def test_handshake_timeout_and_listener_survives(p2p_node):
    b = p2p_node("b", config=ConnectionConfig(handshake_timeout_s=0.3))
    port = await b.listen()
    reader, writer = await _raw_connect(port)  # connects and says nothing
    await wait_until(lambda: b.handshake_errors, timeout=3.0, what="handshake timeout")
    assert b.handshake_errors[0].reason == errors.REASON_HANDSHAKE_TIMEOUT
    data = await asyncio.wait_for(reader.read(), 2.0)  # its preamble, then it hangs up
    assert len(data) == 37 and data.startswith(MAGIC)
    writer.close()
    a = p2p_node("a")
    conn = await a.dial(port)
    assert await conn.request(Echo(b"ok"), 2.0) == Echo(b"ok")


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        MAGIC + bytes([HANDSHAKE_VERSION + 1]) + os.urandom(32),
        os.urandom(37),
        MAGIC + bytes([HANDSHAKE_VERSION]) + os.urandom(32) + os.urandom(500),  # garbage auth frame
        MAGIC + bytes([HANDSHAKE_VERSION]) + os.urandom(32) + b"\x7f\xff\xff\xff",  # huge frame header
        b"",
    ],
)
async def test_garbage_before_handshake_never_crashes_listener(p2p_node, payload):
    b = p2p_node("b")
    port = await b.listen()
    _reader, writer = await _raw_connect(port)
    writer.write(payload)
    writer.write_eof()
    await wait_until(lambda: b.handshake_errors, what="listener handshake error")
    assert isinstance(b.handshake_errors[0], HandshakeError)
    writer.close()
    a = p2p_node("a")
    conn = await a.dial(port)
    assert await conn.request(Echo(b"still alive"), 2.0) == Echo(b"still alive")
    assert conn.remote_hello.chain_id == CHAIN_ID


async def _secret_client(port: int, key: PrivateKey):
    """A client that completes only the secret handshake, then lets the test send anything."""
    loop = asyncio.get_running_loop()
    _transport, proto = await loop.create_connection(FrameProtocol, "127.0.0.1", port)
    channel = await secret_handshake(proto, key, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES)
    return proto, channel


@pytest.mark.parametrize(
    ("first_message", "reason"),
    [
        (codec.encode([4242, 0, False, []]), errors.REASON_EXPECTED_HELLO),  # unknown type
        (b"\x94\x01\x00\xc2\xc1", errors.REASON_EXPECTED_HELLO),  # malformed msgpack
        (make_registry().encode_body(Ping(1)), errors.REASON_EXPECTED_HELLO),  # known type, not hello
    ],
)
async def test_wrong_first_message_after_handshake_refused(p2p_node, first_message, reason):
    b = p2p_node("b")
    port = await b.listen()
    proto, channel = await _secret_client(port, PrivateKey.from_seed_text("rogue"))
    proto.write(channel.sealer.seal_frame(first_message))
    await wait_until(lambda: b.handshake_errors, what="listener handshake error")
    assert b.handshake_errors[0].reason == reason
    assert not b.inbound
    await asyncio.wait_for(proto.lost, 3.0)  # the listener hung up
    a = p2p_node("a")
    assert await (await a.dial(port)).request(Echo(b"ok"), 2.0) == Echo(b"ok")


async def test_accept_handles_bytes_that_arrived_before_it_ran(p2p_node):
    b = p2p_node("b")
    accepted: list = []
    tasks: list[asyncio.Task] = []

    async def late_accept(proto: FrameProtocol) -> None:
        await wait_until(lambda: proto.bytes_received > 0, what="the dialler's preamble")
        accepted.append(await accept(proto, **b.kwargs()))

    server = await listen(
        "127.0.0.1", 0, lambda proto: tasks.append(asyncio.ensure_future(late_accept(proto))), registry=b.registry
    )
    try:
        a = p2p_node("a")
        conn = await a.dial(server.sockets[0].getsockname()[1], expected_node_id=b.key.pubkey)
        assert await conn.request(Echo(b"replayed"), 2.0) == Echo(b"replayed")
        await wait_until(lambda: accepted, what="accepted connection")
        assert accepted[0].node_id == a.key.pubkey
        accepted[0].close("done")
    finally:
        server.close()


async def test_dial_refused_port_is_a_handshake_error(p2p_node):
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(HandshakeError) as info:
        await p2p_node("a").dial(port)
    assert info.value.reason == REASON_CONNECT_FAILED
