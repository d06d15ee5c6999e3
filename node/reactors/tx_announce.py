"""Large transactions travel by announcement (Bitcoin's inv / getdata): each crosses each link about once.

Flood gossip relays a message to every peer but the one it came from, so in a mesh of n nodes each
node receives a tx up to n - 1 times: harmless for a 200-byte transfer, but a `pocl.predict` carries a
miner's full weights (≈ 153 KB for cnn-digits, ≈ 4.8 MB for cnn-mnist). A tx of at least
`min_bytes` is therefore announced by hash (`TxAnnounce`) to the peers not known to have it; a peer
that lacks it asks one announcer for the body (`GetTx`), admits it to its mempool and announces it in
turn. While a fetch is under way, other announcers of the same hash are remembered and asked in turn
if it fails. A body whose hash is not the one asked for, or a tx no honest node would have forwarded,
scores the peer as gossip does. Everything a peer can make us hold is bounded (per-peer known sets,
fetches in flight, alternates).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from cachetools import LRUCache, TTLCache
from pocl.ledger.codec import Struct
from pocl.node.compact_block import tx_hash
from pocl.node.mempool import AddResult
from pocl.p2p import message_ids
from pocl.p2p.gossip import INVALID_PENALTY
from pocl.p2p.host import Host, PeerInfo

log = logging.getLogger("pocl.tx_gossip")

ANNOUNCE_MIN_BYTES = 16 * 1024  # smaller txs keep the batched flood (latency, and little to save)
MAX_ANNOUNCE_HASHES = 1_000
KNOWN_PER_PEER = 20_000  # hashes a peer is known to hold (it announced or sent them, or we did)
MAX_IN_FLIGHT = 2_000  # fetches under way, all peers together
MAX_IN_FLIGHT_PER_PEER = 64  # ... asked of one peer: a peer announcing junk cannot occupy us beyond this
MAX_ALTERNATES = 8  # other announcers remembered per hash in flight
FETCH_TIMEOUT_S = 10.0  # a large tx over a slow link
RECENT_DONE = 50_000  # hashes fetched or refused lately: not fetched again
HASH_LEN = 32
TX_BODY_OVERHEAD = 1024


@dataclasses.dataclass(frozen=True)
class TxAnnounce(Struct):
    tx_hashes: list[bytes]

    MAX_LEN: ClassVar[dict[str, int]] = {"tx_hashes": MAX_ANNOUNCE_HASHES}


@dataclasses.dataclass(frozen=True)
class GetTx(Struct):
    tx_hash: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"tx_hash": HASH_LEN}


@dataclasses.dataclass(frozen=True)
class TxBody(Struct):
    found: bool
    raw: bytes  # empty when not found


@dataclasses.dataclass
class AnnounceStats:
    announced: int = 0  # announcements sent (per peer)
    fetched: int = 0  # bodies received and admitted
    bad: int = 0  # bodies with the wrong hash, or txs no honest node forwards


class TxAnnouncer:
    """Registers the announce protocol on `host`; `publish` a newly admitted large tx."""

    def __init__(
        self,
        host: Host,
        add_tx: Callable[[bytes], AddResult],
        get_tx: Callable[[bytes], bytes | None],
        max_tx_bytes: int,
        *,
        is_malicious: Callable[[AddResult], bool],
        min_bytes: int = ANNOUNCE_MIN_BYTES,
    ) -> None:
        self.host = host
        self.add_tx = add_tx
        self.get_tx = get_tx
        self.min_bytes = min_bytes
        self.stats = AnnounceStats()
        self._is_malicious = is_malicious
        self._known: dict[bytes, LRUCache[bytes, None]] = {}
        self._in_flight: dict[bytes, bytes] = {}  # tx hash -> the peer asked
        self._per_peer: dict[bytes, int] = {}
        self._alternates: TTLCache[bytes, list[bytes]] = TTLCache(MAX_IN_FLIGHT, FETCH_TIMEOUT_S * 3)
        self._done: LRUCache[bytes, None] = LRUCache(RECENT_DONE)
        host.register(
            message_ids.TX_ANNOUNCE, TxAnnounce, MAX_ANNOUNCE_HASHES * (HASH_LEN + 2) + 64, self._on_announce
        )
        host.register(message_ids.GET_TX, GetTx, 128, self._serve)
        host.register(message_ids.TX_BODY, TxBody, max_tx_bytes + TX_BODY_OVERHEAD)
        host.on_disconnect(self._forget_peer)

    def wants(self, raw: bytes) -> bool:
        """Whether `raw` goes by announcement rather than in a gossip batch."""
        return len(raw) >= self.min_bytes

    # ------------------------------------------------------------------ sending

    def publish(self, raw: bytes, *, exclude: bytes | None = None) -> None:
        """Announce a tx we hold to every peer not known to have it."""
        h = tx_hash(raw)
        self._done[h] = None
        for peer in self.host.peers():
            if peer.node_id == exclude or self._knows(peer.node_id, h):
                continue
            self._mark(peer.node_id, h)
            if self.host.send_to(peer.node_id, TxAnnounce([h])):
                self.stats.announced += 1

    def _serve(self, _conn: object, req: GetTx) -> TxBody:
        raw = self.get_tx(req.tx_hash)
        return TxBody(False, b"") if raw is None else TxBody(True, raw)

    # ------------------------------------------------------------------ receiving

    def _on_announce(self, conn: Any, msg: TxAnnounce) -> None:
        sender: bytes = conn.node_id
        if any(len(h) != HASH_LEN for h in msg.tx_hashes):
            self.host.punish(sender, INVALID_PENALTY, "tx announcement with a malformed hash")
            return
        for h in msg.tx_hashes:
            self._mark(sender, h)
            if h in self._done or self.get_tx(h) is not None:
                continue
            if h in self._in_flight:
                others = self._alternates.setdefault(h, [])
                if len(others) < MAX_ALTERNATES and sender not in others:
                    others.append(sender)
                continue
            if (
                len(self._in_flight) >= MAX_IN_FLIGHT
                or self._per_peer.get(sender, 0) >= MAX_IN_FLIGHT_PER_PEER
            ):
                continue  # another announcer (or a later announcement) will bring it
            self._start(h, sender)

    def _start(self, h: bytes, peer: bytes) -> None:
        self._in_flight[h] = peer
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self.host.spawn(self._fetch(h, peer), name=f"get-tx-{h.hex()[:8]}")

    async def _fetch(self, h: bytes, peer: bytes) -> None:
        try:
            await self._fetch_from(h, peer)
        finally:
            self._per_peer[peer] = self._per_peer.get(peer, 1) - 1
            if self._per_peer[peer] <= 0:
                self._per_peer.pop(peer, None)
            self._in_flight.pop(h, None)
            others = self._alternates.pop(h, [])
            if h not in self._done and others:  # that peer failed us: ask the next announcer
                nxt = others[0]
                self._start(h, nxt)
                self._alternates[h] = others[1:]

    async def _fetch_from(self, h: bytes, peer: bytes) -> None:
        try:
            resp = await self.host.request(peer, GetTx(h), FETCH_TIMEOUT_S)
        except Exception:  # a peer failing to answer is routine
            return
        if not isinstance(resp, TxBody) or not resp.found:
            return
        if tx_hash(resp.raw) != h:
            self.stats.bad += 1
            self.host.punish(peer, INVALID_PENALTY, "tx body with another hash than announced")
            return
        self._done[h] = None
        res = self.add_tx(resp.raw)
        if res.error is not None:
            if self._is_malicious(res):
                self.stats.bad += 1
                self.host.punish(peer, INVALID_PENALTY, f"announced tx refused: {res.error.code}")
            return
        self.stats.fetched += 1
        if res.is_new:
            self.publish(resp.raw, exclude=peer)

    # ------------------------------------------------------------------ per-peer knowledge

    def _knows(self, peer: bytes, h: bytes) -> bool:
        known = self._known.get(peer)
        return known is not None and h in known

    def _mark(self, peer: bytes, h: bytes) -> None:
        known = self._known.get(peer)
        if known is None:
            known = self._known[peer] = LRUCache(KNOWN_PER_PEER)
        known[h] = None

    def _forget_peer(self, peer: PeerInfo) -> None:
        self._known.pop(peer.node_id, None)
