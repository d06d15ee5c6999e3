"""Flood gossip with deduplication, validate-before-relay and per-peer rate limits (DESIGN §6).

A gossiped message (tx, proposal, vote, evidence) is identified by the hash of its type id and
canonical body. A node relays a message to every peer except the one it came from, once: the bounded
seen-cache drops copies arriving over other paths, and a message is relayed (and delivered locally) only
after the registered `validate` hook accepts it, so one bad peer cannot make the network carry garbage.
A peer whose messages fail validation is scored; one that floods beyond its token bucket is throttled.
A hook that cannot decide yet (it needed data the sender failed to supply) returns None: that copy is
dropped without a penalty and forgotten, so a later copy is validated afresh.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import LRUCache, TTLCache
from pocl.ledger.codec import Struct
from pocl.ledger.hashing import tagged_hash

from .host import Host
from .message_ids import MessageId

log = logging.getLogger(__name__)

TAG_GOSSIP = b"pocl/p2p-gossip"

DEFAULT_SEEN_SIZE = 100_000
# How long a gossip message id is remembered. Copies of a message arrive over the other paths within
# seconds, so two minutes (libp2p gossipsub's seen TTL) still drops them all; without an age limit the
# cache only stopped growing at DEFAULT_SEEN_SIZE ids (~25 MB, hours of blocks: the soak's RSS slope).
# A copy arriving later is validated again (a vote or tx already applied is a harmless no-op) and
# relayed once more, which is what the consensus reactor's rebroadcast of a stalled height wants anyway.
DEFAULT_SEEN_TTL_S = 120.0
DEFAULT_RATE_MSGS = 2_000.0  # messages per second per peer, sustained
DEFAULT_BURST_MSGS = 10_000.0
DEFAULT_RATE_BYTES = 16 * 1024 * 1024.0  # bytes per second per peer, sustained
DEFAULT_BURST_BYTES = 64 * 1024 * 1024.0
INVALID_PENALTY = 20.0  # ten invalid messages in quick succession ban a peer (host threshold 200)
# Per message over the limit: a busy honest relay loses a few messages; only sustained abuse
# (thousands over the limit within a score half-life) adds up to a ban.
FLOOD_PENALTY = 0.1

Validator = Callable[[Any, bytes], bool | Awaitable[bool | None] | None]
Deliver = Callable[[Any, bytes], Awaitable[None] | None]


def message_id(type_id: int, body: Struct) -> bytes:
    """Content hash that names a gossip message (same message on every path => same id)."""
    return _message_id_raw(type_id, body.encode())


def _message_id_raw(type_id: int, raw_body: bytes) -> bytes:
    return tagged_hash(TAG_GOSSIP, type_id.to_bytes(2, "big") + raw_body)


class SeenCache:
    """Bounded set of message ids with least-recently-seen eviction (a cachetools LRU cache); with
    `ttl_s`, an id is also forgotten `ttl_s` seconds after it was last added (a TTL cache), so the
    memory follows the message rate, not the run's length."""

    def __init__(
        self,
        max_size: int = DEFAULT_SEEN_SIZE,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.max_size = max_size
        self._ids: LRUCache[bytes, None] | TTLCache[bytes, None] = (
            LRUCache(max_size) if ttl_s is None else TTLCache(max_size, ttl_s, timer=clock)
        )

    def __contains__(self, mid: object) -> bool:
        return mid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, mid: bytes) -> bool:
        """Record `mid`; returns False if it was already there (and refreshes it)."""
        if mid in self._ids:  # `in` leaves the order alone; setting again makes it the most recent
            self._ids[mid] = None  # (and, with a TTL, restarts its clock)
            return False
        self._ids[mid] = None  # evicts the least recently seen one past max_size (and expired ones)
        return True

    def discard(self, mid: bytes) -> None:
        self._ids.pop(mid, None)


