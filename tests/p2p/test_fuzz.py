"""Fuzz a live listener with ≥ 10,000 random and mutated frames while an honest peer keeps working.

Three phases hit the same listener: (1) before the handshake: mutated preambles and garbage;
(2) after a real handshake: random frame headers/bodies (each breaks the stream and closes it);
(3) after a real handshake: validly encrypted but mutated/random message payloads, which exercise the
envelope and body decoders at volume (the listener's close_penalty is raised so each hostile connection
survives many of them). Throughout, an honest peer's requests must all succeed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random

from pocl.ledger import codec
from pocl.p2p.connection import ConnectionConfig, PeerConnection
from pocl.p2p.errors import P2PError
from pocl.p2p.handshake import HANDSHAKE_VERSION, MAGIC
from pocl.p2p.messages import Disconnect, ErrorResponse, Hello, Ping, Pong

from tests.support.hostkit import wait_until
from tests.support.transport_kit import Echo, Fail, Slow, make_hello

SEED = 20261121
TARGET_FRAMES = 10_000


async def echo_only(conn: PeerConnection, body) -> Echo | None:
    if isinstance(body, Fail) and body.kind == "crash":
        raise RuntimeError("handler bug")
    return Echo(body.data) if isinstance(body, Echo) else None


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set an interesting byte
            buf[rng.randrange(len(buf))] = rng.choice([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCC, 0xDC, 0xDD, 0xFF])
        elif op == 2 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif op == 3:  # append junk
            buf += rng.randbytes(rng.randint(1, 16))
        elif op == 4 and len(buf) > 2:  # duplicate a slice
            i = rng.randrange(len(buf) - 1)
            buf[i:i] = buf[i : i + rng.randint(1, 8)]
        else:  # splice random bytes in
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def payload_corpus(registry, key) -> list[bytes]:
    bodies = [
        Echo(b"fuzz" * 4),
        Ping(7),
        Pong(9),
        Slow(1),
        Fail("crash"),
        Fail("none"),
        ErrorResponse("x", "y"),
        make_hello(key),
        Disconnect("z"),
    ]
    out = []
    for body in bodies:
        for request_id, is_response in ((0, False), (3, False), (3, True)):
            out.append(registry.encode_body(body, request_id, is_response))
    out.append(codec.encode([64, 1, False, [b"\x00" * 40]]))
    return out


async def test_fuzz_listener_survives_and_honest_peer_keeps_working(p2p_node):
    rng = random.Random(SEED)
    config = ConnectionConfig(handshake_timeout_s=15.0, request_timeout_s=30.0, close_penalty=10**9)  # generous: CI boxes may be loaded
    listener = p2p_node("listener", config=config, handler=echo_only)
    port = await listener.listen()
    honest = p2p_node("honest", config=config)
    honest_conn = await honest.dial(port, expected_node_id=listener.key.pubkey)

    stop = asyncio.Event()
    honest_ok = 0

    async def honest_traffic() -> None:
        nonlocal honest_ok
        i = 0
        while not stop.is_set():
            data = i.to_bytes(4, "big") + os.urandom(rng.randint(0, 200))
            assert await honest_conn.request(Echo(data), 30.0) == Echo(data)
            await honest_conn.send(Echo(b"one-way"))
            honest_ok += 1
            i += 1
            await asyncio.sleep(0.002)

    honest_task = asyncio.create_task(honest_traffic())
    sent = {"pre": 0, "raw": 0, "payload": 0}

    # Phase 1: before the handshake.
    async def pre_handshake(i: int) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        preamble = MAGIC + bytes([HANDSHAKE_VERSION]) + os.urandom(32)
        chunks = [preamble if i % 3 == 0 else mutate(rng, preamble)]
        chunks += [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))]
        if i % 7 == 0:
            chunks.append(rng.randbytes(4))  # a random (often huge) frame header
        for chunk in chunks:
            writer.write(chunk)
        sent["pre"] += len(chunks)
        writer.close()

    for batch in range(0, 450, 30):
        await asyncio.gather(*(pre_handshake(i) for i in range(batch, batch + 30)), return_exceptions=True)

    # Phase 2: random frames after a real handshake (each breaks that stream).
    evil = p2p_node("evil", config=config)
    evil.registry = listener.registry
    for i in range(150):
        conn = await evil.dial(port)
        length = rng.choice([0, 1, 15, 16, 17, 100, 5000, 2**31 - 1, rng.randrange(2**32)])
        complete = length < 16 or length > config.max_frame_bytes or length <= 5000
        body = rng.randbytes(length) if length <= 5000 else rng.randbytes(rng.randint(0, 2000))
        conn._proto.write(length.to_bytes(4, "big") + body)
        sent["raw"] += 1
        if complete and i % 5 == 0:  # a complete bad frame must make the listener hang up
            await wait_until(lambda c=conn: c.closed, what="hostile stream closed")
        conn.close("done")

    # Phase 3: encrypted, mutated payloads at volume. Only payloads the listener actually decoded
    # count (a mutation that happens to be a valid Disconnect ends a connection and drops what follows).
    corpus = payload_corpus(listener.registry, evil.key)
    first_evil = len(listener.inbound)

    def processed() -> int:
        return sum(c.messages_received for c in listener.inbound[first_evil:] if c.node_id == evil.key.pubkey)

    conn = await evil.dial(port)
    while sent["pre"] + sent["raw"] + processed() < TARGET_FRAMES:
        if conn.closed:
            conn = await evil.dial(port)
        for _ in range(50):
            r = rng.random()
            if r < 0.7:
                payload = mutate(rng, rng.choice(corpus))
            elif r < 0.85:
                payload = rng.randbytes(rng.randint(0, 64))
            else:
                payload = codec.encode(
                    [
                        rng.randrange(70000),
                        rng.randrange(2**64),
                        rng.random() < 0.5,
                        [rng.randbytes(rng.randint(0, 20))],
                    ]
                )
            try:
                conn._queue_payload([payload])
            except P2PError:
                break
            sent["payload"] += 1
        await asyncio.sleep(0.001)  # let the listener drain

    stop.set()
    await asyncio.wait_for(honest_task, 10.0)
    assert sent["pre"] + sent["raw"] + processed() >= TARGET_FRAMES, sent
    assert len(listener.handshake_errors) >= 400  # phase 1 connections were all refused
    assert listener.misbehaviour, "fuzzed payloads must be reported"
    assert all(c.node_id != honest.key.pubkey for c, _r, _p in listener.misbehaviour)
    assert honest_ok >= 20 and not honest_conn.closed
    newcomer = p2p_node("newcomer", config=config)
    late = await newcomer.dial(port)
    assert await late.request(Echo(b"after the storm"), 5.0) == Echo(b"after the storm")
    assert isinstance(late.remote_hello, Hello)
    assert dataclasses.asdict(listener.hello) == dataclasses.asdict(late.remote_hello)
