"""LevelDB (plyvel) persistence of blocks, commits, tx index, state and global models (DESIGN §4).

Key layout (one-byte prefixes, fixed-width big-endian heights so keys sort by height):

    00 name            meta: b"schema" (SCHEMA_VERSION), b"chain_id", b"head" (u64),
                             b"state_root" (root of the stored state = head header's state_root),
                             b"genesis_hash"
    01 height          canonical Block encoding
    02 block hash      height (u64)
    03 height          canonical Commit for that height (taken from block height+1's last_commit)
    04 tx hash         height (u64) || index in block (u32)
    05 state full key  state entry value (see ledger.state)
    06 bucket (u16)    state bucket hash (ledger.state_root), absent = empty bucket
    07 model hash      global model bytes (content-addressed)
    08 name            misc (e.g. the validator's signing state), written with put_misc
    09 height          "seen" commit for the head block (until block height+1 brings the canonical one)

Crash safety: `commit_block` writes block, hash index, canonical commit of the parent, seen commit,
tx index, state delta, bucket hashes, staged models, state root and head pointer in ONE
`write_batch(sync=True)`: after a kill -9 the store holds either the old head or the new one.

`Store.open(path)` checks the schema version and consistency (head block present, stored state root
== head header's state root == root over the stored bucket hashes) and raises `StoreError` with a
clear message for corrupt, foreign, locked or newer-schema databases; a database another process has
open raises `StoreLocked` (with that process's pid where the OS tells it), never plyvel's raw bytes. `load_state(params)` rebuilds
the State (recomputing every leaf: a from-scratch check of the stored root).

Public API: Store.open(path, create=True), .close(), .initialized, .chain_id, .head_height,
.init_genesis(state, genesis_hash=b""),
.commit_block(block, delta, seen_commit=None, tx_hashes=None, block_raw=None),
.put_seen_commit(height, commit), .block(h), .block_raw(h), .block_by_hash(hash), .height_of(hash),
.head_block(), .commit(h), .tx_location(tx_hash), .state_root(), .load_state(params),
.verify_state(), .put_model/.get_model/.has_model, .put_misc/.get_misc/.delete_misc, StoreError,
StoreLocked, lock_holder_pid(path).
"""

from __future__ import annotations

import os
import re
import struct
import sys
from collections.abc import Iterator, Sequence

import plyvel
from pocl.ledger.block import Block, Commit
from pocl.ledger.codec import CodecError
from pocl.ledger.hashing import TAG_TX, tagged_hash
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State, StateDelta
from pocl.ledger.state_root import EMPTY_BUCKET_HASH, NUM_BUCKETS, BucketTree, compute_root, root_of

SCHEMA_VERSION = b"pocl-ledger/1"

P_META = b"\x00"
P_BLOCK = b"\x01"
P_BLOCK_HASH = b"\x02"
P_COMMIT = b"\x03"
P_TX = b"\x04"
P_STATE = b"\x05"
P_BUCKET = b"\x06"
P_MODEL = b"\x07"
P_MISC = b"\x08"
P_SEEN_COMMIT = b"\x09"

K_SCHEMA = P_META + b"schema"
K_CHAIN_ID = P_META + b"chain_id"
K_HEAD = P_META + b"head"
K_STATE_ROOT = P_META + b"state_root"
K_GENESIS_HASH = P_META + b"genesis_hash"


class StoreError(Exception):
    """The database is missing, locked, corrupt, foreign or inconsistent."""


