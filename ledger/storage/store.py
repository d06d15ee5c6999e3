"""LevelDB (plyvel) persistence of blocks, commits, tx index, state and global models (DESIGN §4).

Key layout (one-byte prefixes, fixed-width big-endian heights so keys sort by height):

    00 name            meta: b"schema" (SCHEMA_VERSION), b"chain_id", b"head" (u64),
                             b"state_root" (root of the stored state = head header's state_root),
                             b"genesis_hash", b"earliest" (u64, lowest stored block; absent = 1)
    01 height          canonical Block encoding
    02 block hash      height (u64)
    03 height          canonical Commit for that height (taken from block height+1's last_commit)
    04 tx hash         height (u64) || index in block (u32)
    05 state full key  state entry value (see ledger.state)
    06 bucket (u16)    state bucket hash (ledger.state_root), absent = empty bucket
    07 model hash      global model bytes (content-addressed); b"" = pruned (the hash stays known)
    08 name            misc (e.g. the validator's signing state), written with put_misc
    09 height          "seen" commit for the head block (until block height+1 brings the canonical one)

Crash safety: `commit_block` writes block, hash index, canonical commit of the parent, seen commit,
tx index, state delta, bucket hashes, staged models, state root and head pointer in ONE
`write_batch(sync=True)`: after a kill -9 the store holds either the old head or the new one.

`Store.open(path)` never creates a database over an existing one: it creates only where `path` is
missing or holds no database files (a first start); any other directory opens with LevelDB's
`create_if_missing=False`, because LevelDB asked to create where CURRENT is gone starts an empty
database and deletes the table files the old one left (issue 16 row 5: the whole chain). It checks the
schema version and consistency (head block present, stored state root == head header's state root ==
root over the stored bucket hashes) and raises `StoreError` for corrupt, foreign, locked or newer-schema
databases and for OS failures (ENOSPC, EACCES, EROFS, EIO, EMFILE): every one names the database path,
says what it found (`found`, `errno`) and carries the operator's next step (`recovery`, with `HOME`
where the node's home goes: `StoreError.for_home`); a database another process has open raises
`StoreLocked` (with that process's pid where the OS tells it), never plyvel's raw bytes. Writes
(`commit_block`, `put_seen_commit`, ...) that fail raise `StoreError` the same way: the node treats
them as fatal (`node.fatal`). `load_state(params)` rebuilds
the State (recomputing every leaf: a from-scratch check of the stored root).

Public API: Store.open(path, create=True), .close(), .initialized, .chain_id, .head_height,
.init_genesis(state, genesis_hash=b""),
.commit_block(block, delta, seen_commit=None, tx_hashes=None, block_raw=None),
.put_seen_commit(height, commit), .block(h), .block_raw(h), .block_by_hash(hash), .height_of(hash),
.head_block(), .commit(h), .tx_location(tx_hash), .state_root(), .load_state(params),
.verify_state(), .put_model/.get_model/.has_model, .put_misc/.get_misc/.delete_misc, StoreError,
StoreLocked, lock_holder_pid(path).

State sync: `state_view()` is a consistent view of the head state (a LevelDB snapshot) that snapshot
writers read in a thread; `restore_state(block, commit, entries, bucket_hashes, models)` replaces the
genesis state by a verified snapshot in one synced batch (head = earliest = its height).

Pruning (`prune(retain_height, keep_models)`, policy in `node.pruning`): deletes every block below the
retain height with its hash index, commits and tx index entries, in batches that each move the
`earliest` pointer in the same synced write (a kill mid-prune leaves every height >= earliest whole),
then compacts those key ranges so the disk space really comes back. Global models not in `keep_models`
become empty tombstones rather than vanishing: `get_model` of a pruned model returns b"" (`PRUNED_MODEL`),
so "is this a global model the chain already holds" (PoCL finalization) answers the same on a pruned node
as on an archive node. Readers that need the bytes check `model_pruned`. `.earliest_height`,
`.model_pruned(hash)`, PruneResult.
"""

