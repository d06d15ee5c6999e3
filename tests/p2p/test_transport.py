"""Encrypted frames, messages and connection behaviour over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest
from pocl.ledger import codec
from pocl.p2p import errors
from pocl.p2p.connection import ConnectionConfig, PeerConnection
from pocl.p2p.errors import ConnectionClosed, RemoteError, TooManyRequests
from pocl.p2p.frames import FLAG_MORE, HEADER_LEN, RECV_BUFFER_BYTES, TAG_LEN, FrameOpener, FrameSealer
from pocl.p2p.message_ids import PING, MessageId
from pocl.p2p.messages import Disconnect, Ping, Pong, default_registry
from pocl.p2p.socket_tuning import use_unpaced_congestion_control

from tests.support.hostkit import wait_until
from tests.support.transport_kit import CHAIN_ID, Echo, Fail, Slow, make_registry, seal_message

FAST = ConnectionConfig(handshake_timeout_s=5.0, request_timeout_s=5.0)


async def pair(p2p_node, a_config: ConnectionConfig = FAST, b_config: ConnectionConfig = FAST):
    a, b = p2p_node("a", config=a_config), p2p_node("b", config=b_config)
    port = await b.listen()
    conn = await a.dial(port, expected_node_id=b.key.pubkey)
    await wait_until(lambda: b.inbound, what="inbound connection")
    return a, b, conn, b.inbound[0]


async def proxied_pair(p2p_node, frame_proxy, config: ConnectionConfig = FAST):
    a, b = p2p_node("a", config=config), p2p_node("b", config=config)
    port = await b.listen()
    proxy = await frame_proxy(port)
    conn = await a.dial(proxy.port, expected_node_id=b.key.pubkey)
    await wait_until(lambda: b.inbound, what="inbound connection")
    return a, b, conn, b.inbound[0], proxy


# ---------------------------------------------------------------------- frame layer (unit)


def test_frames_roundtrip_and_split_large_messages():
    key = b"\x01" * 32
    sealer, opener = FrameSealer(key, max_frame_bytes=1024 + TAG_LEN), FrameOpener(key)
    payload = bytes(range(256)) * 20  # 5120 bytes → 5 frames of 1024
    frames = seal_message(sealer, payload)
    assert len(frames) == 5
    parts = []
    for i, frame in enumerate(frames):
        header = bytes(frame[:HEADER_LEN])
        more = int.from_bytes(header, "big") & FLAG_MORE
        assert bool(more) == (i < 4)
        parts.append(opener.open_frame(header, frame[HEADER_LEN:]))
    assert b"".join(parts) == payload
    assert seal_message(sealer, b"") and len(seal_message(sealer, b"")[0]) == HEADER_LEN + TAG_LEN


def test_frame_replay_reorder_and_tamper_fail():
    key = b"\x02" * 32
    sealer, opener = FrameSealer(key), FrameOpener(key)
    f0, f1 = seal_message(sealer, b"zero")[0], seal_message(sealer, b"one")[0]
    with pytest.raises(errors.ProtocolViolation):  # out of order
        opener.open_frame(bytes(f1[:4]), f1[4:])
    assert opener.open_frame(bytes(f0[:4]), f0[4:]) == b"zero"
    with pytest.raises(errors.ProtocolViolation):  # replay
        opener.open_frame(bytes(f0[:4]), f0[4:])
    tampered = bytearray(f1)
    tampered[-1] ^= 1
    with pytest.raises(errors.ProtocolViolation):
        opener.open_frame(bytes(tampered[:4]), tampered[4:])
    flag_flipped = bytearray(f1)
    flag_flipped[0] ^= 0x80  # the header is authenticated too
    with pytest.raises(errors.ProtocolViolation):
        opener.open_frame(bytes(flag_flipped[:4]), flag_flipped[4:])


def test_sealer_refuses_to_reuse_a_nonce():
    sealer = FrameSealer(b"\x03" * 32, nonce_limit=3)
    for _ in range(3):
        seal_message(sealer, b"x")
    with pytest.raises(ConnectionClosed):
        seal_message(sealer, b"x")


def test_registry_limits_and_unknown_types():
    reg = make_registry()
    with pytest.raises(ValueError):
        reg.register(MessageId(64, "dup", "test"), Ping, 10)
    ping = reg.encode_body(Ping(5))
    assert reg.decode(ping).body == Ping(5)
    with pytest.raises(errors.ProtocolViolation) as info:
        reg.decode(codec.encode([9999, 0, False, [1]]))
    assert info.value.reason == errors.REASON_UNKNOWN_TYPE
    with pytest.raises(errors.ProtocolViolation) as info:
        reg.decode(codec.encode([PING.type_id, 0, False, [1, b"x" * 100]]))
    assert info.value.reason == errors.REASON_MESSAGE_TOO_LARGE
    for bad in [
        b"",
        b"\xc1",
        b"\x94\x02\x00\xc2",
        codec.encode([PING.type_id, 0, True, [1]]),
        codec.encode([PING.type_id, 0, False, ["x"]]),
        ping + b"\x00",
    ]:
        with pytest.raises(errors.ProtocolViolation):
            reg.decode(bad)
    assert default_registry() is not default_registry()
    with pytest.raises(ValueError):
        reg.encode_body(Echo(b"x" * (9 * 1024 * 1024)))  # over its own limit: a local bug


# ---------------------------------------------------------------------- messages over sockets


async def test_request_response_and_one_way_in_order(p2p_node):
    _a, b, conn, inbound = await pair(p2p_node)
    assert await conn.request(Echo(b"ping?"), 2.0) == Echo(b"ping?")
    for i in range(50):
        await conn.send(Echo(i.to_bytes(2, "big")))
    await wait_until(lambda: len(b.received) == 51, what="50 one-way messages")
    assert [body.data for _, body in b.received[1:]] == [i.to_bytes(2, "big") for i in range(50)]
    results = await asyncio.gather(*(inbound.request(Echo(bytes([i])), 2.0) for i in range(20)))
    assert results == [Echo(bytes([i])) for i in range(20)]


async def test_large_multi_frame_messages(p2p_node):
    _a, _b, conn, _inbound = await pair(p2p_node)
    blob = bytes(range(256)) * (3 * 4096 + 7)  # ≈ 3 MiB: several frames
    assert await conn.request(Echo(blob), 10.0) == Echo(blob)


async def test_request_timeout_keeps_connection_usable(p2p_node):
    a, _b, conn, _inbound = await pair(p2p_node)
    with pytest.raises(TimeoutError):
        await conn.request(Slow(300), timeout=0.05)
    assert await conn.request(Echo(b"after"), 2.0) == Echo(b"after")
    await asyncio.sleep(0.4)  # the late response arrives and is dropped quietly
    assert not conn.closed and not a.misbehaviour


async def test_handler_errors_are_contained(p2p_node):
    _a, b, conn, _inbound = await pair(p2p_node)
    with pytest.raises(RemoteError) as info:
        await conn.request(Fail("crash"), 2.0)
    assert info.value.code == "internal_error"
    with pytest.raises(RemoteError) as info:
        await conn.request(Fail("none"), 2.0)
    assert info.value.code == "unhandled"
    await conn.send(Fail("crash"))  # one-way: nothing comes back, the loop survives
    with pytest.raises(RemoteError) as info:
        await conn.request(Fail("minor"), 2.0)
    assert info.value.code == "bad_request"
    assert [(r, p) for _, r, p in b.misbehaviour] == [("test_minor", 5)]
    assert await conn.request(Echo(b"alive"), 2.0) == Echo(b"alive")
    with pytest.raises((RemoteError, ConnectionClosed)):
        await conn.request(Fail("violation"), 2.0)  # penalty 60 ≥ 50: reported and closed
    await wait_until(lambda: conn.closed, what="close after violation")
    assert ("test_violation", 60) in [(r, p) for _, r, p in b.misbehaviour]
    assert b.inbound[0].close_reason == "test_violation"


async def test_request_expect_type_and_pending_limit(p2p_node):
    config = dataclasses.replace(FAST, max_pending_requests=2)
    _a, _b, conn, _inbound = await pair(p2p_node, a_config=config)
    assert await conn.request(Echo(b"x"), 2.0, expect=Echo) == Echo(b"x")
    with pytest.raises(errors.ProtocolViolation):
        await conn.request(Echo(b"x"), 2.0, expect=Pong)
    slow = [asyncio.create_task(conn.request(Slow(200), 2.0)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(TooManyRequests):
        await conn.request(Echo(b"x"), 2.0)
    assert [r.data for r in await asyncio.gather(*slow)] == [b"slow", b"slow"]


async def test_ping_pong_and_keepalive(p2p_node):
    config = dataclasses.replace(FAST, ping_interval_s=0.05, idle_timeout_s=1.0)
    _a, _b, conn, inbound = await pair(p2p_node, config, config)
    rtt = await conn.ping(2.0)
    assert 0 < rtt < 1.0
    await wait_until(lambda: inbound.rtt_s is not None, what="keepalive pong")
    await asyncio.sleep(1.3)  # longer than the idle timeout: pings keep both sides alive
    assert not conn.closed and not inbound.closed


async def test_idle_timeout_closes_silent_peer(p2p_node):
    quick = dataclasses.replace(FAST, ping_interval_s=0.05, idle_timeout_s=0.3)
    a, _b, conn, inbound = await pair(p2p_node, a_config=quick)
    inbound._proto.transport.pause_reading()  # b goes deaf: no pongs, nothing at all
    await wait_until(lambda: conn.closed, timeout=3.0, what="idle timeout")
    assert conn.close_reason == errors.REASON_IDLE_TIMEOUT
    await wait_until(lambda: a.closes, what="on_close")
    assert a.closes[0] == (conn, errors.REASON_IDLE_TIMEOUT)


async def test_close_tells_peer_the_reason_and_fails_pending(p2p_node):
    a, b, conn, inbound = await pair(p2p_node)
    pending = asyncio.create_task(conn.request(Slow(2000), 5.0))
    await asyncio.sleep(0.05)
    conn.close("going_away")
    with pytest.raises(ConnectionClosed):
        await pending
    await conn.wait_closed()
    await inbound.wait_closed()
    assert inbound.remote_close_reason == "going_away"
    assert b.closes == [(inbound, "going_away")]
    assert a.closes == [(conn, "going_away")]
    with pytest.raises(ConnectionClosed):
        await conn.send(Echo(b"late"))


async def test_connection_lost_is_reported(p2p_node):
    _a, b, conn, inbound = await pair(p2p_node)
    conn._proto.transport.abort()
    await inbound.wait_closed()
    assert b.closes == [(inbound, errors.REASON_CONNECTION_LOST)]


async def test_send_backpressure(p2p_node):
    config = dataclasses.replace(FAST, send_buffer_bytes=256 * 1024, max_inbound_queue=4)
    _a, b, conn, inbound = await pair(p2p_node, config, config)
    inbound._proto.transport.pause_reading()
    blob = b"\x00" * (1024 * 1024)

    async def flood() -> int:
        for _ in range(64):
            await conn.send(Echo(blob))
        return 64

    task = asyncio.create_task(flood())
    await asyncio.sleep(0.5)
    assert not task.done(), "send must wait while the peer is not reading"
    inbound._proto.transport.resume_reading()
    assert await asyncio.wait_for(task, 20.0) == 64
    await wait_until(lambda: len(b.received) == 64, timeout=20.0, what="all bulk messages")


async def test_nonce_limit_closes_connection(p2p_node):
    config = dataclasses.replace(FAST, nonce_limit=20)
    _a, _b, conn, _inbound = await pair(p2p_node, config, config)
    with pytest.raises(ConnectionClosed):
        for _ in range(40):
            await conn.request(Echo(b"n"), 2.0)
    assert errors.REASON_NONCE_EXHAUSTED in (conn.close_reason, _inbound.close_reason)


# ---------------------------------------------------------------------- hostile input after the handshake


async def test_flipped_ciphertext_bit_closes(p2p_node, frame_proxy):
    _a, b, conn, inbound, proxy = await proxied_pair(p2p_node, frame_proxy)
    assert await conn.request(Echo(b"before"), 2.0) == Echo(b"before")
    target = len(proxy.frames_up)

    def flip(index: int, frame: bytes) -> bytes:
        if index != target:
            return frame
        mutated = bytearray(frame)
        mutated[HEADER_LEN + 3] ^= 0x10
        return bytes(mutated)

    proxy.tamper = flip
    await conn.send(Echo(b"tampered"))
    await wait_until(lambda: inbound.closed, what="close on bad tag")
    assert inbound.close_reason == errors.REASON_DECRYPT_FAILED
    assert (errors.REASON_DECRYPT_FAILED, errors.PENALTY_FATAL) in [(r, p) for _, r, p in b.misbehaviour]
    assert Echo(b"tampered") not in [body for _, body in b.received]


async def test_replayed_frame_is_rejected(p2p_node, frame_proxy):
    _a, b, conn, inbound, proxy = await proxied_pair(p2p_node, frame_proxy)
    await conn.send(Echo(b"once"))
    await wait_until(lambda: b.received, what="first message")
    proxy.inject(proxy.frames_up[-1])
    await wait_until(lambda: inbound.closed, what="close on replay")
    assert inbound.close_reason == errors.REASON_DECRYPT_FAILED
    assert [body for _, body in b.received] == [Echo(b"once")]


async def test_oversized_frame_closes_before_body(p2p_node, frame_proxy):
    config = dataclasses.replace(FAST, max_frame_bytes=64 * 1024)
    _a, b, _conn, inbound, proxy = await proxied_pair(p2p_node, frame_proxy, config)
    proxy.inject((64 * 1024 + 1).to_bytes(4, "big"))  # header only: no body needs to follow
    await wait_until(lambda: inbound.closed, what="close on oversized frame")
    assert inbound.close_reason == errors.REASON_FRAME_TOO_LARGE
    assert (errors.REASON_FRAME_TOO_LARGE, errors.PENALTY_FATAL) in [(r, p) for _, r, p in b.misbehaviour]


async def test_no_plaintext_on_the_wire(p2p_node, frame_proxy):
    a, b, conn, inbound, proxy = await proxied_pair(p2p_node, frame_proxy)
    secret = b"THE-SECRET-PAYLOAD-" * 8
    body = Echo(secret)
    assert await conn.request(body, 2.0) == body
    await inbound.send(Echo(secret))
    await wait_until(lambda: len(a.received) == 1, what="reply")
    wire = bytes(proxy.raw_up) + bytes(proxy.raw_down)
    for plaintext in (
        body.encode(),
        a.registry.encode_body(body, 1),
        secret[:16],
        CHAIN_ID.encode(),
        a.hello.encode(),
        b.hello.encode(),
    ):
        assert plaintext not in wire
    assert a.key.pubkey not in wire and b.key.pubkey not in wire  # identities travel encrypted too


async def test_long_payload_travels_encrypted_in_frames_of_its_own(p2p_node, frame_proxy):
    _a, b, conn, _inbound, proxy = await proxied_pair(p2p_node, frame_proxy)
    long = bytes(range(256)) * 4096  # 1 MiB: sealed straight from the object, as one frame
    await conn.send(Echo(long))
    await wait_until(lambda: len(b.received) == 1, what="long message")
    assert b.received[0][1] == Echo(long)
    wire = bytes(proxy.raw_up)
    assert long[:64] not in wire and long[-64:] not in wire and long[1000:1064] not in wire
    sizes = [len(f) - HEADER_LEN - TAG_LEN for f in proxy.frames_up]
    assert len(long) in sizes  # the string's own frame...
    at = sizes.index(len(long))
    head = proxy.frames_up[at - 1]
    assert head[0] & 0x80  # ...after a short frame flagged "more" (envelope and bin header)
    assert sizes[at - 1] < 64


async def test_loopback_connections_avoid_pacing_congestion_control(p2p_node):
    if not hasattr(socket, "TCP_CONGESTION"):
        pytest.skip("TCP_CONGESTION is Linux-only")
    allowed = FAST.loopback_congestion_control
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as probe:
        if use_unpaced_congestion_control(probe, allowed) is None:
            pytest.skip("this kernel lets this user set none of the unpaced algorithms")
    _a, _b, conn, inbound = await pair(p2p_node)
    for c in (conn, inbound):  # set on dial and on accept
        sock = c._proto.transport.get_extra_info("socket")
        name = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
        assert name in allowed


def test_unpaced_congestion_control_leaves_other_sockets_alone():
    class Remote:
        """A connected socket's stand-in: a non-loopback peer must not be touched."""

        def getpeername(self):
            return ("203.0.113.9", 26656)

        def setsockopt(self, *args):
            raise AssertionError("must not change a non-loopback connection")

    assert use_unpaced_congestion_control(Remote(), ("reno",)) is None
    assert use_unpaced_congestion_control(None, ("reno",)) is None
    with socket.socket() as unconnected:
        assert use_unpaced_congestion_control(unconnected, ("reno",)) is None
    assert use_unpaced_congestion_control(Remote(), ()) is None


