"""The node home directory (DESIGN §7) and `init`.

Layout (like CometBFT's, flattened):

    HOME/config.toml                     local settings (node.config)
    HOME/genesis.json                    the chain's genesis (genesis.schema)
    HOME/keys/account_key.json           the operator account: signs txs, holds balance and stake, mines
    HOME/keys/priv_validator_key.json    the consensus key: signs proposals and votes (as CometBFT's file)
    HOME/keys/node_key.json              P2P identity key (the node id)
    HOME/keys/<name>.json                extra account keys made with `pocl-node keys new NAME`
    HOME/data/                           chain database, priv_validator_state.json, models

Keys live in `keys/` (not `config/`) so that config and genesis can be replaced or shared freely while
the secrets sit in one 0700 directory. The consensus key is never the account key (as in Cosmos): a node's
hot signing key can be rotated or kept on the server without exposing the funds and stake of its operator,
and a validator record binds the two on chain (`tx create-validator`). All three are keystore files
encrypted with the same passphrase. `init` never destroys an existing key: with `--force` it rewrites
config and genesis but reuses the keys already there.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import time
from pathlib import Path

from pocl.genesis.schema import (
    SHIPPED_NAMES,
    Genesis,
    GenesisValidator,
    build_genesis,
    load_genesis,
    shipped_genesis_path,
    write_genesis,
)
from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.keystore import (
    DEFAULT_SCRYPT,
    KeyInfo,
    ScryptParams,
    load_key,
    read_key_info,
    save_key,
)
from pocl.node.config import Config, load_config, write_config
from pocl.node.errors import HomeError, UserError

CONFIG_FILE = "config.toml"
GENESIS_FILE = "genesis.json"
KEYS_DIR = "keys"
DATA_DIR = "data"
NODE_KEY = "node_key"
ACCOUNT_KEY = "account_key"
CONSENSUS_KEY = "priv_validator_key"
RESERVED_KEY_NAMES = (ACCOUNT_KEY, CONSENSUS_KEY, NODE_KEY)
# What each of the home's own keys is for (`keys show` / `keys list`); any other name is an extra account.
KEY_ROLES = {
    ACCOUNT_KEY: "account (operator: txs, stake, mining)",
    CONSENSUS_KEY: "consensus (signs proposals and votes)",
    NODE_KEY: "p2p identity (node id)",
}
EXTRA_KEY_ROLE = "account"
VALIDATOR_STATE_FILE = "priv_validator_state.json"
KEY_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
HOME_ENV = "POCL_HOME"
DEFAULT_HOME = "~/.pocl"
PRIVATE_DIR_MODE = 0o700

# Single-validator genesis made by `init` without --genesis.
INIT_VALIDATOR_STAKE = 1_000_000
INIT_VALIDATOR_BALANCE = 1_000_000_000


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def check_key_name(name: str) -> str:
    if not KEY_NAME_RE.fullmatch(name) or name.endswith(".json"):
        raise UserError(f"invalid key name {name!r}: use 1..64 of A-Z a-z 0-9 _ . - (no .json suffix)")
    return name


@dataclasses.dataclass(frozen=True)
class NodeHome:
    root: Path

    @classmethod
    def at(cls, path: Path | str | None) -> NodeHome:
        return cls(Path(path).expanduser() if path is not None else default_home())

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def genesis_path(self) -> Path:
        return self.root / GENESIS_FILE

    @property
    def keys_dir(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR

    @property
    def node_key_path(self) -> Path:
        return self.key_path(NODE_KEY)

    @property
    def account_key_path(self) -> Path:
        return self.key_path(ACCOUNT_KEY)

    @property
    def consensus_key_path(self) -> Path:
        return self.key_path(CONSENSUS_KEY)

    def key_path(self, name: str) -> Path:
        return self.keys_dir / f"{check_key_name(name)}.json"

    def key_names(self) -> list[str]:
        if not self.keys_dir.is_dir():
            return []
        return sorted(p.stem for p in self.keys_dir.glob("*.json") if not p.name.startswith("."))

    def is_initialised(self) -> bool:
        return self.config_path.exists() or self.genesis_path.exists()

    def require(self) -> None:
        """Raise a HomeError telling the operator how to create the home when it is missing."""
        if not self.root.exists():
            raise HomeError(f"home {self.root} does not exist (run: pocl-node init --home {self.root})")
        for path in (self.config_path, self.genesis_path):
            if not path.exists():
                raise HomeError(
                    f"home {self.root} is not initialised: {path.name} missing (run: pocl-node init)"
                )

    def load_config(self) -> Config:
        self.require()
        return load_config(self.config_path)

    def load_genesis(self) -> Genesis:
        if not self.genesis_path.exists():
            self.require()
        return load_genesis(self.genesis_path)

    def db_path(self, config: Config) -> Path:
        return config.resolve(self.root, config.storage.db_path)

    def key_info(self, name: str) -> KeyInfo:
        return read_key_info(self.key_path(name))

    def load_key(self, name: str, passphrase: str | None) -> PrivateKey:
        return load_key(self.key_path(name), passphrase)

    def load_account_key(self, passphrase: str | None) -> PrivateKey:
        return self.load_key(ACCOUNT_KEY, passphrase)

    def load_consensus_key(self, passphrase: str | None) -> PrivateKey:
        return self.load_key(CONSENSUS_KEY, passphrase)

    def has_own_keys(self) -> bool:
        """All three of the home's keys exist (`init` would create none)."""
        return all(self.key_path(n).exists() for n in RESERVED_KEY_NAMES)

    def load_node_key(self, passphrase: str | None) -> PrivateKey:
        return self.load_key(NODE_KEY, passphrase)