from __future__ import annotations

import dataclasses
import errno as errnos
import functools
import os
import re
import struct
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

import plyvel
from pocl.ledger.block import Block, Commit
from pocl.ledger.codec import CodecError
from pocl.ledger.hashing import TAG_TX, tagged_hash
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State, StateDelta
from pocl.ledger.state_root import EMPTY_BUCKET_HASH, NUM_BUCKETS, BucketTree, compute_root, root_of

SCHEMA_VERSION = b"pocl-ledger/1"
_R = TypeVar("_R")

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
K_EARLIEST = P_META + b"earliest"

PRUNED_MODEL = b""  # the value a pruned model blob leaves behind (no real model encodes to 0 bytes)
# One pruning batch: at most this many heights and about this many bytes of blocks read (bounded memory,
# and short write locks so block commits are never held up for long).
PRUNE_BATCH_BLOCKS = 256
PRUNE_BATCH_BYTES = 32 * 1024 * 1024
PRUNE_MODEL_BATCH = 16


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What one `Store.prune` call did."""

    earliest_before: int
    earliest_after: int  # the lowest height still stored (== the retain height unless stopped early)
    blocks_deleted: int
    txs_deleted: int
    models_pruned: int
    bytes_deleted: int  # bytes of block and model values deleted (before LevelDB compaction)
    seconds: float
    stopped: bool = False  # `should_stop` asked it to stop between batches


HOME_PLACEHOLDER = "HOME"  # stands for the node's home in recovery commands (`StoreError.for_home`)
RESYNC = (
    "to recover, restore this database from a backup, or run `pocl-node unsafe-reset-all --home HOME` "
    "and start the node again to resync from peers (docs/operators.md, Recovery)"
)
# What an operator does about an OS error under the database (the errno LevelDB's message names).
ERRNO_RECOVERY = {
    errnos.ENOSPC: "free space on the filesystem holding it (df -h), then start the node again: the "
    "database is intact, every block is written in one synced batch",
    errnos.EDQUOT: "raise the disk quota or free space, then start the node again",
    errnos.EROFS: "the filesystem is read-only (often remounted so after disk errors): check the device "
    "(dmesg), remount it read-write, then start the node again",
    errnos.EACCES: "give the node's user read and write access to it (ls -l; chown), then start again",
    errnos.EPERM: "give the node's user read and write access to it (ls -l; chown), then start again",
    errnos.EIO: "the device failed (dmesg): replace it, then " + RESYNC.removeprefix("to recover, "),
    errnos.EMFILE: "raise the node's open-file limit (ulimit -n / LimitNOFILE=), then start it again",
    errnos.ENFILE: "the system ran out of file handles (fs.file-max), free some, then start again",
}
FATAL_ERRNOS = frozenset(ERRNO_RECOVERY)
# Files LevelDB leaves even where it never wrote data (a first start killed early): not a database.
_NOT_DATA = frozenset({"LOCK", "LOG", "LOG.old"})


def errno_in(text: str) -> int | None:
    """The errno whose strerror text LevelDB's error message carries (it reports none other way)."""
    for code in ERRNO_RECOVERY:
        if os.strerror(code) in text:
            return code
    return None


class StoreError(Exception):
    """The database is missing, locked, corrupt, foreign or inconsistent, or the disk failed under it.

    `path`: the database; `found`: what was wrong; `recovery`: the operator's next step ("" where none
    applies); `errno`: the OS error, when the disk failed. Plain `StoreError(message)` still works."""

    def __init__(self, message: str, *, path: str = "", recovery: str = "", errno: int | None = None) -> None:
        self.found = message
        self.path = path
        self.recovery = recovery
        self.errno = errno
        super().__init__(f"{message}; {recovery}" if recovery else message)

    def for_home(self, home: str | os.PathLike[str]) -> str:
        """The message with the node's home in its recovery command."""
        return str(self).replace(f"--home {HOME_PLACEHOLDER}", f"--home {os.fspath(home)}")

    def with_recovery(self, recovery: str) -> StoreError:
        """This error with a next step (unchanged if it has one)."""
        if self.recovery:
            return self
        err = type(self).__new__(type(self))
        StoreError.__init__(err, self.found, path=self.path or "", recovery=recovery, errno=self.errno)
        err.__dict__.update({k: v for k, v in self.__dict__.items() if k not in err.__dict__})
        return err


