"""Bounded RPC (issue 16, rows 2 and 3): connection caps at accept, header/body/keep-alive timeouts,
bodies refused by Content-Length before reading, and a budget for all bodies in flight.

The server is the real `RpcServer` on a real loopback socket, with two stub routes (`GET /ping`,
`POST /echo` reading the whole body) so no chain has to run; clients are raw sockets so a test controls
every byte and sees exactly when the server closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pocl.node.config import Config
from pocl.node.logging import SUPPRESSED_FIELD, RateLimitFilter, TextFormatter
from pocl.node.rpc.limits import (
    BODY_BUSY,
    BODY_TOO_LARGE,
    REFUSED_PER_SOURCE,
    REFUSED_TOTAL,
    TIMEOUT_BODY,
    TIMEOUT_HEADER,
    RpcLimits,
)
from pocl.node.rpc.routes import Route
from pocl.node.rpc.server import RpcServer
from prometheus_client import CollectorRegistry, generate_latest

from tests.support.rpc_node import wait_for

KIB = 1024
SHORT_S = 0.4  # the timeouts under test
CLOSE_WAIT_S = (
    5.0  # how long a test waits for the server to close (well above SHORT_S, well below any default)
)


class StubNode:
    """What `RpcServer` needs of a node to start: no chain (core routes answer 503 not_ready)."""

    chain = None
    host = None

    def subscribe(self, _listener: Any) -> Callable[[], None]:
        return lambda: None


async def ping(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


STUB_ROUTES = (
    Route("GET", "/ping", "ping", "test route", handler=ping),
    Route("POST", "/echo", "echo", "test route", handler=echo),
)


@contextlib.asynccontextmanager
async def serving(**limits: Any) -> AsyncIterator[RpcServer]:
    server = RpcServer(
        StubNode(),  # type: ignore[arg-type]
        "127.0.0.1:0",
        extra_routes=STUB_ROUTES,
        limits=RpcLimits(**({"max_body_bytes": 64 * KIB} | limits)),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(server: RpcServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def closed_by_server(reader: asyncio.StreamReader, within: float = CLOSE_WAIT_S) -> bool:
    """True once the server closed (EOF or reset) within `within` seconds, reading and dropping data."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def request(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, raw: bytes
) -> tuple[int, bytes]:
    """Send `raw` and read one response (status, body) with Content-Length framing."""
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WAIT_S)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await asyncio.wait_for(reader.readexactly(length), CLOSE_WAIT_S)


GET_PING = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"


def post_head(length: int | None, path: str = "/echo") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\r\n".encode()


# --------------------------------------------------------------------------- connection caps


async def test_connections_above_the_cap_are_closed_at_accept_and_counted() -> None:
    async with serving(max_connections=3, max_connections_per_source=0) as server:
        held = [await connect(server) for _ in range(3)]
        await wait_for(lambda: server.counters.open_connections == 3, what="3 admitted")
        reader, _writer = await connect(server)
        assert await closed_by_server(reader, within=1.0)  # closed without a request being read
        assert server.counters.refused[REFUSED_TOTAL] == 1
        # the admitted ones are served normally
        assert (await request(held[0][1], held[0][0], GET_PING))[0] == 200
        held[1][1].close()
        await wait_for(lambda: server.counters.open_connections == 2, what="a slot freed")
        reader, writer = await connect(server)
        assert (await request(writer, reader, GET_PING))[0] == 200
        for _r, w in held:
            w.close()
        writer.close()


async def test_one_source_cannot_take_more_than_its_share() -> None:
    async with serving(max_connections=100, max_connections_per_source=2) as server:
        held = [await connect(server) for _ in range(2)]
        await wait_for(lambda: server.counters.open_connections == 2, what="2 admitted")
        reader, _writer = await connect(server)  # all from 127.0.0.1
        assert await closed_by_server(reader, within=1.0)
        assert server.counters.refused[REFUSED_PER_SOURCE] == 1
        assert server.counters.refused[REFUSED_TOTAL] == 0
        for _r, w in held:
            w.close()


# --------------------------------------------------------------------------- timeouts


