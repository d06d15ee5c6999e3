"""State-sync test kit: a real chain on LevelDB with signed commits, grown with many accounts (so its
state spans several snapshot chunks), and P2P hosts that serve it: block sync plus the state-sync
reactor, optionally lying (corrupt chunks, forged manifests)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pocl.consensus.bft.messages import make_vote
from pocl.genesis.schema import Genesis, GenesisValidator, build_genesis
from pocl.ledger.block import VOTE_PRECOMMIT, Block, Commit, CommitSig
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.ledger.tx import make_transfer
from pocl.node.chain import Chain, open_genesis_chain
from pocl.node.reactors.statesync import StateSyncReactor
from pocl.node.snapshots import SnapshotDir, write_snapshot
from pocl.p2p.host import Host, HostConfig
from pocl.p2p.sync import SyncService

CHAIN_ID = "statesync-test"
VALIDATORS = [PrivateKey.from_seed_text(f"ss-val-{i}") for i in range(4)]  # consensus keys
OPERATORS = [PrivateKey.from_seed_text(f"ss-operator-{i}") for i in range(4)]
FUNDED = PrivateKey.from_seed_text("ss-funded")
CHUNK_BYTES = 1024  # tiny chunks: a couple of hundred accounts make about ten of them


def make_genesis() -> Genesis:
    return build_genesis(
        CHAIN_ID,
        [
            GenesisValidator(o.pubkey, k.pubkey, 1_000_000, 1_000)
            for o, k in zip(OPERATORS, VALIDATORS, strict=True)
        ],
        accounts=[(FUNDED.address, 10**12)],
        params=ChainParams(),
        genesis_time_ms=1_000,
    )


def open_chain(path: Path, genesis: Genesis) -> Chain:
    return open_genesis_chain(path, genesis)[0]


def sign_commit(block: Block, signers: list[PrivateKey], chain_id: str = CHAIN_ID) -> Commit:
    sigs = [
        CommitSig(k.pubkey, make_vote(k, chain_id, VOTE_PRECOMMIT, block.height, 0, block.hash).signature)
        for k in signers
    ]
    return Commit(block.height, 0, block.hash, sigs)


def grow(chain: Chain, n: int, new_accounts_per_block: int = 0) -> None:
    """`n` blocks, each committed by 3 of the 4 validators, paying `new_accounts_per_block` new addresses."""
    for _ in range(n):
        height = chain.height + 1
        nonce = chain.state.account(FUNDED.address).nonce if chain.state.account(FUNDED.address) else 0
        txs = [
            make_transfer(
                FUNDED, CHAIN_ID, nonce + i, PrivateKey.from_seed_text(f"ss-{height}-{i}").address, 1_000, 1
            )
            for i in range(new_accounts_per_block)
        ]
        last = chain.store.commit(chain.height) if chain.height else None
        block = chain.build_block(txs, VALIDATORS[height % 4].address, 2_000 + height, last)
        assert len(block.txs) == len(txs)
        chain.commit_block(block, sign_commit(block, VALIDATORS[:3]))


def snapshot_now(chain: Chain, directory: Path, keep: int = 4) -> SnapshotDir:
    """A snapshot of the chain's head, written synchronously."""
    snapshots = SnapshotDir(directory)
    view = chain.store.state_view()
    try:
        write_snapshot(view, snapshots, keep, CHUNK_BYTES)
    finally:
        view.release()
    return snapshots


@dataclasses.dataclass
class Server:
    """A P2P host serving `chain` by block sync and its snapshots by the state-sync reactor."""

    key: PrivateKey
    host: Host
    reactor: StateSyncReactor

    @property
    def peer_addr(self) -> str:
        return f"{self.key.pubkey.hex()}@{self.host.listen_addr.host}:{self.host.listen_addr.port}"


async def serve(
    chain: Chain,
    snapshots: SnapshotDir | None,
    genesis: Genesis,
    name: str,
    chunk_filter: Callable[[int, int, bytes], bytes | None] | None = None,
    blocks: Callable[[int], tuple[bytes, bytes] | None] | None = None,
) -> Server:
    """Start a server; `chunk_filter(height, index, data)` and `blocks(height)` (instead of the chain's
    blocks) let a test make it lie."""
    key = PrivateKey.from_seed_text(f"ss-server-{name}")
    host = Host(
        key,
        chain_id=genesis.chain_id,
        genesis_hash=genesis.hash,
        config=HostConfig(listen_host="127.0.0.1", listen_port=0),
        chain_tip=lambda: (chain.height, chain.head_hash),
    )
    SyncService(
        host,
        status=lambda: (chain.height, chain.head_hash),
        get_block_with_commit=blocks or chain.get_block_with_commit,
    )
    reactor = StateSyncReactor(host, chain.store, snapshots)
    if chunk_filter is not None and snapshots is not None:
        original = snapshots.chunk_bytes

        def lying(height: int, index: int) -> bytes | None:
            data = original(height, index)
            return None if data is None else chunk_filter(height, index, data)

        snapshots.chunk_bytes = lying  # type: ignore[method-assign]
    await host.start()
    return Server(key, host, reactor)
