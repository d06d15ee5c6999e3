"""Never destroy a store (issue 16 row 5): an existing database is never created over, and every open
or write error names the database path, what was found and the next step."""

from __future__ import annotations

import errno
from pathlib import Path

import plyvel
import pytest
from pocl.ledger.block import Block, Commit, CommitSig
from pocl.ledger.executor import Executor
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State
from pocl.ledger.storage.store import K_SCHEMA, P_BUCKET, Store, StoreError, storage_error

from tests.support.ledger_kit import CHAIN_ID, VAL1, build_block, genesis_accounts

EX = Executor()


def fresh(tmp_path: Path, params: ChainParams) -> tuple[Store, State]:
    store = Store.open(tmp_path / "db")
    state = State.from_genesis(params, genesis_accounts(), CHAIN_ID)
    store.init_genesis(state, genesis_hash=b"\x05" * 32)
    return store, state


def run_chain(store: Store, state: State, blocks: int) -> None:
    """Commit `blocks` empty blocks (commit signatures are not checked by the store)."""
    prev, last_commit = b"", None
    for _ in range(blocks):
        block, _ = build_block(EX, state, [], prev_hash=prev)
        block = Block(block.header, block.txs, last_commit)
        work = state.copy()
        EX.apply_block(work, block)
        commit = Commit(block.height, 0, block.hash, [CommitSig(VAL1.pubkey, b"\x07" * 64)])
        store.commit_block(block, work.delta(), seen_commit=commit)
        state, prev, last_commit = work.commit(), block.hash, commit


def _chain_db(tmp_path: Path, params: ChainParams) -> Path:
    """A database with a few blocks, compacted so its data sits in .ldb table files."""
    store, state = fresh(tmp_path, params)
    run_chain(store, state, 3)
    store._db.compact_range()
    store.close()
    return tmp_path / "db"


def _tables(path: Path) -> list[Path]:
    return sorted(path.glob("*.ldb"))


def test_a_deleted_current_is_refused_and_nothing_is_deleted(tmp_path: Path, params: ChainParams) -> None:
    path = _chain_db(tmp_path, params)
    tables = _tables(path)
    assert tables
    sizes = {t: t.stat().st_size for t in tables}
    (path / "CURRENT").unlink()
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    message = str(caught.value)
    assert str(path) in message and "no CURRENT file" in message and f"{len(tables)} table file" in message
    assert "unsafe-reset-all --home HOME" in message and "printf 'MANIFEST-" in message
    assert caught.value.for_home("/srv/n1").count("--home /srv/n1") == 1
    # LevelDB was never asked to create: the table files and the missing CURRENT are as they were
    assert {t: t.stat().st_size for t in _tables(path)} == sizes
    assert not (path / "CURRENT").exists()
    # the suggested repair brings the very same chain back
    manifest = max(path.glob("MANIFEST-*"), key=lambda p: int(p.name[9:]))
    (path / "CURRENT").write_text(manifest.name + "\n")
    with Store.open(path) as store:
        assert store.head_height == 3


def test_a_missing_manifest_names_the_path_and_the_next_step(tmp_path: Path, params: ChainParams) -> None:
    path = _chain_db(tmp_path, params)
    for manifest in path.glob("MANIFEST-*"):
        manifest.unlink()
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    message = str(caught.value)
    assert f"ledger database at {path} is corrupt" in message and "MANIFEST" in message
    assert "unsafe-reset-all" in message and "b'" not in message
    assert _tables(path)


def test_a_flipped_byte_in_a_table_names_the_path_and_the_next_step(
    tmp_path: Path, params: ChainParams
) -> None:
    path = _chain_db(tmp_path, params)
    db = plyvel.DB(str(path))
    bucket_hash = next(db.iterator(prefix=P_BUCKET, include_key=False))
    db.close()
    for table in _tables(path):  # the bucket hash is stored verbatim (32 random bytes do not compress)
        data = bytearray(table.read_bytes())
        at = data.find(bucket_hash)
        if at >= 0:
            data[at + 7] ^= 0xFF
            table.write_bytes(bytes(data))
            break
    else:
        pytest.fail("bucket hash not found in any table file")
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    message = str(caught.value)
    assert str(path) in message and "unsafe-reset-all" in message and "b'" not in message


def test_foreign_and_newer_databases_say_what_to_do(tmp_path: Path) -> None:
    foreign = plyvel.DB(str(tmp_path / "foreign"), create_if_missing=True)
    foreign.put(b"hello", b"world")
    foreign.close()
    with pytest.raises(StoreError, match=r"not a pocl ledger database .*\[storage\] db_path"):
        Store.open(tmp_path / "foreign")
    newer = plyvel.DB(str(tmp_path / "newer"), create_if_missing=True)
    newer.put(K_SCHEMA, b"pocl-ledger/99")
    newer.close()
    with pytest.raises(StoreError, match=r"pocl-ledger/99.*run the pocl-node version that wrote it"):
        Store.open(tmp_path / "newer")


def test_a_directory_without_a_database_is_created_only_when_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    Store.open(tmp_path / "empty").close()  # a first start: created
    assert (tmp_path / "empty" / "CURRENT").exists()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="no CURRENT file"):
        Store.open(tmp_path / "junk")
    assert sorted(p.name for p in (tmp_path / "junk").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("text", "code", "advice"),
    [
        ("IO error: /d/chain.db/000012.log: No space left on device", errno.ENOSPC, "free space"),
        ("IO error: /d/chain.db/LOCK: Permission denied", errno.EACCES, "read and write access"),
        ("IO error: /d/chain.db/000013.log: Read-only file system", errno.EROFS, "read-only"),
        ("IO error: /d/chain.db/000014.ldb: Input/output error", errno.EIO, "device failed"),
        ("IO error: /d/chain.db/000015.ldb: Too many open files", errno.EMFILE, "open-file limit"),
    ],
)
def test_os_errors_name_the_errno_and_the_next_step(text: str, code: int, advice: str) -> None:
    err = storage_error("/d/chain.db", plyvel.IOError(text.encode()), "writing")
    assert err.errno == code and err.path == "/d/chain.db"
    assert str(err).startswith("writing ledger database at /d/chain.db failed: " + errno.errorcode[code])
    assert advice in str(err)


class _FullDisk:
    """A plyvel.DB whose writes fail as LevelDB's do once the disk is full."""

    def __init__(self, db: plyvel.DB) -> None:
        self._db = db

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)

    def _fail(self, *_a: object, **_k: object) -> None:
        raise plyvel.IOError(b"IO error: /d/chain.db/000009.log: No space left on device")

    put = write_batch = _fail


def test_a_failed_write_is_a_store_error_with_the_errno(tmp_path: Path, params: ChainParams) -> None:
    store, state = fresh(tmp_path, params)
    store._db = _FullDisk(store._db)  # type: ignore[assignment]
    with pytest.raises(StoreError) as caught:
        run_chain(store, state, 1)
    assert caught.value.errno == errno.ENOSPC and caught.value.path == str(tmp_path / "db")
    with pytest.raises(StoreError, match="ENOSPC"):
        store.put_misc(b"k", b"v")
    store._db = store._db._db  # type: ignore[attr-defined]
    store.close()
