"""State sync with real LevelDB stores, real P2P hosts on loopback sockets and a real Node.

- A fresh node restores a snapshot fetched in chunks from several peers while one of them serves
  corrupted chunks (it is banned, its chunks refetched elsewhere), then block-syncs to the tip, and its
  state root and global model equal the chain's at every later height.
- No snapshot on the network: the node falls back to block sync from genesis.
- A restore killed midway resumes with the chunks it had verified.
- A peer offering a snapshot for a forged state root is refused: with the genuine block (manifest does
  not match its state root: banned) or with a forged block whose commit the genesis validators never
  signed; and a header chain that does not reach the operator's trusted hash is refused too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pocl.ledger import codec
from pocl.ledger.block import Block
from pocl.ledger.keys import PrivateKey
from pocl.ledger.signing_validators import KEY_SIGNING_VALIDATORS, NS_CONSENSUS
from pocl.ledger.state import full_key
from pocl.ledger.state_root import BucketTree
from pocl.ledger.storage.store import Store
from pocl.node.chain import Chain, validator_set_of
from pocl.node.config import Config
from pocl.node.node import Node
from pocl.node.reactors.statesync import StateSyncReactor
from pocl.node.snapshots import SnapshotDir, write_snapshot
from pocl.node.statesync import StateSyncClient, StateSyncSettings
from pocl.node.statesync_trust import UntrustedHeader, check_header_chain, verify_commit_trusting
from pocl.p2p.host import Host, HostConfig
from pocl.p2p.sync import SyncService

from tests.support.statesync_kit import (
    CHUNK_BYTES,
    VALIDATORS,
    Server,
    grow,
    make_genesis,
    open_chain,
    serve,
    sign_commit,
    snapshot_now,
)

SNAPSHOT_HEIGHT = 6
TIP = 10


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return value


def corrupt(_height: int, _index: int, data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[Chain, Path]]:
    """A chain of TIP blocks with a snapshot at SNAPSHOT_HEIGHT (about ten chunks)."""
    chain = open_chain(tmp_path / "source", make_genesis())
    grow(chain, SNAPSHOT_HEIGHT, new_accounts_per_block=40)
    snapshot_now(chain, tmp_path / "snapshots")
    grow(chain, TIP - SNAPSHOT_HEIGHT, new_accounts_per_block=5)
    yield chain, tmp_path / "snapshots"
    chain.store.close()


def victim_node(home: Path, peers: list[Server], **statesync: Any) -> Node:
    (home / "data").mkdir(parents=True)
    config = (
        Config()
        .replace("p2p", listen_addr="127.0.0.1:0", pex=False, persistent_peers=[s.peer_addr for s in peers])
        .replace("rpc", enabled=False)
        .replace("metrics", enabled=False)
        .replace("statesync", **({"enable": True, "discovery_time_s": 3.0, "chunk_fetchers": 4} | statesync))
    )
    return Node(
        home=home,
        config=config,
        genesis=make_genesis(),
        node_key=PrivateKey.from_seed_text(f"victim-{home.name}"),
        consensus_key=None,
    )


async def stop_all(node: Node | None, servers: list[Server]) -> None:
    if node is not None:
        await node.stop()
    for s in servers:
        await s.host.stop()


async def test_state_sync_with_a_peer_serving_corrupt_chunks(
    source: tuple[Chain, Path], tmp_path: Path
) -> None:
    chain, snap_dir = source
    genesis = make_genesis()
    servers = [
        await serve(chain, SnapshotDir(snap_dir), genesis, "honest-a"),
        await serve(chain, SnapshotDir(snap_dir), genesis, "honest-b"),
        await serve(chain, SnapshotDir(snap_dir), genesis, "corrupt", chunk_filter=corrupt),
    ]
    evil = servers[2].key.pubkey
    node = victim_node(tmp_path / "victim", servers)
    try:
        await node.start()
        await wait_for(lambda: node.chain.height >= TIP, what="the node to reach the tip")
        assert node.restored is not None and node.restored.height == SNAPSHOT_HEIGHT
        assert evil in node.restored.bad_peers and node.host.bans.is_banned(evil)
        store = node.chain.store
        assert store.block(1) is None and store.block(SNAPSHOT_HEIGHT) is not None  # restored, not replayed
        assert store.earliest_height == SNAPSHOT_HEIGHT
        assert not (tmp_path / "victim" / "data" / "statesync").exists()  # cleaned up once restored
        model = node.chain.state.global_model_hash
        assert model is not None and store.get_model(model) == chain.store.get_model(model)
        for height in range(TIP + 1, TIP + 4):  # the chain goes on; the node follows and agrees
            grow(chain, 1)
            await wait_for(lambda h=height: node.chain.height >= h, what=f"height {height}")
            assert node.chain.state.state_root() == chain.state.state_root()
            assert node.chain.state.global_model_hash == chain.state.global_model_hash
            assert node.chain.head_hash == chain.head_hash
    finally:
        await stop_all(node, servers)


async def test_no_snapshot_on_the_network_falls_back_to_block_sync(
    source: tuple[Chain, Path], tmp_path: Path
) -> None:
    chain, _ = source
    servers = [await serve(chain, None, make_genesis(), "no-snapshots")]
    node = victim_node(tmp_path / "victim", servers, discovery_time_s=1.0)
    try:
        await node.start()
        await wait_for(lambda: node.chain.height >= TIP, what="block sync to the tip")
        assert node.restored is None
        assert node.chain.store.block(1) is not None  # replayed from genesis
        assert node.chain.state.state_root() == chain.state.state_root()
    finally:
        await stop_all(node, servers)


# --------------------------------------------------------------------------- the client on its own


async def client_host(store: Store, servers: list[Server]) -> Host:
    genesis = make_genesis()
    host = Host(
        PrivateKey.generate(),
        chain_id=genesis.chain_id,
        genesis_hash=genesis.hash,
        config=HostConfig(
            listen_host="127.0.0.1", listen_port=0, persistent_peers=tuple(s.peer_addr for s in servers)
        ),
        chain_tip=lambda: (0, bytes(32)),
    )
    SyncService(host, status=lambda: (0, bytes(32)), get_block_with_commit=lambda _h: None)
    StateSyncReactor(host, store, None)
    await host.start()
    await wait_for(lambda: len(host.peers()) == len(servers), what="peers to connect")
    return host


def make_client(host: Host, store: Store, workdir: Path, **settings: Any) -> StateSyncClient:
    genesis = make_genesis()
    state = genesis.initial_state()
    return StateSyncClient(
        host,
        store,
        chain_id=genesis.chain_id,
        genesis_validators=validator_set_of(state),
        workdir=workdir,
        settings=StateSyncSettings(**({"discovery_time_s": 2.0, "chunk_fetchers": 2} | settings)),
    )


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[Store]:
    genesis = make_genesis()
    store = Store.open(tmp_path / "fresh")
    store.init_genesis(genesis.initial_state(), genesis.hash)
    yield store
    store.close()


async def test_a_restore_killed_midway_resumes(
    source: tuple[Chain, Path], tmp_path: Path, fresh_store: Store
) -> None:
    chain, snap_dir = source
    served: set[int] = set()
    stall = [True]  # the first client must not finish before it is killed: 4 chunks (one checks the target)

    def first_three(_height: int, index: int, data: bytes) -> bytes | None:
        if stall[0] and index not in served and len(served) >= 4:
            return None
        served.add(index)
        return data

    servers = [await serve(chain, SnapshotDir(snap_dir), make_genesis(), "resume", chunk_filter=first_three)]
    host = await client_host(fresh_store, servers)
    workdir = tmp_path / "statesync"
    try:
        first = make_client(host, fresh_store, workdir, chunk_fetchers=1)
        task = asyncio.ensure_future(first.run())
        await wait_for(lambda: len(first.fetched) >= 3, what="a few chunks")
        task.cancel()  # killed mid-restore
        with pytest.raises(asyncio.CancelledError):
            await task
        kept = sorted(int(p.name) for p in (workdir / "chunks").iterdir() if p.name.isdigit())
        assert fresh_store.head_height == 0 and len(kept) >= 3
        stall[0] = False
        second = make_client(host, fresh_store, workdir)
        result = await second.run()
        assert result is not None and result.height == SNAPSHOT_HEIGHT
        assert result.chunks_fetched == result.chunks - len(kept)  # only the missing ones
        assert {i for i, _ in second.fetched}.isdisjoint(kept)
        assert fresh_store.state_root() == chain.store.block(SNAPSHOT_HEIGHT).header.state_root
        assert fresh_store.verify_state() == fresh_store.state_root()
    finally:
        await host.stop()
        await stop_all(None, servers)


class _ForgedView:
    """A StateView of entries someone made up (for a liar's snapshot)."""

    def __init__(self, entries: dict[bytes, bytes], height: int) -> None:
        self.entries = entries
        self.tree = BucketTree.from_entries(entries)
        self.height = height
        self.state_root = self.tree.root

    def iter_state_entries(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self.entries.items()))

    def bucket_hashes(self) -> list[bytes]:
        return self.tree.bucket_hashes

    def release(self) -> None:
        pass


