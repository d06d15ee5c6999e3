"""`pocl-node init --join URL --genesis-hash HASH` against a running node, the network flags of `init`,
and `genesis hash`."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pocl.node.join import answering_peer, reported_peers
from pocl.node.node import Node
from pocl.node.testnet import free_ports

from tests.support.cli_helpers import run_cli, run_json
from tests.support.rpc_node import make_node, wait_for

ID_A = "aa" * 32
ID_B = "bb" * 32
ID_C = "cc" * 32


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """A validator and a full node peered with it, both in this process on loopback."""
    a = make_node(tmp_path / "a")
    await a.start()
    assert a.host is not None
    b = make_node(
        tmp_path / "b",
        genesis=a.genesis,
        peers=(f"{a.node_key.pubkey.hex()}@127.0.0.1:{a.host.listen_port}",),
        validator=False,
    )
    await b.start()
    try:
        await wait_for(lambda: a.host is not None and len(a.host.peers()) == 1, 20, "the two nodes peered")
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def rpc_url(node: Node) -> str:
    assert node.rpc is not None
    return f"http://127.0.0.1:{node.rpc.port}"


def error_line(err: str) -> str:
    """The one `error:` line (nodes and servers in this process may log to stderr too)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def config_of(home: Path) -> dict:
    return tomllib.loads((home / "config.toml").read_text())


async def test_join_writes_the_genesis_and_the_peers_of_the_node_it_asked(
    network: tuple[Node, Node], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = network
    assert a.host is not None and b.host is not None
    joiner = tmp_path / "joiner"
    expected = "0x" + a.genesis.hash.hex()  # accepted with or without 0x
    code, out, err = await asyncio.to_thread(
        run_cli,
        capsys,
        "init", "--home", joiner, "--join", rpc_url(a), "--genesis-hash", expected,
        "--external-addr", "198.51.100.23:26656", "--insecure-unencrypted",
    )  # fmt: skip
    assert code == 0, err
    assert (joiner / "genesis.json").read_bytes() == (tmp_path / "a" / "genesis.json").read_bytes()
    p2p = config_of(joiner)["p2p"]
    assert p2p["persistent_peers"] == [
        f"{a.node_key.pubkey.hex()}@127.0.0.1:{a.host.listen_port}",  # the node asked, first
        f"{b.node_key.pubkey.hex()}@127.0.0.1:{b.host.listen_port}",  # the peer it reported
    ]
    assert p2p["external_addr"] == "198.51.100.23:26656"
    assert "genesis hash verified" in out
    for step in ("pocl-node run", "pocl-node faucet", "tx stake", "tx register-miner", "tx create-validator"):
        assert step in out, out
    # `genesis hash` prints the hash the node reports in /status, in the same form
    code, printed, _ = run_cli(capsys, "genesis", "hash", "--home", joiner)
    assert code == 0 and printed.strip() == a.genesis.hash.hex()
    status = await asyncio.to_thread(run_json, capsys, "query", "status", "--node", rpc_url(a))
    assert status["genesis_hash"] == printed.strip()


async def test_join_refuses_a_genesis_with_another_hash_and_writes_nothing(
    network: tuple[Node, Node], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = network
    wrong = "11" * 32
    joiner = tmp_path / "joiner"
    code, _, err = await asyncio.to_thread(
        run_cli, capsys, "init", "--home", joiner, "--join", rpc_url(a), "--genesis-hash", wrong,
        "--insecure-unencrypted",
    )  # fmt: skip
    assert code == 1
    line = error_line(err)
    assert line.startswith("error: genesis hash mismatch")
    assert a.genesis.hash.hex() in line and wrong in line
    assert not joiner.exists()


def test_join_needs_a_hash_and_an_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    joiner = tmp_path / "joiner"
    code, _, err = run_cli(
        capsys, "init", "--home", joiner, "--join", "http://127.0.0.1:1", "--insecure-unencrypted"
    )
    assert code == 2 and "--genesis-hash" in err
    (port,) = free_ports(1)  # nothing listens there
    code, _, err = run_cli(
        capsys, "init", "--home", joiner, "--join", f"http://127.0.0.1:{port}", "--genesis-hash", "ab" * 32,
        "--insecure-unencrypted",
    )  # fmt: skip
    line = error_line(err)
    assert (
        code == 1 and f"cannot reach the node at http://127.0.0.1:{port}" in line and "see --node" not in line
    )
    code, _, err = run_cli(
        capsys,
        "init",
        "--home",
        joiner,
        "--join",
        "http://x:1",
        "--genesis-hash",
        "abc",
        "--insecure-unencrypted",
    )
    assert code == 2 and "--genesis-hash" in err
    assert not joiner.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ("<html>hello</html>", "text/html", 200, "did not answer with JSON (is it a pocl node?)"),
        (
            '{"error": {"code": "not_found", "message": "no route"}}',
            "application/json",
            404,
            "not a pocl node",
        ),
        ('{"genesis_hash": "ab"}', "application/json", 200, "did not answer with a genesis document"),
    ],
)
async def test_join_against_something_else_is_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    body: str,
    content_type: str,
    status: int,
    message: str,
) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type, status=status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    joiner = tmp_path / "joiner"
    try:
        code, _, err = await asyncio.to_thread(
            run_cli, capsys, "init", "--home", joiner, "--join", f"http://127.0.0.1:{port}",
            "--genesis-hash", "ab" * 32, "--insecure-unencrypted",
        )  # fmt: skip
    finally:
        await runner.cleanup()
    assert code == 1 and message in error_line(err)
    assert not joiner.exists()


