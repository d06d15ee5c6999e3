"""Helpers for network-layer tests: fast-timeout hosts on 127.0.0.1 and condition waits."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable

from pocl.ledger.keys import PrivateKey
from pocl.p2p.connection import ConnectionConfig
from pocl.p2p.host import Host, HostConfig

CHAIN_ID = "pocl-p2p-test"
GENESIS_HASH = hashlib.sha256(b"p2p-test-genesis").digest()

FAST_TRANSPORT = ConnectionConfig(
    handshake_timeout_s=2.0,
    idle_timeout_s=20.0,
    ping_interval_s=5.0,
    request_timeout_s=5.0,
    close_grace_s=0.2,
)


def make_host(name: str, **config: object) -> Host:
    """A host with a deterministic key (`name`) listening on a free loopback port."""
    settings: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "reconnect_base": 0.05,
        "reconnect_max": 0.4,
        "dial_timeout": 3.0,
        "transport": FAST_TRANSPORT,
    }
    settings.update(config)
    cfg = HostConfig(**settings)  # type: ignore[arg-type]
    return Host(PrivateKey.from_seed_text(name), chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, config=cfg)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(*hosts: Host) -> AsyncIterator[None]:
    """Start hosts; stop them all on exit, whatever happened."""
    try:
        for h in hosts:
            await h.start()
        yield
    finally:
        await asyncio.gather(*(h.stop() for h in hosts), return_exceptions=True)


def connected_ids(host: Host) -> set[bytes]:
    return {p.node_id for p in host.peers()}
