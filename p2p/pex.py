"""Peer exchange: learn peer addresses from peers and keep the outbound slots filled (DESIGN §6).

At start the seeds are dialled; every newly connected peer is asked for addresses (`get_addrs` →
`addrs`), which go into the address book; then free outbound slots are filled from the book. The same
round repeats periodically, and immediately whenever new addresses arrive, so a node that knows one
seed quickly ends up connected to the rest of the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from typing import ClassVar

from pocl.ledger.codec import Struct

from . import message_ids
from .addrbook import AddressError, PeerAddr, parse_peer_addr
from .errors import P2PError
from .host import Host, PeerInfo

log = logging.getLogger(__name__)

MAX_ADDRS = 100
MAX_ADDR_TEXT = 64 + 1 + 300
BAD_ADDRS_PENALTY = 10.0


@dataclasses.dataclass(frozen=True)
class GetAddrs(Struct):
    limit: int


@dataclasses.dataclass(frozen=True)
class Addrs(Struct):
    addrs: list[str]  # "node_id_hex@host:port"

    MAX_LEN: ClassVar[dict[str, int]] = {"addrs": MAX_ADDRS}


@dataclasses.dataclass
class PexConfig:
    seeds: tuple[str, ...] = ()
    interval: float = 30.0  # seconds between maintenance rounds
    request_timeout: float = 5.0
    max_addrs: int = MAX_ADDRS
    save_book_every: int = 10  # rounds between address-book saves


class PeerExchange:
    """Registers the pex messages on `host` and runs the maintenance loop once started."""

    def __init__(
        self, host: Host, config: PexConfig | None = None, *, rng: random.Random | None = None
    ) -> None:
        self.host = host
        self.config = config or PexConfig()
        self._rng = rng or random.Random()
        self._seeds: list[PeerAddr] = [parse_peer_addr(s) for s in self.config.seeds]
        self._wake = asyncio.Event()
        self._asked: set[bytes] = set()
        self._seeded = False  # seeds are dialled once at start, then again only when isolated
        host.register(message_ids.GET_ADDRS, GetAddrs, 64, self._on_get_addrs)
        host.register(message_ids.ADDRS, Addrs, MAX_ADDRS * (MAX_ADDR_TEXT + 3) + 64)
        host.on_connect(self._on_connect)
        host.on_disconnect(self._on_disconnect)

    def start(self) -> None:
        """Begin the loop (call after `host.start()`)."""
        for seed in self._seeds:
            self.host.addrbook.add(seed, source="seed")
        self.host.spawn(self._loop(), name="p2p-pex")

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ server side

    def _on_get_addrs(self, conn: object, body: GetAddrs) -> Addrs:
        requester: bytes = conn.node_id  # type: ignore[attr-defined]
        limit = max(0, min(body.limit, self.config.max_addrs, MAX_ADDRS))
        sample = self.host.addrbook.sample(limit, exclude=(requester, self.host.node_id))
        return Addrs([str(a) for a in sample if len(str(a)) <= MAX_ADDR_TEXT])

    # ------------------------------------------------------------------ client side

    def _on_connect(self, peer: PeerInfo) -> None:
        self.host.spawn(self._ask(peer.node_id), name="p2p-pex-ask")

    def _on_disconnect(self, peer: PeerInfo) -> None:
        self._asked.discard(peer.node_id)
        self._wake.set()  # a slot freed up

    async def _ask(self, node_id: bytes) -> int:
        """Ask one peer for addresses; returns how many new ones the book learned."""
        self._asked.add(node_id)
        try:
            reply = await self.host.request(
                node_id, GetAddrs(self.config.max_addrs), self.config.request_timeout
            )
        except (TimeoutError, P2PError) as exc:
            log.debug("get_addrs from %s failed: %s", node_id.hex()[:12], exc)
            return 0
        if not isinstance(reply, Addrs):
            return 0
        learned = bad = 0
        for text in reply.addrs:
            try:
                addr = parse_peer_addr(text)
            except AddressError:
                bad += 1
                continue
            learned += self.host.addrbook.add(addr, source="pex")
        if bad:
            self.host.punish(node_id, BAD_ADDRS_PENALTY, f"{bad} malformed addresses")
        if learned:
            self._wake.set()
        return learned

    async def _loop(self) -> None:
        rounds = 0
        while self.host.running:
            await self.maintain()
            rounds += 1
            if rounds % self.config.save_book_every == 0:
                try:
                    self.host.addrbook.save()
                except OSError as exc:
                    log.warning("could not save address book: %s", exc)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.interval)

    async def maintain(self) -> None:
        """One round: dial seeds (at start, or when isolated), ask a peer for addresses if the book is
        short of dial candidates, and fill free outbound slots from the book."""
        host = self.host
        connected = {p.node_id for p in host.peers()}
        dials = []
        if self._seeds and (not self._seeded or not connected):
            self._seeded = True
            dials += [host.connect(s) for s in self._seeds if s.node_id not in connected]
        slots = host.outbound_slots - len(dials)
        if slots > 0:
            exclude = connected | {host.node_id} | {s.node_id for s in self._seeds}
            candidates = host.addrbook.dial_candidates(slots, exclude=exclude)
            if len(candidates) < slots and connected:
                unasked = [nid for nid in connected if nid not in self._asked] or list(connected)
                host.spawn(self._ask(self._rng.choice(unasked)), name="p2p-pex-ask")
            dials += [host.connect(a) for a in candidates]
        if dials:
            await asyncio.gather(*dials)
