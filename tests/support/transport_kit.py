"""Transport test kit: real sockets on 127.0.0.1, real keys, test message kinds, a recording peer
(`TNode`: listener + dialler recording every callback) and a tampering proxy (`FrameProxy`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey
from pocl.p2p.connection import ConnectionConfig, PeerConnection
from pocl.p2p.dial import dial, serve
from pocl.p2p.errors import HandshakeError, ProtocolViolation
from pocl.p2p.frames import FrameSealer, SendBuffer, plan_frames
from pocl.p2p.message_ids import MessageId
from pocl.p2p.messages import PROTOCOL_VERSION, Hello, MessageRegistry, default_registry

GENESIS = b"\x11" * 32
CHAIN_ID = "pocl-test"


@dataclasses.dataclass(frozen=True)
class Echo(Struct):
    data: bytes


@dataclasses.dataclass(frozen=True)
class Slow(Struct):
    delay_ms: int


@dataclasses.dataclass(frozen=True)
class Fail(Struct):
    kind: str  # "violation" | "crash" | "none" | "minor"


def seal_message(sealer: FrameSealer, payload: bytes) -> list[bytearray]:
    """The frames of one message, cut as a connection cuts it (`plan_frames`), one buffer each."""
    frames = plan_frames([payload], sealer.chunk)
    return [sealer.seal_frame(f, i < len(frames) - 1) for i, f in enumerate(frames)]


def seal_message_into(sealer: FrameSealer, out: SendBuffer, payload: bytes) -> None:
    """The frames of one message appended to `out`, as a connection queues them."""
    frames = plan_frames([payload], sealer.chunk)
    for i, f in enumerate(frames):
        sealer.seal_part_into(out, f, i < len(frames) - 1)


def make_registry() -> MessageRegistry:
    reg = default_registry()
    reg.register(MessageId(64, "echo", "test"), Echo, 8 * 1024 * 1024)
    reg.register(MessageId(65, "slow", "test"), Slow, 64)
    reg.register(MessageId(66, "fail", "test"), Fail, 64)
    return reg


def make_hello(
    key: PrivateKey, chain_id: str = CHAIN_ID, genesis: bytes = GENESIS, version: int = PROTOCOL_VERSION
) -> Hello:
    return Hello(version, chain_id, genesis, key.pubkey, 7, b"\x22" * 32, "127.0.0.1:26656", "pocl-test/1")


async def default_handler(conn: PeerConnection, body: Struct) -> Struct | None:
    if isinstance(body, Echo):
        return Echo(body.data)
    if isinstance(body, Slow):
        await asyncio.sleep(body.delay_ms / 1000)
        return Echo(b"slow")
    if isinstance(body, Fail):
        if body.kind == "violation":
            raise ProtocolViolation("test_violation", 60)
        if body.kind == "minor":
            raise ProtocolViolation("test_minor", 5)
        if body.kind == "crash":
            raise RuntimeError("handler bug")
        return None
    return None


class TNode:
    """A listener/dialler that records messages, misbehaviour reports, closes and handshake errors."""

    def __init__(
        self,
        name: str,
        *,
        config: ConnectionConfig | None = None,
        hello: Hello | None = None,
        handler: Callable[..., Any] | None = None,
    ) -> None:
        self.key = PrivateKey.from_seed_text(name)
        self.hello = hello or make_hello(self.key)
        self.config = config or ConnectionConfig(handshake_timeout_s=5.0)
        self.registry = make_registry()
        self.user_handler = handler or default_handler
        self.received: list[tuple[PeerConnection, Struct]] = []
        self.misbehaviour: list[tuple[PeerConnection, str, int]] = []
        self.closes: list[tuple[PeerConnection, str]] = []
        self.inbound: list[PeerConnection] = []
        self.outbound: list[PeerConnection] = []
        self.handshake_errors: list[HandshakeError] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _handler(self, conn: PeerConnection, body: Struct) -> Struct | None:
        self.received.append((conn, body))
        return await self.user_handler(conn, body)

    def kwargs(self) -> dict[str, Any]:
        return {
            "node_key": self.key,
            "local_hello": self.hello,
            "registry": self.registry,
            "handler": self._handler,
            "on_misbehaviour": lambda c, r, p: self.misbehaviour.append((c, r, p)),
            "on_close": lambda c, r: self.closes.append((c, r)),
            "config": self.config,
        }

    async def listen(self) -> int:
        self.server = await serve(
            "127.0.0.1",
            0,
            self.inbound.append,
            on_handshake_error=lambda _a, e: self.handshake_errors.append(e),
            **self.kwargs(),
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def dial(self, port: int, expected_node_id: bytes | None = None) -> PeerConnection:
        conn = await dial("127.0.0.1", port, expected_node_id=expected_node_id, **self.kwargs())
        self.outbound.append(conn)
        return conn

    async def stop(self) -> None:
        for conn in [*self.inbound, *self.outbound]:
            conn.close("shutdown")
        if self.server is not None:
            self.server.close()


class FrameProxy:
    """TCP proxy that understands the framing: records and can tamper with/inject client→server frames.

    Bytes are forwarded verbatim; `frames_up`/`frames_down` hold every frame seen after the plaintext
    preamble, `raw_up`/`raw_down` every byte. `tamper(index, frame) -> bytes` rewrites client frame `index`.
    """

    PREAMBLE = 37

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.raw_up = bytearray()
        self.raw_down = bytearray()
        self.frames_up: list[bytes] = []
        self.frames_down: list[bytes] = []
        self.tamper: Callable[[int, bytes], bytes] | None = None
        self.server: asyncio.Server | None = None
        self.port = 0
        self._to_server: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _on_client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._to_server = swriter
        self._tasks.append(
            asyncio.create_task(self._pump(creader, swriter, self.raw_up, self.frames_up, True))
        )
        self._tasks.append(
            asyncio.create_task(self._pump(sreader, cwriter, self.raw_down, self.frames_down, False))
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        raw: bytearray,
        frames: list[bytes],
        up: bool,
    ) -> None:
        try:
            pre = await reader.readexactly(self.PREAMBLE)
            raw += pre
            writer.write(pre)
            while True:
                header = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(header, "big") & 0x7FFFFFFF)
                frame = header + body
                raw += frame
                index = len(frames)
                frames.append(frame)
                if up and self.tamper is not None:
                    frame = self.tamper(index, frame)
                writer.write(frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def inject(self, data: bytes) -> None:
        """Send raw bytes to the server as if they came from the client."""
        assert self._to_server is not None
        self._to_server.write(data)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()
