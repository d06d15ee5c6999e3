"""Genesis file: schema, validation, canonical hash (DESIGN §2, §4).

`genesis.json` fixes the chain id, the chain parameters, the initial accounts/stakes and the PoCL
settings. Every node must start from byte-for-byte the same *meaning*, so the genesis hash is taken over
a canonical encoding (fixed-order arrays; dicts as key-sorted [key, value] pairs; accounts sorted by
address; params with defaults filled in, except the later ones of HASHED_ONLY_IF_SET at their defaults),
not over the JSON text: whitespace and key order in the file do not matter, any change of content does.

Roles are explicit (`ledger.roles`): an account is a genesis validator when it has a `consensus_pubkey`
(a key of its own, unique across accounts, never the account key) and stake >= min_validator_stake;
`miner: true` registers it as a miner. Staking alone makes neither.

Validation errors name the offending field (`accounts[2].pubkey: required when stake > 0`) so an
operator can fix the file without reading this code.

JSON layout:

    {
      "chain_id": "pocl-devnet",            # 1..64 chars of [A-Za-z0-9._-], starts with a letter/digit
      "genesis_time_ms": 1767225600000,     # unix ms, integer >= 0
      "params": {"min_fee": 1, ...},        # ledger.params.ChainParams; missing keys take defaults
      "accounts": [
        {"address": "0x<40 hex>", "balance": 10, "stake": 1000, "pubkey": "<64 hex>",  # pubkey required if stake > 0
         "consensus_pubkey": "<64 hex>",    # optional: the validator's consensus key (not the account key)
         "miner": true}                      # optional, default false: a registered miner from genesis
      ],
      "pocl": {},                           # reserved for PoCL settings: any JSON object without floats
      "_comment": "free text, not hashed"   # optional
    }
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pocl.ledger.codec import MAX_INT, encode
from pocl.ledger.hashing import TAG_GENESIS, tagged_hash
from pocl.ledger.keys import (
    ADDRESS_LEN,
    PUBKEY_LEN,
    KeyFormatError,
    PrivateKey,
    address_of,
    format_address,
    parse_address,
)
from pocl.ledger.params import BPS, ChainParams, GenesisAccount
from pocl.ledger.storage.durable_file import PUBLIC_MODE, replace_durably

GENESIS_ENCODING_VERSION = 2  # 2: accounts carry consensus_pubkey and miner (explicit roles)
# ChainParams added after version 2 enter the hash only with a non-default value (`canonical_params`).
# Changing one of their defaults therefore needs a new encoding version.
HASHED_ONLY_IF_SET = ("pbts_precision_ms", "pbts_message_delay_ms")
CHAIN_ID_MAX_LEN = 64
CHAIN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_AMOUNT = 2**63 - 1  # total supply bound: leaves head-room below the codec's integer range
MAX_GENESIS_BYTES = 64 * 1024 * 1024
MAX_POCL_DEPTH = 16
TOP_LEVEL_KEYS = ("chain_id", "genesis_time_ms", "params", "accounts", "pocl", "_comment")
ACCOUNT_KEYS = ("address", "balance", "stake", "pubkey", "consensus_pubkey", "miner")
MAP_MARKER = b"map"  # JSON has no bytes, so this can never collide with a JSON list's first element

SHIPPED_DIR = Path(__file__).resolve().parent
SHIPPED_NAMES = ("localnet",)
LOCALNET_VALIDATOR_COUNT = 4


class GenesisError(ValueError):
    """Invalid genesis; `field` is the JSON path of the bad value (e.g. `accounts[2].pubkey`)."""

    def __init__(self, field: str, reason: str, source: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.source = source
        prefix = f"invalid genesis {source}: " if source else ""
        super().__init__(f"{prefix}{field}: {reason}" if field else f"{prefix}{reason}")

    def with_source(self, source: str) -> GenesisError:
        return GenesisError(self.field, self.reason, source)


@dataclasses.dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    params: ChainParams
    accounts: tuple[GenesisAccount, ...]  # sorted by address
    pocl: dict[str, Any] = dataclasses.field(default_factory=dict)
    comment: str = ""

    # -- derived views -------------------------------------------------------------------------
    @property
    def validators(self) -> tuple[GenesisAccount, ...]:
        """Accounts that are validators at genesis: a consensus key and stake >= min_validator_stake."""
        return tuple(
            a
            for a in self.accounts
            if a.consensus_pubkey is not None and a.stake >= self.params.min_validator_stake
        )

    @property
    def miners(self) -> tuple[GenesisAccount, ...]:
        """Accounts registered as miners at genesis."""
        return tuple(a for a in self.accounts if a.miner)

    @property
    def total_supply(self) -> int:
        return sum(a.balance + a.stake for a in self.accounts)

    @property
    def total_stake(self) -> int:
        return sum(a.stake for a in self.accounts)

    def account(self, address: bytes) -> GenesisAccount | None:
        return next((a for a in self.accounts if a.address == address), None)

    # -- canonical form ------------------------------------------------------------------------
    def canonical_list(self) -> list[Any]:
        return [
            GENESIS_ENCODING_VERSION,
            self.chain_id,
            self.genesis_time_ms,
            [[a.address, a.balance, a.stake, a.pubkey, a.consensus_pubkey, a.miner] for a in self.accounts],
            canonical_params(self.params),
            _canonical_json_value(self.pocl, "pocl"),
        ]

    def canonical_bytes(self) -> bytes:
        return encode(self.canonical_list())

    @functools.cached_property
    def hash(self) -> bytes:
        return tagged_hash(TAG_GENESIS, self.canonical_bytes())

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.comment:
            doc["_comment"] = self.comment
        doc["chain_id"] = self.chain_id
        doc["genesis_time_ms"] = self.genesis_time_ms
        doc["params"] = self.params.to_json()
        doc["accounts"] = [_account_json(a) for a in self.accounts]
        doc["pocl"] = self.pocl
        return doc

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def initial_state(self) -> Any:
        """The ledger state at height 0 (`ledger.state.State.from_genesis`)."""
        from pocl.ledger.state import State  # lazy: keeps genesis/ importable without the executor

        return State.from_genesis(self.params, list(self.accounts), self.chain_id)


def _account_json(a: GenesisAccount) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "address": format_address(a.address),
        "balance": a.balance,
        "stake": a.stake,
        "pubkey": a.pubkey.hex() if a.pubkey is not None else None,
    }
    if a.consensus_pubkey is not None:
        doc["consensus_pubkey"] = a.consensus_pubkey.hex()
    if a.miner:
        doc["miner"] = True
    return doc


# ---------------------------------------------------------------------------------------------
# validation predicates


def is_valid_chain_id(chain_id: str) -> bool:
    return 0 < len(chain_id) <= CHAIN_ID_MAX_LEN and CHAIN_ID_RE.fullmatch(chain_id) is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: Any, field: str) -> int:
    if not _is_int(value):
        raise GenesisError(field, f"must be an integer amount in base units, got {json.dumps(value)}")
    if value < 0:
        raise GenesisError(field, f"must not be negative, got {value}")
    if value > MAX_AMOUNT:
        raise GenesisError(field, f"too large (max {MAX_AMOUNT})")
    return value


def _hex_bytes(value: Any, field: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise GenesisError(field, f"must be a hex string, got {json.dumps(value)}")
    body = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise GenesisError(field, f"not valid hex: {value!r}") from None
    if len(raw) != length:
        raise GenesisError(field, f"must be {length} bytes ({2 * length} hex digits), got {len(raw)} bytes")
    return raw


def _canonical_json_value(value: Any, field: str, depth: int = 0) -> Any:
    """A JSON value as canonical-codec data: dicts become [b"map", sorted [key, value] pairs]."""
    if depth > MAX_POCL_DEPTH:
        raise GenesisError(field, "nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value <= MAX_INT:
            raise GenesisError(field, "integer out of range")
        return value
    if isinstance(value, float):
        raise GenesisError(
            field, "floats are not allowed (hashed data is integers only: use basis points or ppm)"
        )
    if isinstance(value, list):
        return [_canonical_json_value(v, f"{field}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        pairs = []
        for k in sorted(value):
            if not isinstance(k, str):
                raise GenesisError(field, "object keys must be strings")
            pairs.append([k, _canonical_json_value(value[k], f"{field}.{k}", depth + 1)])
        return [MAP_MARKER, pairs]
    raise GenesisError(field, f"not a JSON value: {type(value).__name__}")


def _check_keys(obj: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = set(allowed)
    for key in obj:
        if key not in allowed:
            raise GenesisError(f"{where}.{key}" if where else key, "unknown field")


def canonical_params(params: ChainParams) -> list[list[Any]]:
    """Params as key-sorted [key, value] pairs, defaults filled in, except those of HASHED_ONLY_IF_SET that
    keep their default: a param added after encoding version 2 must not change the hash of a genesis file
    written before it existed (that chain's id, and every existing home, would no longer open)."""
    defaults = ChainParams()
    return [
        [k, v]
        for k, v in sorted(params.to_json().items())
        if k not in HASHED_ONLY_IF_SET or v != getattr(defaults, k)
    ]


def parse_params(data: Any) -> ChainParams:
    if data is None:
        return ChainParams()
    if not isinstance(data, dict):
        raise GenesisError("params", "must be a JSON object")
    known = {f.name for f in dataclasses.fields(ChainParams)}
    for key, value in data.items():
        if key not in known:
            raise GenesisError(f"params.{key}", "unknown parameter")
        if not _is_int(value):
            raise GenesisError(f"params.{key}", f"must be an integer, got {json.dumps(value)}")
        if value < 0:
            raise GenesisError(f"params.{key}", f"must not be negative, got {value}")
        if value > MAX_INT:
            raise GenesisError(f"params.{key}", "integer out of range")
    try:
        params = ChainParams.from_json(dict(data))
    except (TypeError, ValueError) as exc:
        raise GenesisError("params", str(exc)) from None
    _check_params(params)
    return params


def _check_params(params: ChainParams) -> None:
    """Sanity bounds that make a chain unusable when violated (only for fields that exist)."""
    at_least_one = (
        "max_validators",
        "max_block_txs",
        "max_tx_bytes",
        "max_block_bytes",
        "min_validator_stake",
    )
    for name in at_least_one:
        if getattr(params, name, 1) < 1:
            raise GenesisError(f"params.{name}", "must be at least 1")
    for name, value in params.to_json().items():
        if name.endswith("_bps") and value > BPS:
            raise GenesisError(f"params.{name}", f"must be at most {BPS} (100%)")


def parse_account(data: Any, index: int) -> GenesisAccount:
    where = f"accounts[{index}]"
    if not isinstance(data, dict):
        raise GenesisError(where, "must be a JSON object")
    _check_keys(data, ACCOUNT_KEYS, where)
    if "address" not in data:
        raise GenesisError(f"{where}.address", "required")
    try:
        address = parse_address(data["address"]) if isinstance(data["address"], str) else None
    except KeyFormatError as exc:
        raise GenesisError(f"{where}.address", str(exc)) from None
    if address is None:
        raise GenesisError(f"{where}.address", "must be a hex string")
    if "balance" not in data:
        raise GenesisError(f"{where}.balance", "required")
    balance = _amount(data["balance"], f"{where}.balance")
    stake = _amount(data.get("stake", 0), f"{where}.stake")
    raw_pubkey = data.get("pubkey")
    pubkey = None if raw_pubkey is None else _hex_bytes(raw_pubkey, f"{where}.pubkey", PUBKEY_LEN)
    if stake > 0 and pubkey is None:
        raise GenesisError(f"{where}.pubkey", "required when stake > 0")
    if pubkey is not None and address_of(pubkey) != address:
        raise GenesisError(
            f"{where}.address",
            f"does not match pubkey (address_of(pubkey) = {format_address(address_of(pubkey))})",
        )
    raw_consensus = data.get("consensus_pubkey")
    consensus_pubkey = (
        None if raw_consensus is None else _hex_bytes(raw_consensus, f"{where}.consensus_pubkey", PUBKEY_LEN)
    )
    if consensus_pubkey is not None and address_of(consensus_pubkey) == address:
        raise GenesisError(
            f"{where}.consensus_pubkey",
            "must differ from the account key (a validator signs votes with a separate consensus key)",
        )
    miner = data.get("miner", False)
    if not isinstance(miner, bool):
        raise GenesisError(f"{where}.miner", f"must be true or false, got {json.dumps(miner)}")
    return GenesisAccount(
        address=address,
        balance=balance,
        stake=stake,
        pubkey=pubkey,
        consensus_pubkey=consensus_pubkey,
        miner=miner,
    )


def parse_genesis(doc: Any) -> Genesis:
    """Validate a parsed genesis JSON document; raises GenesisError naming the bad field."""
    if not isinstance(doc, dict):
        raise GenesisError("", "genesis must be a JSON object")
    _check_keys(doc, TOP_LEVEL_KEYS, "")
    for required in ("chain_id", "genesis_time_ms", "accounts"):
        if required not in doc:
            raise GenesisError(required, "required")
    chain_id = doc["chain_id"]
    if not isinstance(chain_id, str):
        raise GenesisError("chain_id", "must be a string")
    if not is_valid_chain_id(chain_id):
        raise GenesisError(
            "chain_id",
            f"must be 1..{CHAIN_ID_MAX_LEN} characters of A-Z a-z 0-9 . _ - starting with a letter or digit, "
            f"got {chain_id!r}",
        )
    time_ms = doc["genesis_time_ms"]
    if not _is_int(time_ms) or time_ms < 0 or time_ms > MAX_INT:
        raise GenesisError(
            "genesis_time_ms",
            f"must be a non-negative integer (unix milliseconds), got {json.dumps(time_ms)}",
        )
    params = parse_params(doc.get("params"))
    comment = doc.get("_comment", "")
    if not isinstance(comment, str):
        raise GenesisError("_comment", "must be a string")
    pocl = doc.get("pocl", {})
    if pocl is None:
        pocl = {}
    if not isinstance(pocl, dict):
        raise GenesisError("pocl", "must be a JSON object")
    _canonical_json_value(pocl, "pocl")  # validates: no floats, depth, ranges

    raw_accounts = doc["accounts"]
    if not isinstance(raw_accounts, list):
        raise GenesisError("accounts", "must be a JSON array")
    accounts = [parse_account(a, i) for i, a in enumerate(raw_accounts)]
    return _finish(chain_id, time_ms, params, accounts, pocl, comment)


def _finish(
    chain_id: str,
    time_ms: int,
    params: ChainParams,
    accounts: Sequence[GenesisAccount],
    pocl: dict[str, Any],
    comment: str,
) -> Genesis:
    seen: dict[bytes, int] = {}
    for i, acc in enumerate(accounts):
        if acc.address in seen:
            raise GenesisError(
                f"accounts[{i}].address",
                f"duplicate of accounts[{seen[acc.address]}] ({format_address(acc.address)})",
            )
        seen[acc.address] = i
    consensus: dict[bytes, int] = {}
    for i, acc in enumerate(accounts):
        if acc.consensus_pubkey is None:
            continue
        caddr = address_of(acc.consensus_pubkey)
        if caddr in consensus:
            raise GenesisError(
                f"accounts[{i}].consensus_pubkey",
                f"already the consensus key of accounts[{consensus[caddr]}] (one operator per consensus key)",
            )
        consensus[caddr] = i
    supply = sum(a.balance + a.stake for a in accounts)
    if supply > MAX_AMOUNT:
        raise GenesisError("accounts", f"total supply {supply} exceeds {MAX_AMOUNT}")
    if not any(a.consensus_pubkey is not None and a.stake >= params.min_validator_stake for a in accounts):
        raise GenesisError(
            "accounts",
            "at least one validator is required: an account with a consensus_pubkey and stake >= "
            f"params.min_validator_stake ({params.min_validator_stake})",
        )
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=time_ms,
        params=params,
        accounts=tuple(sorted(accounts, key=lambda a: a.address)),
        pocl=pocl,
        comment=comment,
    )


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise GenesisError(key, "duplicate key in JSON object")
        out[key] = value
    return out


