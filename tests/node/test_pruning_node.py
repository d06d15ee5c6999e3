"""Pruning in the node: the policy (retain height within the evidence, unbonding and snapshot windows;
which global models stay), and in-process nodes on real sockets and LevelDB: a pruning validator keeps
finalising and serving recent blocks, reports its earliest height, answers pruned heights with 410
`block_pruned`; an archive node keeps everything; a node that must block-sync from genesis off a pruned
peer says loudly that it needs state sync."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from pocl.genesis.schema import Genesis, GenesisValidator, build_genesis
from pocl.ledger.params import ChainParams
from pocl.ledger.tx import make_transfer
from pocl.node.config import Config
from pocl.node.node import Node
from pocl.node.pruning import PruningPolicy, models_to_keep, oldest_snapshot_on_disk, retain_height

from tests.support.rpc_node import FAST, FAUCET, FAUCET_BALANCE, Api, home_keys, make_node, wait_for

# ------------------------------------------------------------------------------------------ the policy

WINDOWS = ChainParams(evidence_max_age_blocks=50, unbonding_blocks=30)


def test_archive_keeps_everything() -> None:
    assert retain_height(10_000, 0, WINDOWS) == 1
    assert PruningPolicy().archive and not PruningPolicy(retain_blocks=5).archive
    assert not PruningPolicy(model_history=3).archive


def test_retain_height_keeps_the_last_retain_blocks_heights() -> None:
    assert retain_height(1_000, 100, WINDOWS) == 901  # heights 901..1000: 100 blocks
    assert retain_height(60, 100, WINDOWS) == 1  # not that many yet


def test_retain_height_never_cuts_into_the_evidence_window() -> None:
    # evidence about any of the last 50 heights is still valid: keep them even if retain_blocks is 10
    assert retain_height(1_000, 10, WINDOWS) == 951
    params = dataclasses.replace(WINDOWS, evidence_max_age_blocks=5)
    assert retain_height(1_000, 10, params) == 971  # now the unbonding window (30) is the wider one


def test_retain_height_never_cuts_into_the_unbonding_window() -> None:
    params = ChainParams(evidence_max_age_blocks=1, unbonding_blocks=400)
    assert retain_height(1_000, 10, params) == 601
    assert retain_height(1_000, 500, params) == 501  # retain_blocks wider than both windows


def test_retain_height_never_goes_above_the_oldest_snapshot_or_the_head() -> None:
    assert retain_height(1_000, 100, WINDOWS, oldest_snapshot=700) == 700
    assert retain_height(1_000, 100, WINDOWS, oldest_snapshot=990) == 901
    assert retain_height(1, 1, ChainParams(evidence_max_age_blocks=0, unbonding_blocks=0)) == 1


def test_oldest_snapshot_is_read_from_the_snapshot_directory(tmp_path: Path) -> None:
    assert oldest_snapshot_on_disk(tmp_path / "missing") is None
    for name in ("000000002000", "1500.tmp", "snapshot-3000", "notes"):
        (tmp_path / name).mkdir()
    assert oldest_snapshot_on_disk(tmp_path) == 1500


def test_models_to_keep_are_the_current_genesis_and_recent_round_models() -> None:
    h = {n: bytes([n]) * 32 for n in range(10)}  # round n produced model h[n]; h[0] is the genesis model
    outcomes = {n: SimpleNamespace(model_hash=h[n]) for n in range(1, 7)}
    outcomes[5] = SimpleNamespace(model_hash=h[4])  # round 5 left the model unchanged
    pocl = SimpleNamespace(
        genesis_model=lambda: (h[0], b""),
        head=lambda _s: SimpleNamespace(round=7, model_hash=h[6]),  # round 7 open on G_6
        record=lambda _s, n: SimpleNamespace(outcome=outcomes.get(n)),
    )
    state: Any = SimpleNamespace(global_model_hash=h[6])
    assert models_to_keep(state, pocl, 0) is None  # type: ignore[arg-type]
    assert models_to_keep(state, pocl, 3) == {h[0], h[6], h[4], h[3]}  # type: ignore[arg-type]
    assert models_to_keep(state, pocl, 1) == {h[0], h[6]}  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- in-process nodes

# Short evidence/unbonding windows (unbonding still outlasts a default PoCL round of 20 blocks).
PARAMS = dataclasses.replace(FAST, evidence_max_age_blocks=15, unbonding_blocks=20)
RETAIN = 10  # below both windows: the node keeps 20 heights


def pruning_genesis(home: Path) -> Genesis:
    account, consensus = home_keys(home)
    return build_genesis(
        "prune-test",
        [GenesisValidator(account.pubkey, consensus.pubkey, 1_000_000, 1_000_000_000, miner=True)],
        accounts=[(FAUCET.address, FAUCET_BALANCE)],
        params=PARAMS,
        genesis_time_ms=int(time.time() * 1000),
    )


def with_pruning(node: Node, **settings: int) -> Node:
    node.config = node.config.replace("pruning", **settings)
    return node


def head(node: Node) -> int:
    return node.chain.height if node.chain is not None else 0


async def test_pruning_validator_keeps_finalising_and_tells_what_it_pruned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    validator = with_pruning(
        make_node(tmp_path / "v", genesis=pruning_genesis(tmp_path / "v")),
        retain_blocks=RETAIN,
        interval_blocks=5,
    )
    await validator.start()
    archive: Node | None = None
    joiner: Node | None = None
    try:
        assert validator.host is not None and validator.rpc is not None and validator.pruner is not None
        peer = str(validator.host.listen_addr)
        archive = make_node(tmp_path / "a", genesis=validator.genesis, peers=(peer,), validator=False)
        assert archive.config.pruning == Config().pruning and archive.config.pruning.retain_blocks == 0
        await archive.start()
        assert archive.pruner is None
        await wait_for(lambda: head(validator) >= 2, 30, "height 2")
        tx = make_transfer(FAUCET, validator.genesis.chain_id, 0, b"\x09" * 20, 5, 10)
        assert validator.submit_tx(tx.raw).ok
        await wait_for(
            lambda: validator.chain and validator.chain.store.tx_location(tx.hash), 30, "tx committed"
        )
        assert validator.chain is not None
        tx_height = validator.chain.store.tx_location(tx.hash)[0]  # type: ignore[index]

        await wait_for(
            lambda: validator.chain and validator.chain.store.earliest_height > tx_height, 60, "pruning"
        )
        runs = validator.pruner.runs
        h = head(validator)
        await wait_for(lambda: head(validator) >= h + 12 and validator.pruner.runs > runs, 60, "more blocks")
        await wait_for(lambda: head(archive) >= h + 12, 60, "archive follows")

        store = validator.chain.store
        earliest = store.earliest_height
        assert earliest >= head(validator) - 2 * PARAMS.unbonding_blocks  # bounded: it keeps pruning
        assert earliest <= head(validator) + 1 - PARAMS.unbonding_blocks  # never inside the windows
        assert store.block(earliest - 1) is None and store.block(earliest) is not None
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{validator.rpc.port}")
            status, body = await api.get("/status")
            assert status == 200 and body["earliest_block_height"] >= earliest
            for path in (
                "/blocks/1",
                f"/blocks/{tx_height}/commit",
                f"/blocks/{tx_height}/txs",
                "/events?from_height=1",  # a replay must not silently start at the earliest height
            ):
                status, body = await api.get(path)
                assert status == 410 and body["error"]["code"] == "block_pruned", (path, body)
                assert "earliest available height is" in body["error"]["message"]
            status, body = await api.get(f"/txs/{tx.hash.hex()}")
            assert status == 404 and "pruned" in body["error"]["message"]
            latest = head(validator)
            status, body = await api.get(f"/blocks/{latest}")
            assert status == 200 and body["header"]["height"] == latest
            status, body = await api.get(f"/blocks/{latest - 1}/commit")
            assert status == 200

            assert archive.rpc is not None
            full = Api(session, f"http://127.0.0.1:{archive.rpc.port}")
            status, body = await full.get("/status")
            assert status == 200 and body["earliest_block_height"] == 1
            assert (await full.get("/blocks/1"))[0] == 200
            status, body = await full.get(f"/txs/{tx.hash.hex()}")
            assert status == 200 and body["height"] == tx_height

        # a new node whose only peer is the pruned validator cannot block-sync from genesis: it says so
        joiner = make_node(tmp_path / "j", genesis=validator.genesis, peers=(peer,), validator=False)
        with caplog.at_level(logging.ERROR, logger="pocl.node"):
            await joiner.start()
            await wait_for(lambda: "needs state sync" in caplog.text, 30, "the state sync hint")
        assert head(joiner) == 0
        starts = re.search(r"their history starts at (\d+)", caplog.text)
        assert starts is not None and 1 < int(starts.group(1)) <= validator.chain.store.earliest_height
    finally:
        for node in (joiner, archive, validator):
            if node is not None:
                await node.stop()
