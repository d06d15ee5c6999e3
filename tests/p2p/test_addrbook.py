"""Peer address parsing and the persisted address book (fake clock, real files)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pocl.p2p.addrbook import (
    AddressBook,
    AddressError,
    PeerAddr,
    format_peer_addr,
    parse_hostport,
    parse_peer_addr,
)

ID_A = bytes(range(32))
ID_B = bytes(range(1, 33))
ID_C = bytes(range(2, 34))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_parse_and_format_roundtrip() -> None:
    text = f"{ID_A.hex()}@127.0.0.1:26656"
    addr = parse_peer_addr(text)
    assert addr == PeerAddr(ID_A, "127.0.0.1", 26656)
    assert str(addr) == text
    v6 = parse_peer_addr(f"{ID_A.hex()}@[::1]:9")
    assert v6.host == "::1" and v6.port == 9
    assert format_peer_addr(ID_A, "::1", 9) == f"{ID_A.hex()}@[::1]:9"
    assert parse_hostport("node-1.example:80") == ("node-1.example", 80)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1:1",
        f"{ID_A.hex()}@127.0.0.1",
        f"{ID_A.hex()}@127.0.0.1:0",
        f"{ID_A.hex()}@127.0.0.1:65536",
        f"{ID_A.hex()}@127.0.0.1:x",
        f"{ID_A.hex()}@:1",
        f"{ID_A.hex()}@::1:5",
        f"{ID_A.hex()}@[zz]:5",
        f"{ID_A.hex()[:-2]}@127.0.0.1:1",
        f"{'g' * 64}@127.0.0.1:1",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(AddressError):
        parse_peer_addr(text)


def test_persists_across_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "addrbook.json"
    book = AddressBook(path, clock=clock)
    assert book.add(PeerAddr(ID_A, "127.0.0.1", 1000), source="config")
    assert book.add(PeerAddr(ID_B, "10.0.0.2", 2000), source="pex")
    book.mark_attempt(ID_A)
    book.mark_success(ID_A)
    book.save()
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file

    again = AddressBook(path, clock=clock)
    assert sorted(a.node_id for a in again.addrs()) == sorted([ID_A, ID_B])
    entry = again.get(ID_A)
    assert entry is not None and entry.last_success == clock.now and entry.source == "config"


def test_corrupt_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "addrbook.json"
    path.write_text("{not json")
    book = AddressBook(path)
    assert len(book) == 0
    aside = list(tmp_path.glob("addrbook.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    book.add(PeerAddr(ID_A, "127.0.0.1", 1))
    book.save()
    assert len(AddressBook(path)) == 1


def test_bad_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "addrbook.json"
    good = {"addr": f"{ID_A.hex()}@127.0.0.1:5"}
    path.write_text(json.dumps({"version": 1, "entries": [good, {"addr": "nonsense"}, 7]}))
    book = AddressBook(path)
    assert [a.node_id for a in book.addrs()] == [ID_A]


def test_never_adds_self_or_unspecified() -> None:
    book = AddressBook(self_id=ID_A)
    assert not book.add(PeerAddr(ID_A, "127.0.0.1", 1))
    assert not book.add(PeerAddr(ID_B, "0.0.0.0", 1))
    assert len(book) == 0


def test_failures_back_off_and_forget() -> None:
    clock = FakeClock()
    book = AddressBook(clock=clock, retry_base=10, retry_max=100, max_failures=3, rng=random.Random(1))
    book.add(PeerAddr(ID_A, "127.0.0.1", 1))
    assert book.dial_candidates(5) == [PeerAddr(ID_A, "127.0.0.1", 1)]
    book.mark_failure(ID_A)
    assert book.dial_candidates(5) == []
    clock.now += 10
    assert len(book.dial_candidates(5)) == 1
    book.mark_failure(ID_A)
    clock.now += 10
    assert book.dial_candidates(5) == []  # second failure: 20 s
    clock.now += 10
    assert len(book.dial_candidates(5)) == 1
    book.mark_failure(ID_A)
    assert ID_A not in book  # never worked, failed 3 times: forgotten


def test_known_good_entry_not_hijacked_by_pex() -> None:
    book = AddressBook()
    book.add(PeerAddr(ID_A, "127.0.0.1", 1))
    book.mark_success(ID_A)
    assert not book.add(PeerAddr(ID_A, "6.6.6.6", 1), source="pex")
    assert book.get(ID_A).addr.host == "127.0.0.1"
    assert book.add(PeerAddr(ID_A, "127.0.0.1", 2), source="inbound")


def test_bounded_size_evicts_worst() -> None:
    book = AddressBook(max_entries=2)
    book.add(PeerAddr(ID_A, "127.0.0.1", 1))
    book.add(PeerAddr(ID_B, "127.0.0.1", 2))
    book.mark_success(ID_A)
    book.mark_failure(ID_B)
    assert book.add(PeerAddr(ID_C, "127.0.0.1", 3))
    assert ID_C in book and ID_A in book and ID_B not in book


def test_sample_excludes() -> None:
    book = AddressBook(rng=random.Random(3))
    for i, nid in enumerate((ID_A, ID_B, ID_C)):
        book.add(PeerAddr(nid, "127.0.0.1", i + 1))
    got = book.sample(10, exclude=[ID_B])
    assert sorted(a.node_id for a in got) == sorted([ID_A, ID_C])
