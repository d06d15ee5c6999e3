"""Node configuration: `HOME/config.toml` (DESIGN §7).

One frozen pydantic model per TOML section; the defaults run a single devnet node with no edits. Loading
is strict (pydantic strict mode, `extra="forbid"`): an unknown section or key, or a value of the wrong
type, is a one-line `ConfigError` naming `section.key`, because a silently ignored typo
(`max_inbund = 5`) is worse than a refusal to start. Local settings only: anything every node must agree
on lives in the genesis, not here.

Relative paths (`storage.db_path`, `mining.data_dir`) are relative to the home directory.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pocl.ledger.storage.durable_file import PUBLIC_MODE, replace_durably
from pocl.ledger.tx import MAX_AMOUNT
from pocl.node.errors import ConfigError
from pocl.node.logging import FORMATS, LogConfigError, parse_level_spec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

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


# --- field types: each check raises a `config` error whose text becomes the message after the key ----


def _reject(reason: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{reason}", {"reason": reason})


def _addr(value: str) -> str:
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise _reject(str(exc)) from None
    return value


def _optional_addr(value: str) -> str:
    return _addr(value) if value else value


def _peer(value: str) -> str:
    """Peers are `NODE_ID@host:port` (the id is checked by p2p) or plain `host:port`."""
    _addr(value.rpartition("@")[2])
    return value


def _algorithm(value: str) -> str:
    if not (value.isascii() and value.isprintable() and 0 < len(value) < 16):
        raise _reject(f"not an algorithm name: {value!r}")
    return value


def _log_level(value: str) -> str:
    try:
        parse_level_spec(value)
    except LogConfigError as exc:
        raise _reject(str(exc)) from None
    return value


def _log_format(value: str) -> str:
    if value not in FORMATS:
        raise _reject(f"must be one of {', '.join(FORMATS)}, got {value!r}")
    return value


def _moniker(value: str) -> str:
    if not value or len(value) > 64:
        raise _reject("must be 1..64 characters")
    return value


Addr = Annotated[str, AfterValidator(_addr)]
Peer = Annotated[str, AfterValidator(_peer)]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSection(_Section):
    moniker: Annotated[str, AfterValidator(_moniker)] = "pocl-node"
    log_level: Annotated[str, AfterValidator(_log_level)] = (
        "info"  # "info" or "info,p2p=debug,consensus=warning"
    )
    log_format: Annotated[str, AfterValidator(_log_format)] = "text"  # text | json
    # `/ready` reports disk_low below this many MiB free on the database's filesystem (0 = no check)
    min_free_disk_mb: Count = 100
    # `/ready` reports consensus_stalled after no new height for this many expected block times
    stall_after_blocks: Annotated[int, Field(gt=0)] = 10


class P2PSection(_Section):
    listen_addr: Addr = "0.0.0.0:26656"
    # address advertised to peers; empty = learn from peers / listen_addr
    external_addr: Annotated[str, AfterValidator(_optional_addr)] = ""
    seeds: list[Peer] = Field(default_factory=list)  # NODE_ID@host:port
    persistent_peers: list[Peer] = Field(default_factory=list)  # always (re)dialled
    max_inbound: Count = 40
    max_outbound: Count = 10
    handshake_timeout_s: Seconds = 10.0
    dial_timeout_s: Seconds = 5.0
    ping_interval_s: Seconds = 15.0
    idle_timeout_s: Seconds = 60.0
    pex: bool = True  # exchange peer addresses
    compact_blocks: bool = True  # send proposals as header + tx hashes; peers rebuild them from their mempool
    # txs at least this large are announced by hash and fetched once per link instead of flooded; 0 = flood all
    tx_announce_min_bytes: Count = 16 * 1024
    # first ban of a peer; each further one lasts twice as long (≤ 24 h)
    ban_duration_s: Annotated[float, Field(gt=0)] = 60.0
    # TCP congestion control for peers on a loopback address (first one the kernel allows); [] keeps
    # the system default. Pacing ones such as BBR only cost CPU where there is no link to pace.
    loopback_congestion_control: list[Annotated[str, AfterValidator(_algorithm)]] = Field(
        default_factory=lambda: ["cubic", "reno"]
    )


class RPCSection(_Section):
    enabled: bool = True
    listen_addr: Addr = "127.0.0.1:26657"
    max_body_bytes: Count = 8 * 1024 * 1024  # fits the largest PoCL tx (params.max_pocl_tx_bytes)
    max_ws_clients: Count = 100
    # What clients can make the node hold (node.rpc.limits); 0 = no limit, except keepalive_timeout_s
    max_connections: Count = 256  # open RPC connections; more are closed at accept
    max_connections_per_source: Count = 128  # open RPC connections from one client IP
    header_timeout_s: Seconds = 10.0  # to send a request's headers (slowloris)
    body_timeout_s: Seconds = 30.0  # to send a request's body, from its headers
    keepalive_timeout_s: Annotated[float, Field(gt=0)] = 15.0  # an idle kept-alive connection is closed
    max_buffered_body_bytes: Count = 32 * 1024 * 1024  # all request bodies in flight (503 rpc_busy above)
    unsafe: bool = False  # enable /unsafe/* routes (peer blocking for partition tests); never in production
    cors_allowed_origins: list[str] = Field(default_factory=list)


class ConsensusSection(_Section):
    """Local overrides of the genesis BFT timeouts (milliseconds); unset = use the chain params."""

    timeout_propose_ms: Count | None = None
    timeout_propose_delta_ms: Count | None = None
    timeout_prevote_ms: Count | None = None
    timeout_prevote_delta_ms: Count | None = None
    timeout_precommit_ms: Count | None = None
    timeout_precommit_delta_ms: Count | None = None
    timeout_commit_ms: Count | None = None

    def timeout_overrides(self) -> dict[str, int]:
        """The set timeouts, keyed like `ChainParams` fields."""
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name.startswith("timeout_") and getattr(self, name) is not None
        }


class MempoolSection(_Section):
    max_txs: Count = 5_000
    max_bytes: Count = 64 * 1024 * 1024


class MiningSection(_Section):
    enabled: bool = False  # needs the `miner` extra (TensorFlow)
    dataset: str = "digits"  # bundled with scikit-learn: works offline
    data_dir: str = "data/datasets"
    partition: str = "iid"  # how the dataset is split among miners
    shard: Count = 0  # this miner's shard index
    num_shards: Count = 1
    epochs: Count = 1
    batch_size: Count = 32
    behavior: str = "honest"  # adversarial behaviours for experiments
    seed: Count = 0  # local randomness (shuffling, init) only; never enters state
    # on SIGTERM/SIGINT/`pocl-node stop`, how long a miner that committed to the open round may keep the
    # node running to finish it (shard, reveal, vote) before stopping anyway (node.shutdown)
    drain_timeout_s: Seconds = 60.0


class StorageSection(_Section):
    db_path: str = "data/chain.db"


class PruningSection(_Section):
    """What a non-archive node deletes (node.pruning); all 0 = archive, keep everything."""

    retain_blocks: Count = 0  # keep the last N blocks (never fewer than the evidence/unbonding windows)
    model_history: Count = 0  # keep the last N rounds' global models (the current one always)
    interval_blocks: Annotated[int, Field(gt=0)] = 100  # prune every N committed blocks


def _trust_hash(value: str) -> str:
    if value and not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", value):
        raise _reject(f"not a block hash (64 hex digits): {value!r}")
    return value.removeprefix("0x").lower()


class StateSyncSection(_Section):
    """Snapshots this node takes and serves, and restoring a new node from peers' (node.statesync)."""

    enable: bool = False  # restore from a peer snapshot on start (an empty store only); also `run --state-sync`
    snapshot_interval: Count = 0  # take a snapshot every N blocks (0 = none)
    snapshot_keep_recent: Annotated[int, Field(gt=0)] = 2  # finished snapshots kept and offered
    trust_height: Count = 0  # with trust_hash: a block the operator trusts (0 = trust the genesis validators)
    trust_hash: Annotated[str, AfterValidator(_trust_hash)] = ""
    discovery_time_s: Seconds = 15.0  # no snapshot offered within this: block-sync from genesis instead
    chunk_fetchers: Annotated[int, Field(gt=0)] = 4  # chunk requests in flight, spread over peers
    chunk_timeout_s: Annotated[float, Field(gt=0)] = 15.0  # a peer slower than this is tried later