@dataclasses.dataclass(frozen=True)
class InitResult:
    home: NodeHome
    genesis: Genesis
    node_key: KeyInfo
    account_key: KeyInfo
    consensus_key: KeyInfo
    created_keys: tuple[str, ...]  # names of keys made now (others were reused)

    @property
    def is_genesis_validator(self) -> bool:
        """This home's consensus key validates from genesis (for this home's account)."""
        return any(
            v.consensus_pubkey == self.consensus_key.pubkey and v.address == self.account_key.address
            for v in self.genesis.validators
        )

    @property
    def is_genesis_miner(self) -> bool:
        acct = self.genesis.account(self.account_key.address)
        return acct is not None and acct.miner


def resolve_genesis_source(source: Genesis | Path | str) -> Genesis:
    """A Genesis from an object, a file path, or the name of a shipped genesis (`localnet`)."""
    if isinstance(source, Genesis):
        return source
    if isinstance(source, str) and source in SHIPPED_NAMES and not Path(source).exists():
        return load_genesis(shipped_genesis_path(source))
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"genesis file {path} not found")
    return load_genesis(path)


def _ensure_key(
    path: Path,
    key: PrivateKey | None,
    passphrase: str | None,
    insecure: bool,
    kdf: ScryptParams,
) -> tuple[KeyInfo, bool]:
    if path.exists():
        info = read_key_info(path)
        if key is not None and key.pubkey != info.pubkey:
            raise HomeError(f"{path} already holds a different key (remove it first to replace it)")
        return info, False
    info = save_key(path, key or PrivateKey.generate(), passphrase, insecure_unencrypted=insecure, kdf=kdf)
    return info, True


def single_validator_genesis(
    chain_id: str, account_pubkey: bytes, consensus_pubkey: bytes, genesis_time_ms: int
) -> Genesis:
    """`init`'s one-node chain: the home's account validates (with its consensus key) and mines."""
    member = GenesisValidator(
        account_pubkey, consensus_pubkey, INIT_VALIDATOR_STAKE, INIT_VALIDATOR_BALANCE, miner=True
    )
    return build_genesis(chain_id, [member], genesis_time_ms=genesis_time_ms)