def storage_error(path: str, exc: Exception, doing: str) -> StoreError:
    """plyvel's error (or an OSError) on the database at `path` as a StoreError naming the path, what
    LevelDB found and the next step."""
    if isinstance(exc, StoreError):
        return exc
    text = _plyvel_message(exc) if isinstance(exc, plyvel.Error) else str(exc)
    if isinstance(exc, plyvel.IOError) and _is_lock_error(exc):
        return StoreLocked(path, lock_holder_pid(path))
    code = exc.errno if isinstance(exc, OSError) and exc.errno in ERRNO_RECOVERY else errno_in(text)
    if code is not None:
        return StoreError(
            f"{doing} ledger database at {path} failed: {errnos.errorcode[code]} ({text})",
            path=path,
            recovery=ERRNO_RECOVERY[code],
            errno=code,
        )
    if isinstance(exc, plyvel.CorruptionError) or text.startswith("Corruption"):
        return StoreError(f"ledger database at {path} is corrupt ({text})", path=path, recovery=RESYNC)
    return StoreError(f"{doing} ledger database at {path} failed: {text}", path=path, recovery=RESYNC)


def _storage_op(doing: str) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Turn plyvel's errors inside a Store method into `storage_error`s (path, found, next step)."""

    def wrap(method: Callable[..., _R]) -> Callable[..., _R]:
        @functools.wraps(method)
        def guarded(self: Store, *args: object, **kwargs: object) -> _R:
            try:
                return method(self, *args, **kwargs)
            except (plyvel.Error, OSError) as exc:
                raise storage_error(self.path, exc, doing) from exc

        return guarded

    return wrap


class StoreLocked(StoreError):
    """Another process has the database open (LevelDB's LOCK file); `pid` is that process if known."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"another process (pid {pid})" if pid else "another process"
        super().__init__(
            f"ledger database at {path} is in use by {holder}",
            path=path,
            recovery="stop that node first (`pocl-node stop --home HOME`), or give this one its own home",
        )


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


def _holds_no_database(path: str) -> bool:
    """True where a first start may create the database: `path` is missing, or a directory holding at
    most LevelDB's lock and log files. An unreadable directory is a StoreError naming it."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise storage_error(path, exc, "listing") from exc
    return not (set(names) - _NOT_DATA)


def _missing_current(path: str) -> StoreError:
    """A database directory without CURRENT: name what is there and how to get it back."""
    names = sorted(os.listdir(path))
    tables = [n for n in names if n.endswith((".ldb", ".sst"))]
    manifests = sorted((n for n in names if n.startswith("MANIFEST-")), key=lambda n: int(n[9:] or 0))
    found = (
        f"ledger database at {path} has no CURRENT file but holds {len(tables)} table file(s)"
        + (f" and {manifests[-1]}" if manifests else " and no MANIFEST")
        + " (refusing to create a new database over it)"
    )
    recovery = RESYNC
    if manifests:
        recovery = (
            f"if only CURRENT was lost, `printf '{manifests[-1]}\\n' > {os.path.join(path, 'CURRENT')}` "
            "restores it; otherwise " + RESYNC.removeprefix("to recover, ")
        )
    return StoreError(found, path=path, recovery=recovery)


def _h(height: int) -> bytes:
    return height.to_bytes(8, "big")


def _bucket_key(b: int) -> bytes:
    return P_BUCKET + b.to_bytes(2, "big")


