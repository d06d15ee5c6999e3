"""Misbehaviour scores decay and bans expire (fake clock, no sockets)."""

from __future__ import annotations

import pytest

from p2p.bans import BanList


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
