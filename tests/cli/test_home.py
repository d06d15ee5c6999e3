"""Home directory layout and init_home (library level; the CLI is tested end to end elsewhere)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pocl.genesis.schema import GenesisError, load_genesis, localnet_consensus_key, localnet_validator_key
from pocl.ledger.keys import PrivateKey
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
    # the single validator: the home's account, with the home's (separate) consensus key, also a miner
    assert [v.address for v in g.validators] == [result.account_key.address]
    assert [v.consensus_pubkey for v in g.validators] == [result.consensus_key.pubkey]
    assert [a.address for a in g.miners] == [result.account_key.address]
    assert result.is_genesis_validator and result.is_genesis_miner
    assert set(result.created_keys) == {"account_key", "node_key", "priv_validator_key"}
    for path in (home.account_key_path, home.consensus_key_path, home.node_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert home.key_info(path.stem).encrypted  # all three at rest under the one passphrase
    assert stat.S_IMODE(home.keys_dir.stat().st_mode) == 0o700
    assert home.data_dir.is_dir()
    assert home.load_account_key("pw").address == result.account_key.address
    assert home.load_consensus_key("pw").pubkey == result.consensus_key.pubkey
    assert home.load_node_key("pw").pubkey == result.node_key.pubkey
    # three distinct keys
    assert len({result.account_key.pubkey, result.consensus_key.pubkey, result.node_key.pubkey}) == 3


def test_init_refuses_existing_home_and_force_keeps_keys(tmp_path: Path) -> None:
    home = NodeHome.at(tmp_path / "h")
    first = init_home(home, passphrase="pw", kdf=FAST)
    before = home.consensus_key_path.read_bytes(), home.account_key_path.read_bytes()
    with pytest.raises(HomeError, match="already initialised"):
        init_home(home, passphrase="pw", kdf=FAST)
    again = init_home(home, force=True, genesis="localnet")  # no passphrase needed: keys are reused
    assert again.created_keys == ()
    assert (home.consensus_key_path.read_bytes(), home.account_key_path.read_bytes()) == before
    assert again.genesis.chain_id == "pocl-devnet" and not again.is_genesis_validator
    assert first.account_key.address == again.account_key.address


def test_init_with_given_keys_and_genesis(tmp_path: Path) -> None:
    home = NodeHome.at(tmp_path / "h")
    result = init_home(
        home,
        genesis="localnet",
        account_key=localnet_validator_key(1),
        consensus_key=localnet_consensus_key(1),
        insecure_keys=True,
    )
    assert result.is_genesis_validator and not result.account_key.encrypted
    # the account key alone (with another consensus key) does not validate
    other = init_home(
        tmp_path / "h3", genesis="localnet", account_key=localnet_validator_key(1), insecure_keys=True
    )
    assert not other.is_genesis_validator
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


def test_the_consensus_key_is_never_the_account_key(tmp_path: Path) -> None:
    key = PrivateKey.from_seed_text("one key for both")
    with pytest.raises(UserError, match="must not be the account key"):
        init_home(tmp_path / "h", account_key=key, consensus_key=key, insecure_keys=True)
    assert not (tmp_path / "h").exists()
    # nor can a home be made whose key files already hold the same key
    home = NodeHome.at(tmp_path / "h2")
    init_home(home, insecure_keys=True)
    home.consensus_key_path.write_bytes(home.account_key_path.read_bytes())
    with pytest.raises(HomeError, match="holds the account key"):
        init_home(home, insecure_keys=True, force=True)
