"""Block sync against pruned peers over real sockets: a peer tells where its history starts (status and a
`block_pruned` answer), the syncer never asks it below that, fetches older heights from an archive peer,
and, when every peer ahead pruned the height it needs, stops and says it needs state sync."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pocl.ledger.block import VOTE_PRECOMMIT, Block, Commit, CommitSig, Header, txs_root, vote_sign_bytes
from pocl.ledger.hashing import TAG_VOTE
from pocl.ledger.keys import PrivateKey
from pocl.p2p.errors import RemoteError
from pocl.p2p.host import Host
from pocl.p2p.sync import BLOCK_PRUNED, GetBlocks, GetStatus, Status, SyncConfig, SyncService

from tests.support.hostkit import CHAIN_ID, make_host, running

pytestmark = pytest.mark.timeout(60)

EARLIEST = 101
VALIDATOR = PrivateKey.from_seed_text("pruned-sync-validator")


def make_chain(n: int) -> list[tuple[Block, Commit]]:
    chain: list[tuple[Block, Commit]] = []
    prev = b""
    for h in range(1, n + 1):
        txs = [f"tx-{h}".encode()]
        header = Header(h, 1_000 * h, prev, VALIDATOR.address, txs_root(txs), bytes(32), b"", b"")
        block = Block(header, txs, None)
        sig = VALIDATOR.sign(TAG_VOTE, vote_sign_bytes(CHAIN_ID, VOTE_PRECOMMIT, h, 0, block.hash))
        chain.append((block, Commit(h, 0, block.hash, [CommitSig(VALIDATOR.pubkey, sig)])))
        prev = block.hash
    return chain


CHAIN = make_chain(200)
RAW = [(b.encode(), c.encode()) for b, c in CHAIN]


def verify_commit(block: Block, commit: Commit) -> bool:
    return all(v.validator == VALIDATOR.pubkey and v.verify_signature() for v in commit.votes(CHAIN_ID))


class PrunedSource:
    """Serves heights EARLIEST..top (as a pruned store would) and records every height asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, height: int) -> tuple[bytes, bytes] | None:
        self.asked.append(height)
        return RAW[height - 1] if EARLIEST <= height <= len(RAW) else None


def serve(host: Host, source: object, height: int, base: int = 1) -> SyncService:
    tip = CHAIN[height - 1][0].hash
    return SyncService(
        host,
        status=lambda: (height, tip),
        get_block_with_commit=source,  # type: ignore[arg-type]
        base_height=lambda: base,
    )


def archive(height: int) -> tuple[bytes, bytes] | None:
    return RAW[height - 1] if 1 <= height <= len(RAW) else None


async def test_a_pruned_peer_says_where_its_history_starts() -> None:
    client, pruned = make_host("pr-client"), make_host("pr-server")
    serve(client, archive, 1)
    source = PrunedSource()
    serve(pruned, source, 200, base=EARLIEST)
    async with running(client, pruned):
        assert await client.connect(pruned.listen_addr) is not None
        status = await client.request(pruned.node_id, GetStatus(), 5)
        assert isinstance(status, Status) and status.base_height == EARLIEST and status.best_height == 200
        with pytest.raises(RemoteError) as err:
            await client.request(pruned.node_id, GetBlocks(40, 10), 5)
        assert err.value.code == BLOCK_PRUNED
        assert f"earliest available height is {EARLIEST}" in err.value.detail
        assert source.asked == []  # refused up front, not answered with silence
        blocks = await client.request(pruned.node_id, GetBlocks(EARLIEST, 3), 5)
        assert [item.block for item in blocks.items] == [raw for raw, _ in RAW[EARLIEST - 1 : EARLIEST + 2]]


async def test_old_heights_come_from_the_archive_peer_only() -> None:
    client, pruned, full = make_host("mix-client"), make_host("mix-pruned"), make_host("mix-archive")
    service = serve(client, archive, 1)
    source = PrunedSource()
    serve(pruned, source, 200, base=EARLIEST)
    serve(full, archive, 150)
    applied: list[int] = []

    async def apply(block: Block, commit: Commit) -> None:
        applied.append(block.height)

    async with running(client, pruned, full):
        await client.connect(pruned.listen_addr)
        await client.connect(full.listen_addr)
        cfg = SyncConfig(batch_size=10, request_timeout=2.0)
        result = await asyncio.wait_for(
            service.syncer(start_height=1, apply=apply, verify=verify_commit, config=cfg).run(), 30
        )
        assert applied == list(range(1, 201)) and result.history_starts_at is None
        assert source.asked and min(source.asked) >= EARLIEST  # never asked below its history
        assert result.bad_peers == [] and not client.bans.is_banned(pruned.node_id)


async def test_a_peer_that_hides_its_pruning_in_status_is_asked_elsewhere() -> None:
    client, liar, full = make_host("lie-client"), make_host("lie-pruned"), make_host("lie-archive")
    service = serve(client, archive, 1)
    source = PrunedSource()
    serve(liar, source, 200, base=EARLIEST)
    liar._handlers[GetStatus] = lambda _conn, _body: Status(1, 200, CHAIN[199][0].hash)  # claims all
    serve(full, archive, 200)
    applied: list[int] = []

    async def apply(block: Block, commit: Commit) -> None:
        applied.append(block.height)

    async with running(client, liar, full):
        await client.connect(liar.listen_addr)
        await client.connect(full.listen_addr)
        cfg = SyncConfig(batch_size=10, request_timeout=2.0)
        result = await asyncio.wait_for(
            service.syncer(start_height=1, apply=apply, verify=verify_commit, config=cfg).run(), 30
        )
        assert applied == list(range(1, 201)) and result.bad_peers == []


async def test_no_peer_has_the_next_height_so_the_node_needs_state_sync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, a, b = make_host("gap-client"), make_host("gap-a"), make_host("gap-b")
    service = serve(client, archive, 1)
    serve(a, PrunedSource(), 200, base=EARLIEST)
    serve(b, PrunedSource(), 180, base=EARLIEST + 20)
    applied: list[int] = []

    async def apply(block: Block, commit: Commit) -> None:
        applied.append(block.height)

    async with running(client, a, b):
        await client.connect(a.listen_addr)
        await client.connect(b.listen_addr)
        cfg = SyncConfig(batch_size=10, request_timeout=2.0, peer_wait=20.0)  # it must not wait for this
        with caplog.at_level(logging.WARNING, logger="pocl.p2p.sync"):
            result = await asyncio.wait_for(
                service.syncer(start_height=1, apply=apply, verify=verify_commit, config=cfg).run(), 10
            )
        assert applied == [] and result.height == 0
        assert result.history_starts_at == EARLIEST
        assert "needs state sync" in caplog.text