def parse_genesis_text(text: str | bytes, source: str | None = None) -> Genesis:
    try:
        doc = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except GenesisError as exc:
        raise exc.with_source(source) if source else exc from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = (
            f"{exc.msg}: line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc)
        )
        raise GenesisError("", f"not valid JSON ({detail})", source) from None
    try:
        return parse_genesis(doc)
    except GenesisError as exc:
        raise exc.with_source(source) if source else exc from None


def load_genesis(path: Path | str) -> Genesis:
    """Read and validate a genesis file. Missing file → FileNotFoundError; bad content → GenesisError."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_GENESIS_BYTES:
        raise GenesisError("", f"file too large ({size} bytes)", str(path))
    return parse_genesis_text(path.read_bytes(), str(path))


def write_genesis(path: Path | str, genesis: Genesis) -> None:
    """Write atomically so a crash never leaves a truncated genesis (it is public: mode 0644)."""
    replace_durably(path, genesis.to_json_text().encode("utf-8"), PUBLIC_MODE)


# ---------------------------------------------------------------------------------------------
# builders


@dataclasses.dataclass(frozen=True)
class GenesisValidator:
    """A genesis validator for `build_genesis`: the operator's account key and its own consensus key."""

    pubkey: bytes  # the operator's account key (txs, stake, rewards)
    consensus_pubkey: bytes  # signs proposals and votes; must differ from `pubkey`
    stake: int
    balance: int
    miner: bool = False  # also a registered miner at genesis


