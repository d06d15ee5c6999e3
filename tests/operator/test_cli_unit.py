"""CLI operator commands without a running network: argument checks, errors, reset, testnet files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pocl.ledger.storage.keystore import read_key_info
from pocl.node.config import Config
from pocl.node.home import init_home
from pocl.node.rpc.client import RpcClient, RpcUnavailable, normalise_url, url_from_config

from tests.support.cli_helpers import run_cli, run_json

ADDR = "0x" + "11" * 20


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    cfg = Config().replace("rpc", listen_addr="127.0.0.1:1")  # nothing listens on port 1
    init_home(h, insecure_keys=True, config=cfg)
    return h


def test_url_from_config_and_normalise() -> None:
    assert url_from_config(Config()) == "http://127.0.0.1:26657"
    assert url_from_config(Config().replace("rpc", listen_addr="0.0.0.0:9")) == "http://127.0.0.1:9"
    assert normalise_url("127.0.0.1:5/") == "http://127.0.0.1:5"
    with pytest.raises(Exception, match="invalid node URL"):
        normalise_url("ftp://x")


def test_unreachable_node_is_one_friendly_line(home: Path, capsys) -> None:
    with pytest.raises(RpcUnavailable, match="cannot reach the node"):
        RpcClient("http://127.0.0.1:1").status()
    for args in (
        ("query", "status", "--home", home),
        ("query", "status", "--node", "http://127.0.0.1:1"),
        ("tx", "transfer", ADDR, "5", "--home", home),
        ("tx", "stake", "5", "--home", home, "--wait"),
    ):
        code, _out, err = run_cli(capsys, *args)
        assert code == 1, (args, err)
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: cannot reach the node at http://127.0.0.1:1"), err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("tx", "transfer", ADDR, "0"), "amount must be between"),
        (("tx", "transfer", ADDR, "abc"), "not an integer amount"),
        (("tx", "stake", "10", "--fee", "-1"), "fee must be between"),
        (("tx", "transfer", "0x1234", "10"), "bad recipient address"),
        (("tx", "transfer", "nobody", "10"), "neither a 0x address nor a key"),
        (("tx", "stake", "10", "--from", "missing"), "no key 'missing'"),
        (("tx", "stake", "10", "--key", "/nonexistent.json"), "not found"),
        (("tx", "stake", "10", "--from", "a", "--key", "b"), "not allowed with"),
        (("tx", "bogus", "1"), "invalid choice"),
        (("query", "account", "nobody"), "neither a 0x address nor a key"),
        (("testnet", "--validators", "0", "--out", "x", "--insecure-unencrypted"), "at least 1"),
        (("testnet", "--validators", "2"), "required"),
        (("testnet", "--out", "x", "--base-port", "80", "--insecure-unencrypted"), "--base-port"),
    ],
)
def test_user_mistakes_are_one_error_line(home: Path, capsys, args, needle) -> None:
    code, _out, err = run_cli(capsys, *args, "--home", home)
    assert code in (1, 2), err
    assert err.count("error:") == 1 and needle in err, err
    assert "Traceback" not in err


def test_testnet_writes_homes_and_prints_how_to_start(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "net"
    code, out, err = run_cli(
        capsys, "testnet", "-n", "2", "--non-validators", "1", "--out", out_dir, "--base-port", "40000",
        "--insecure-unencrypted", "--chain-id", "unit-net",
    )  # fmt: skip
    assert code == 0, err
    assert "testnet unit-net: 2 validators + 1 full nodes" in out
    for i in range(3):
        assert f"pocl-node run --home {out_dir / f'node{i}'}" in out
        assert (out_dir / f"node{i}" / "config.toml").exists()
    assert "http://127.0.0.1:40001" in out and "faucet key" in out
    manifest = json.loads((out_dir / "testnet.json").read_text())
    ports = {p for n in manifest["nodes"] for p in (n["p2p"], n["rpc"], n["metrics"])}
    # node i at 40000 + 10·i: p2p +0, rpc +1, metrics +4 (init's own layout)
    assert ports == {40000 + 10 * i + offset for i in range(3) for offset in (0, 1, 4)}
    # a non-empty directory is refused, nothing overwritten
    code, out, err = run_cli(capsys, "testnet", "-n", "1", "--out", out_dir, "--insecure-unencrypted")
    assert code == 1 and "not an empty directory" in err


def test_testnet_json_and_encrypted_keys(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("POCL_PASSPHRASE", "correct horse")
    data = run_json(capsys, "testnet", "-n", "1", "--out", tmp_path / "enc", "--base-port", "0")
    assert len(data["nodes"]) == 1 and data["chain_id"].startswith("pocl-testnet-")
    for key in ("account_key", "priv_validator_key", "node_key"):
        assert read_key_info(tmp_path / "enc" / "node0" / "keys" / f"{key}.json").encrypted
    assert read_key_info(tmp_path / "enc" / "faucet_key.json").encrypted


def test_unsafe_reset_all_wipes_chain_data_keeps_keys_config_genesis(home: Path, capsys) -> None:
    data = home / "data"
    (data / "chain.db").mkdir()
    (data / "chain.db" / "CURRENT").write_text("x")
    (data / "addrbook.json").write_text("{}")
    (data / "priv_validator_state.json").write_text("{}")
    (data / "datasets" / "mnist").mkdir(parents=True)
    (data / "datasets" / "mnist" / "train.npz").write_bytes(b"data")
    before = {p.name: p.read_bytes() for p in (home / "keys").iterdir()}
    config, genesis = (home / "config.toml").read_text(), (home / "genesis.json").read_text()

    # non-interactive without --yes: refuses and deletes nothing
    code, _out, err = run_cli(capsys, "unsafe-reset-all", "--home", home)
    assert code == 1 and "--yes" in err
    assert (data / "chain.db").exists()

    result = run_json(capsys, "unsafe-reset-all", "--home", home, "--yes")
    assert sorted(Path(p).name for p in result["removed"]) == [
        "addrbook.json",
        "chain.db",
        "priv_validator_state.json",
    ]
    assert sorted(os.listdir(data)) == ["datasets"]
    assert (data / "datasets" / "mnist" / "train.npz").read_bytes() == b"data"
    assert {p.name: p.read_bytes() for p in (home / "keys").iterdir()} == before
    assert (home / "config.toml").read_text() == config
    assert (home / "genesis.json").read_text() == genesis


def test_unsafe_reset_all_refuses_while_the_database_is_open(home: Path, capsys) -> None:
    import plyvel

    db = plyvel.DB(str(home / "data" / "chain.db"), create_if_missing=True)
    try:
        code, _out, err = run_cli(capsys, "unsafe-reset-all", "--home", home, "--yes")
        assert code == 1 and "stop the node first" in err
        assert (home / "data" / "chain.db").exists()
    finally:
        db.close()


def test_unsafe_reset_all_needs_an_initialised_home(tmp_path: Path, capsys) -> None:
    code, _out, err = run_cli(capsys, "unsafe-reset-all", "--home", tmp_path / "nope", "--yes")
    assert code == 1 and "does not exist" in err


class FakeClient:
    """Canned RPC answers (unit tests of the human views only; the real RPC is tested end to end)."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers

    def get(self, path: str) -> object:
        return self.answers[path]