class StoreLocked(StoreError):
    """Another process has the database open (LevelDB's LOCK file); `pid` is that process if known."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"another process (pid {pid})" if pid else "another process"
        super().__init__(f"ledger database at {path} is in use by {holder}")


# struct flock as fcntl(F_GETLK) takes it on Linux with 64-bit offsets: l_type, l_whence, l_start,
# l_len, l_pid (native alignment).
_FLOCK = "hhqqi"


def lock_holder_pid(path: str | os.PathLike[str]) -> int | None:
    """The pid holding LevelDB's lock on the database at `path` (an fcntl lock on `path/LOCK`).

    Linux only (other systems lay out `struct flock` differently): None elsewhere, when nobody holds
    the lock, or when it is held by this very process.
    """
    if not sys.platform.startswith("linux"):
        return None
    import fcntl

    try:
        with open(os.path.join(os.fspath(path), "LOCK"), "rb") as f:
            query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            l_type, _whence, _start, _len, pid = struct.unpack(
                _FLOCK, fcntl.fcntl(f.fileno(), fcntl.F_GETLK, query)
            )
    except (OSError, struct.error):
        return None
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def _plyvel_message(exc: Exception) -> str:
    """plyvel's error text without the bytes repr (its args hold bytes)."""
    raw = exc.args[0] if exc.args else b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(exc)


def _is_lock_error(exc: Exception) -> bool:
    """LevelDB's "IO error: lock PATH/LOCK: ..." (held elsewhere), not e.g. a permission error on it."""
    return re.search(r"(?:^|: )lock \S*LOCK: ", _plyvel_message(exc)) is not None


def _h(height: int) -> bytes:
    return height.to_bytes(8, "big")


def _bucket_key(b: int) -> bytes:
    return P_BUCKET + b.to_bytes(2, "big")