def build_genesis(
    chain_id: str,
    validators: Iterable[GenesisValidator],
    *,
    accounts: Iterable[tuple[bytes, int] | GenesisAccount] = (),
    params: ChainParams | None = None,
    genesis_time_ms: int = 0,
    pocl: dict[str, Any] | None = None,
    comment: str = "",
) -> Genesis:
    """A validated genesis from validators and plain accounts: (address, balance) pairs, or full
    `GenesisAccount`s (e.g. a staked miner that is no validator)."""
    params = params or ChainParams()
    accs: list[GenesisAccount] = []
    for v in validators:
        if not isinstance(v, GenesisValidator):  # the (pubkey, stake, balance) tuples of before issue 14
            raise TypeError(
                "build_genesis validators are GenesisValidator(pubkey, consensus_pubkey, stake, balance)"
            )
        where = f"accounts[{len(accs)}]"
        if len(v.pubkey) != PUBKEY_LEN:
            raise GenesisError(f"{where}.pubkey", f"must be {PUBKEY_LEN} bytes")
        if len(v.consensus_pubkey) != PUBKEY_LEN:
            raise GenesisError(f"{where}.consensus_pubkey", f"must be {PUBKEY_LEN} bytes")
        accs.append(
            GenesisAccount(
                address=address_of(v.pubkey),
                balance=v.balance,
                stake=v.stake,
                pubkey=v.pubkey,
                consensus_pubkey=v.consensus_pubkey,
                miner=v.miner,
            )
        )
    for item in accounts:
        if isinstance(item, GenesisAccount):
            accs.append(item)
            continue
        address, balance = item
        if len(address) != ADDRESS_LEN:
            raise GenesisError(f"accounts[{len(accs)}].address", f"must be {ADDRESS_LEN} bytes")
        accs.append(GenesisAccount(address=address, balance=balance))
    # Round-trip through the JSON validator so builders and files obey exactly the same rules.
    doc: dict[str, Any] = {
        "chain_id": chain_id,
        "genesis_time_ms": genesis_time_ms,
        "params": params.to_json(),
        "accounts": [_account_json(a) for a in accs],
        "pocl": pocl or {},
    }
    if comment:
        doc["_comment"] = comment
    return parse_genesis(doc)