def test_round_view_shows_phase_winners_rewards_and_slashes() -> None:
    import argparse

    from pocl.node.commands import query

    rnd = {
        "round": 3, "phase": "done", "final": True, "start_height": 10, "end_height": 25,
        "participants": {"eligible": ["0xa", "0xb", "0xc"], "committers": ["0xa", "0xb"],
                         "predictors": ["0xa", "0xb"], "voters": ["0xa"]},
        "global_model_hash": "ab" * 32, "void": False, "reason": "", "winners": ["0xa"],
        "total_reward": 90, "rewards": [{"address": "0xa", "role": "winner", "amount": 90}],
        "slashes": [{"address": "0xc", "kind": "no_reveal", "slash_bps": 250, "jail_rounds": 2}],
    }  # fmt: skip
    data, human = query._round(FakeClient({"/rounds/3": rnd}), argparse.Namespace(round="3"))
    assert data is rnd
    for needle in ("done (final)", "10 .. 25", "eligible", "winners", "0xa", "no_reveal", "2.5%", "REWARDED"):
        assert needle in human, needle
    with pytest.raises(Exception, match="round must be a number"):
        query._round(FakeClient({}), argparse.Namespace(round="x"))


def test_peers_and_mempool_views() -> None:
    from pocl.node.commands import query

    _, human = query._peers(FakeClient({"/peers": {"peers": []}}))
    assert human == "no peers"
    peer = {"node_id": "ab" * 32, "outbound": True, "listen_addr": "1.2.3.4:5", "agent": "pocl/0.1"}
    _, human = query._peers(FakeClient({"/peers": {"peers": [peer]}}))
    assert "1 peers" in human and "out" in human and "1.2.3.4:5" in human
    tx = {"hash": "cd" * 32, "kind": "transfer", "sender": "0xs", "nonce": 4, "fee": 10}
    _, human = query._mempool(FakeClient({"/mempool": {"count": 1, "bytes": 200, "txs": [tx]}}))
    assert "1 txs, 200 bytes" in human and "transfer" in human
