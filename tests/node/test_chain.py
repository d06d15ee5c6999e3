"""Block validity (the paper's valid(v)) on a real LevelDB store, and a node that is fed bad blocks by a peer
over block sync: it rejects them, scores and bans the peer, and keeps its chain intact."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pocl.consensus.bft.messages import make_vote
from pocl.genesis.schema import Genesis, GenesisValidator, build_genesis
from pocl.ledger.block import VOTE_PRECOMMIT, Block, Commit, CommitSig, Header, txs_root
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.ledger.tx import make_transfer
from pocl.node.chain import Chain, InvalidBlock, open_genesis_chain
from pocl.node.config import Config
from pocl.node.node import Node
from pocl.p2p.host import Host, HostConfig
from pocl.p2p.sync import SyncService

VALIDATORS = [PrivateKey.from_seed_text(f"chain-test-val-{i}") for i in range(4)]  # consensus keys
OPERATORS = [PrivateKey.from_seed_text(f"chain-test-operator-{i}") for i in range(4)]  # their accounts
FUNDED = PrivateKey.from_seed_text("chain-test-funded")
PARAMS = ChainParams(unbonding_blocks=40)


def make_genesis() -> Genesis:
    return build_genesis(
        "chain-test",
        [
            GenesisValidator(o.pubkey, k.pubkey, 1_000_000, 1_000)
            for o, k in zip(OPERATORS, VALIDATORS, strict=True)
        ],
        accounts=[(FUNDED.address, 10**9)],
        params=PARAMS,
        genesis_time_ms=1_000,
    )


def open_chain(path: Path, genesis: Genesis) -> Chain:
    return open_genesis_chain(path, genesis)[0]


def sign_commit(block: Block, signers: list[PrivateKey], round_: int = 0) -> Commit:
    sigs = [
        CommitSig(
            k.pubkey, make_vote(k, "chain-test", VOTE_PRECOMMIT, block.height, round_, block.hash).signature
        )
        for k in signers
    ]
    return Commit(block.height, round_, block.hash, sigs)


def grow(chain: Chain, n: int, txs: Callable[[int], list] | None = None) -> list[tuple[Block, Commit]]:
    out = []
    for _ in range(n):
        height = chain.height + 1
        last = chain.store.commit(chain.height) if chain.height else None
        block = chain.build_block(
            txs(height) if txs else [], VALIDATORS[height % 4].address, 2_000 + height, last
        )
        commit = sign_commit(block, VALIDATORS[:3])
        chain.commit_block(block, commit)
        out.append((block, commit))
    return out


def resign(block: Block, **header_changes: object) -> Block:
    """The same block with header fields changed (its hash changes, so any commit must be re-signed)."""
    return dataclasses.replace(block, header=dataclasses.replace(block.header, **header_changes))


@pytest.fixture
def chains(tmp_path: Path) -> tuple[Chain, Chain]:
    genesis = make_genesis()
    honest = open_chain(tmp_path / "honest", genesis)
    fresh = open_chain(tmp_path / "fresh", genesis)
    yield honest, fresh
    honest.store.close()
    fresh.store.close()


def test_valid_blocks_apply_and_roots_match(chains: tuple[Chain, Chain]) -> None:
    honest, fresh = chains
    blocks = grow(
        honest, 3, txs=lambda h: [make_transfer(FUNDED, "chain-test", h - 1, VALIDATORS[0].address, 5, 1)]
    )
    for block, commit in blocks:
        fresh.verify_commit_for(block, commit)
        fresh.commit_block(block, commit)
    assert fresh.state.state_root() == honest.state.state_root()
    assert fresh.head_hash == honest.head_hash


def test_rejects_wrong_state_root(chains: tuple[Chain, Chain]) -> None:
    honest, fresh = chains
    ((block, _commit),) = grow(honest, 1)
    bad = resign(block, state_root=bytes(32))
    with pytest.raises(InvalidBlock) as err:
        fresh.check_block(bad)
    assert err.value.reason == "bad_execution" and "state root" in str(err.value)


def test_rejects_a_tx_with_a_bad_signature(chains: tuple[Chain, Chain]) -> None:
    honest, fresh = chains
    tx = bytearray(make_transfer(FUNDED, "chain-test", 0, VALIDATORS[0].address, 5, 1).raw)
    tx[-1] ^= 1
    ((block, _commit),) = grow(honest, 1)
    bad = Block(dataclasses.replace(block.header, txs_root=txs_root([bytes(tx)])), [bytes(tx)], None)
    with pytest.raises(InvalidBlock) as err:
        fresh.check_block(bad)
    assert err.value.reason == "bad_execution" and "signature" in str(err.value)


def test_rejects_bad_parent_commits(chains: tuple[Chain, Chain]) -> None:
    honest, fresh = chains
    (b1, c1), (b2, _c2) = grow(honest, 2)
    fresh.commit_block(b1, c1)
    # too few signers: 2 of 4 equal validators is not > 2/3
    weak = sign_commit(b1, VALIDATORS[:2])
    bad = resign(b2, last_commit_hash=weak.hash)
    with pytest.raises(InvalidBlock) as err:
        fresh.check_block(dataclasses.replace(bad, last_commit=weak))
    assert err.value.reason == "bad_last_commit"
    # a forged signature
    forged_sig = CommitSig(VALIDATORS[0].pubkey, bytes(64))
    forged = dataclasses.replace(c1, signatures=[forged_sig, *c1.signatures[1:]])
    bad = resign(b2, last_commit_hash=forged.hash)
    with pytest.raises(InvalidBlock) as err:
        fresh.check_block(dataclasses.replace(bad, last_commit=forged))
    assert err.value.reason == "bad_last_commit"
    # a certificate of outsiders
    outsiders = [PrivateKey.from_seed_text(f"outsider-{i}") for i in range(4)]
    fake = sign_commit(b1, outsiders)
    bad = resign(b2, last_commit_hash=fake.hash)
    with pytest.raises(InvalidBlock):
        fresh.check_block(dataclasses.replace(bad, last_commit=fake))
    # a certificate signed by the validators' account keys instead of their consensus keys
    by_accounts = sign_commit(b1, OPERATORS[:3])
    bad = resign(b2, last_commit_hash=by_accounts.hash)
    with pytest.raises(InvalidBlock) as err:
        fresh.check_block(dataclasses.replace(bad, last_commit=by_accounts))
    assert err.value.reason == "bad_last_commit"
    # the genuine block still applies
    fresh.check_block(b2)


def test_rejects_linkage_proposer_and_time_errors(chains: tuple[Chain, Chain]) -> None:
    honest, fresh = chains
    ((b1, _c1),) = grow(honest, 1)
    cases = {
        "wrong_parent": resign(b1, prev_hash=bytes(32)),
        "wrong_height": resign(b1, height=2),
        "bad_proposer": resign(b1, proposer=FUNDED.address),
        # a validator proposes under its consensus address, never its operator (account) address
        "bad_proposer_operator": resign(b1, proposer=OPERATORS[1].address),
        "time_not_increasing": resign(b1, time_ms=0),
    }
    for reason, block in cases.items():
        with pytest.raises(InvalidBlock) as err:
            fresh.check_block(block)
        assert err.value.reason == reason.removesuffix("_operator")
    assert fresh.height == 0


def test_header_hash_covers_every_field() -> None:
    header = Header(1, 2, b"", bytes(20), bytes(32), bytes(32), b"", b"")
    assert resign(Block(header, [], None), time_ms=3).hash != header.hash


async def test_node_bans_a_peer_that_serves_a_bad_block(tmp_path: Path) -> None:
    """A full node syncing from a peer whose block 2 has a valid commit but a wrong state root (a forged
    chain): it refuses the block, scores and bans the peer, and stays at height 1."""
    genesis = make_genesis()
    honest = open_chain(tmp_path / "source", genesis)
    (b1, c1), (b2, _c2) = grow(honest, 2)
    forged = resign(b2, state_root=bytes(32))
    forged_commit = sign_commit(forged, VALIDATORS[:3])
    served = {1: (b1.encode(), c1.encode()), 2: (forged.encode(), forged_commit.encode())}

    evil_key = PrivateKey.from_seed_text("evil-peer")
    evil = Host(
        evil_key,
        chain_id=genesis.chain_id,
        genesis_hash=genesis.hash,
        config=HostConfig(listen_host="127.0.0.1", listen_port=0),
        chain_tip=lambda: (2, forged.hash),
    )
    SyncService(evil, status=lambda: (2, forged.hash), get_block_with_commit=served.get)
    await evil.start()
    home = tmp_path / "victim"
    (home / "data").mkdir(parents=True)
    config = Config().replace(
        "p2p",
        listen_addr="127.0.0.1:0",
        pex=False,
        persistent_peers=[f"{evil_key.pubkey.hex()}@{evil.listen_addr.host}:{evil.listen_addr.port}"],
    )
    config = config.replace("rpc", enabled=False).replace("metrics", enabled=False)
    node = Node(
        home=home,
        config=config,
        genesis=genesis,
        node_key=PrivateKey.from_seed_text("victim"),
        consensus_key=None,
    )
    await node.start()
    try:
        deadline = time.monotonic() + 20
        while not node.host.bans.is_banned(evil_key.pubkey):
            assert time.monotonic() < deadline, "the forging peer was never banned"
            await asyncio.sleep(0.05)
        assert node.chain.height == 1
        assert node.chain.head_hash == b1.hash
    finally:
        await node.stop()
        await evil.stop()
        honest.store.close()


def test_checked_results_are_a_bounded_oldest_first_cache(chains: tuple[Chain, Chain]) -> None:
    from pocl.node.chain import RESULT_CACHE_SIZE

    honest, _ = chains
    extra = 4
    candidates = [
        honest.build_block([], VALIDATORS[1].address, 5_000 + i, None)
        for i in range(RESULT_CACHE_SIZE + extra)
    ]
    assert len({b.hash for b in candidates}) == len(candidates)
    assert len(honest._checked) == RESULT_CACHE_SIZE
    assert all(b.hash not in honest._checked for b in candidates[:extra])  # the oldest went first
    assert all(b.hash in honest._checked for b in candidates[extra:])
    honest.check_block(candidates[0])  # re-checked, remembered again as the newest
    assert candidates[0].hash in honest._checked and candidates[extra].hash not in honest._checked
    honest.commit_block(candidates[-1], sign_commit(candidates[-1], VALIDATORS[:3]))
    assert len(honest._checked) == 0  # every other candidate was built on the old head