class StateView:
    """The state of one height, read from a LevelDB snapshot (see `Store.state_view`)."""

    def __init__(self, snap: plyvel.Snapshot, height: int, state_root: bytes) -> None:
        self._snap = snap
        self.height = height
        self.state_root = state_root

    def iter_state_entries(self) -> Iterator[tuple[bytes, bytes]]:
        n = len(P_STATE)
        for key, value in self._snap.iterator(prefix=P_STATE):
            yield key[n:], value

    def bucket_hashes(self) -> list[bytes]:
        hashes = [EMPTY_BUCKET_HASH] * NUM_BUCKETS
        for key, value in self._snap.iterator(prefix=P_BUCKET):
            hashes[int.from_bytes(key[1:], "big")] = value
        return hashes

    def release(self) -> None:
        self._snap.close()


class Store:
    def __init__(self, db: plyvel.DB, path: str) -> None:
        self._db = db
        self.path = path

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(cls, path: str | os.PathLike[str], create: bool = True) -> Store:
        """Open the database at `path`; with `create`, make a new one only where none is (see module)."""
        path = os.fspath(path)
        fresh = _holds_no_database(path)
        if fresh and not create:
            raise StoreError(f"no ledger database at {path}", path=path)
        if not fresh and not os.path.exists(os.path.join(path, "CURRENT")):
            raise _missing_current(path)
        try:
            db = plyvel.DB(path, create_if_missing=fresh)
        except plyvel.Error as exc:
            raise storage_error(path, exc, "opening") from exc
        store = cls(db, path)
        try:
            store._check_schema()
            if store.initialized:
                store.check_consistency()
        except StoreError as exc:
            db.close()
            raise exc.with_recovery(RESYNC) from exc.__cause__
        except (plyvel.Error, OSError) as exc:
            db.close()
            raise storage_error(path, exc, "reading") from exc
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
                raise StoreError(
                    f"{self.path} is not a pocl ledger database (it holds keys but no schema version key)",
                    path=self.path,
                    recovery="check [storage] db_path in config.toml; this database was left unchanged",
                )
            self._db.put(K_SCHEMA, SCHEMA_VERSION, sync=True)
        elif schema != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: ledger schema {schema!r} is not supported (expected {SCHEMA_VERSION!r})",
                path=self.path,
                recovery="run the pocl-node version that wrote it (a newer one?), or "
                + RESYNC.removeprefix("to recover, "),
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

    @_storage_op("writing")
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

    @_storage_op("writing")
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

    @_storage_op("writing")
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

    @_storage_op("reading")
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

    @_storage_op("writing")
    def put_model(self, model_hash: bytes, data: bytes) -> None:
        self._db.put(P_MODEL + model_hash, data, sync=True)

    def get_model(self, model_hash: bytes) -> bytes | None:
        return self._db.get(P_MODEL + model_hash)

    def has_model(self, model_hash: bytes) -> bool:
        return self._db.get(P_MODEL + model_hash) is not None

    @_storage_op("writing")
    def put_misc(self, key: bytes, value: bytes, sync: bool = True) -> None:
        self._db.put(P_MISC + key, value, sync=sync)

    def get_misc(self, key: bytes) -> bytes | None:
        return self._db.get(P_MISC + key)

    @_storage_op("writing")
    def delete_misc(self, key: bytes, sync: bool = True) -> None:
        self._db.delete(P_MISC + key, sync=sync)

    # ------------------------------------------------------------------ snapshots and state sync

    def state_view(self) -> StateView:
        """A consistent read-only view of the head state (a LevelDB snapshot): a snapshot writer reads it
        in a thread while blocks keep committing. `release()` it when done (before `close`)."""
        snap = self._db.snapshot()
        head, root = snap.get(K_HEAD), snap.get(K_STATE_ROOT)
        if head is None or root is None:
            snap.close()
            raise StoreError(f"{self.path}: no state stored")
        return StateView(snap, int.from_bytes(head, "big"), root)

    def restore_state(
        self,
        block: Block,
        commit: Commit,
        entries: Iterable[tuple[bytes, bytes]],
        bucket_hashes: Sequence[bytes],
        models: Mapping[bytes, bytes],
    ) -> None:
        """Replace the genesis state by a state-synced one at `block.height` in ONE synced batch.

        The caller has verified `entries` bucket by bucket against `bucket_hashes` and the block's header
        against a trusted anchor; this checks that the pieces fit together (root, commit) and writes
        block, seen commit, tx index, state, bucket hashes and `models` (hash -> bytes, b"" for a known
        model whose bytes were not fetched, as pruning leaves them) with head = earliest = that height,
        so the node block-syncs from height + 1. `load_state` recomputes the root from the entries."""
        head = self.head_height
        if head is None or head != 0:
            raise StoreError(f"{self.path}: state sync needs a store at genesis (head is {head})")
        height = block.height
        if height < 1 or commit.height != height or commit.block_hash != block.hash:
            raise ValueError("restore_state: the commit does not match the block")
        if len(bucket_hashes) != NUM_BUCKETS or root_of(bucket_hashes) != block.header.state_root:
            raise ValueError("restore_state: bucket hashes do not match the block's state root")
        hb = _h(height)
        with self._db.write_batch(sync=True, transaction=True) as wb:
            for key in self._db.iterator(prefix=P_STATE, include_value=False):
                wb.delete(key)
            for key in self._db.iterator(prefix=P_BUCKET, include_value=False):
                wb.delete(key)
            for fk, value in entries:
                wb.put(P_STATE + fk, value)
            for b, h in enumerate(bucket_hashes):
                if h != EMPTY_BUCKET_HASH:
                    wb.put(_bucket_key(b), h)
            wb.put(P_BLOCK + hb, block.encode())
            wb.put(P_BLOCK_HASH + block.hash, hb)
            wb.put(P_SEEN_COMMIT + hb, commit.encode())
            for i, raw in enumerate(block.txs):
                wb.put(P_TX + tagged_hash(TAG_TX, raw), hb + i.to_bytes(4, "big"))
            for mh, data in models.items():
                wb.put(P_MODEL + mh, data)
            wb.put(K_STATE_ROOT, block.header.state_root)
            wb.put(K_EARLIEST, hb)
            wb.put(K_HEAD, hb)

    # ------------------------------------------------------------------ pruning

    @property
    def earliest_height(self) -> int:
        """The lowest height whose block, commit and tx index are stored (1 on an unpruned store)."""
        v = self._db.get(K_EARLIEST)
        return int.from_bytes(v, "big") if v is not None else 1

    def model_pruned(self, model_hash: bytes) -> bool:
        """True if this global model was stored once and its bytes have been pruned."""
        return self._db.get(P_MODEL + model_hash) == PRUNED_MODEL

    def prune(
        self,
        retain_height: int,
        keep_models: Collection[bytes] | None = None,
        *,
        compact: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> PruneResult:
        """`prune_models(keep_models)` (if given), then `prune_blocks(retain_height)`: for a store no
        other thread commits to (tools, tests). A node prunes models on its event loop and blocks in a
        worker thread (`node.pruning`)."""
        models, model_bytes = self.prune_models(keep_models) if keep_models is not None else (0, 0)
        result = self.prune_blocks(
            retain_height, compact=compact, compact_models=models > 0, should_stop=should_stop
        )
        return dataclasses.replace(
            result, models_pruned=models, bytes_deleted=result.bytes_deleted + model_bytes
        )

    def prune_blocks(
        self,
        retain_height: int,
        *,
        compact: bool = True,
        compact_models: bool = False,
        should_stop: Callable[[], bool] | None = None,
        batch_blocks: int = PRUNE_BATCH_BLOCKS,
        batch_bytes: int = PRUNE_BATCH_BYTES,
    ) -> PruneResult:
        """Delete every block below `retain_height` (never the head) with its hash index, commits and tx
        index entries, in batches, then compact the touched key ranges (and the models' with
        `compact_models`) so the files shrink. Safe in a worker thread next to `commit_block` (it only
        touches heights below the head) and safe to kill at any point."""
        started = time.monotonic()
        head = self.head_height
        if head is None:
            raise StoreError("store has no genesis state")
        before = self.earliest_height
        retain = max(before, min(retain_height, max(head, 1)))
        stop = should_stop or (lambda: False)
        blocks = txs = deleted_bytes = 0
        earliest = before
        stopped = False
        if compact and retain > before:
            self._flush_memtable()
        while earliest < retain:
            if stop():
                stopped = True
                break
            n, t, b, earliest = self._prune_batch(earliest, retain, batch_blocks, batch_bytes)
            blocks, txs, deleted_bytes = blocks + n, txs + t, deleted_bytes + b
        if compact and (blocks or compact_models):
            self._compact_pruned(before, earliest, compact_models)
        return PruneResult(
            before, earliest, blocks, txs, 0, deleted_bytes, time.monotonic() - started, stopped
        )

    def prune_models(self, keep: Collection[bytes]) -> tuple[int, int]:
        """Tombstone every stored global model not in `keep`; returns (models pruned, bytes freed).

        Call it from the thread that commits blocks, with `keep` computed from the committed state: a
        model a concurrent commit had just written would otherwise lose its bytes."""
        keep = set(keep)
        n = len(P_MODEL)
        doomed = [
            key for key in self._db.iterator(prefix=P_MODEL, include_value=False) if key[n:] not in keep
        ]
        count = size = 0
        if doomed:
            self._flush_memtable()
        for i in range(0, len(doomed), PRUNE_MODEL_BATCH):
            with self._db.write_batch(sync=True, transaction=True) as wb:
                for key in doomed[i : i + PRUNE_MODEL_BATCH]:
                    value = self._db.get(key)
                    if value:  # not already a tombstone
                        wb.put(key, PRUNED_MODEL)
                        count += 1
                        size += len(value)
        return count, size

    def _prune_batch(
        self, start: int, retain: int, max_blocks: int, max_bytes: int
    ) -> tuple[int, int, int, int]:
        """Delete heights start.. (up to `max_blocks` / about `max_bytes`, below `retain`) and move the
        earliest pointer past them in the same synced batch. Returns (blocks, txs, bytes, new earliest)."""
        blocks = txs = size = 0
        h = start
        with self._db.write_batch(sync=True, transaction=True) as wb:
            while h < retain and blocks < max_blocks and size < max_bytes:
                hb = _h(h)
                raw = self._db.get(P_BLOCK + hb)
                if raw is not None:
                    block = Block.decode(raw)
                    wb.delete(P_BLOCK + hb)
                    wb.delete(P_BLOCK_HASH + block.hash)
                    for tx in block.txs:
                        key = P_TX + tagged_hash(TAG_TX, tx)
                        loc = self._db.get(key)
                        if loc is not None and loc[:8] == hb:  # a tx hash names one height only
                            wb.delete(key)
                            txs += 1
                    blocks += 1
                    size += len(raw)
                wb.delete(P_COMMIT + hb)
                wb.delete(P_SEEN_COMMIT + hb)
                h += 1
            wb.put(K_EARLIEST, _h(h))
        return blocks, txs, size, h

    def _flush_memtable(self) -> None:
        """Write recent writes out to a table file before deleting: LevelDB's compaction never rewrites
        a file of the last level it compacts into, so data and its deletion flushed into one file
        together would stay on disk. (A manual compaction of an empty key range flushes and stops.)"""
        self._db.compact_range(start=P_META, stop=P_META)

    def _compact_pruned(self, low: int, high: int, models: bool) -> None:
        """Compact what pruning deleted so LevelDB drops the data (a delete alone only adds tombstones)."""
        for prefix in (P_BLOCK, P_COMMIT, P_SEEN_COMMIT):
            self._db.compact_range(start=prefix + _h(low), stop=prefix + _h(high))
        hashed = [P_BLOCK_HASH, P_TX] + ([P_MODEL] if models else [])
        for prefix in hashed:
            self._db.compact_range(start=prefix, stop=bytes([prefix[0] + 1]))