def forged_snapshot(
    chain: Chain, directory: Path, signers: list[PrivateKey] | None = None
) -> tuple[bytes, SnapshotDir]:
    """A snapshot at SNAPSHOT_HEIGHT of a state in which FUNDED's balance doubled (and, with `signers`,
    whose recorded signing validators are those keys). Returns (its state root, the snapshot dir)."""
    from pocl.ledger.state import Account

    from tests.support.statesync_kit import FUNDED

    # the state at SNAPSHOT_HEIGHT is the honest snapshot's: rebuild it from the chunks on disk
    honest = SnapshotDir(directory.parent / "snapshots")
    from pocl.node.snapshot_format import check_chunk, decode_manifest

    m = decode_manifest(honest.manifest_bytes(SNAPSHOT_HEIGHT))
    entries = {}
    for i in range(len(m.chunks)):
        entries.update(check_chunk(m, i, honest.chunk_bytes(SNAPSHOT_HEIGHT, i)))
    acct_key = full_key("acct", FUNDED.address)
    acct = Account.decode(entries[acct_key])
    acct.balance *= 2
    entries[acct_key] = acct.encode()
    if signers is not None:
        entries[full_key(NS_CONSENSUS, KEY_SIGNING_VALIDATORS)] = codec.encode(
            [[k.pubkey, 10] for k in signers]
        )
    fake = _ForgedView(entries, SNAPSHOT_HEIGHT)
    snapshots = SnapshotDir(directory)
    write_snapshot(fake, snapshots, 2, CHUNK_BYTES)  # type: ignore[arg-type]
    return fake.state_root, snapshots