class Store:
    def __init__(self, db: plyvel.DB, path: str) -> None:
        self._db = db
        self.path = path

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(cls, path: str | os.PathLike[str], create: bool = True) -> Store:
        path = os.fspath(path)
        if not create and not os.path.isdir(path):
            raise StoreError(f"no ledger database at {path}")
        try:
            db = plyvel.DB(path, create_if_missing=create)
        except plyvel.IOError as exc:
            if _is_lock_error(exc):
                raise StoreLocked(path, lock_holder_pid(path)) from exc
            raise StoreError(f"cannot open ledger database at {path}: {_plyvel_message(exc)}") from exc
        except plyvel.CorruptionError as exc:
            raise StoreError(f"ledger database at {path} is corrupt: {_plyvel_message(exc)}") from exc
        except plyvel.Error as exc:
            raise StoreError(f"cannot open ledger database at {path}: {_plyvel_message(exc)}") from exc
        store = cls(db, path)
        try:
            store._check_schema()
            if store.initialized:
                store.check_consistency()
        except BaseException:
            db.close()
            raise
        return store

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_schema(self) -> None:
        schema = self._db.get(K_SCHEMA)
        if schema is None:
            if next(self._db.iterator(include_value=False), None) is not None:
                raise StoreError(f"{self.path} is not a pocl ledger database (no schema version key)")
            self._db.put(K_SCHEMA, SCHEMA_VERSION, sync=True)
        elif schema != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: ledger schema {schema!r} is not supported (expected {SCHEMA_VERSION!r})"
            )

    def check_consistency(self) -> None:
        """Cheap open-time check: head block, header root, stored root and bucket hashes agree."""
        head = self.head_height
        assert head is not None
        stored_root = self._db.get(K_STATE_ROOT)
        if stored_root is None or self._db.get(K_CHAIN_ID) is None:
            raise StoreError(f"{self.path}: head pointer without state root / chain id (corrupt)")
        if head > 0:
            try:
                block = self.block(head)
            except CodecError as exc:
                raise StoreError(f"{self.path}: head block {head} does not decode: {exc}") from exc
            if block is None:
                raise StoreError(f"{self.path}: head block {head} is missing (corrupt)")
            if block.height != head or self.height_of(block.hash) != head:
                raise StoreError(f"{self.path}: head block {head} index is inconsistent")
            if block.header.state_root != stored_root:
                raise StoreError(f"{self.path}: stored state root does not match head block {head}")
        if self._bucket_root() != stored_root:
            raise StoreError(f"{self.path}: state bucket hashes do not match the stored state root")

    def _bucket_root(self) -> bytes:
        hashes = [EMPTY_BUCKET_HASH] * NUM_BUCKETS
        for key, value in self._db.iterator(prefix=P_BUCKET):
            b = int.from_bytes(key[1:], "big")
            if b >= NUM_BUCKETS or len(value) != 32:
                raise StoreError(f"{self.path}: malformed bucket hash entry")
            hashes[b] = value
        return root_of(hashes)

    # ------------------------------------------------------------------ meta

    @property
    def initialized(self) -> bool:
        return self._db.get(K_HEAD) is not None

    @property
    def head_height(self) -> int | None:
        v = self._db.get(K_HEAD)
        return int.from_bytes(v, "big") if v is not None else None

    @property
    def chain_id(self) -> str | None:
        v = self._db.get(K_CHAIN_ID)
        return v.decode() if v is not None else None

    @property
    def genesis_hash(self) -> bytes | None:
        return self._db.get(K_GENESIS_HASH)

    def state_root(self) -> bytes | None:
        return self._db.get(K_STATE_ROOT)

    # ------------------------------------------------------------------ writes

    def init_genesis(self, state: State, genesis_hash: bytes = b"") -> None:
        """Persist the height-0 state (all entries) and set head = 0. State must be committed."""
        if self.initialized:
            raise StoreError(f"{self.path}: already initialised (head {self.head_height})")
        if state.height != 0:
            raise ValueError("init_genesis needs a height-0 state")
        entries = state.entries_snapshot()
        tree = BucketTree.from_entries(entries)
        with self._db.write_batch(sync=True, transaction=True) as wb:
            for fk, value in entries.items():
                wb.put(P_STATE + fk, value)
            for b, h in enumerate(tree.bucket_hashes):
                if h != EMPTY_BUCKET_HASH:
                    wb.put(_bucket_key(b), h)
            wb.put(K_CHAIN_ID, state.chain_id.encode())
            wb.put(K_GENESIS_HASH, genesis_hash)
            wb.put(K_STATE_ROOT, tree.root)
            wb.put(K_HEAD, _h(0))

    def commit_block(
        self,
        block: Block,
        delta: StateDelta,
        seen_commit: Commit | None = None,
        tx_hashes: Sequence[bytes] | None = None,
        block_raw: bytes | None = None,
    ) -> None:
        """Atomically (one synced batch) persist block `delta.height` and its state delta as the new head.

        `tx_hashes` (e.g. `BlockResult.tx_hashes`) saves re-hashing the txs for the tx index;
        `block_raw` (the block's canonical bytes, e.g. as received) saves re-encoding it.
        """
        height = block.height
        head = self.head_height
        if head is None:
            raise StoreError("store has no genesis state")
        if height != head + 1 or delta.height != height:
            raise ValueError(f"commit_block({height}) with head {head} and delta for {delta.height}")
        if block.header.state_root != delta.root:
            raise ValueError("block header state_root differs from the delta's root")
        hb = _h(height)
        with self._db.write_batch(sync=True, transaction=True) as wb:
            put = wb.put
            put(P_BLOCK + hb, block_raw if block_raw is not None else block.encode())
            put(P_BLOCK_HASH + block.hash, hb)
            if block.last_commit is not None and height > 1:
                put(P_COMMIT + _h(height - 1), block.last_commit.encode())
                wb.delete(P_SEEN_COMMIT + _h(height - 1))
            if seen_commit is not None:
                put(P_SEEN_COMMIT + hb, seen_commit.encode())
            if tx_hashes is None or len(tx_hashes) != len(block.txs):
                tx_hashes = [tagged_hash(TAG_TX, raw) for raw in block.txs]
            for i, th in enumerate(tx_hashes):
                put(P_TX + th, hb + i.to_bytes(4, "big"))
            for fk, value in delta.changes.items():
                if value is None:
                    wb.delete(P_STATE + fk)
                else:
                    put(P_STATE + fk, value)
            for b, h in delta.bucket_hashes.items():
                if h == EMPTY_BUCKET_HASH:
                    wb.delete(_bucket_key(b))
                else:
                    put(P_BUCKET + b.to_bytes(2, "big"), h)
            for mh, data in delta.models.items():
                put(P_MODEL + mh, data)
            put(K_STATE_ROOT, delta.root)
            put(K_HEAD, hb)

    def put_seen_commit(self, height: int, commit: Commit) -> None:
        """Record the commit certificate for `height` when it is known before block height+1."""
        self._db.put(P_SEEN_COMMIT + _h(height), commit.encode(), sync=True)

    # ------------------------------------------------------------------ reads: chain

    def block_raw(self, height: int) -> bytes | None:
        return self._db.get(P_BLOCK + _h(height))

    def block(self, height: int) -> Block | None:
        raw = self.block_raw(height)
        return Block.decode(raw) if raw is not None else None

    def head_block(self) -> Block | None:
        head = self.head_height
        return self.block(head) if head else None

    def height_of(self, block_hash: bytes) -> int | None:
        v = self._db.get(P_BLOCK_HASH + block_hash)
        return int.from_bytes(v, "big") if v is not None else None

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        h = self.height_of(block_hash)
        return self.block(h) if h is not None else None

    def commit(self, height: int) -> Commit | None:
        """Commit certificate for `height`: canonical (from block height+1) or the seen one."""
        raw = self._db.get(P_COMMIT + _h(height))
        if raw is None:
            raw = self._db.get(P_SEEN_COMMIT + _h(height))
        return Commit.decode(raw) if raw is not None else None

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        v = self._db.get(P_TX + tx_hash)
        if v is None:
            return None
        return int.from_bytes(v[:8], "big"), int.from_bytes(v[8:], "big")

    def get_tx(self, tx_hash: bytes) -> bytes | None:
        loc = self.tx_location(tx_hash)
        if loc is None:
            return None
        block = self.block(loc[0])
        return block.txs[loc[1]] if block is not None else None

    # ------------------------------------------------------------------ reads: state

    def iter_state_entries(self) -> Iterator[tuple[bytes, bytes]]:
        n = len(P_STATE)
        for key, value in self._db.iterator(prefix=P_STATE):
            yield key[n:], value

    def load_state(self, params: ChainParams) -> State:
        """The State at the head; recomputes the root from scratch and checks it (StoreError)."""
        chain_id = self.chain_id
        if not self.initialized or chain_id is None:
            raise StoreError(f"{self.path}: no genesis state stored")
        state = State.from_entries(params, chain_id, dict(self.iter_state_entries()), self.get_model)
        if state.state_root() != self.state_root():
            raise StoreError(f"{self.path}: state entries do not match the stored state root (corrupt)")
        if state.height != self.head_height:
            raise StoreError(f"{self.path}: state height {state.height} != head {self.head_height}")
        return state

    def verify_state(self) -> bytes:
        """From-scratch root over the stored entries; raises StoreError if it differs. Returns it."""
        root = compute_root(dict(self.iter_state_entries()))
        if root != self.state_root():
            raise StoreError(f"{self.path}: recomputed state root differs from the stored one")
        return root

    # ------------------------------------------------------------------ models / misc

    def put_model(self, model_hash: bytes, data: bytes) -> None:
        self._db.put(P_MODEL + model_hash, data, sync=True)

    def get_model(self, model_hash: bytes) -> bytes | None:
        return self._db.get(P_MODEL + model_hash)

    def has_model(self, model_hash: bytes) -> bool:
        return self._db.get(P_MODEL + model_hash) is not None

    def put_misc(self, key: bytes, value: bytes, sync: bool = True) -> None:
        self._db.put(P_MISC + key, value, sync=sync)

    def get_misc(self, key: bytes) -> bytes | None:
        return self._db.get(P_MISC + key)

    def delete_misc(self, key: bytes, sync: bool = True) -> None:
        self._db.delete(P_MISC + key, sync=sync)