def shipped_genesis_path(name: str) -> Path:
    """Path of a genesis shipped with the package (`localnet`)."""
    if name not in SHIPPED_NAMES:
        raise GenesisError("", f"no shipped genesis named {name!r} (known: {', '.join(SHIPPED_NAMES)})")
    return SHIPPED_DIR / f"{name}.json"


# `localnet` is the shipped public test chain: its validator and faucet keys are derived from fixed seed
# texts, so anyone can run (and sign for) it. It was first shipped as `devnet`; the chain id and the seed
# texts keep that spelling, because changing them would change the chain (its genesis hash and state roots).
# The cluster runner `pocl-node devnet` (`pocl.node.devnet`) does not use it: it generates a fresh testnet.


def localnet_validator_key(index: int) -> PrivateKey:
    """INSECURE deterministic account key of localnet validator `index` (anyone can derive it)."""
    return PrivateKey.from_seed_text(f"devnet-validator-{index}")


def localnet_consensus_key(index: int) -> PrivateKey:
    """INSECURE deterministic consensus key of localnet validator `index` (signs its votes)."""
    return PrivateKey.from_seed_text(f"devnet-validator-{index}/consensus")


LOCALNET_CHAIN_ID = "pocl-devnet"
LOCALNET_GENESIS_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LOCALNET_STAKE = 1_000_000
LOCALNET_BALANCE = 1_000_000_000
LOCALNET_FAUCET_BALANCE = 1_000_000_000_000
LOCALNET_COMMENT = (
    "INSECURE devnet: validator account keys are PrivateKey.from_seed_text('devnet-validator-N'), their consensus "
    "keys from_seed_text('devnet-validator-N/consensus') and the faucet key is from_seed_text('devnet-faucet'); "
    "anyone can sign for them. Never use this genesis for value."
)


def localnet_faucet_key() -> PrivateKey:
    return PrivateKey.from_seed_text("devnet-faucet")


def build_localnet_genesis(validators: int = LOCALNET_VALIDATOR_COUNT) -> Genesis:
    """The shipped localnet genesis (regenerate `genesis/localnet.json` with `python -m pocl.genesis.schema`)."""
    return build_genesis(
        LOCALNET_CHAIN_ID,
        [
            GenesisValidator(
                localnet_validator_key(i).pubkey,
                localnet_consensus_key(i).pubkey,
                LOCALNET_STAKE,
                LOCALNET_BALANCE,
            )
            for i in range(validators)
        ],
        accounts=[(localnet_faucet_key().address, LOCALNET_FAUCET_BALANCE)],
        genesis_time_ms=LOCALNET_GENESIS_TIME_MS,
        comment=LOCALNET_COMMENT,
    )


if __name__ == "__main__":  # regenerate the shipped localnet genesis
    write_genesis(shipped_genesis_path("localnet"), build_localnet_genesis())
    print(f"wrote {shipped_genesis_path('localnet')}")