async def test_a_snapshot_of_a_forged_state_root_with_the_real_block_gets_its_peer_banned(
    source: tuple[Chain, Path], tmp_path: Path, fresh_store: Store
) -> None:
    chain, _ = source
    _root, forged = forged_snapshot(chain, tmp_path / "forged")
    liar = await serve(chain, forged, make_genesis(), "liar")
    host = await client_host(fresh_store, [liar])
    try:
        client = make_client(host, fresh_store, tmp_path / "statesync")
        assert await client.run() is None  # refused; nothing else offered: block sync instead
        assert host.bans.is_banned(liar.key.pubkey)
        assert fresh_store.head_height == 0
    finally:
        await host.stop()
        await stop_all(None, [liar])


async def test_a_forged_block_and_state_signed_by_non_validators_is_refused(
    source: tuple[Chain, Path], tmp_path: Path, fresh_store: Store
) -> None:
    """The attacker makes up a state whose recorded signers are its own keys, a block with that state
    root and a commit by those keys (> 2/3 of the set it recorded). The genesis validators never signed
    it: refused, and the honest peer's snapshot is restored instead."""
    chain, snap_dir = source
    attackers = [PrivateKey.from_seed_text(f"attacker-{i}") for i in range(3)]
    root, forged = forged_snapshot(chain, tmp_path / "forged", signers=attackers)
    real = chain.store.block(SNAPSHOT_HEIGHT)
    fake_block = dataclasses.replace(real, header=dataclasses.replace(real.header, state_root=root))
    fake_commit = sign_commit(fake_block, attackers)
    genesis = make_genesis()
    fake = (fake_block.encode(), fake_commit.encode())
    liar = await serve(  # its block sync answers with the forged block at the snapshot height
        chain,
        forged,
        genesis,
        "forger",
        blocks=lambda h: fake if h == SNAPSHOT_HEIGHT else chain.get_block_with_commit(h),
    )
    honest = await serve(chain, SnapshotDir(snap_dir), genesis, "honest")
    host = await client_host(fresh_store, [liar, honest])
    try:
        client = make_client(host, fresh_store, tmp_path / "statesync")
        result = await client.run()
        assert result is not None and result.block_hash == real.hash
        assert forged.offers()[0].manifest_hash in client.refused  # it was tried, and refused
        assert fresh_store.state_root() == real.header.state_root != root
    finally:
        await host.stop()
        await stop_all(None, [liar, honest])