async def test_malformed_and_unknown_messages_after_handshake(p2p_node):
    _a, b, conn, inbound = await pair(p2p_node)
    conn._queue_payload([codec.encode([4242, 0, False, []])])  # unknown type: reported, stays open
    await wait_until(lambda: b.misbehaviour, what="unknown type report")
    assert [(r, p) for _, r, p in b.misbehaviour] == [
        (errors.REASON_UNKNOWN_TYPE, errors.PENALTY_UNKNOWN_TYPE)
    ]
    assert await conn.request(Echo(b"still"), 2.0) == Echo(b"still")
    conn._queue_payload([codec.encode([2, 0, True, [1]])])  # response without request id
    conn._queue_payload([b"\x94\x40\x00\xc2\xc1"])  # malformed msgpack
    await wait_until(lambda: inbound.closed, what="close on malformed message")
    reasons = [r for _, r, _p in b.misbehaviour]
    assert errors.REASON_MALFORMED in reasons
    c = p2p_node("c")
    conn2 = await c.dial(b.port)
    assert await conn2.request(Echo(b"listener alive"), 2.0) == Echo(b"listener alive")


async def test_unsolicited_response_and_disconnect_message(p2p_node):
    a, b, conn, inbound = await pair(p2p_node)
    conn._queue_payload([a.registry.encode_body(Echo(b"?"), 12345, True)])
    await wait_until(lambda: b.misbehaviour, what="unsolicited response report")
    assert b.misbehaviour[0][1] == errors.REASON_UNEXPECTED_RESPONSE
    conn._queue_payload([a.registry.encode_body(Disconnect("bye-now"))])
    await wait_until(lambda: inbound.closed, what="close on disconnect")
    assert inbound.close_reason == "bye-now"


