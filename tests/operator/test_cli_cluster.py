"""The operator CLI end to end against real `pocl-node run` processes (slow: multi-process)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from pocl.genesis.schema import load_genesis
from pocl.ledger.keys import PrivateKey, format_address
from pocl.node import testnet as tn
from pocl.node.cluster import LocalCluster, wait_until

from tests.support.cli_helpers import run_cli, run_json

pytestmark = pytest.mark.slow


def scrape_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def missed(text: str, address: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'pocl_consensus_missed_blocks_total{{validator="{address}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def send_garbage(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass


def test_cli_against_a_four_node_cluster(make_cluster, capsys, tmp_path: Path) -> None:
    cluster: LocalCluster = make_cluster(4)
    cluster.start()
    cluster.wait_for_height(2)
    n0, n1 = cluster.nodes[0], cluster.nodes[1]
    faucet = cluster.testnet.faucet_key_path
    bob = PrivateKey.from_seed_text("operator-bob")
    bob_addr = format_address(bob.address)

    # transfer from a key file, waiting for inclusion
    sent = run_json(
        capsys, "tx", "transfer", bob_addr, "1_000", "--key", faucet, "--node", n0.rpc_url, "--wait"
    )
    assert sent["status"] == "committed" and sent["height"] >= 1 and sent["nonce"] == 0
    acct = run_json(capsys, "query", "account", bob_addr, "--node", n1.rpc_url)
    wait_until(lambda: n1.get(f"/accounts/{bob_addr}")["balance"] == 1_000, 30, "bob funded on node1")
    acct = run_json(capsys, "query", "account", bob_addr, "--node", n1.rpc_url)
    assert acct["balance"] == 1_000

    # two txs back to back: the second takes its nonce from the node's pending nonce
    a = run_json(capsys, "tx", "transfer", bob_addr, "5", "--key", faucet, "--node", n0.rpc_url)
    b = run_json(capsys, "tx", "transfer", bob_addr, "6", "--key", faucet, "--node", n0.rpc_url, "--wait")
    assert (a["nonce"], b["nonce"]) == (1, 2) and a["status"] == "submitted"

    # stake/unstake with the home's account key; --node defaults to the home's RPC address
    home1 = str(n1.home)
    before = n1.get(f"/accounts/{n1.spec.address}")["stake"]
    staked = run_json(capsys, "tx", "stake", "500", "--home", home1, "--wait")
    assert staked["status"] == "committed" and staked["sender"] == n1.spec.address
    unstaked = run_json(capsys, "tx", "unstake", "200", "--home", home1, "--wait")
    assert unstaked["status"] == "committed"
    acct = run_json(capsys, "query", "account", n1.spec.address, "--home", home1)
    assert acct["stake"] == before + 300
    assert [u["amount"] for u in acct["unbonding"]] == [200]
    vals = run_json(capsys, "query", "validators", "--home", home1)
    power = {v["operator"]: v["power"] for v in vals["validators"]}
    assert power[n1.spec.address] > power[cluster.nodes[2].spec.address]

    # human output of the queries
    code, out, err = run_cli(capsys, "query", "tx", staked["hash"], "--home", home1)
    assert code == 0 and "committed at height" in out and "stake" in out
    code, out, err = run_cli(capsys, "query", "block", str(staked["height"]), "--home", home1)
    assert code == 0 and staked["hash"][:16] in out and "proposer" in out
    code, out, err = run_cli(capsys, "query", "block", "--commit", "--node", n0.rpc_url)
    assert code == 0 and "SIGNATURE" in out
    code, out, err = run_cli(capsys, "query", "status", "--home", home1)
    assert code == 0 and cluster.testnet.chain_id in out and n1.spec.address in out
    code, out, err = run_cli(capsys, "query", "validators", "--node", n0.rpc_url)
    assert code == 0 and "SHARE" in out and n1.spec.address in out

    code, out, err = run_cli(capsys, "query", "peers", "--node", n0.rpc_url)
    assert code == 0, err
    assert "3 peers" in out
    pool = run_json(capsys, "query", "mempool", "--node", n0.rpc_url)
    assert pool["count"] >= 0 and isinstance(pool["txs"], list)
    code, out, err = run_cli(capsys, "query", "round", "--node", n0.rpc_url)
    assert (code == 0 and "phase" in out) or "round_not_found" in err

    # a rejected tx: one error line with the node's code, exit status 3
    code, out, err = run_cli(capsys, "tx", "stake", "1", "--home", home1, "--nonce", "0")
    assert code == 3 and err.strip().splitlines()[-1].startswith("error: tx rejected:")
    assert "(nonce_too_low)" in err

    # the real console script: same behaviour from a separate process
    proc = subprocess.run(
        [sys.executable, "-m", "pocl.node.cli", "query", "account", bob_addr, "--node", n0.rpc_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["balance"] == 1_011

    # peers' garbage and malformed RPC bodies: rejected, logged without tracebacks, node keeps going
    n2 = cluster.nodes[2]
    for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 40):
        send_garbage(n2.spec.ports.p2p, payload)
    send_garbage(n2.spec.ports.rpc, b"\x16\x03\x01garbage not http\r\n\r\n")
    send_garbage(n2.spec.ports.rpc, b"POST /txs HTTP/1.1\r\nContent-Length: 5\r\n\r\n{bad}")
    send_garbage(n2.spec.ports.metrics, b"\x00\x01 not http\r\n\r\n")
    for body in (b"", b"[]", b'{"tx": "zz"}', b'{"tx": "00"}', b"\xff" * 100):
        req = urllib.request.Request(n2.rpc_url + "/txs", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 400 and "error" in json.loads(exc.value.read())

    # metrics: a stopped validator shows up as missing blocks on the others
    m3 = cluster.nodes[3]
    text = scrape_metrics(n0.spec.ports.metrics)
    base3, base0 = missed(text, m3.spec.address), missed(text, n0.spec.address)
    m3.kill()
    h = max(cluster.heights())
    cluster.wait_for_height(h + 4, cluster.nodes[:3], timeout=60)
    text = scrape_metrics(n0.spec.ports.metrics)
    gap3, gap0 = missed(text, m3.spec.address) - base3, missed(text, n0.spec.address) - base0
    assert gap3 >= 3 and gap3 > gap0, (gap3, gap0)
    assert "pocl_p2p_peers 2.0" in text or "pocl_p2p_peers 3.0" in text

    n2_height = n2.height()
    cluster.wait_for_height(n2_height + 1, [n2])
    log = n2.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert all(len(line) < 20_000 for line in log.splitlines())


def load_testnet(out: Path) -> tn.Testnet:
    manifest = json.loads((out / "testnet.json").read_text())
    nodes = [
        tn.TestnetNode(
            n["index"],
            Path(n["home"]),
            n["node_id"],
            n["address"],
            n["consensus_address"],
            tn.NodePorts(n["p2p"], n["rpc"], n["metrics"]),
        )
        for n in manifest["nodes"]
    ]
    return tn.Testnet(
        out,
        manifest["chain_id"],
        load_genesis(nodes[0].home / "genesis.json"),
        nodes,
        Path(manifest["faucet_key"]),
    )


def test_testnet_command_output_boots_a_working_cluster(capsys, tmp_path: Path) -> None:
    out = tmp_path / "net"
    data = run_json(
        capsys, "testnet", "--validators", "4", "--out", out, "--base-port", "0", "--insecure-unencrypted"
    )
    assert [n["index"] for n in data["nodes"]] == [0, 1, 2, 3]
    cluster = LocalCluster(load_testnet(out), extra_args=("--log-format", "json"))
    try:
        cluster.start()
        cluster.wait_for_height(3, timeout=90)
        cluster.assert_no_fork(up_to=3)
        status = cluster.nodes[0].status()
        assert status is not None and status["peers"] == 3
        faucet = str(out / "faucet_key.json")
        sent = run_json(
            capsys, "tx", "transfer", data["nodes"][2]["address"], "7", "--key", faucet,
            "--node", cluster.nodes[1].rpc_url, "--wait",
        )  # fmt: skip
        assert sent["status"] == "committed"
        # WebSocket: every block in order, live, from an external process's point of view
        asyncio.run(_ws_in_order(cluster.nodes[2].rpc_url, 4))
    finally:
        cluster.stop_all()
    assert not cluster.running()
    # --log-format json: every log line of a node is one JSON object
    for node in cluster.nodes:
        lines = [ln for ln in node.log_path.read_text().splitlines() if ln and not ln.startswith("=====")]
        docs = [json.loads(line) for line in lines]
        assert {"ts", "level", "logger", "event"} <= set(docs[0])
        assert any(d["event"].startswith("committed block") for d in docs)


async def _ws_in_order(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/events?from_height=1") as ws:
        hello = await ws.receive_json(timeout=10)
        heights: list[int] = []
        while len(heights) < hello["height"] + count:
            msg = await ws.receive_json(timeout=30)
            if msg["type"] == "block":
                heights.append(msg["height"])
        assert heights == list(range(1, len(heights) + 1))
