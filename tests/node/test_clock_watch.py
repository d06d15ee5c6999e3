"""What an operator with a wrong clock (or a peer with one) reads in the log."""

from __future__ import annotations

import logging

import pytest
from pocl.ledger.params import ChainParams
from pocl.node.clock_watch import UNTIMELY_STREAK, WARN_INTERVAL_S, ClockWatch

A, B, C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
HOUR_MS = 3_600_000


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_untimely_proposals_from_several_validators_blame_our_clock(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pocl.consensus")
    clock = FakeMonotonic()
    w = ClockWatch(ChainParams(), monotonic=clock)
    for h, proposer in enumerate([A, B, C] * 3, start=1):
        w.observe(h, 0, proposer, timely=False, offset_ms=-HOUR_MS)  # everyone's blocks look an hour old
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 9 and "-3600.0 s from our clock" in infos[0] and "prevoting nil" in infos[0]
    warned = warnings(caplog)
    assert len(warned) == 1  # rate-limited
    assert "our clock is probably wrong" in warned[0] and "-3600.0 s" in warned[0] and "NTP" in warned[0]
    clock.now += WARN_INTERVAL_S
    w.observe(10, 0, A, timely=False, offset_ms=-HOUR_MS)
    assert len(warnings(caplog)) == 2  # and again a minute later while it lasts


def test_one_validator_with_a_bad_clock_is_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pocl.consensus")
    w = ClockWatch(ChainParams(), monotonic=FakeMonotonic())
    for h in range(1, 4 * UNTIMELY_STREAK + 1):
        proposer = [A, B, C, C][h % 4]
        w.observe(h, 0, proposer, timely=proposer != A, offset_ms=HOUR_MS if proposer == A else 20)
    warned = warnings(caplog)
    assert len(warned) == 1
    assert f"validator {A.hex()[:12]} proposed {UNTIMELY_STREAK} untimely blocks in a row" in warned[0]
    assert "our clock is probably wrong" not in warned[0]


def test_our_rejected_proposal_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pocl.consensus")
    w = ClockWatch(ChainParams(), monotonic=FakeMonotonic())
    w.own_proposal_rejected(7, 0, block_time_ms=1_830_000_000_123)
    w.own_proposal_rejected(8, 0, block_time_ms=1_830_000_001_000)
    assert w.own_rejected == 2
    warned = warnings(caplog)
    assert len(warned) == 1
    assert "our proposal height=7 round=0 was rejected" in warned[0]
    assert "ours was 2027-12-28T13:20:00.123Z (this host's clock)" in warned[0]


def test_timely_proposals_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pocl.consensus")
    w = ClockWatch(ChainParams(), monotonic=FakeMonotonic())
    for h in range(1, 20):
        w.observe(h, 0, [A, B, C][h % 3], timely=True, offset_ms=-40)
    assert caplog.records == [] and w.untimely_seen == 0