async def test_slowloris_headers_are_cut_after_the_header_timeout() -> None:
    async with serving(header_timeout_s=SHORT_S) as server:
        reader, writer = await connect(server)
        started = time.monotonic()

        async def dribble() -> None:  # a byte every 50 ms, never finishing the headers
            with contextlib.suppress(ConnectionError):
                for byte in GET_PING[:-2] + b"X-Slow: " + b"a" * 1000:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(dribble())
        assert await closed_by_server(reader)
        elapsed = time.monotonic() - started
        sender.cancel()
        assert SHORT_S * 0.9 <= elapsed < SHORT_S + 2.0
        assert server.counters.timeouts[TIMEOUT_HEADER] == 1


async def test_a_silent_connection_and_slow_headers_after_a_request_are_cut_too() -> None:
    async with serving(header_timeout_s=SHORT_S, keepalive_timeout_s=60) as server:
        silent, _w = await connect(server)
        reader, writer = await connect(server)
        assert (await request(writer, reader, GET_PING))[0] == 200  # kept alive
        writer.write(b"GET /ping HTTP/1.1\r\n")  # the next request's headers never finish
        assert await closed_by_server(reader)
        assert await closed_by_server(silent)
        assert server.counters.timeouts[TIMEOUT_HEADER] == 2


async def test_a_body_not_sent_in_time_is_cut() -> None:
    async with serving(body_timeout_s=SHORT_S) as server:
        reader, writer = await connect(server)
        writer.write(post_head(1000) + b"x" * 10)
        assert await closed_by_server(reader)
        assert server.counters.timeouts[TIMEOUT_BODY] == 1
        assert server.counters.body_bytes_in_flight == 0


async def test_idle_keepalive_connections_are_closed() -> None:
    async with serving(keepalive_timeout_s=SHORT_S, header_timeout_s=60) as server:
        reader, writer = await connect(server)
        assert (await request(writer, reader, GET_PING))[0] == 200
        assert await closed_by_server(reader)
        assert server.counters.timeouts[TIMEOUT_HEADER] == 0  # aiohttp's keep-alive closed it


# --------------------------------------------------------------------------- bodies


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    async with serving(body_timeout_s=60) as server:
        reader, writer = await connect(server)
        status, body = await request(writer, reader, post_head(100 * 1024 * 1024))  # no body byte sent
        assert status == 413 and b'"body_too_large"' in body and str(64 * KIB).encode() in body
        assert server.counters.bodies_refused[BODY_TOO_LARGE] == 1
        assert await closed_by_server(reader)  # not kept alive: its body will not be parsed as a request


async def test_a_chunked_body_over_the_limit_is_refused_while_streaming() -> None:
    async with serving() as server:
        reader, writer = await connect(server)
        chunk = b"y" * (16 * KIB)
        writer.write(post_head(None) + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)))
        status, body = await request(writer, reader, b"")
        assert status == 413 and b'"body_too_large"' in body


async def test_bodies_in_flight_are_bounded_by_the_budget_and_503_when_spent() -> None:
    body = 64 * KIB
    async with serving(max_buffered_body_bytes=2 * body, body_timeout_s=60) as server:
        slow = [await connect(server) for _ in range(2)]
        for _reader, writer in slow:  # admitted: their handlers wait for the rest of the body
            writer.write(post_head(body) + b"z" * 100)
        await wait_for(lambda: server.counters.body_bytes_in_flight == 2 * body, what="2 bodies admitted")
        reader, writer = await connect(server)
        status, text = await request(writer, reader, post_head(body))
        assert status == 503 and b'"rpc_busy"' in text
        assert server.counters.bodies_refused[BODY_BUSY] == 1
        small_reader, small_writer = await connect(server)  # a small body does not fit either
        assert (await request(small_writer, small_reader, post_head(10) + b"0123456789"))[0] == 503
        r0, w0 = slow[0]
        w0.write(b"z" * (body - 100))  # the first finishes: its share of the budget comes back
        status, text = await request(w0, r0, b"")
        assert status == 200 and str(body).encode() in text
        await wait_for(lambda: server.counters.body_bytes_in_flight == body, what="budget released")
        reader, writer = await connect(server)
        assert (await request(writer, reader, post_head(10) + b"0123456789"))[0] == 200
        slow[1][1].close()
        await wait_for(lambda: server.counters.body_bytes_in_flight == 0, what="all released")


