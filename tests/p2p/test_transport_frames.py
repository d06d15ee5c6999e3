"""The FrameProtocol parser fed a real sealed stream cut at random points, frame planning for long byte
strings, and the receive low-water mark on a real socket."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket

import pytest
from pocl.ledger.codec import Struct
from pocl.p2p import errors
from pocl.p2p import frames as frames_module
from pocl.p2p.frames import (
    BIG_FRAME_BYTES,
    RECV_BUFFER_BYTES,
    FrameOpener,
    FrameProtocol,
    FrameSealer,
    SendBuffer,
    plan_frames,
)
from pocl.p2p.message_ids import MessageId
from pocl.p2p.messages import MessageRegistry, default_registry

from tests.support.hostkit import wait_until
from tests.support.transport_kit import seal_message, seal_message_into

KEY = b"\x05" * 32


def feed(proto: FrameProtocol, data: bytes, rng: random.Random, max_piece: int) -> None:
    view = memoryview(data)
    while view:
        buf = proto.get_buffer(-1)
        assert len(buf) > 0
        n = min(len(buf), len(view), rng.randint(1, max_piece))
        buf[:n] = view[:n]
        proto.buffer_updated(n)
        view = view[n:]


@pytest.mark.parametrize("max_piece", [1, 7, 4096, 300_000, 3_000_000])
async def test_random_splits_deliver_every_message_intact(max_piece):
    rng = random.Random(max_piece)
    sizes = [
        0,
        1,
        100,
        BIG_FRAME_BYTES - 21,
        BIG_FRAME_BYTES,
        RECV_BUFFER_BYTES - 3,
        RECV_BUFFER_BYTES + 5,
        1024 * 1024,
        2 * 1024 * 1024 + 17,
        *[rng.randint(0, 5000) for _ in range(30)],
    ]
    if max_piece < 100:
        sizes = [s for s in sizes if s < 70_000]  # byte-at-a-time: keep it quick
    rng.shuffle(sizes)
    messages = [rng.randbytes(n) for n in sizes]
    sealer = FrameSealer(KEY, max_frame_bytes=1024 * 1024 + 4096)
    out = SendBuffer()
    for m in messages:
        seal_message_into(sealer, out, m)
    stream = bytes(out.take())

    got: list[bytes] = []
    broken: list[str] = []
    proto = FrameProtocol(max_frame_bytes=1024 * 1024 + 4096, max_message_bytes=4 * 1024 * 1024)
    proto.start_frames(FrameOpener(KEY), lambda segs: got.append(b"".join(segs)), lambda v, r: broken.append(r))
    feed(proto, stream, rng, max_piece)
    assert not broken
    assert got == messages


async def test_send_buffer_matches_list_sealing():
    a, b = FrameSealer(KEY, 1000), FrameSealer(KEY, 1000)
    out = SendBuffer(16)
    payloads = [b"x" * n for n in (0, 5, 984, 985, 5000)]
    for p in payloads:
        seal_message_into(a, out, p)
    assert bytes(out.take()) == b"".join(bytes(f) for p in payloads for f in seal_message(b, p))


async def test_message_over_limit_breaks_stream():
    sealer = FrameSealer(KEY, max_frame_bytes=1024)
    stream = b"".join(bytes(f) for f in seal_message(sealer, b"y" * 5000))
    broken: list[str] = []
    proto = FrameProtocol(max_frame_bytes=1024, max_message_bytes=4096)
    proto.start_frames(FrameOpener(KEY), lambda m: None, lambda v, r: broken.append(r))
    feed(proto, stream, random.Random(1), 10_000)
    assert broken == [errors.REASON_MESSAGE_TOO_LARGE]


async def test_raw_mode_overflow_breaks_stream():
    broken: list[str] = []
    proto = FrameProtocol()
    proto.set_callbacks(lambda m: None, lambda v, r: broken.append(r))
    buf = proto.get_buffer(-1)
    n = len(buf)
    proto.buffer_updated(n)
    assert broken


# ---------------------------------------------------------------------- long byte strings, no copies


@dataclasses.dataclass(frozen=True)
class Weights(Struct):
    round: int
    layers: list[bytes]
    note: str


def weights_registry() -> MessageRegistry:
    reg = default_registry()
    reg.register(MessageId(100, "weights", "test"), Weights, 8 * 1024 * 1024)
    return reg


def test_plan_frames_gives_long_parts_frames_of_their_own():
    long = b"L" * 200_000
    parts = [b"head", b"\xc6" + len(long).to_bytes(4, "big"), long, b"mid", b"x" * 20, b"tail"]
    frames = plan_frames(parts, chunk=64 * 1024)
    assert b"".join(bytes(f) for f in frames) == b"".join(parts)
    assert all(len(f) <= 64 * 1024 for f in frames)
    assert bytes(frames[0]) == b"head" + parts[1]  # small runs are joined
    long_frames = frames[1:5]
    assert all(isinstance(f, memoryview) and f.obj is long for f in long_frames)  # sealed from the object
    assert bytes(frames[-1]) == b"midxxxxxxxxxxxxxxxxxxxxtail"
    assert plan_frames([b"only"], 100) == [b"only"]
    assert plan_frames([], 100) == [b""]


async def test_long_fields_arrive_as_their_own_decrypted_frames():
    reg = weights_registry()
    layers = [random.Random(i).randbytes(n) for i, n in enumerate((1024 * 1024, 70_000, 100))]
    body = Weights(7, layers, "after the long fields")
    parts = reg.encode_body_parts(body)
    assert [p for p in parts if p is layers[0] or p is layers[1]] == layers[:2]
    sealer = FrameSealer(KEY, max_frame_bytes=1024 * 1024 + 4096)
    out = SendBuffer()
    frames = plan_frames(parts, sealer.chunk)
    for i, frame in enumerate(frames):
        sealer.seal_part_into(out, frame, i < len(frames) - 1)
    stream = bytes(out.take())

    got: list[list[bytes]] = []
    proto = FrameProtocol(max_frame_bytes=1024 * 1024 + 4096, max_message_bytes=8 * 1024 * 1024)
    proto.message_limit = reg.limit_for
    proto.start_frames(FrameOpener(KEY), got.append, lambda v, r: pytest.fail(r))
    feed(proto, stream, random.Random(3), 300_000)
    [segments] = got
    env = reg.decode(segments)
    assert env.body == body
    # The decoded long fields are the decrypted frames themselves: no copy after decryption.
    assert env.body.layers[0] is segments[1] and env.body.layers[1] is segments[3]


async def test_receive_low_water_mark_follows_a_large_frame():
    if not frames_module._USE_RCVLOWAT:
        pytest.skip("SO_RCVLOWAT wake-ups are used on Linux only")
    loop = asyncio.get_running_loop()
    got: list[list[bytes]] = []
    protos: list[FrameProtocol] = []

    def factory() -> FrameProtocol:
        proto = FrameProtocol()
        proto.start_frames(FrameOpener(KEY), got.append, lambda v, r: None)
        protos.append(proto)
        return proto

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        message = random.Random(5).randbytes(1024 * 1024)
        frame = FrameSealer(KEY).seal_frame(message)
        await asyncio.to_thread(sock.sendall, frame[:100_000])  # a thread: the loop must keep reading
        await wait_until(lambda: bool(protos) and protos[0]._big_view is not None, what="frame started")
        server_sock = protos[0].transport.get_extra_info("socket")

        def lowat() -> int:
            return server_sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

        assert lowat() == frames_module.RCVLOWAT_BYTES  # ~1 MiB to go: wake up every 256 KiB
        assert protos[0]._big_fill < 100_000 - 4  # so the ~35 KB after the first read wait unread
        await asyncio.to_thread(sock.sendall, frame[100_000:-1000])
        await wait_until(lambda: lowat() < frames_module.RCVLOWAT_BYTES, what="lowered near the end")
        assert lowat() == len(frame) - 4 - protos[0]._big_fill  # never more than what is still due
        await asyncio.to_thread(sock.sendall, frame[-1000:])
        await wait_until(lambda: len(got) == 1, what="message")
        assert got == [[message]] and lowat() == 1
    finally:
        sock.close()
        server.close()


async def test_endless_empty_frames_are_cut_off():
    # Empty frames flagged "more" add nothing to a message's size; the frame cap still ends the stream.
    sealer = FrameSealer(KEY)
    stream = b"".join(bytes(sealer.seal_frame(b"", more=True)) for _ in range(frames_module.FRAMES_BASE + 10))
    broken: list[str] = []
    proto = FrameProtocol(max_message_bytes=4096)
    proto.start_frames(FrameOpener(KEY), lambda m: pytest.fail("no message expected"), lambda v, r: broken.append(r))
    feed(proto, stream, random.Random(2), 50_000)
    assert broken == [errors.REASON_MESSAGE_TOO_LARGE]
    assert len(proto._segments) <= frames_module.FRAMES_BASE + 4096 // frames_module.FRAME_BYTES_PER_EXTRA + 1
