"""Node configuration: `HOME/config.toml` (DESIGN §7).

One frozen dataclass per TOML section; the defaults run a single devnet node with no edits. Loading is
strict: an unknown section or key, or a value of the wrong type, is a `ConfigError` naming
`section.key`, because a silently ignored typo (`max_inbund = 5`) is worse than a refusal to start.
Local settings only: anything every node must agree on lives in the genesis, not here.

Relative paths (`storage.db_path`, `mining.data_dir`) are relative to the home directory.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import tomli_w
from pocl.ledger.storage.durable_file import PUBLIC_MODE, replace_durably
from pocl.node.errors import ConfigError
from pocl.node.logging import FORMATS, LogConfigError, parse_level_spec

CONFIG_HEADER = (
    "# pocl-node configuration. Local settings only; chain-wide rules live in genesis.json.\n"
    "# Relative paths are relative to the home directory. Unknown keys are an error.\n\n"
)


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` / `[v6]:port` → (host, port); ValueError with a readable reason."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_text)


def _check_addr(value: str, where: str, *, allow_empty: bool = False) -> None:
    if allow_empty and not value:
        return
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise ConfigError(f"config {where}: {exc}") from None


def _check_peer(value: str, where: str) -> None:
    """Peers are `NODE_ID@host:port` (the id is checked by p2p) or plain `host:port`."""
    _check_addr(value.rpartition("@")[2], where)


@dataclasses.dataclass(frozen=True)
class NodeSection:
    moniker: str = "pocl-node"
    log_level: str = "info"  # e.g. "info" or "info,p2p=debug,consensus=warning"
    log_format: str = "text"  # text | json

    def check(self) -> None:
        try:
            parse_level_spec(self.log_level)
        except LogConfigError as exc:
            raise ConfigError(f"config node.log_level: {exc}") from None
        if self.log_format not in FORMATS:
            raise ConfigError(
                f"config node.log_format: must be one of {', '.join(FORMATS)}, got {self.log_format!r}"
            )
        if not self.moniker or len(self.moniker) > 64:
            raise ConfigError("config node.moniker: must be 1..64 characters")


@dataclasses.dataclass(frozen=True)
class P2PSection:
    listen_addr: str = "0.0.0.0:26656"
    external_addr: str = ""  # address advertised to peers; empty = learn from peers / listen_addr
    seeds: list[str] = dataclasses.field(default_factory=list)  # NODE_ID@host:port
    persistent_peers: list[str] = dataclasses.field(default_factory=list)  # always (re)dialled
    max_inbound: int = 40
    max_outbound: int = 10
    handshake_timeout_s: float = 10.0
    dial_timeout_s: float = 5.0
    ping_interval_s: float = 15.0
    idle_timeout_s: float = 60.0
    max_message_bytes: int = 8 * 1024 * 1024
    pex: bool = True  # exchange peer addresses
    allow_private_addrs: bool = True  # accept 127.0.0.1/10.x peers (needed for local devnets)
    ban_duration_s: float = 60.0  # first ban of a peer; each further one lasts twice as long (≤ 24 h)
    # TCP congestion control for peers on a loopback address (first one the kernel allows); [] keeps
    # the system default. Pacing ones such as BBR only cost CPU where there is no link to pace.
    loopback_congestion_control: list[str] = dataclasses.field(default_factory=lambda: ["cubic", "reno"])

    def check(self) -> None:
        _check_addr(self.listen_addr, "p2p.listen_addr")
        if not self.ban_duration_s > 0:
            raise ConfigError("config p2p.ban_duration_s: must be positive")
        for i, name in enumerate(self.loopback_congestion_control):
            if not (name.isascii() and name.isprintable() and 0 < len(name) < 16):
                raise ConfigError(f"config p2p.loopback_congestion_control[{i}]: not an algorithm name: {name!r}")
        _check_addr(self.external_addr, "p2p.external_addr", allow_empty=True)
        for i, peer in enumerate(self.seeds):
            _check_peer(peer, f"p2p.seeds[{i}]")
        for i, peer in enumerate(self.persistent_peers):
            _check_peer(peer, f"p2p.persistent_peers[{i}]")


@dataclasses.dataclass(frozen=True)
class RPCSection:
    enabled: bool = True
    listen_addr: str = "127.0.0.1:26657"
    max_body_bytes: int = 8 * 1024 * 1024  # fits the largest PoCL tx (params.max_pocl_tx_bytes)
    max_ws_clients: int = 100
    unsafe: bool = False  # enable /unsafe/* routes (peer blocking for partition tests); never in production
    cors_allowed_origins: list[str] = dataclasses.field(default_factory=list)

    def check(self) -> None:
        _check_addr(self.listen_addr, "rpc.listen_addr")


@dataclasses.dataclass(frozen=True)
class ConsensusSection:
    """Local overrides of the genesis BFT timeouts (milliseconds); unset = use the chain params."""

    timeout_propose_ms: int | None = None
    timeout_propose_delta_ms: int | None = None
    timeout_prevote_ms: int | None = None
    timeout_prevote_delta_ms: int | None = None
    timeout_precommit_ms: int | None = None
    timeout_precommit_delta_ms: int | None = None
    timeout_commit_ms: int | None = None
    double_sign_check: bool = True  # refuse to sign a conflicting vote (persistent last-signed state)
    create_empty_blocks: bool = True

    def timeout_overrides(self) -> dict[str, int]:
        """The set timeouts, keyed like `ChainParams` fields."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name.startswith("timeout_") and getattr(self, f.name) is not None
        }