async def test_a_header_chain_that_misses_the_trusted_hash_is_refused(
    source: tuple[Chain, Path], tmp_path: Path, fresh_store: Store
) -> None:
    chain, snap_dir = source
    server = await serve(chain, SnapshotDir(snap_dir), make_genesis(), "trusted")
    host = await client_host(fresh_store, [server])
    try:
        wrong = make_client(host, fresh_store, tmp_path / "w", trust_height=TIP, trust_hash=b"\x01" * 32)
        assert await wrong.run() is None
        right = make_client(
            host, fresh_store, tmp_path / "r", trust_height=TIP, trust_hash=chain.store.block(TIP).hash
        )
        result = await right.run()
        assert result is not None and result.height == SNAPSHOT_HEIGHT
    finally:
        await host.stop()
        await stop_all(None, [server])


# --------------------------------------------------------------------------- trust rules


def test_header_chain_links_down_from_the_trusted_hash(source: tuple[Chain, Path]) -> None:
    chain, _ = source
    headers = [chain.store.block(h).header for h in range(SNAPSHOT_HEIGHT + 1, TIP + 1)]
    bottom = chain.store.block(SNAPSHOT_HEIGHT).hash
    check_header_chain(headers, chain.store.block(TIP).hash, bottom)
    with pytest.raises(UntrustedHeader, match="trusted hash"):
        check_header_chain(headers, b"\x00" * 32, bottom)
    with pytest.raises(UntrustedHeader, match="snapshot block"):
        check_header_chain(headers, chain.store.block(TIP).hash, b"\x00" * 32)
    with pytest.raises(UntrustedHeader, match="does not link"):
        check_header_chain(headers[:2] + headers[3:], chain.store.block(TIP).hash, bottom)


def test_commit_must_carry_more_than_a_third_of_the_trusted_power(source: tuple[Chain, Path]) -> None:
    chain, _ = source
    trusted = validator_set_of(make_genesis().initial_state())
    block: Block = chain.store.block(3)
    verify_commit_trusting("statesync-test", sign_commit(block, VALIDATORS[:2]), trusted, block.hash, 3)
    with pytest.raises(UntrustedHeader, match="not more than 1/3"):
        verify_commit_trusting("statesync-test", sign_commit(block, VALIDATORS[:1]), trusted, block.hash, 3)
    outsiders = [PrivateKey.from_seed_text(f"x{i}") for i in range(4)]
    with pytest.raises(UntrustedHeader, match="not more than 1/3"):
        verify_commit_trusting("statesync-test", sign_commit(block, outsiders), trusted, block.hash, 3)
