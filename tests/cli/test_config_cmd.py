"""`pocl-node config get|set`: dotted keys, values parsed for their type and validated by the typed config
before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pocl.node.config import load_config

from tests.support.cli_helpers import run_cli, run_json

PEER_A = "aa" * 32 + "@10.0.0.1:26656"
PEER_B = "bb" * 32 + "@10.0.0.2:26656"


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "n"
    code, _, err = run_cli(capsys, "init", "--home", path, "--insecure-unencrypted")
    assert code == 0, err
    return path


def test_set_then_get_round_trips_and_the_node_loads_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "config", "set", "p2p.persistent_peers", f"{PEER_A}, {PEER_B}", "--home", home
    )
    assert code == 0, err
    assert "restart the node" in out
    code, out, _ = run_cli(capsys, "config", "get", "p2p.persistent_peers", "--home", home)
    assert out.strip() == f"{PEER_A},{PEER_B}"  # what `set` accepts back
    assert load_config(home / "config.toml").p2p.persistent_peers == [PEER_A, PEER_B]
    for key, value, expected in [
        ("p2p.external_addr", "203.0.113.7:26656", "203.0.113.7:26656"),
        ("p2p.seeds", f'["{PEER_B}"]', [PEER_B]),  # a TOML array works too
        ("p2p.pex", "false", False),
        ("p2p.max_inbound", "1_000", 1000),
        ("p2p.dial_timeout_s", "2.5", 2.5),
        ("consensus.timeout_commit_ms", "100", 100),
        ("consensus.timeout_commit_ms", "none", None),  # optional values can be unset
        ("node.moniker", "my node", "my node"),
    ]:
        code, _, err = run_cli(capsys, "config", "set", key, value, "--home", home)
        assert code == 0, (key, err)
        assert run_json(capsys, "config", "get", key, "--home", home)["value"] == expected, key
    config = load_config(home / "config.toml")
    assert config.p2p.external_addr == "203.0.113.7:26656" and config.p2p.pex is False
    assert config.p2p.persistent_peers == [PEER_A, PEER_B]  # earlier settings kept


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("p2p.nope", "1", "unknown key 'p2p.nope' (known in [p2p]: listen_addr"),
        ("nope.key", "1", "unknown section 'nope'"),
        ("p2p", "1", "'p2p' is a section"),
        ("p2p.external_addr", "nohost", "config p2p.external_addr: expected host:port"),
        ("p2p.persistent_peers", "aa@host:99999", "config p2p.persistent_peers[0]: bad port"),
        ("p2p.max_inbound", "-1", "config p2p.max_inbound: must not be negative"),
        ("p2p.max_inbound", "many", "config p2p.max_inbound: must be an integer"),
        ("p2p.pex", "maybe", "config p2p.pex: must be true or false"),
        ("node.log_format", "xml", "config node.log_format: must be one of"),
    ],
)
def test_a_bad_key_or_value_is_one_line_and_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, message: str
) -> None:
    before = (home / "config.toml").read_bytes()
    code, _, err = run_cli(capsys, "config", "set", key, value, "--home", home)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert (home / "config.toml").read_bytes() == before


def test_get_prints_sections_and_defaults(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "config", "get", "rpc.listen_addr", "--home", home)
    assert code == 0 and out.strip() == "127.0.0.1:26657"
    section = run_json(capsys, "config", "get", "p2p", "--home", home)
    assert section["listen_addr"] == "0.0.0.0:26656" and section["persistent_peers"] == []
    everything = run_json(capsys, "config", "get", "--home", home)
    assert everything["metrics"]["listen_addr"] == "127.0.0.1:26660"


def test_config_needs_an_initialised_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "config", "get", "p2p.seeds", "--home", tmp_path / "none")
    assert code == 1 and "pocl-node init" in err
