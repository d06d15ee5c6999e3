"""Misbehaviour scores decay, bans expire, node bans survive restarts (fake clocks, no sockets)."""

from __future__ import annotations

import json

import pytest
from pocl.p2p.bans import BanList


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_single_offence_is_forgiven(clock: FakeClock) -> None:
    bans = BanList(threshold=100, half_life=10, clock=clock)
    assert not bans.punish(b"a" * 32, 60, "garbage")
    assert bans.score(b"a" * 32) == pytest.approx(60)
    clock.now += 10
    assert bans.score(b"a" * 32) == pytest.approx(30)
    clock.now += 100
    assert not bans.punish(b"a" * 32, 60, "garbage")  # decayed: 60 + ~0 < 100
    assert not bans.is_banned(b"a" * 32)


def test_repeat_offender_banned_then_released(clock: FakeClock) -> None:
    bans = BanList(threshold=100, half_life=60, ban_base=30, clock=clock)
    key = b"b" * 32
    assert not bans.punish(key, 40, "bad frame")
    assert not bans.punish(key, 40, "bad frame")
    assert bans.punish(key, 40, "bad frame")
    assert bans.is_banned(key)
    assert bans.ban_remaining(key) == pytest.approx(30)
    [info] = bans.banned()
    assert info.key == key and info.reason == "bad frame" and info.ban_count == 1
    clock.now += 29.9
    assert bans.is_banned(key)
    clock.now += 0.2
    assert not bans.is_banned(key)
    assert bans.score(key) == 0.0  # the ban wiped the score


def test_bans_escalate_and_cap(clock: FakeClock) -> None:
    bans = BanList(threshold=10, half_life=60, ban_base=10, ban_max=35, clock=clock)
    durations = []
    for _ in range(4):
        assert bans.punish("10.0.0.1", 10, "handshake")
        durations.append(bans.ban_remaining("10.0.0.1"))
        clock.now += durations[-1] + 1
        assert not bans.is_banned("10.0.0.1")
    assert durations == pytest.approx([10, 20, 35, 35])


def test_keys_are_independent(clock: FakeClock) -> None:
    bans = BanList(threshold=10, clock=clock)
    bans.punish("127.0.0.1", 10)
    assert bans.is_banned("127.0.0.1")
    assert not bans.is_banned("127.0.0.2")
    assert not bans.is_banned(b"c" * 32)


def test_manual_ban_and_unban(clock: FakeClock) -> None:
    bans = BanList(clock=clock)
    bans.ban(b"d" * 32, "operator", duration=5)
    assert bans.is_banned(b"d" * 32)
    bans.unban(b"d" * 32)
    assert not bans.is_banned(b"d" * 32)


def test_memory_stays_bounded(clock: FakeClock) -> None:
    bans = BanList(threshold=100, half_life=1, max_tracked=50, clock=clock)
    for i in range(500):
        bans.punish(f"10.0.{i // 256}.{i % 256}", 1)
        clock.now += 0.01
    assert len(bans) <= 50
    clock.now += 100
    bans.prune()
    assert len(bans) == 0


def test_prune_keeps_banned(clock: FakeClock) -> None:
    bans = BanList(threshold=1, ban_base=100, clock=clock)
    bans.punish(b"e" * 32, 5)
    clock.now += 50
    bans.prune()
    assert bans.is_banned(b"e" * 32)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        BanList(threshold=0)


# ---------------------------------------------------------------------- persistence


class Clocks:
    """A monotonic clock that restarts from an arbitrary value with each process, and a wall clock."""

    def __init__(self) -> None:
        self.mono = 50.0
        self.wall = 1_800_000_000.0

    def restart(self) -> None:
        self.mono = 7.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def persistent(path, clocks: Clocks) -> BanList:
    return BanList(
        threshold=100, half_life=60, ban_base=30, ban_max=3600,
        clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall, path=path,
    )


def test_node_bans_survive_a_restart_and_keep_escalating(tmp_path) -> None:
    clocks = Clocks()
    path = tmp_path / "bans.json"
    node, ip = b"n" * 32, "198.51.100.7"
    bans = persistent(path, clocks)
    bans.ban(node, "invalid blocks")
    bans.ban(ip, "bad handshakes")
    clocks.advance(10)
    bans.save()

    clocks.restart()
    again = persistent(path, clocks)
    assert again.is_banned(node) and again.ban_remaining(node) == pytest.approx(20)
    assert not again.is_banned(ip)  # IP bans are not persisted (a shared 127.0.0.1 must not stay locked)
    [info] = again.banned()
    assert info.reason == "invalid blocks" and info.ban_count == 1
    clocks.advance(25)
    assert not again.is_banned(node)
    assert again.punish(node, 100, "again")  # its history survived: the second ban lasts twice as long
    assert again.ban_remaining(node) == pytest.approx(60)


def test_save_writes_only_changes_and_forgets_old_offenders(tmp_path) -> None:
    clocks = Clocks()
    path = tmp_path / "bans.json"
    bans = persistent(path, clocks)
    bans.save()
    assert not path.exists()  # nothing changed, nothing written
    bans.ban(b"a" * 32, "x")
    bans.save()
    first = path.read_text()
    bans.save()
    assert path.read_text() == first
    clocks.advance(30 + 3600 + 1)  # ban over and ban_max passed: no escalation left to remember
    bans.save(force=True)
    clocks.restart()
    assert len(persistent(path, clocks)) == 0


def test_corrupt_or_bad_ban_file_starts_empty(tmp_path) -> None:
    clocks = Clocks()
    path = tmp_path / "bans.json"
    path.write_text("{not json")
    assert len(persistent(path, clocks)) == 0
    assert not path.exists() and list(tmp_path.glob("bans.json.corrupt-*"))
    good = {"node_id": "ab" * 32, "banned_until": clocks.wall + 100, "ban_count": 1, "reason": "r"}
    bad = [
        {**good, "node_id": "abcd"},
        {**good, "node_id": "zz" * 32},
        {**good, "banned_until": "soon"},
        {**good, "ban_count": 0},
        {**good, "ban_count": True},
        {"node_id": "cd" * 32},
        "not an object",
    ]
    path.write_text(json.dumps({"version": 1, "bans": [*bad, good]}))
    loaded = persistent(path, clocks)
    assert len(loaded) == 1 and loaded.is_banned(bytes.fromhex("ab" * 32))