def init_home(
    home: NodeHome | Path | str,
    *,
    genesis: Genesis | Path | str | None = None,
    chain_id: str | None = None,
    moniker: str | None = None,
    passphrase: str | None = None,
    insecure_keys: bool = False,
    force: bool = False,
    config: Config | None = None,
    account_key: PrivateKey | None = None,
    consensus_key: PrivateKey | None = None,
    node_key: PrivateKey | None = None,
    kdf: ScryptParams = DEFAULT_SCRYPT,
    genesis_time_ms: int | None = None,
) -> InitResult:
    """Create a home: three keys (reused if present), `genesis.json`, `config.toml`, `data/`.

    Without `genesis`, writes a single-validator genesis whose only validator is this home's account with
    its consensus key (also a registered miner), so `pocl-node init && pocl-node run` gives a working
    one-node chain. Everything is validated before anything is written, so a failed init leaves no
    half-made home.
    """
    home = home if isinstance(home, NodeHome) else NodeHome.at(home)
    if home.is_initialised() and not force:
        raise HomeError(
            f"home {home.root} is already initialised; use --force to rewrite config.toml and genesis.json "
            "(existing keys are kept)"
        )
    if home.root.exists() and not home.root.is_dir():
        raise HomeError(f"home {home.root} exists and is not a directory")
    if account_key is not None and consensus_key is not None and account_key.pubkey == consensus_key.pubkey:
        raise UserError("the consensus key must not be the account key")
    if not home.has_own_keys() and not insecure_keys and passphrase is None:
        raise UserError(
            "a passphrase is required to encrypt the keys (or use --insecure-unencrypted on devnets)"
        )
    if insecure_keys:
        passphrase = None

    given = resolve_genesis_source(genesis) if genesis is not None else None
    if given is not None and chain_id is not None and chain_id != given.chain_id:
        raise UserError(f"--chain-id {chain_id!r} does not match the genesis chain_id {given.chain_id!r}")
    base = config or Config()
    if moniker is not None:
        base = base.replace("node", moniker=moniker)
    base.check()
    _check_distinct_existing(home, account_key, consensus_key)

    home.root.mkdir(parents=True, exist_ok=True)
    home.keys_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    home.data_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    made: dict[str, tuple[KeyInfo, bool]] = {}
    for name, key in ((ACCOUNT_KEY, account_key), (CONSENSUS_KEY, consensus_key), (NODE_KEY, node_key)):
        made[name] = _ensure_key(home.key_path(name), key, passphrase, insecure_keys, kdf)
    acct_info, cons_info, node_info = (made[n][0] for n in (ACCOUNT_KEY, CONSENSUS_KEY, NODE_KEY))

    if given is None:
        given = single_validator_genesis(
            chain_id or f"pocl-local-{secrets.token_hex(3)}",
            acct_info.pubkey,
            cons_info.pubkey,
            genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
        )
    write_genesis(home.genesis_path, given)
    write_config(home.config_path, base)
    return InitResult(
        home=home,
        genesis=given,
        node_key=node_info,
        account_key=acct_info,
        consensus_key=cons_info,
        created_keys=tuple(n for n in RESERVED_KEY_NAMES if made[n][1]),
    )


def _check_distinct_existing(
    home: NodeHome, account_key: PrivateKey | None, consensus_key: PrivateKey | None
) -> None:
    """Refuse a home whose account and consensus keys would be the same key (given or already on disk)."""
    pubkeys = []
    for name, key in ((ACCOUNT_KEY, account_key), (CONSENSUS_KEY, consensus_key)):
        path = home.key_path(name)
        pubkeys.append(read_key_info(path).pubkey if path.exists() else key.pubkey if key else None)
    if pubkeys[0] is not None and pubkeys[0] == pubkeys[1]:
        raise HomeError(f"{home.consensus_key_path} holds the account key: the consensus key must differ")