async def test_handler_may_request_on_same_connection(p2p_node):
    async def nested(conn: PeerConnection, body):
        if isinstance(body, Echo) and body.data == b"outer":
            inner = await conn.request(Echo(b"inner"), 2.0)
            return Echo(b"outer+" + inner.data)
        return Echo(body.data) if isinstance(body, Echo) else None

    a = p2p_node("a", config=FAST)
    b = p2p_node("b", config=FAST, handler=nested)
    port = await b.listen()
    conn = await a.dial(port)
    assert await conn.request(Echo(b"outer"), 3.0) == Echo(b"outer+inner")


async def test_multi_frame_message_over_type_limit_refused_at_first_frame(p2p_node):
    config = dataclasses.replace(FAST, frame_chunk_bytes=16 * 1024)
    _a, b, conn, inbound = await pair(p2p_node, config, config)
    oversized_slow = codec.encode([65, 0, False, [b"\x00" * (200 * 1024)]])  # "slow" allows 64 bytes
    conn._queue_payload([oversized_slow[: 20 * 1024]])  # its first 16 KiB frame alone is over the limit
    await wait_until(lambda: inbound.closed, what="close on oversized message")
    assert inbound.close_reason == errors.REASON_MESSAGE_TOO_LARGE
    assert (errors.REASON_MESSAGE_TOO_LARGE, errors.PENALTY_FATAL) in [(r, p) for _, r, p in b.misbehaviour]


async def test_ping_flood_from_a_peer_that_does_not_read_is_bounded(p2p_node):
    small = dataclasses.replace(FAST, send_buffer_bytes=16 * 1024)
    a, _b, conn, inbound = await pair(p2p_node, FAST, small)
    conn._proto.transport.pause_reading()  # a never reads b's pongs
    # Small kernel buffers, so that b's own send buffer is what fills up.
    conn._proto.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    inbound._proto.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ping = a.registry.encode_body(Ping(1))
    for i in range(30_000):
        conn._queue_payload([ping])
        if i % 500 == 0:
            await asyncio.sleep(0)
    await wait_until(lambda: inbound.messages_received >= 30_000, timeout=30.0, what="all pings handled")
    transport = inbound._proto.transport
    assert inbound._proto.write_paused, "b's send buffer should have filled up"
    # Pongs stop once the buffer is over its high-water mark; at most one receive buffer's worth of
    # pings (each pong is no larger than its ping) is answered past it.
    assert transport.get_write_buffer_size() <= 16 * 1024 + RECV_BUFFER_BYTES
    assert not inbound.closed
