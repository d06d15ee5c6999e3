"""Block sync over real sockets: pipelined fetch from several peers, bad and stalling peers."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from pocl.ledger.block import VOTE_PRECOMMIT, Block, Commit, CommitSig, Header, txs_root, vote_sign_bytes
from pocl.ledger.hashing import TAG_VOTE
from pocl.ledger.keys import PrivateKey
from pocl.p2p.host import Host
from pocl.p2p.sync import (
    BadBatch,
    Blocks,
    BlockWithCommit,
    GetBlocks,
    GetStatus,
    Status,
    SyncConfig,
    SyncService,
    check_batch,
)

from tests.support.hostkit import CHAIN_ID, make_host, running, wait_until

pytestmark = pytest.mark.timeout(90)

VALIDATOR = PrivateKey.from_seed_text("sync-validator")
FORGER = PrivateKey.from_seed_text("sync-forger")


def sign_commit(key: PrivateKey, block: Block) -> Commit:
    sig = key.sign(TAG_VOTE, vote_sign_bytes(CHAIN_ID, VOTE_PRECOMMIT, block.height, 0, block.hash))
    return Commit(block.height, 0, block.hash, [CommitSig(key.pubkey, sig)])


def make_chain(n: int) -> list[tuple[Block, Commit]]:
    chain: list[tuple[Block, Commit]] = []
    prev = b""
    for h in range(1, n + 1):
        txs = [f"tx-{h}-{i}".encode() for i in range(3)]
        header = Header(h, 1_000 * h, prev, VALIDATOR.address, txs_root(txs), bytes(32), b"", b"")
        block = Block(header, txs, None)
        chain.append((block, sign_commit(VALIDATOR, block)))
        prev = block.hash
    return chain


CHAIN = make_chain(500)
RAW = [(b.encode(), c.encode()) for b, c in CHAIN]


def verify_commit(block: Block, commit: Commit) -> bool:
    """What the node does: signatures of the (here: single) validator over this block."""
    return all(v.validator == VALIDATOR.pubkey and v.verify_signature() for v in commit.votes(CHAIN_ID))


def good_source(height: int) -> tuple[bytes, bytes] | None:
    return RAW[height - 1] if 1 <= height <= len(RAW) else None


def corrupt_source(height: int) -> tuple[bytes, bytes] | None:
    """Every third block carries a forged commit; the rest are tampered with."""
    if not 1 <= height <= len(CHAIN):
        return None
    block, commit = CHAIN[height - 1]
    if height % 3 == 0:
        return block.encode(), sign_commit(FORGER, block).encode()
    forged = dataclasses.replace(block, txs=[b"stolen funds"])
    return forged.encode(), commit.encode()


def serve(host: Host, source: object, height: int = 500, **kwargs: int) -> SyncService:
    tip = CHAIN[height - 1][0].hash if height else bytes(32)
    return SyncService(host, status=lambda: (height, tip), get_block_with_commit=source, **kwargs)  # type: ignore[arg-type]


class Stalling:
    """Answers status promptly but never answers get_blocks."""

    def __init__(self, host: Host) -> None:
        self.asked = 0
        self.service = serve(host, good_source)
        host._handlers[GetBlocks] = self._hang  # replace the block handler only

    async def _hang(self, conn: object, body: GetBlocks) -> Blocks:
        self.asked += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.slow
async def test_fetches_500_blocks_despite_corrupt_and_stalling_peers() -> None:
    client = make_host("sync-client")
    client_service = serve(client, lambda h: None, height=0)
    good, corrupt, stall = make_host("sync-good"), make_host("sync-corrupt"), make_host("sync-stall")
    serve(good, good_source, max_blocks_per_response=16)  # smaller than a batch: partial answers
    serve(corrupt, corrupt_source)
    staller = Stalling(stall)
    applied: list[Block] = []

    async def apply(block: Block, commit: Commit) -> None:
        assert block.height == len(applied) + 1
        applied.append(block)
        await asyncio.sleep(0)

    async with running(client, good, corrupt, stall):
        for server in (good, corrupt, stall):
            assert await client.connect(server.listen_addr) is not None
        cfg = SyncConfig(batch_size=25, window=200, request_timeout=0.5, status_interval=0.5, cooldown=60)
        syncer = client_service.syncer(start_height=1, apply=apply, verify=verify_commit, config=cfg)
        result = await asyncio.wait_for(syncer.run(), 60)
        assert [b.encode() for b in applied] == [raw for raw, _ in RAW]  # bodies too, not just headers
        assert result.height == 500 and result.applied == 500
        assert result.bad_peers == [corrupt.node_id]
        assert stall.node_id in result.stalled_peers and staller.asked >= 1
        assert client.bans.is_banned(corrupt.node_id)
        assert not client.bans.is_banned(good.node_id)
        await wait_until(lambda: not client.is_connected(corrupt.node_id))
        assert client.is_connected(good.node_id)


def forged_commit_source(height: int) -> tuple[bytes, bytes] | None:
    """Genuine blocks whose commits are signed by a key that is not a validator."""
    if not 1 <= height <= len(CHAIN):
        return None
    block = CHAIN[height - 1][0]
    return RAW[height - 1][0], sign_commit(FORGER, block).encode()


async def test_forged_commits_fail_verification_and_are_refetched() -> None:
    client, good, forger = make_host("forge-client"), make_host("forge-good"), make_host("forge-forger")
    service = serve(client, lambda h: None, height=0)
    serve(good, good_source, height=100)
    serve(forger, forged_commit_source, height=100)
    applied: list[Block] = []
    verified: list[bytes] = []

    def verify(block: Block, commit: Commit) -> bool:
        verified.append(commit.signatures[0].validator)
        return verify_commit(block, commit)

    async def apply(block: Block, commit: Commit) -> None:
        assert verify_commit(block, commit)
        applied.append(block)

    async with running(client, good, forger):
        await client.connect(good.listen_addr)
        await client.connect(forger.listen_addr)
        cfg = SyncConfig(batch_size=10, request_timeout=2.0)
        result = await asyncio.wait_for(
            service.syncer(start_height=1, apply=apply, verify=verify, config=cfg).run(), 30
        )
        assert [b.height for b in applied] == list(range(1, 101))
        if FORGER.pubkey in verified:  # the forger got (and lost) a batch: it is banned, never trusted again
            assert result.bad_peers == [forger.node_id]
            assert client.bans.is_banned(forger.node_id)


async def test_resumes_from_middle_and_stops_when_caught_up() -> None:
    client, a, b = make_host("mid-client"), make_host("mid-a"), make_host("mid-b")
    service = serve(client, lambda h: None, height=0)
    serve(a, good_source, height=120)
    serve(b, good_source, height=80)  # behind a: must not be asked beyond 80
    applied: list[int] = []

    async def apply(block: Block, commit: Commit) -> None:
        applied.append(block.height)

    async with running(client, a, b):
        await client.connect(a.listen_addr)
        await client.connect(b.listen_addr)
        prev = CHAIN[49][0].hash
        cfg = SyncConfig(batch_size=10, request_timeout=2.0)
        syncer = service.syncer(
            start_height=51, apply=apply, verify=verify_commit, prev_hash=prev, config=cfg
        )
        result = await asyncio.wait_for(syncer.run(), 30)
        assert applied == list(range(51, 121))
        assert result.height == 120 and result.bad_peers == [] and result.stalled_peers == []


async def test_wrong_fork_at_start_is_rejected() -> None:
    """Blocks that do not extend our tip are refused even when their commits verify."""
    client, a = make_host("fork-client"), make_host("fork-a")
    service = serve(client, lambda h: None, height=0)
    serve(a, good_source, height=20)
    applied: list[int] = []

    async def apply(block: Block, commit: Commit) -> None:
        applied.append(block.height)

    async with running(client, a):
        await client.connect(a.listen_addr)
        cfg = SyncConfig(batch_size=10, request_timeout=2.0, peer_wait=0.3)
        syncer = service.syncer(
            start_height=11, apply=apply, verify=verify_commit, prev_hash=b"\x01" * 32, config=cfg
        )
        result = await asyncio.wait_for(syncer.run(), 30)
        assert applied == [] and result.bad_peers == [a.node_id] and result.height == 10


async def test_no_peers_returns_promptly() -> None:
    client = make_host("lonely")
    service = serve(client, lambda h: None, height=0)

    async def apply(block: Block, commit: Commit) -> None:
        raise AssertionError("nothing to apply")

    async with running(client):
        syncer = service.syncer(start_height=1, apply=apply, config=SyncConfig(peer_wait=0.2))
        result = await asyncio.wait_for(syncer.run(), 5)
        assert result.height == 0 and result.applied == 0


async def test_waits_for_a_peer_to_appear() -> None:
    client, server = make_host("late-client"), make_host("late-server")
    service = serve(client, lambda h: None, height=0)
    serve(server, good_source, height=30)
    applied: list[int] = []

    async def apply(block: Block, commit: Commit) -> None:
        applied.append(block.height)

    async with running(client, server):
        syncer = service.syncer(
            start_height=1, apply=apply, verify=verify_commit, config=SyncConfig(peer_wait=10)
        )
        run = asyncio.ensure_future(syncer.run())
        await asyncio.sleep(0.05)
        assert not run.done()
        await client.connect(server.listen_addr)
        result = await asyncio.wait_for(run, 10)
        assert applied == list(range(1, 31)) and result.height == 30


async def test_server_caps_count_and_bytes() -> None:
    client, server = make_host("cap-client"), make_host("cap-server")
    serve(client, lambda h: None, height=0)
    serve(server, good_source, max_blocks_per_response=40, max_response_bytes=2_000)
    async with running(client, server):
        await client.connect(server.listen_addr)
        status = await client.request(server.node_id, GetStatus(), timeout=5)
        assert status == Status(1, 500, CHAIN[-1][0].hash)
        reply = await client.request(server.node_id, GetBlocks(1, 1000), timeout=5)
        assert isinstance(reply, Blocks) and reply.start == 1
        size = sum(len(i.block) + len(i.commit) for i in reply.items)
        assert 1 <= len(reply.items) < 40 and size <= 2_000
        assert [Block.decode(i.block).height for i in reply.items] == list(range(1, len(reply.items) + 1))
        big = await client.request(server.node_id, GetBlocks(490, 1000), timeout=5)
        assert len(big.items) <= 11
        past_tip = await client.request(server.node_id, GetBlocks(501, 5), timeout=5)
        assert past_tip.items == []
        nonsense = await client.request(server.node_id, GetBlocks(-5, 5), timeout=5)
        assert nonsense.items == []


def test_check_batch_rejects_inconsistent_batches() -> None:
    items = [BlockWithCommit(b, c) for b, c in RAW[:5]]
    assert [b.height for b, _ in check_batch(1, items)] == [1, 2, 3, 4, 5]
    with pytest.raises(BadBatch):
        check_batch(2, items)  # wrong heights
    with pytest.raises(BadBatch):
        check_batch(1, [items[0], items[2]])  # gap
    with pytest.raises(BadBatch):
        check_batch(1, [BlockWithCommit(RAW[0][0], RAW[1][1])])  # commit for another block
    with pytest.raises(BadBatch):
        check_batch(1, [BlockWithCommit(b"\x93garbage", RAW[0][1])])
    forged_txs = [items[0], BlockWithCommit(*corrupt_source(2))]  # genuine header, forged body
    with pytest.raises(BadBatch, match="body"):
        check_batch(1, forged_txs)
