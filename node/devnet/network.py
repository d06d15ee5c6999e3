"""The devnet's processes: testnet homes with mining enabled, waiting for them to come up, a few demo
transfers, and stopping every process (and process group) the devnet started."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocl.ledger.params import ChainParams
from pocl.node.cluster import LocalCluster
from pocl.node.config import Config, load_config, write_config
from pocl.node.devnet.params import DEVNET_CHAIN_PARAMS, DevnetError, dataset_model, devnet_chain

DEFAULT_MODEL = "cnn-digits"

POLL_S = 0.5
START_TIMEOUT_S = 120.0
DEMO_TRANSFERS = 3
DEMO_AMOUNT = 1_000


def create_devnet(
    out: Path,
    miners: int,
    *,
    dataset: str,
    data_dir: str | None,
    partition: str,
    behaviours: Sequence[str],
    epochs: int,
    batch_size: int,
    model: str | None = None,
    pocl_overrides: dict[str, Any] | None = None,
    params: ChainParams = DEVNET_CHAIN_PARAMS,
    non_validators: int = 0,
) -> LocalCluster:
    """Testnet homes with mining enabled; node i mines share i/N with `behaviours[i]`. The chain's model is
    `model`, else the dataset's (`dataset_model`), else cnn-digits; its limits follow (`devnet_chain`)."""
    model = model or dataset_model(dataset) or DEFAULT_MODEL
    try:
        pocl, params = devnet_chain(miners, model, pocl_overrides, params)
    except ValueError as exc:
        raise DevnetError(str(exc)) from None
    mining = {
        "enabled": True,
        "dataset": dataset,
        "partition": partition,
        "num_shards": miners,
        "epochs": epochs,
        "batch_size": batch_size,
    }
    if data_dir:
        mining["data_dir"] = str(Path(data_dir).resolve())
    cfg = Config().replace("mining", **mining).replace("metrics", enabled=False)
    cluster = LocalCluster.create(
        out, miners, non_validators=non_validators, config=cfg, params=params, pocl=pocl
    )
    for node in cluster.nodes:
        path = node.home / "config.toml"
        conf = load_config(path)
        if node.index < miners:
            conf = conf.replace("mining", shard=node.index, behavior=behaviours[node.index])
        else:
            conf = conf.replace("mining", enabled=False)
        write_config(path, conf)
    return cluster


def wait_until_up(cluster: LocalCluster) -> None:
    """Every node answers `/status`; a node that exits or stays silent is a one-line DevnetError naming its
    last error line and log path."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for node in cluster.nodes:
        while node.status() is None:
            if not node.running:
                raise DevnetError(node.failure("at start"))
            if time.monotonic() > deadline:
                raise DevnetError(
                    f"node{node.index} RPC did not come up in {START_TIMEOUT_S:.0f}s (log: {node.log_path})"
                )
            time.sleep(POLL_S)


def send_demo_transfers(cluster: LocalCluster, count: int = DEMO_TRANSFERS) -> list[str]:
    """A few faucet transfers, so the first blocks carry transactions."""
    from pocl.ledger.storage.keystore import load_key
    from pocl.ledger.tx import make_transfer

    faucet = load_key(cluster.testnet.faucet_key_path, None)
    genesis = cluster.testnet.genesis
    node = cluster.nodes[0]
    acct = node.get(f"/accounts/0x{faucet.address.hex()}")
    nonce = int(acct.get("nonce", 0))
    hashes = []
    for i in range(count):
        to = bytes.fromhex(cluster.testnet.nodes[i % len(cluster.testnet.nodes)].address[2:])
        stx = make_transfer(faucet, genesis.chain_id, nonce + i, to, DEMO_AMOUNT, genesis.params.min_fee)
        hashes.append(node.submit_tx(stx.raw))
    return hashes


def stop_nodes(cluster: LocalCluster) -> None:
    """SIGTERM every node at once, then wait for each (a node takes seconds to stop its miner)."""
    for node in cluster.nodes:
        if node.running and node.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)
    cluster.stop_all()


def kill_leftovers(pids: list[int], wait_s: float = 15.0) -> list[int]:
    """Each node runs in its own session (process group = its pid) with its training worker: make
    sure nothing of a group we started survives (a node that had to be SIGKILLed leaves its worker).
    Waits until the groups are gone; returns those still present after `wait_s` (none expected)."""
    deadline = time.monotonic() + wait_s
    left = list(pids)
    while left:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        time.sleep(0.1)
        left = [pid for pid in left if _group_alive(pid)]
        if time.monotonic() > deadline:
            break
    return left


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