# ------------------------------------------------------------------ which address the joiner dials


def test_the_answering_node_is_dialled_at_its_advertised_address_if_routable() -> None:
    info = {"p2p_address": f"{ID_A}@203.0.113.5:26656"}  # external_addr set (or a routable listen address)
    assert str(answering_peer(info, "10.20.0.1")) == f"{ID_A}@203.0.113.5:26656"


@pytest.mark.parametrize("advertised", ["127.0.0.1", "0.0.0.0"])
def test_a_node_that_does_not_know_its_address_is_dialled_at_the_rpc_host(advertised: str) -> None:
    info = {"p2p_address": f"{ID_A}@{advertised}:26700"}
    assert str(answering_peer(info, "10.20.0.1")) == f"{ID_A}@10.20.0.1:26700"  # its p2p port, the URL's host


def test_reported_peers_are_those_this_machine_can_dial() -> None:
    info = {
        "peers": [
            {"node_id": ID_B, "listen_addr": "10.20.0.2:26656"},
            {"node_id": ID_C, "listen_addr": "127.0.0.1:26656"},  # only its own host can dial that
            {"node_id": ID_C, "listen_addr": "0.0.0.0:26656"},
            {"node_id": ID_A, "listen_addr": "10.20.0.1:26656"},  # the answering node itself
            {"node_id": "zz", "listen_addr": "10.20.0.9:26656"},
            {"node_id": ID_B, "listen_addr": "10.20.0.2:26656"},  # twice
        ]
    }
    assert reported_peers(info, "10.20.0.1", exclude=bytes.fromhex(ID_A)) == [f"{ID_B}@10.20.0.2:26656"]
    local = reported_peers(info, "127.0.0.1", exclude=bytes.fromhex(ID_A))
    assert local == [f"{ID_B}@10.20.0.2:26656", f"{ID_C}@127.0.0.1:26656"]  # a local test network


# ------------------------------------------------------------------ init's network flags without --join


def test_init_writes_peers_seeds_and_addresses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "n"
    code, _, err = run_cli(
        capsys, "init", "--home", home, "--insecure-unencrypted",
        "--peers", f"{ID_A}@10.0.0.1:26656, {ID_B}@10.0.0.2:26656", "--seeds", f"{ID_C}@10.0.0.3:26656",
        "--external-addr", "203.0.113.9:26656", "--p2p-laddr", "0.0.0.0:27000", "--rpc-laddr", "0.0.0.0:27001",
    )  # fmt: skip
    assert code == 0, err
    cfg = config_of(home)
    assert cfg["p2p"]["persistent_peers"] == [f"{ID_A}@10.0.0.1:26656", f"{ID_B}@10.0.0.2:26656"]
    assert cfg["p2p"]["seeds"] == [f"{ID_C}@10.0.0.3:26656"]
    assert cfg["p2p"]["external_addr"] == "203.0.113.9:26656"
    assert cfg["p2p"]["listen_addr"] == "0.0.0.0:27000" and cfg["rpc"]["listen_addr"] == "0.0.0.0:27001"


def test_init_refuses_a_bad_network_flag_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "n"
    code, _, err = run_cli(
        capsys, "init", "--home", home, "--insecure-unencrypted", "--external-addr", "nope"
    )
    assert code == 1 and "p2p.external_addr" in err
    assert not home.exists()


def test_init_checks_a_genesis_file_against_the_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, printed, _ = run_cli(capsys, "genesis", "hash", "localnet")
    good = printed.strip()
    home = tmp_path / "n"
    code, _, err = run_cli(
        capsys,
        "init",
        "--home",
        home,
        "--genesis",
        "localnet",
        "--genesis-hash",
        "22" * 32,
        "--insecure-unencrypted",
    )
    assert code == 1 and "genesis hash mismatch" in err and good in err
    assert not home.exists()
    code, _, err = run_cli(
        capsys,
        "init",
        "--home",
        home,
        "--genesis",
        "localnet",
        "--genesis-hash",
        good,
        "--insecure-unencrypted",
    )
    assert code == 0, err