@dataclasses.dataclass(frozen=True)
class MempoolSection:
    max_txs: int = 5_000
    max_bytes: int = 64 * 1024 * 1024
    cache_size: int = 10_000  # recently seen tx hashes, to drop re-gossiped duplicates cheaply


@dataclasses.dataclass(frozen=True)
class MiningSection:
    enabled: bool = False  # needs the `miner` extra (TensorFlow)
    dataset: str = "digits"  # bundled with scikit-learn: works offline
    data_dir: str = "data/datasets"
    partition: str = "iid"  # how the dataset is split among miners
    shard: int = 0  # this miner's shard index
    num_shards: int = 1
    epochs: int = 1
    batch_size: int = 32
    behavior: str = "honest"  # adversarial behaviours for experiments
    seed: int = 0  # local randomness (shuffling, init) only; never enters state


@dataclasses.dataclass(frozen=True)
class StorageSection:
    db_path: str = "data/chain.db"


@dataclasses.dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    listen_addr: str = "127.0.0.1:26660"

    def check(self) -> None:
        _check_addr(self.listen_addr, "metrics.listen_addr")


@dataclasses.dataclass(frozen=True)
class Config:
    node: NodeSection = dataclasses.field(default_factory=NodeSection)
    p2p: P2PSection = dataclasses.field(default_factory=P2PSection)
    rpc: RPCSection = dataclasses.field(default_factory=RPCSection)
    consensus: ConsensusSection = dataclasses.field(default_factory=ConsensusSection)
    mempool: MempoolSection = dataclasses.field(default_factory=MempoolSection)
    mining: MiningSection = dataclasses.field(default_factory=MiningSection)
    storage: StorageSection = dataclasses.field(default_factory=StorageSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)

    def check(self) -> None:
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            check = getattr(section, "check", None)
            if check is not None:
                check()

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with `section`'s fields changed (used by `init`, `testnet`, tests)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})

    def to_toml_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            out[f.name] = {k: v for k, v in dataclasses.asdict(section).items() if v is not None}
        return out

    def to_toml(self) -> str:
        text = tomli_w.dumps(self.to_toml_dict())
        unset = [
            f.name
            for f in dataclasses.fields(ConsensusSection)
            if f.name.startswith("timeout_") and getattr(self.consensus, f.name) is None
        ]
        if unset:  # document the optional overrides in place, commented out
            hint = "# Optional overrides of the genesis BFT timeouts (ms), e.g. for fast local devnets:\n"
            hint += "".join(f"# {name} = 100\n" for name in unset)
            text = text.replace("[consensus]\n", "[consensus]\n" + hint, 1)
        return CONFIG_HEADER + text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        sections: dict[str, Any] = {}
        section_types = {f.name: f.type for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for name, body in data.items():
            if name not in section_types:
                raise ConfigError(f"config: unknown section [{name}] (known: {', '.join(section_types)})")
            if not isinstance(body, dict):
                raise ConfigError(f"config {name}: must be a table [{name}]")
            sections[name] = _section_from_dict(hints[name], name, body)
        config = cls(**sections)
        config.check()
        return config

    def resolve(self, home: Path | str, relative: str) -> Path:
        """An absolute path for a config path value (relative ones are under the home dir)."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else Path(home) / path


def _type_ok(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(arg, value) for arg in typing.get_args(hint) if arg is not type(None))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return False


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}s"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))


def _section_from_dict(section_cls: type, name: str, body: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(section_cls)
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in hints:
            raise ConfigError(f"config {name}.{key}: unknown key (known: {', '.join(hints)})")
        hint = hints[key]
        if not _type_ok(hint, value):
            type_name = _type_name(hint)
            article = "an" if type_name[0] in "aeiou" else "a"
            raise ConfigError(f"config {name}.{key}: must be {article} {type_name}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"config {name}.{key}: must not be negative, got {value!r}")
        values[key] = float(value) if hint is float else value
    return section_cls(**values)


def load_config(path: Path | str) -> Config:
    """Parse and validate `config.toml`. Missing file → FileNotFoundError; bad content → ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML ({exc})") from None
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{exc} [{path}]") from None


def write_config(path: Path | str, config: Config) -> None:
    replace_durably(path, config.to_toml().encode("utf-8"), PUBLIC_MODE)