class MetricsSection(_Section):
    enabled: bool = True
    listen_addr: Addr = "127.0.0.1:26660"


_KEY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # as `home.KEY_NAME_RE` (home imports us)


def _key_name(value: str) -> str:
    if not _KEY_NAME.fullmatch(value) or value.endswith(".json"):
        raise _reject(f"not the name of a key in HOME/keys (1..64 of A-Z a-z 0-9 _ . -, no .json): {value!r}")
    return value


class FaucetSection(_Section):
    """A testnet faucet on `POST /faucet`: signed transfers from the key `HOME/keys/<key>.json`."""

    enabled: bool = False  # never on a chain whose coins are worth anything
    key: Annotated[str, AfterValidator(_key_name)] = "faucet"
    # per grant: ten times the default min_miner_stake, so a newcomer can stake and mine
    amount: Annotated[int, Field(gt=0, le=MAX_AMOUNT)] = 100_000
    fee: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] = 10  # paid by the faucet on each grant
    per_address_interval_s: Seconds = 3600.0  # one grant per address per interval (0 = no limit)
    per_source_interval_s: Seconds = 60.0  # one grant per client IP per interval (0 = no limit)
    max_in_flight: Annotated[int, Field(gt=0)] = 100  # grants in the mempool, not yet committed


class Config(_Section):
    node: NodeSection = Field(default_factory=NodeSection)
    p2p: P2PSection = Field(default_factory=P2PSection)
    rpc: RPCSection = Field(default_factory=RPCSection)
    consensus: ConsensusSection = Field(default_factory=ConsensusSection)
    mempool: MempoolSection = Field(default_factory=MempoolSection)
    mining: MiningSection = Field(default_factory=MiningSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    pruning: PruningSection = Field(default_factory=PruningSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    faucet: FaucetSection = Field(default_factory=FaucetSection)
    statesync: StateSyncSection = Field(default_factory=StateSyncSection)

    def check(self) -> None:
        """Validate again (every change goes through `replace`, which validates; kept for callers)."""
        _validate(self.model_dump(), strict=False)

    def replace(self, section: str, **changes: Any) -> Config:
        """A validated copy with `section`'s fields changed (used by `init`, `testnet`, tests).

        Python callers pass Python values (a tuple of peers is fine), so this validates in lax mode; a
        bad value is the same one-line `ConfigError` as in the file."""
        if section not in type(self).model_fields:
            raise TypeError(f"Config has no section {section!r}")
        body = getattr(self, section)
        unknown = set(changes) - set(type(body).model_fields)
        if unknown:
            raise TypeError(f"config section [{section}] has no field(s) {', '.join(sorted(unknown))}")
        return _validate(self.model_dump() | {section: body.model_dump() | changes}, strict=False)

    def to_toml_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).model_dump(exclude_none=True) for name in type(self).model_fields}

    def to_toml(self) -> str:
        text = tomli_w.dumps(self.to_toml_dict())
        unset = [
            name
            for name in ConsensusSection.model_fields
            if name.startswith("timeout_") and getattr(self.consensus, name) is None
        ]
        if unset:  # document the optional overrides in place, commented out
            hint = "# Optional overrides of the genesis BFT timeouts (ms), e.g. for fast local devnets:\n"
            hint += "".join(f"# {name} = 100\n" for name in unset)
            text = text.replace("[consensus]\n", "[consensus]\n" + hint, 1)
        return CONFIG_HEADER + text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """From parsed TOML, strictly: TOML's own types only (no "5" for 5, no 1 for true)."""
        return _validate(data, strict=True)

    def resolve(self, home: Path | str, relative: str) -> Path:
        """An absolute path for a config path value (relative ones are under the home dir)."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else Path(home) / path


# --- pydantic errors → one line naming the key ------------------------------------------------------


def _validate(data: dict[str, Any], *, strict: bool) -> Config:
    try:
        return Config.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc.errors()[0], data)) from None


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _type_name(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}s"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))


def _one_line(error: Any, data: dict[str, Any]) -> str:
    loc = error["loc"]
    kind = error["type"]
    section = str(loc[0])
    if len(loc) == 1:  # the section itself
        if kind == "extra_forbidden":
            return f"config: unknown section [{section}] (known: {', '.join(Config.model_fields)})"
        return f"config {section}: must be a table [{section}]"
    model = Config.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    key = str(loc[1])
    if kind == "extra_forbidden":
        return f"config {section}.{key}: unknown key (known: {', '.join(model.model_fields)})"
    if kind.endswith("_type"):  # the whole field is named (`p2p.seeds`, even for one bad item)
        field = model.model_fields[key]
        type_name = _type_name(field.rebuild_annotation())
        article = "an" if type_name[0] in "aeiou" else "a"
        return f"config {section}.{key}: must be {article} {type_name}, got {data[section][key]!r}"
    where = f"{section}.{key}" + "".join(f"[{i}]" for i in loc[2:])
    if kind == "greater_than_equal":
        return f"config {where}: must not be negative, got {error['input']!r}"
    if kind == "greater_than":
        return f"config {where}: must be positive"
    return f"config {where}: {error['msg']}"


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
