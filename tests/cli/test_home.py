"""Home directory layout and init_home (library level; the CLI is tested end to end elsewhere)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pocl.genesis.schema import GenesisError, load_genesis, localnet_validator_key
from pocl.ledger.storage.keystore import ScryptParams
from pocl.node.config import load_config
from pocl.node.errors import HomeError, UserError
from pocl.node.home import NodeHome, init_home

FAST = ScryptParams(n=2**10)


def test_init_creates_layout(tmp_path: Path) -> None:
    home = NodeHome.at(tmp_path / "h")
    result = init_home(
        home, passphrase="pw", moniker="val-0", chain_id="unit-chain", kdf=FAST, genesis_time_ms=5
    )
    assert load_config(home.config_path).node.moniker == "val-0"
    g = load_genesis(home.genesis_path)
    assert g == result.genesis and g.chain_id == "unit-chain" and g.genesis_time_ms == 5
    assert [v.address for v in g.validators] == [result.validator_key.address]
    assert result.is_genesis_validator and set(result.created_keys) == {"node_key", "priv_validator_key"}
    for path in (home.node_key_path, home.validator_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.keys_dir.stat().st_mode) == 0o700
    assert home.data_dir.is_dir()
    assert home.load_validator_key("pw").address == result.validator_key.address
    assert home.load_node_key("pw").pubkey == result.node_key.pubkey
    assert result.node_key.pubkey != result.validator_key.pubkey


def test_init_refuses_existing_home_and_force_keeps_keys(tmp_path: Path) -> None:
    home = NodeHome.at(tmp_path / "h")
    first = init_home(home, passphrase="pw", kdf=FAST)
    before = home.validator_key_path.read_bytes()
    with pytest.raises(HomeError, match="already initialised"):
        init_home(home, passphrase="pw", kdf=FAST)
    again = init_home(home, force=True, genesis="localnet")  # no passphrase needed: keys are reused
    assert again.created_keys == () and home.validator_key_path.read_bytes() == before
    assert again.genesis.chain_id == "pocl-devnet" and not again.is_genesis_validator
    assert first.validator_key.address == again.validator_key.address


def test_init_with_given_validator_key_and_genesis(tmp_path: Path) -> None:
    home = NodeHome.at(tmp_path / "h")
    result = init_home(home, genesis="localnet", validator_key=localnet_validator_key(1), insecure_keys=True)
    assert result.is_genesis_validator and not result.validator_key.encrypted
    with pytest.raises(UserError, match="does not match the genesis chain_id"):
        init_home(tmp_path / "h2", genesis="localnet", chain_id="other", passphrase="pw", kdf=FAST)


def test_failed_init_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"chain_id": "x"}')
    with pytest.raises(GenesisError):
        init_home(tmp_path / "h", genesis=bad, passphrase="pw", kdf=FAST)
    assert not (tmp_path / "h").exists()
    with pytest.raises(UserError, match="passphrase is required"):
        init_home(tmp_path / "h", kdf=FAST)
    assert not (tmp_path / "h").exists()


def test_require_explains_missing_home(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match=r"does not exist .*pocl-node init"):
        NodeHome.at(tmp_path / "none").require()
    (tmp_path / "empty").mkdir()
    with pytest.raises(HomeError, match=r"config\.toml missing"):
        NodeHome.at(tmp_path / "empty").load_config()