async def test_the_node_config_keys_reach_the_server_and_its_metrics() -> None:
    rpc = (
        Config()
        .replace(
            "rpc",
            max_connections=1,
            max_connections_per_source=1,
            header_timeout_s=1.5,
            body_timeout_s=2.5,
            keepalive_timeout_s=3.5,
            max_buffered_body_bytes=1,
            max_body_bytes=100,
        )
        .rpc
    )
    limits = RpcLimits.from_section(rpc)
    assert limits == RpcLimits(100, 1, 1, 1.5, 2.5, 3.5, 1)
    assert limits.body_budget_bytes == 100  # never below one largest body
    async with serving(max_connections=1) as server:
        registry = CollectorRegistry()
        server.register_metrics(registry)
        _held = await connect(server)
        await wait_for(lambda: server.counters.open_connections == 1, what="1 admitted")
        reader, _w = await connect(server)
        assert await closed_by_server(reader, within=1.0)
        text = generate_latest(registry).decode()
        assert 'pocl_rpc_connections_refused_total{reason="max_connections"} 1.0' in text
        assert "pocl_rpc_connections 1.0" in text


# --------------------------------------------------------------------------- accept-error log flood


def test_the_rate_limit_filter_passes_one_line_per_interval_with_the_count_dropped() -> None:
    logger = logging.getLogger("tests.rpc.flood")
    flood = RateLimitFilter(("socket.accept() out of system resource",), interval_s=0.2)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(TextFormatter().format(record))

    handler = Collect()
    logger.addHandler(handler)
    logger.addFilter(flood)
    logger.propagate = False
    try:
        for _ in range(500):
            logger.error("socket.accept() out of system resource\nsocket: <x>")
        logger.error("something else")
        time.sleep(0.25)
        logger.error("socket.accept() out of system resource\nsocket: <x>")
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(flood)
    assert len(lines) == 3
    assert "something else" in lines[1]
    assert f"{SUPPRESSED_FIELD}=499" in lines[2]


EMFILE_SERVER = textwrap.dedent(
    """
    import asyncio, resource, sys
    from pocl.node.logging import setup_logging
    setup_logging("info")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    async def main():
        held = []
        async def on_client(reader, writer):
            held.append(writer)  # never closed: the fds run out
        server = await asyncio.start_server(on_client, "127.0.0.1", 0, backlog=128)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(float(sys.argv[1]))
    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE and EMFILE as on Linux")
def test_failed_accepts_under_emfile_log_one_line_per_interval(tmp_path: Path) -> None:
    """asyncio logs a failed accept for each backlog slot and each retry: without the filter this child
    writes hundreds of lines a second (12,000/s were seen on a node)."""
    script = tmp_path / "emfile_server.py"
    script.write_text(EMFILE_SERVER)
    run_s = 3.0
    child = subprocess.Popen(
        [sys.executable, str(script), str(run_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    clients: list[socket.socket] = []
    try:
        with contextlib.suppress(OSError):  # refused or timed out once the child's backlog is full too
            for _ in range(300):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=1.0))
        _out, err = child.communicate(timeout=run_s + 30)
    finally:
        for c in clients:
            c.close()
        child.kill()
    accept_lines = [line for line in err.splitlines() if "socket.accept() out of system resource" in line]
    assert len(clients) > 64 and 1 <= len(accept_lines) <= 2, err[-2000:]  # unfiltered: ~100 lines/s


def test_the_rpc_never_holds_more_than_a_quarter_of_the_open_file_limit() -> None:
    """With a hard limit of 128 and the default 256 connections, a flood made the validator fail its
    own writes with EMFILE; the cap keeps the rest of the descriptors for P2P, LevelDB and signing."""
    from pocl.node.rpc.limits import MIN_RPC_CONNECTIONS, RpcLimits

    limits = RpcLimits(max_connections=256)
    assert limits.within_fd_limit(128).max_connections == 32
    assert limits.within_fd_limit(1 << 20).max_connections == 256  # a roomy limit changes nothing
    assert limits.within_fd_limit(None) is limits  # no such limit on this platform
    assert RpcLimits(max_connections=0).within_fd_limit(4096).max_connections == 1024  # 0 = unlimited
    assert limits.within_fd_limit(16).max_connections == MIN_RPC_CONNECTIONS
