"""PoCL rounds on a live 4-process chain: miners, determinism, restart mid-round, sync from genesis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pocl.ml.datasets import load_dataset
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import weights_hash
from pocl.ml.training import accuracy
from pocl.node.cluster import LocalCluster, NodeProcess, RpcError, wait_until
from pocl.node.rpc.model_npz import weights_from_npz

pytestmark = pytest.mark.slow

ROUNDS = 3
ROUND_TIMEOUT_S = 150.0  # round 1 includes four TensorFlow start-ups on a busy 2-core machine


def latest(node: NodeProcess) -> dict:
    return node.get("/rounds/latest")


def final_round(node: NodeProcess, r: int) -> dict | None:
    try:
        rec = node.get(f"/rounds/{r}")
    except Exception:
        return None
    return rec if rec["final"] else None


def model_npz(node: NodeProcess, r: int) -> bytes:
    with urllib.request.urlopen(f"{node.rpc_url}/models/global?round={r}&format=npz", timeout=10) as resp:
        return resp.read()


def kill_after_commit(cluster: LocalCluster, victim: int, observer: int) -> int:
    """SIGKILL `victim` once it has committed in an open round but not revealed yet; returns that round."""
    addr = cluster.testnet.nodes[victim].address
    deadline = time.monotonic() + ROUND_TIMEOUT_S * 2
    while time.monotonic() < deadline:
        try:
            rec = latest(cluster.nodes[observer])
        except RpcError:  # before the first block
            time.sleep(0.2)
            continue
        parts = rec["participants"]
        if not rec["final"] and addr in parts["committers"] and addr not in parts["predictors"]:
            cluster.nodes[victim].kill()
            after = cluster.nodes[observer].get(f"/rounds/{rec['round']}")
            if addr not in after["participants"]["predictors"]:
                return rec["round"]
            cluster.nodes[victim].start()  # its reveal had already landed: try the next round
        time.sleep(0.05)
    raise AssertionError("never caught the miner between commit and reveal")


def test_rounds_deterministic_restart_and_sync(
    mining_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = mining_cluster(4, non_validators=1)  # node4: a full node started later, not mining
    miners = cluster.nodes[:4]
    cluster.start([0, 1, 2, 3])

    # a miner killed (-9) between its commit and its reveal still reveals and votes after restart
    victim = cluster.testnet.nodes[1].address
    r_kill = kill_after_commit(cluster, 1, observer=0)
    cluster.nodes[1].start()
    rec = wait_until(lambda: final_round(miners[0], r_kill), ROUND_TIMEOUT_S, f"round {r_kill} to finalize")
    assert victim in rec["participants"]["predictors"] and victim in rec["participants"]["voters"]
    assert victim in rec["participants"]["revealed"]
    assert "reloaded" in cluster.nodes[1].log_path.read_text()

    last = max(ROUNDS, r_kill + 1)
    wait_until(lambda: final_round(miners[0], last), ROUND_TIMEOUT_S, f"round {last} to finalize")
    cluster.sync_blocks(miners, timeout=60)

    # every node: same blocks (so the same state roots) and the same G_r at every round
    top = min(n.height() for n in miners)
    for h in range(1, top + 1):
        blocks = [n.get(f"/blocks/{h}") for n in miners]
        assert len({b["hash"] for b in blocks}) == 1, f"fork at {h}"
        assert len({b["header"]["state_root"] for b in blocks}) == 1
    models = {}
    for r in range(1, last + 1):
        recs = [n.get(f"/rounds/{r}") for n in miners]
        assert len({x["global_model_hash"] for x in recs}) == 1, f"round {r} G_r differs"
        models[r] = recs[0]["global_model_hash"]
        for x in recs:  # honest miners are never slashed
            assert x["slashes"] == []
    assert any(not miners[0].get(f"/rounds/{r}")["void"] for r in range(1, last + 1))

    # the global model learns: held-out accuracy of G_last well above the genesis model's
    ds = load_dataset("digits")
    spec = get_model("cnn-digits")
    acc = {}
    for r in (0, last):
        w, meta = weights_from_npz(model_npz(miners[0], r))
        assert meta["round"] == r and weights_hash(w).hex() == meta["model_hash"]
        acc[r] = accuracy(spec, w, ds.x_test, ds.y_test)
    assert acc[last] > acc[0] + 0.3, acc

    # RPC error paths, and the routes in the OpenAPI document
    for path, status, code in [
        ("/rounds/999999", 404, "round_not_found"),
        ("/rounds/abc", 400, "bad_round"),
        ("/models/global?format=xml", 400, "bad_format"),
        ("/models/global?round=999999", 404, "model_not_found"),
    ]:
        with pytest.raises(RpcError) as err:
            miners[0].get(path)
        assert (err.value.status, err.value.code) == (status, code), path
    meta = miners[0].get("/models/global")
    assert meta["model"] == "cnn-digits" and meta["round"] >= last and len(meta["shapes"]) == 8
    paths = miners[0].get("/openapi.json")["paths"]
    assert {"/rounds/latest", "/rounds/{n}", "/models/global", "/miner"} <= set(paths)
    mstat = miners[1].get("/miner")
    assert mstat["behavior"] == "honest" and mstat["shard"] == 1 and mstat["num_shards"] == 4
    assert any(r["train_s"] > 0 and r["vote_height"] > 0 for r in mstat["rounds"])

    # the WebSocket stream carries round and phase events
    kinds = asyncio.run(ws_round_events(miners[2].rpc_url))
    assert {"phase", "round"} <= kinds

    # a non-mining node syncing from genesis recomputes the same global models
    end = miners[0].get(f"/rounds/{last}")["end_height"]
    cluster.start([4])
    full = cluster.nodes[4]
    wait_until(lambda: full.height() >= end, 90, f"node4 to sync to height {end}")
    for r in range(1, last + 1):
        assert full.get(f"/rounds/{r}")["global_model_hash"] == models[r]
    assert weights_hash(weights_from_npz(model_npz(full, last))[0]).hex() == models[last]
    with pytest.raises(RpcError, match="not_mining"):
        full.get("/miner")

    # operators: `query round`, `model export` over RPC (.npz, .keras) and from a stopped node's store
    q = cli("query", "round", str(last), "--node", full.rpc_url, "--json")
    assert json.loads(q)["global_model_hash"] == models[last]
    out = tmp_path / "exports"
    cli("model", "export", "--round", str(last), "--out", str(out / "g.npz"), "--node", full.rpc_url)
    w, meta = weights_from_npz(out / "g.npz")
    assert weights_hash(w).hex() == models[last] and meta["round"] == last
    cli("model", "export", "--round", str(last), "--out", str(out / "g.keras"), "--node", full.rpc_url)
    assert zipfile.is_zipfile(out / "g.keras")
    full.stop()
    cli(
        "model",
        "export",
        "--round",
        str(last),
        "--out",
        str(out / "s.npz"),
        "--from-store",
        "--home",
        str(full.home),
    )
    assert weights_hash(weights_from_npz((out / "s.npz").read_bytes())[0]).hex() == models[last]


async def ws_round_events(url: str, timeout: float = 60.0) -> set[str]:
    """Event types seen on /events until both a "phase" and a "round" (finalized) event arrived."""
    import aiohttp

    seen: set[str] = set()
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/events") as ws:
        async with asyncio.timeout(timeout):
            async for msg in ws:
                event = msg.json()
                seen.add(event["type"])
                if event["type"] == "round":
                    assert event["event"] in ("opened", "finalized", "reward", "slash", "jail")
                if event["type"] == "round" and event["event"] == "finalized" and "phase" in seen:
                    return seen
    return seen


def cli(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pocl.node.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
