"""The FrameProtocol parser fed a real sealed stream cut at random points (no sockets: one module)."""

from __future__ import annotations

import random

import pytest

from p2p import errors
from p2p.frames import (
    BIG_FRAME_BYTES,
    RECV_BUFFER_BYTES,
    FrameOpener,
    FrameProtocol,
    FrameSealer,
    SendBuffer,
)

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
        sealer.seal_message_into(out, m)
    stream = bytes(out.take())

    got: list[bytes] = []
    broken: list[str] = []
    proto = FrameProtocol(max_frame_bytes=1024 * 1024 + 4096, max_message_bytes=4 * 1024 * 1024)
    proto.start_frames(FrameOpener(KEY), got.append, lambda v, r: broken.append(r))
    feed(proto, stream, rng, max_piece)
    assert not broken
    assert got == messages


async def test_send_buffer_matches_list_sealing():
    a, b = FrameSealer(KEY, 1000), FrameSealer(KEY, 1000)
    out = SendBuffer(16)
    payloads = [b"x" * n for n in (0, 5, 984, 985, 5000)]
    for p in payloads:
        a.seal_message_into(out, p)
    assert bytes(out.take()) == b"".join(bytes(f) for p in payloads for f in b.seal_message(p))


async def test_message_over_limit_breaks_stream():
    sealer = FrameSealer(KEY, max_frame_bytes=1024)
    stream = b"".join(bytes(f) for f in sealer.seal_message(b"y" * 5000))
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
