"""config.toml: defaults, round trip, strict errors naming section.key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pocl.node.config import Config, load_config, parse_host_port, write_config
from pocl.node.errors import ConfigError


def test_defaults_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path, Config())
    assert load_config(path) == Config()
    text = path.read_text()
    for section in (
        "[node]",
        "[p2p]",
        "[rpc]",
        "[consensus]",
        "[mempool]",
        "[mining]",
        "[storage]",
        "[metrics]",
    ):
        assert section in text
    assert 'listen_addr = "127.0.0.1:26657"' in text and 'listen_addr = "127.0.0.1:26660"' in text


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path) == Config()


def test_partial_sections_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[p2p]\nseeds = ["aa@127.0.0.1:1"]\nhandshake_timeout_s = 3\n'
        "[consensus]\ntimeout_commit_ms = 100\n[mining]\nenabled = true\n"
    )
    cfg = load_config(path)
    assert cfg.p2p.seeds == ["aa@127.0.0.1:1"] and cfg.p2p.handshake_timeout_s == 3.0
    assert cfg.consensus.timeout_overrides() == {"timeout_commit_ms": 100}
    assert cfg.mining.enabled and cfg.rpc == Config().rpc
    assert cfg.p2p.loopback_congestion_control == ["cubic", "reno"]
    write_config(path, cfg)
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[p2p]\nmax_inbund = 5\n", "config p2p.max_inbund: unknown key"),
        ("[nope]\n", "unknown section [nope]"),
        ('[p2p]\nmax_inbound = "5"\n', "config p2p.max_inbound: must be an integer"),
        ("[rpc]\nenabled = 1\n", "config rpc.enabled: must be a boolean"),
        ("[p2p]\nseeds = [1]\n", "config p2p.seeds: must be a list of strings"),
        ("[mempool]\nmax_txs = -1\n", "config mempool.max_txs: must not be negative"),
        ('[rpc]\nlisten_addr = "localhost"\n', "config rpc.listen_addr: expected host:port"),
        ('[p2p]\npersistent_peers = ["id@host:99999"]\n', "config p2p.persistent_peers[0]: bad port"),
        ('[node]\nlog_format = "xml"\n', "config node.log_format"),
        ("[p2p]\nban_duration_s = 0\n", "config p2p.ban_duration_s: must be positive"),
        (
            '[p2p]\nloopback_congestion_control = ["reno", ""]\n',
            "config p2p.loopback_congestion_control[1]: not an algorithm name",
        ),
        ('[node]\nlog_level = "loud"\n', "config node.log_level: unknown log level"),
        ("[consensus]\ntimeout_commit_ms = 1.5\n", "config consensus.timeout_commit_ms: must be an integer"),
        ("p2p = 3\n", "config p2p: must be a table"),
        ("[p2p\n", "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.toml")


def test_resolve_relative_paths(tmp_path: Path) -> None:
    cfg = Config()
    assert cfg.resolve(tmp_path, cfg.storage.db_path) == tmp_path / "data" / "chain.db"
    assert cfg.resolve(tmp_path, "/abs/db") == Path("/abs/db")


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:26656") == ("127.0.0.1", 26656)
    assert parse_host_port("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        parse_host_port(":80")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # the whole message, so the wording stays one readable line naming the key and the bad value
        ('[p2p]\nmax_inbound = "5"\n', "config p2p.max_inbound: must be an integer, got '5'"),
        ("[p2p]\nmax_inbound = true\n", "config p2p.max_inbound: must be an integer, got True"),
        ('[p2p]\nhandshake_timeout_s = "3"\n', "config p2p.handshake_timeout_s: must be a number, got '3'"),
        ('[p2p]\nseeds = "a@h:1"\n', "config p2p.seeds: must be a list of strings, got 'a@h:1'"),
        ('[p2p]\nseeds = ["a@h:1", 2]\n', "config p2p.seeds: must be a list of strings, got ['a@h:1', 2]"),
        ('[p2p]\nseeds = ["a@h:1", "b@h"]\n', "config p2p.seeds[1]: expected host:port, got 'h'"),
        ('[rpc]\nlisten_addr = "localhost"\n', "config rpc.listen_addr: expected host:port, got 'localhost'"),
        ("[mining]\nepochs = -2\n", "config mining.epochs: must not be negative, got -2"),
        ("[p2p]\nidle_timeout_s = -0.5\n", "config p2p.idle_timeout_s: must not be negative, got -0.5"),
        (
            '[consensus]\ntimeout_commit_ms = "1"\n',
            "config consensus.timeout_commit_ms: must be an integer, got '1'",
        ),
        ('[node]\nmoniker = ""\n', "config node.moniker: must be 1..64 characters"),
        ('[node]\nlog_format = "xml"\n', "config node.log_format: must be one of text, json, got 'xml'"),
        (
            "[rpc]\nlisten_adr = 1\n",
            "config rpc.listen_adr: unknown key (known: enabled, listen_addr, max_body_bytes, "
            "max_ws_clients, max_connections, max_connections_per_source, header_timeout_s, "
            "body_timeout_s, keepalive_timeout_s, max_buffered_body_bytes, unsafe, cors_allowed_origins)",
        ),
        (
            "[rcp]\n",
            "config: unknown section [rcp] (known: node, p2p, rpc, consensus, mempool, mining, storage, pruning, metrics, faucet, statesync)",
        ),
        ('rpc = "x"\n', "config rpc: must be a table [rpc]"),
    ],
)
def test_error_wording_is_one_line_with_key_value_and_file(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{expected} [{path}]"


def test_first_error_is_reported_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[p2p]\nmax_inbound = -1\n[rpc]\nlisten_addr = "x"\n')
    with pytest.raises(ConfigError, match=r"^config p2p\.max_inbound: must not be negative"):
        load_config(path)


def test_floats_accept_toml_integers_and_stay_floats(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[p2p]\ndial_timeout_s = 2\n")
    value = load_config(path).p2p.dial_timeout_s
    assert value == 2.0 and isinstance(value, float)


def test_replace_validates_and_names_the_key() -> None:
    cfg = Config().replace("p2p", persistent_peers=("id@127.0.0.1:1",))  # a tuple from Python is fine
    assert cfg.p2p.persistent_peers == ["id@127.0.0.1:1"]
    assert Config().replace("rpc", unsafe=True).rpc.unsafe and not Config().rpc.unsafe  # a copy
    with pytest.raises(ConfigError, match=r"^config rpc\.listen_addr: expected host:port, got 'nowhere'$"):
        Config().replace("rpc", listen_addr="nowhere")
    with pytest.raises(ConfigError, match=r"^config mining\.shard: must not be negative, got -1$"):
        Config().replace("mining", shard=-1)
    with pytest.raises(TypeError, match="no field"):
        Config().replace("rpc", listen_adr="127.0.0.1:1")
    with pytest.raises(TypeError, match="no section"):
        Config().replace("rcp", unsafe=True)


def test_sections_are_frozen() -> None:
    cfg = Config()
    with pytest.raises(ValueError, match="frozen"):
        cfg.rpc.unsafe = True  # type: ignore[misc]