class TokenBucket:
    """Classic token bucket: `rate` tokens per second, at most `burst` stored.

    Hand-written on purpose: a dozen lines taken twice per received gossip message, with the injectable
    clock the tests drive; the rate-limit libraries are async-only (aiolimiter) or far larger (limits)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def take(self, amount: float = 1.0) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True


@dataclasses.dataclass(frozen=True)
class _Topic:
    type_id: int
    name: str
    validate: Validator | None
    deliver: Deliver | None


@dataclasses.dataclass
class GossipStats:
    received: int = 0
    duplicates: int = 0
    invalid: int = 0
    throttled: int = 0
    delivered: int = 0
    published: int = 0
    sent: int = 0  # copies queued to peers, by publish and by relay


class Gossip:
    """Flood-gossip router on top of a `Host`. Register topics before `host.start()`."""

    def __init__(
        self,
        host: Host,
        *,
        seen_size: int = DEFAULT_SEEN_SIZE,
        seen_ttl_s: float = DEFAULT_SEEN_TTL_S,
        rate_msgs: float = DEFAULT_RATE_MSGS,
        burst_msgs: float = DEFAULT_BURST_MSGS,
        rate_bytes: float = DEFAULT_RATE_BYTES,
        burst_bytes: float = DEFAULT_BURST_BYTES,
        invalid_penalty: float = INVALID_PENALTY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.seen = SeenCache(seen_size, seen_ttl_s, clock)
        self.stats = GossipStats()
        self.invalid_penalty = invalid_penalty
        self._rates = (rate_msgs, burst_msgs, rate_bytes, burst_bytes)
        self._clock = clock
        self._topics: dict[type[Struct], _Topic] = {}
        self._buckets: dict[bytes, tuple[TokenBucket, TokenBucket]] = {}
        host.on_disconnect(lambda peer: self._buckets.pop(peer.node_id, None))

    def register(
        self,
        message: MessageId,
        body_cls: type[Struct],
        max_bytes: int,
        *,
        validate: Validator | None = None,
        deliver: Deliver | None = None,
    ) -> None:
        """Gossip `body_cls`: `validate(body, from_node_id)` gates relay; `deliver` is called once per message."""
        self._topics[body_cls] = _Topic(message.type_id, message.name, validate, deliver)
        self.host.register(message, body_cls, max_bytes, self._on_message)

    def message_id(self, body: Struct) -> bytes:
        return message_id(self._topics[type(body)].type_id, body)

    def publish(self, body: Struct) -> bool:
        """Flood a locally created message to all peers; False if it was already seen (not resent)."""
        if not self.seen.add(self.message_id(body)):
            return False
        self.stats.published += 1
        self.stats.sent += self.host.broadcast(body)
        return True

    def _allow(self, node_id: bytes, size: int) -> bool:
        buckets = self._buckets.get(node_id)
        if buckets is None:
            rate_m, burst_m, rate_b, burst_b = self._rates
            buckets = (TokenBucket(rate_m, burst_m, self._clock), TokenBucket(rate_b, burst_b, self._clock))
            self._buckets[node_id] = buckets
        return buckets[0].take(1) and buckets[1].take(size)

    async def _on_message(self, conn: Any, body: Struct) -> None:
        topic = self._topics.get(type(body))
        if topic is None:
            return
        sender: bytes = conn.node_id
        self.stats.received += 1
        raw = body.encode()
        if not self._allow(sender, len(raw)):
            self.stats.throttled += 1
            self.host.punish(sender, FLOOD_PENALTY, f"gossip flood ({topic.name})")
            return
        mid = _message_id_raw(topic.type_id, raw)
        if not self.seen.add(mid):
            self.stats.duplicates += 1
            return
        if topic.validate is not None:
            try:
                verdict = topic.validate(body, sender)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except Exception:
                log.exception("gossip validator for %s failed", topic.name)
                self.seen.discard(mid)  # our bug, not the peer's: let a later copy try again
                return
            if verdict is None:  # undecided: no relay, no penalty, a later copy tries again
                self.seen.discard(mid)
                return
            if not verdict:
                self.stats.invalid += 1
                self.host.punish(sender, self.invalid_penalty, f"invalid {topic.name}")
                return
        self.stats.sent += self.host.broadcast(body, exclude=sender)
        if topic.deliver is not None:
            self.stats.delivered += 1
            try:
                result = topic.deliver(body, sender)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("gossip delivery of %s failed", topic.name)
