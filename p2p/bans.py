"""Misbehaviour scores and timed bans, by node id and by IP (DESIGN §6).

Each offence adds a penalty to the offender's score; the score decays exponentially (half-life), so a
peer that slips once is forgiven while one that keeps sending garbage crosses the threshold and is
banned. Every further ban of the same offender lasts twice as long (capped). Node ids are scored for
offences after the handshake; IPs for offences before a node id is known (failed handshakes), because
an IP may be shared by many honest nodes (NAT, or every node of a local test cluster).

With a `path`, bans of node ids (and how often each was banned, for the escalation) survive a restart:
a peer cannot shed its ban by waiting for us to restart. IP bans stay in memory: they answer pre-handshake
noise, are cheap to earn again, and a persisted ban of 127.0.0.1 could lock a local cluster out.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .state_file import read_versioned_list, write_json_atomic

log = logging.getLogger(__name__)

BanKey = bytes | str  # node id (32 bytes) or IP address text

DEFAULT_THRESHOLD = 100.0
DEFAULT_HALF_LIFE = 120.0
DEFAULT_BAN_BASE = 60.0
DEFAULT_BAN_MAX = 24 * 3600.0
DEFAULT_MAX_TRACKED = 10_000
FORGET_BELOW = 0.5  # scores that decayed below this are dropped
BANS_FORMAT_VERSION = 1
NODE_ID_LEN = 32
MAX_REASON_LEN = 128


@dataclasses.dataclass
class _Record:
    score: float = 0.0
    updated: float = 0.0
    banned_until: float = 0.0
    ban_count: int = 0
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class BanInfo:
    key: BanKey
    remaining: float  # seconds until the ban expires
    ban_count: int
    reason: str


class BanList:
    """Scores with decay and escalating timed bans; `clock` is injectable (monotonic seconds)."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        half_life: float = DEFAULT_HALF_LIFE,
        ban_base: float = DEFAULT_BAN_BASE,
        ban_max: float = DEFAULT_BAN_MAX,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
        path: str | os.PathLike[str] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if threshold <= 0 or half_life <= 0 or ban_base <= 0:
            raise ValueError("threshold, half_life and ban_base must be positive")
        self.threshold = threshold
        self.half_life = half_life
        self.ban_base = ban_base
        self.ban_max = max(ban_max, ban_base)
        self.max_tracked = max_tracked
        self._clock = clock
        self._wall = wall_clock  # persisted ban ends are wall-clock times; `clock` does not survive a restart
        self._records: dict[BanKey, _Record] = {}
        self.path = Path(path) if path is not None else None
        self._dirty = False
        if self.path is not None:
            self._load()

    def _decayed(self, rec: _Record, now: float) -> float:
        elapsed = max(0.0, now - rec.updated)
        return rec.score * 0.5 ** (elapsed / self.half_life)

    def score(self, key: BanKey) -> float:
        rec = self._records.get(key)
        return 0.0 if rec is None else self._decayed(rec, self._clock())

    def punish(self, key: BanKey, penalty: float, reason: str = "") -> bool:
        """Add `penalty` to key's score; ban it when the score reaches the threshold. True if banned now."""
        now = self._clock()
        rec = self._records.get(key)
        if rec is None:
            self._make_room()
            rec = self._records[key] = _Record(updated=now)
        rec.score = self._decayed(rec, now) + max(0.0, penalty)
        rec.updated = now
        if rec.banned_until > now:
            return True
        if rec.score >= self.threshold:
            self._start_ban(rec, now, reason)
            return True
        return False

    def ban(self, key: BanKey, reason: str = "", duration: float | None = None) -> None:
        """Ban outright (operator action or unforgivable offence)."""
        now = self._clock()
        rec = self._records.setdefault(key, _Record(updated=now))
        self._start_ban(rec, now, reason, duration)

    def _start_ban(self, rec: _Record, now: float, reason: str, duration: float | None = None) -> None:
        rec.ban_count += 1
        if duration is None:
            duration = min(self.ban_max, self.ban_base * 2 ** min(rec.ban_count - 1, 40))
        rec.banned_until = now + duration
        rec.reason = reason
        rec.score = 0.0  # the ban is the punishment; a fresh start afterwards
        rec.updated = now
        self._dirty = True

    def unban(self, key: BanKey) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.banned_until = 0.0
            self._dirty = True

    def is_banned(self, key: BanKey) -> bool:
        rec = self._records.get(key)
        return rec is not None and rec.banned_until > self._clock()

    def ban_remaining(self, key: BanKey) -> float:
        rec = self._records.get(key)
        return 0.0 if rec is None else max(0.0, rec.banned_until - self._clock())

    def banned(self) -> list[BanInfo]:
        now = self._clock()
        return [
            BanInfo(key, rec.banned_until - now, rec.ban_count, rec.reason)
            for key, rec in self._records.items()
            if rec.banned_until > now
        ]

    def prune(self) -> None:
        """Forget offenders whose ban expired and whose score decayed away (keeps memory bounded)."""
        now = self._clock()
        for key in [k for k, rec in self._records.items() if self._forgettable(rec, now)]:
            del self._records[key]

    def _forgettable(self, rec: _Record, now: float) -> bool:
        if rec.banned_until > now or self._decayed(rec, now) >= FORGET_BELOW:
            return False
        # Remember repeat offenders until their next ban would no longer be escalated by much.
        return rec.ban_count == 0 or now - rec.banned_until > self.ban_max

    def _make_room(self) -> None:
        if len(self._records) < self.max_tracked:
            return
        self.prune()
        if len(self._records) < self.max_tracked:
            return
        now = self._clock()
        # Still full: drop the lowest-scored record that is not banned.
        unbanned = [(self._decayed(r, now), k) for k, r in self._records.items() if r.banned_until <= now]
        if unbanned:
            del self._records[min(unbanned, key=lambda t: t[0])[1]]

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------------ persistence

    def save(self, *, force: bool = False) -> None:
        """Write the node-id bans atomically if they changed since the last save."""
        if self.path is None or not (self._dirty or force):
            return
        now, wall = self._clock(), self._wall()
        entries = [
            {
                "node_id": key.hex(),
                "banned_until": round(wall + (rec.banned_until - now), 3),
                "ban_count": rec.ban_count,
                "reason": rec.reason[:MAX_REASON_LEN],
            }
            for key, rec in self._records.items()
            if isinstance(key, bytes) and rec.ban_count > 0 and not self._forgettable(rec, now)
        ]
        write_json_atomic(self.path, {"version": BANS_FORMAT_VERSION, "bans": entries})
        self._dirty = False

    def _load(self) -> None:
        assert self.path is not None
        now, wall = self._clock(), self._wall()
        for raw in read_versioned_list(self.path, BANS_FORMAT_VERSION, "bans", "ban list")[
            : self.max_tracked
        ]:
            try:
                key, rec = _record_from_json(raw, now, wall)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("ban list: skipping bad entry: %s", exc)
                continue
            if not self._forgettable(rec, now):
                self._records[key] = rec


def _record_from_json(raw: Any, now: float, wall: float) -> tuple[bytes, _Record]:
    node_id = bytes.fromhex(raw["node_id"])
    until = raw["banned_until"]
    count = raw["ban_count"]
    reason = raw["reason"]
    if len(node_id) != NODE_ID_LEN:
        raise ValueError("node_id must be 32 bytes")
    if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until):
        raise ValueError("banned_until must be a number")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise ValueError("ban_count must be an integer in 1..64")
    if not isinstance(reason, str):
        raise ValueError("reason must be a string")
    return node_id, _Record(
        banned_until=now + (until - wall), ban_count=count, reason=reason[:MAX_REASON_LEN], updated=now
    )
