"""A delaying TCP relay for the network-namespace harness (`tests/support/netns.py`).

The test machines' kernels have no `netem`, so WAN latency is made in user space: in each host
namespace an nftables `nat output` rule redirects every outgoing TCP connection to another test host
to this relay on the loopback (`redirect to :PORT`); the relay reads the connection's original
destination (`SO_ORIGINAL_DST`), dials it from a socket carrying `SO_MARK` (which the rule skips, so
the relay's own connection is not redirected again) and forwards both directions, holding every chunk
for 50 ms ± 10 ms. The server sees the client's real address. Jitter is seeded (one generator per
connection, derived from `--seed` and the connection's number) and never reorders a stream: a chunk
is due no earlier than the chunk before it.

Run: `python -m tests.support.delay_relay --port P --mark M [--delay-ms 50 --jitter-ms 10 --seed S]`;
it prints `READY` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
import sys

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h, level SOL_IP
SOCKADDR_IN_BYTES = 16
READ_BYTES = 64 * 1024
READY_LINE = "READY"


@dataclasses.dataclass(frozen=True)
class DelaySpec:
    delay_s: float
    jitter_s: float

    def sample(self, rng: random.Random) -> float:
        return self.delay_s + rng.uniform(-self.jitter_s, self.jitter_s)


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where the client meant to connect, before the nftables redirect."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, SOCKADDR_IN_BYTES)
    port, packed_ip = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed_ip), port


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spec: DelaySpec, rng: random.Random
) -> None:
    """Copy one direction, each chunk delivered at max(read time + delay, previous chunk's due time)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:  # end of stream, in order after the data
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(deliver())
    last_due = 0.0
    try:
        while True:
            chunk = await reader.read(READ_BYTES)
            last_due = max(last_due, loop.time() + spec.sample(rng))
            queue.put_nowait((last_due, chunk))
            if not chunk:
                break
        await sender
    finally:
        sender.cancel()


class Relay:
    def __init__(self, spec: DelaySpec, mark: int, seed: int) -> None:
        self.spec = spec
        self.mark = mark
        self.seed = seed
        self.connections = 0

    def _rng(self, number: int, direction: str) -> random.Random:
        return random.Random(f"{self.seed}:{number}:{direction}")

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        client_sock = client_w.get_extra_info("socket")
        upstream_w: asyncio.StreamWriter | None = None
        try:
            host, port = original_destination(client_sock)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
            except OSError:
                sock.close()
                raise
            upstream_r, upstream_w = await asyncio.open_connection(sock=sock)
            client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.gather(
                _pump(client_r, upstream_w, self.spec, self._rng(number, "out")),
                _pump(upstream_r, client_w, self.spec, self._rng(number, "back")),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass  # a reset or refused connection ends the relayed one the same way
        finally:
            for w in (client_w, upstream_w):
                if w is not None:
                    w.close()


async def serve(port: int, relay: Relay) -> None:
    server = await asyncio.start_server(relay.handle, "127.0.0.1", port, reuse_address=True)
    print(READY_LINE, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mark", type=int, required=True, help="SO_MARK of upstream sockets (not redirected)")
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--jitter-ms", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    relay = Relay(DelaySpec(args.delay_ms / 1000, args.jitter_ms / 1000), args.mark, args.seed)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, relay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
