"""A fault the node cannot work around stops it loudly (issue 16 row 1, deliverable 1): the loop
exception handler, the consensus driver's write sites, the signing state's persist, and readiness."""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path

import aiohttp
import pytest
from pocl.consensus.signing_state import SigningStateWriteError
from pocl.ledger.storage.store import StoreError
from pocl.node.fatal import EXIT_FATAL, FatalStop
from pocl.node.readiness import (
    CATCHING_UP,
    CONSENSUS_STALLED,
    DISK_LOW,
    STORE_FAILED,
    ReadinessInputs,
    assess,
)

from tests.support.rpc_node import Api, make_node, wait_for


async def test_the_loop_handler_stops_on_an_exception_in_a_timer_callback(caplog) -> None:
    stopped = asyncio.Event()
    fatal = FatalStop(stopped.set)
    loop = asyncio.get_running_loop()
    fatal.install(loop)
    try:

        def finish_height() -> None:
            raise StoreError(
                "writing ledger database at /d/chain.db failed: ENOSPC",
                path="/d/chain.db",
                errno=errno.ENOSPC,
            )

        with caplog.at_level(logging.CRITICAL, logger="pocl.node"):
            loop.call_later(0.01, finish_height)
            await asyncio.wait_for(stopped.wait(), 10)
    finally:
        fatal.uninstall()
    assert fatal.exit_code == EXIT_FATAL and fatal.fault is not None and fatal.fault.errno == errno.ENOSPC
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert "path=/d/chain.db" in critical[0] and "errno=ENOSPC" in critical[0]
    assert loop.get_exception_handler() is None  # uninstall restored the previous handler


async def test_any_exception_escaping_a_callback_stops_but_other_loop_errors_pass_through() -> None:
    stopped = asyncio.Event()
    seen: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    fatal = FatalStop(stopped.set)
    fatal.install(loop)
    try:
        loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                     "exception": OSError(errno.ECONNABORTED, "aborted")})  # fmt: skip
        assert fatal.fault is None and len(seen) == 1  # not ours: the previous handler has it
        # a client flood exhausting descriptors in accept(): asyncio retries by itself, the node goes on
        loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                     "exception": OSError(errno.EMFILE, "Too many open files"),
                                     "socket": object()})  # fmt: skip
        assert fatal.fault is None and not stopped.is_set()

        def buggy() -> None:
            raise KeyError("half-finished height")

        loop.call_soon(buggy)
        await asyncio.wait_for(stopped.wait(), 10)
        assert fatal.fault is not None and "KeyError" in fatal.fault.detail
    finally:
        fatal.uninstall()
        loop.set_exception_handler(None)


def test_readiness_reasons() -> None:
    base = ReadinessInputs(
        syncing=False,
        height=10,
        best_peer_height=10,
        seconds_since_block=1.0,
        expected_block_s=2.0,
        stall_after_blocks=10,
        disk_free_bytes=500 * 2**20,
        min_free_bytes=100 * 2**20,
        fault=None,
    )
    assert assess(base).ready and assess(base).reasons == ()
    import dataclasses

    def reasons(**changes: object) -> tuple[str, ...]:
        return assess(dataclasses.replace(base, **changes)).reasons  # type: ignore[arg-type]

    assert reasons(best_peer_height=20) == (CATCHING_UP,)
    assert assess(dataclasses.replace(base, best_peer_height=20)).lag_blocks == 10
    assert reasons(syncing=True, seconds_since_block=999) == (CATCHING_UP,)
    assert reasons(seconds_since_block=21) == (CONSENSUS_STALLED,)
    assert reasons(disk_free_bytes=50 * 2**20) == (DISK_LOW,)
    assert reasons(disk_free_bytes=50 * 2**20, min_free_bytes=0) == ()
    assert reasons(fault="FATAL: ...") == (STORE_FAILED,)


async def test_ready_and_status_report_readiness(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    await node.start()
    try:
        await wait_for(lambda: node.chain is not None and node.chain.height >= 2, 30, "height 2")
        assert node.rpc is not None
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{node.rpc.port}")
            status, ready = await api.get("/ready")
            assert status == 200 and ready["ready"] is True and ready["reasons"] == [], ready
            status, st = await api.get("/status")
            assert st["readiness"]["ready"] is True
            node.config = node.config.replace("node", min_free_disk_mb=2**40)  # more than any disk has
            status, ready = await api.get("/ready")
            assert status == 503 and ready["reasons"] == [DISK_LOW], ready
            assert "min_free_disk_mb" in ready["detail"][0]
            status, health = await api.get("/health")
            assert status == 200 and health["ok"] is True  # liveness is not readiness
    finally:
        await node.stop()


async def test_an_eio_persisting_the_signing_state_stops_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    node = make_node(tmp_path / "node")
    await node.start()
    try:
        await wait_for(lambda: node.chain is not None and node.chain.height >= 2, 30, "height 2")

        def eio(*_a: object, **_k: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr("pocl.consensus.signing_state.replace_durably", eio)
        with caplog.at_level(logging.CRITICAL, logger="pocl.node"):
            await asyncio.wait_for(node.shutdown.stopping.wait(), 30)
        assert node.fatal.fault is not None and node.fatal.fault.errno == errno.EIO
        assert node.fatal.exit_code == EXIT_FATAL
        critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
        assert (
            len(critical) == 1 and "priv_validator_state.json" in critical[0] and "errno=EIO" in critical[0]
        )
        assert node.driver is not None and node.driver.failed is not None
        signer = node.driver.signer
        assert signer is not None and signer.failed is not None
        # the guard refuses everything from now on, even after the disk came back
        monkeypatch.undo()
        with pytest.raises(SigningStateWriteError):
            signer.sign_vote(1, node.chain.height + 5, 0, bytes(32))  # type: ignore[union-attr]
    finally:
        await node.stop()


async def test_a_full_disk_under_the_seen_commit_write_stops_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_node(tmp_path / "node")
    await node.start()
    try:
        await wait_for(lambda: node.chain is not None and node.chain.height >= 2, 30, "height 2")
        assert node.chain is not None
        store = node.chain.store

        def full(*_a: object, **_k: object) -> None:
            raise StoreError("disk full", path=store.path, errno=errno.ENOSPC)

        monkeypatch.setattr(store, "put_seen_commit", full)
        monkeypatch.setattr(store, "commit_block", full)
        await asyncio.wait_for(node.shutdown.stopping.wait(), 30)
        assert node.fatal.fault is not None and node.fatal.fault.errno == errno.ENOSPC
        assert node.fatal.fault.path == store.path
        assert node.readiness().reasons[0] == STORE_FAILED
    finally:
        await node.stop()
