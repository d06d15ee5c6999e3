"""Ledger state: accounts, stake, validator set and a namespaced key/value area (DESIGN §4).

Everything in state is a key/value entry `full_key -> canonical bytes`, where
`full_key = len(ns) || ns || key` (`ns` an ASCII namespace). All entries are committed to by the
state root (`ledger.state_root`). Core namespaces:

    "acct"    address (20 B)          -> Account
    "meta"    b"height"               -> last executed block height (u64 BE)
              b"stakers"              -> sorted list of addresses with bonded stake > 0
    "unbond"  release height (u64 BE) -> list of addresses with unbonding entries released then
    "evid"    address||height||round||type -> height punished (u64 BE): one punishment per offence
    "global"  b"model"                -> hash of the current global model
Roles (validator consensus keys, registered miners) live in the raw namespace "role" (`ledger.roles`).
Other namespaces are free for later modules (`get_raw/set_raw`, e.g. PoCL round records). Raw
namespaces cannot be listed cheaply: keep your own index entries if you need iteration.

Copy-on-write: `state.copy()` returns an overlay whose writes stay in its dirty set; reads fall
through to the parent. `delta()` encodes the changes relative to the committed base and previews the
new root (only dirty buckets re-hashed); `commit()` folds the whole overlay chain into the base and
returns the base. Typical use (the node, `valid(v)` checks, block sync):

    work = state.copy()
    result = executor.apply_block(work, block)   # raises BlockError -> just drop `work`
    store.commit_block(block, work.delta(), seen_commit=commit)
    state = work.commit()                        # the base, now at the new height

Only the top of an overlay chain may be written; committing invalidates sibling overlays.
Integers only, no floats. Amounts stay below 2**63 (`ledger.tx.MAX_AMOUNT`; genesis supply is capped
there). Unstaked amounts sit in `Account.unbonding` (still slashable) and return to the balance at the
start of block `unstake height + max(1, unbonding_blocks)`.

Public API: State (from_genesis(params, accounts, chain_id), from_entries, copy, commit, delta,
state_root, height, account(addr), balance(addr), account_for_update(addr), get_raw/set_raw/delete_raw,
global_model_hash/set_global_model_hash, stakers, validator_set(height=None),
put_model/get_model, entries_snapshot), Account, Validator(address, pubkey, power, operator),
StateDelta, full_key, NS_* constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgpack
from pocl.ledger import codec, roles
from pocl.ledger.codec import CodecError
from pocl.ledger.keys import ADDRESS_LEN, PUBKEY_LEN, address_of
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state_root import BucketTree, TreeUpdate

NS_ACCOUNT = "acct"
NS_META = "meta"
NS_UNBOND = "unbond"
NS_EVIDENCE = "evid"
NS_GLOBAL = "global"
CORE_NAMESPACES = frozenset({NS_ACCOUNT, NS_META, NS_UNBOND, NS_EVIDENCE})

META_HEIGHT = b"height"
META_STAKERS = b"stakers"
GLOBAL_MODEL = b"model"

MAX_AMOUNT = 2**63 - 1


def full_key(ns: str, key: bytes) -> bytes:
    nsb = ns.encode("ascii")
    if not 0 < len(nsb) < 256:
        raise ValueError("namespace must be 1..255 ASCII characters")
    return bytes([len(nsb)]) + nsb + key


_ACCT_PREFIX = full_key(NS_ACCOUNT, b"")
_HEIGHT_KEY = full_key(NS_META, META_HEIGHT)
_STAKERS_KEY = full_key(NS_META, META_STAKERS)


def height_key(height: int) -> bytes:
    return height.to_bytes(8, "big")


# --------------------------------------------------------------------------- account


def _packer() -> msgpack.Packer:
    """A packer of our own: msgpack.Packer is not thread-safe, and a new one costs next to nothing (measured)."""
    return msgpack.Packer(use_bin_type=True)


def _unpack_trusted(data: bytes) -> object:
    return msgpack.unpackb(data, raw=False, use_list=True)


class Account:
    """Mutable account record; encoded as
    [balance, nonce, pubkey, stake, [[amount, release_height], ...], jailed_until_height,
     jailed_until_round, slashed_total].

    Objects returned by `State.account` are shared: treat them as read-only; mutate only objects from
    `State.account_for_update`.
    """

    __slots__ = (
        "balance",
        "jailed_until_height",
        "jailed_until_round",
        "nonce",
        "pubkey",
        "slashed_total",
        "stake",
        "unbonding",
    )

    def __init__(
        self,
        balance: int = 0,
        nonce: int = 0,
        pubkey: bytes = b"",
        stake: int = 0,
        unbonding: list[list[int]] | None = None,
        jailed_until_height: int = 0,
        jailed_until_round: int = 0,
        slashed_total: int = 0,
    ) -> None:
        self.balance = balance
        self.nonce = nonce
        self.pubkey = pubkey  # b"" until the account signs its first tx (or set at genesis)
        self.stake = stake  # bonded
        self.unbonding = unbonding if unbonding is not None else []  # [[amount, release_height], ...]
        self.jailed_until_height = jailed_until_height  # jailed while block height <= this
        self.jailed_until_round = jailed_until_round  # PoCL: not eligible while round <= this
        self.slashed_total = slashed_total

    def copy(self) -> Account:
        return Account(
            self.balance,
            self.nonce,
            self.pubkey,
            self.stake,
            [list(e) for e in self.unbonding] if self.unbonding else [],
            self.jailed_until_height,
            self.jailed_until_round,
            self.slashed_total,
        )

    @property
    def unbonding_total(self) -> int:
        return sum(e[0] for e in self.unbonding)

    @property
    def slashable(self) -> int:
        return self.stake + self.unbonding_total

    def is_jailed_at_height(self, height: int) -> bool:
        return height <= self.jailed_until_height

    def to_list(self) -> list:
        return [
            self.balance,
            self.nonce,
            self.pubkey,
            self.stake,
            self.unbonding,
            self.jailed_until_height,
            self.jailed_until_round,
            self.slashed_total,
        ]

    def encode(self) -> bytes:
        # All fields are ints in [0, 2**63) and bytes by construction, so packing is canonical here.
        return _packer().pack(self.to_list())

    @classmethod
    def decode(cls, data: bytes, strict: bool = True) -> Account:
        """Strictly decode (types, ranges, canonical bytes). `strict=False` skips only the canonical
        re-encoding check: for entries of a store whose root was verified on load."""
        if not strict:
            try:
                v = _unpack_trusted(data)
                if type(v) is list and len(v) == 8:
                    return cls(*v)
            except (ValueError, TypeError, msgpack.UnpackException):
                pass
            # fall through to the strict path for a clear error
        try:
            v = codec.unpack(data)
        except CodecError as exc:
            raise CodecError(f"Account: malformed encoding: {exc}") from exc
        if type(v) is not list or len(v) != 8:
            raise CodecError("Account: expected array of 8")
        bal, nonce, pk, stake, unb, jh, jr, slashed = v
        for x in (bal, nonce, stake, jh, jr, slashed):
            if type(x) is not int or not 0 <= x <= MAX_AMOUNT:
                raise CodecError("Account: integer field out of range")
        if type(pk) is not bytes or len(pk) not in (0, PUBKEY_LEN):
            raise CodecError("Account.pubkey: expected empty or 32 bytes")
        if type(unb) is not list:
            raise CodecError("Account.unbonding: expected array")
        for e in unb:
            if type(e) is not list or len(e) != 2 or any(type(x) is not int or x < 0 for x in e):
                raise CodecError("Account.unbonding: expected [amount, release_height] entries")
        acct = cls(bal, nonce, pk, stake, unb, jh, jr, slashed)
        if strict and acct.encode() != data:
            raise CodecError("Account: non-canonical encoding")
        return acct

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Account) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return (
            f"Account(balance={self.balance}, nonce={self.nonce}, stake={self.stake}, "
            f"unbonding={self.unbonding}, jailed_until_height={self.jailed_until_height}, "
            f"jailed_until_round={self.jailed_until_round}, slashed_total={self.slashed_total})"
        )

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class Validator:
    address: bytes  # consensus address = address_of(pubkey): what votes and headers name
    pubkey: bytes  # the consensus public key (signs proposals and votes)
    power: int  # = the operator's bonded stake
    operator: bytes  # the operator's account address (holds the stake, receives fees, gets slashed)


@dataclasses.dataclass
class StateDelta:
    """Encoded changes of an overlay chain relative to the committed base, plus the new root."""

    height: int
    changes: dict[bytes, bytes | None]  # full_key -> canonical value bytes (None = deleted)
    tree: TreeUpdate
    models: dict[bytes, bytes]  # global models (hash -> bytes) produced while executing
    _objects: dict[bytes, Account] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def bucket_hashes(self) -> dict[int, bytes]:
        return self.tree.bucket_hashes


_MISSING = object()


class State:
    """See the module docstring. Construct with `from_genesis` or `from_entries` (store load)."""

    def __init__(
        self,
        params: ChainParams,
        chain_id: str,
        parent: State | None = None,
    ) -> None:
        self.params = params
        self.chain_id = chain_id
        self._parent = parent
        self._writes: dict[bytes, object] = {}  # full_key -> bytes | Account | None (deleted)
        self._models: dict[bytes, bytes] = {}
        self._delta: StateDelta | None = None
        if parent is None:
            self._entries: dict[bytes, bytes] = {}
            self._decoded: dict[bytes, Account] = {}
            self._tree = BucketTree()
            self._model_reader: Callable[[bytes], bytes | None] | None = None
            self._base = self
        else:
            self._base = parent._base

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_entries(
        cls,
        params: ChainParams,
        chain_id: str,
        entries: dict[bytes, bytes],
        model_reader: Callable[[bytes], bytes | None] | None = None,
    ) -> State:
        """A committed base state over existing entries (the store's loader); builds the root tree."""
        st = cls(params, chain_id)
        st._entries = dict(entries)
        st._tree = BucketTree.from_entries(st._entries)
        st._model_reader = model_reader
        return st

    @classmethod
    def from_genesis(cls, params: ChainParams, accounts: list[GenesisAccount], chain_id: str) -> State:
        """Height-0 state: balances, bonded stakes (need a pubkey), role records (consensus keys, miner
        registrations) and params. Raises ValueError."""
        st = cls(params, chain_id)
        seen: set[bytes] = set()
        for ga in accounts:
            if len(ga.address) != ADDRESS_LEN:
                raise ValueError("genesis account address must be 20 bytes")
            if ga.address in seen:
                raise ValueError(f"duplicate genesis account 0x{ga.address.hex()}")
            seen.add(ga.address)
            for amount in (ga.balance, ga.stake):
                if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT:
                    raise ValueError(f"genesis amount out of range for 0x{ga.address.hex()}")
            pubkey = ga.pubkey or b""
            if pubkey and (len(pubkey) != PUBKEY_LEN or address_of(pubkey) != ga.address):
                raise ValueError(f"genesis pubkey does not match address 0x{ga.address.hex()}")
            if ga.stake > 0 and not pubkey:
                raise ValueError(f"genesis account 0x{ga.address.hex()} has stake but no pubkey")
            acct = st.account_for_update(ga.address)
            acct.balance = ga.balance
            acct.stake = ga.stake
            acct.pubkey = pubkey
            if ga.stake > 0:
                st.update_staker_index(ga.address)
            if ga.consensus_pubkey is not None:
                cpk = ga.consensus_pubkey
                if len(cpk) != PUBKEY_LEN or address_of(cpk) == ga.address:
                    raise ValueError(
                        f"genesis consensus key of 0x{ga.address.hex()} must be 32 bytes and not the account key"
                    )
                roles.set_validator_key(st, ga.address, cpk)  # ValueError if the key is used twice
            if ga.miner:
                roles.register_miner(st, ga.address)
        if sum(ga.balance + ga.stake for ga in accounts) > MAX_AMOUNT:
            raise ValueError("genesis total supply must stay below 2**63")
        st._set_height(0)
        st.commit()
        return st

    def copy(self) -> State:
        """Cheap copy-on-write overlay on top of this state."""
        return State(self.params, self.chain_id, parent=self)

    # ------------------------------------------------------------------ low-level entries

    def _get(self, fk: bytes) -> object:
        """Value object for a full key (bytes or Account) or None."""
        st: State | None = self
        while st is not None:
            v = st._writes.get(fk, _MISSING)
            if v is not _MISSING:
                return v
            if st._parent is None:
                return st._entries.get(fk)
            st = st._parent
        return None  # pragma: no cover

    def _put(self, fk: bytes, value: object) -> None:
        self._writes[fk] = value
        self._delta = None

    def get_entry(self, fk: bytes) -> bytes | None:
        """Encoded value for a full key."""
        v = self._get(fk)
        if isinstance(v, Account):
            return v.encode()
        return v  # type: ignore[return-value]

    # ------------------------------------------------------------------ raw namespaced area

    def get_raw(self, ns: str, key: bytes) -> bytes | None:
        return self.get_entry(full_key(ns, key))

    def set_raw(self, ns: str, key: bytes, value: bytes) -> None:
        if ns in CORE_NAMESPACES:
            raise ValueError(f"namespace {ns!r} is managed by the ledger")
        if not isinstance(value, bytes):
            raise TypeError("raw state values must be bytes")
        self._put(full_key(ns, key), value)

    def delete_raw(self, ns: str, key: bytes) -> None:
        if ns in CORE_NAMESPACES:
            raise ValueError(f"namespace {ns!r} is managed by the ledger")
        self._put(full_key(ns, key), None)

    def _set_core(self, ns: str, key: bytes, value: bytes | None) -> None:
        self._put(full_key(ns, key), value)

    # ------------------------------------------------------------------ height / globals

    @property
    def height(self) -> int:
        """Height of the last executed block (0 = genesis)."""
        v = self._get(_HEIGHT_KEY)
        return int.from_bytes(v, "big") if v else 0  # type: ignore[arg-type]

    def _set_height(self, height: int) -> None:
        self._put(_HEIGHT_KEY, height_key(height))

    @property
    def global_model_hash(self) -> bytes | None:
        return self.get_raw(NS_GLOBAL, GLOBAL_MODEL)

    def set_global_model_hash(self, model_hash: bytes) -> None:
        self.set_raw(NS_GLOBAL, GLOBAL_MODEL, model_hash)

    # ------------------------------------------------------------------ accounts

    def account(self, address: bytes) -> Account | None:
        """Read-only view of an account (None if it never existed). Do not mutate."""
        return self._account_fk(_ACCT_PREFIX + address)

    def _account_fk(self, fk: bytes) -> Account | None:
        # Hot path: overlay writes top-down, then the base's decoded cache, then its committed bytes.
        st = self
        while True:
            v = st._writes.get(fk, _MISSING)
            if v is not _MISSING:
                if v is None or type(v) is Account:
                    return v  # type: ignore[return-value]
                return Account.decode(v)  # type: ignore[arg-type]
            parent = st._parent
            if parent is None:
                break
            st = parent
        acct = st._decoded.get(fk)
        if acct is not None:
            return acct
        raw = st._entries.get(fk)
        if raw is None:
            return None
        # committed entry: root-checked bytes we encoded ourselves, so skip the canonical re-encode
        acct = st._decoded[fk] = Account.decode(raw, strict=False)
        return acct

    def balance(self, address: bytes) -> int:
        acct = self._account_fk(_ACCT_PREFIX + address)
        return acct.balance if acct is not None else 0

    def account_for_update(self, address: bytes) -> Account:
        """A mutable account owned by this overlay (created empty if absent)."""
        fk = _ACCT_PREFIX + address
        self._delta = None
        writes = self._writes
        v = writes.get(fk)
        if type(v) is Account:
            return v  # type: ignore[return-value]
        cur = self._account_fk(fk)
        acct = cur.copy() if cur is not None else Account()
        writes[fk] = acct
        return acct

    # ------------------------------------------------------------------ staking indexes

    def stakers(self) -> list[bytes]:
        """Addresses with bonded stake > 0, sorted."""
        v = self._get(_STAKERS_KEY)
        return list(codec.decode(v)) if v else []  # type: ignore[arg-type]

    def update_staker_index(self, address: bytes) -> None:
        """Call after changing an account's bonded stake: keeps the staker list exact."""
        acct = self.account(address)
        has = acct is not None and acct.stake > 0
        stakers = self.stakers()
        present = address in stakers
        if has and not present:
            stakers.append(address)
            stakers.sort()
        elif not has and present:
            stakers.remove(address)
        else:
            return
        self._put(_STAKERS_KEY, codec.encode(stakers))

    def unbonding_queue(self, release_height: int) -> list[bytes]:
        v = self.get_entry(full_key(NS_UNBOND, height_key(release_height)))
        return list(codec.decode(v)) if v else []

    def add_to_unbonding_queue(self, release_height: int, address: bytes) -> None:
        queue = self.unbonding_queue(release_height)
        if address not in queue:
            queue.append(address)
            queue.sort()
            self._set_core(NS_UNBOND, height_key(release_height), codec.encode(queue))

    def clear_unbonding_queue(self, release_height: int) -> None:
        self._set_core(NS_UNBOND, height_key(release_height), None)

    def evidence_seen(self, key: bytes) -> bool:
        return self.get_entry(full_key(NS_EVIDENCE, key)) is not None

    def mark_evidence(self, key: bytes, height: int) -> None:
        self._set_core(NS_EVIDENCE, key, height_key(height))

    # ------------------------------------------------------------------ validator set

    def validator_set(self, height: int | None = None) -> list[Validator]:
        """Validators for block `height` (default: the next block, `self.height + 1`).

        Operators with a consensus key (`ledger.roles`), bonded stake >= min_validator_stake and not
        jailed at `height`; the top `max_validators` by (stake desc, consensus address asc);
        power = stake. Returned in that order. Staking alone makes no validator.
        """
        h = self.height + 1 if height is None else height
        vals = []
        for addr in self.stakers():
            acct = self.account(addr)
            if acct is None or acct.stake < self.params.min_validator_stake:
                continue
            if acct.is_jailed_at_height(h):
                continue
            cpk = roles.consensus_pubkey_of(self, addr)
            if cpk is None:
                continue
            vals.append(Validator(address_of(cpk), cpk, acct.stake, addr))
        vals.sort(key=lambda v: (-v.power, v.address))
        return vals[: self.params.max_validators]

    # ------------------------------------------------------------------ models (content-addressed blobs)

    def put_model(self, model_hash: bytes, data: bytes) -> None:
        """Stage a global model; persisted by the store in the same batch as the block."""
        self._models[model_hash] = data
        self._delta = None

    def get_model(self, model_hash: bytes) -> bytes | None:
        st: State | None = self
        while st is not None:
            if model_hash in st._models:
                return st._models[model_hash]
            st = st._parent
        reader = self._base._model_reader
        return reader(model_hash) if reader is not None else None

    # ------------------------------------------------------------------ delta / commit

    def _chain(self) -> list[State]:
        chain = []
        st: State | None = self
        while st is not None:
            chain.append(st)
            st = st._parent
        chain.reverse()  # base first
        return chain

    def delta(self) -> StateDelta:
        """Changes of the whole overlay chain vs the committed base, encoded, with the new root."""
        if self._delta is not None:
            return self._delta
        merged: dict[bytes, object] = {}
        models: dict[bytes, bytes] = {}
        for st in self._chain():
            merged.update(st._writes)
            models.update(st._models)
        base_entries = self._base._entries
        changes: dict[bytes, bytes | None] = {}
        objects: dict[bytes, Account] = {}  # Account objects behind `changes`, for commit()'s cache
        pack = _packer().pack
        for fk, v in merged.items():
            if type(v) is Account:
                enc: bytes | None = pack(
                    [
                        v.balance,  # type: ignore[attr-defined]
                        v.nonce,  # type: ignore[attr-defined]
                        v.pubkey,  # type: ignore[attr-defined]
                        v.stake,  # type: ignore[attr-defined]
                        v.unbonding,  # type: ignore[attr-defined]
                        v.jailed_until_height,  # type: ignore[attr-defined]
                        v.jailed_until_round,  # type: ignore[attr-defined]
                        v.slashed_total,  # type: ignore[attr-defined]
                    ]
                )  # == v.encode(), inlined (hot)
                if enc == base_entries.get(fk):
                    continue
                objects[fk] = v  # type: ignore[assignment]
            else:
                enc = v  # type: ignore[assignment]
                if enc == base_entries.get(fk):
                    continue  # unchanged (or deleting something absent)
            changes[fk] = enc
        delta = StateDelta(self.height, changes, self._base._tree.preview(changes), models)
        delta._objects = objects
        self._delta = delta
        return delta

    def state_root(self) -> bytes:
        return self.delta().root

    def commit(self) -> State:
        """Fold this overlay chain into the committed base and return the base."""
        delta = self.delta()
        base = self._base
        chain = self._chain()
        entries = base._entries
        decoded = base._decoded
        # Keep this block's Account objects as the decoded cache (saves re-decoding hot accounts);
        # they are no longer written once the overlays are cleared below.
        objects = delta._objects
        for fk, enc in delta.changes.items():
            if enc is None:
                entries.pop(fk, None)
                decoded.pop(fk, None)
            else:
                entries[fk] = enc
                obj = objects.get(fk)
                if obj is not None:
                    decoded[fk] = obj
                else:
                    decoded.pop(fk, None)
        base._tree.apply(delta.tree)
        for st in chain:
            st._writes = {}
            st._models = {}
            st._delta = None
        return base

    def entries_snapshot(self) -> dict[bytes, bytes]:
        """All entries as encoded bytes, including uncommitted overlay writes (tests, debugging)."""
        out = dict(self._base._entries)
        for fk, enc in self.delta().changes.items():
            if enc is None:
                out.pop(fk, None)
            else:
                out[fk] = enc
        return out
