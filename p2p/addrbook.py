"""Peer addresses and the persisted address book (DESIGN §6).

A peer is named `node_id_hex@host:port` (node id = its Ed25519 public key), like CometBFT's
`id@host:port`. The book remembers where peers can be dialled, across restarts, in a JSON file
(`state_file.py`: atomic writes; a corrupt file is kept aside and the node starts with an empty book).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .state_file import read_versioned_list, write_json_atomic

log = logging.getLogger(__name__)

NODE_ID_LEN = 32
BOOK_FORMAT_VERSION = 1
DEFAULT_MAX_ENTRIES = 1000
MAX_HOST_LEN = 253


class AddressError(ValueError):
    """Text that is not a valid `node_id_hex@host:port` peer address."""


@dataclasses.dataclass(frozen=True)
class PeerAddr:
    node_id: bytes
    host: str
    port: int

    def __str__(self) -> str:
        return format_peer_addr(self.node_id, self.host, self.port)

    @property
    def hostport(self) -> str:
        return format_hostport(self.host, self.port)


def parse_hostport(text: str) -> tuple[str, int]:
    """Parse `host:port` or `[v6]:port`; raise AddressError when malformed."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise AddressError(f"bad bracketed address: {text!r}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise AddressError(f"bad IPv6 address: {host!r}") from exc
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise AddressError(f"expected host:port, got {text!r}")
        if ":" in host:
            raise AddressError(f"IPv6 hosts must be bracketed: {text!r}")
    if not host or len(host) > MAX_HOST_LEN or any(c.isspace() or c in "@/" for c in host):
        raise AddressError(f"bad host: {host!r}")
    if not port_text.isdigit():
        raise AddressError(f"bad port: {port_text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AddressError(f"port out of range: {port}")
    return host, port


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_node_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise AddressError(f"node id is not hex: {text!r}") from exc
    if len(raw) != NODE_ID_LEN:
        raise AddressError(f"node id must be {NODE_ID_LEN} bytes ({2 * NODE_ID_LEN} hex digits)")
    return raw


def parse_peer_addr(text: str) -> PeerAddr:
    """Parse `node_id_hex@host:port`."""
    node_hex, sep, rest = text.strip().partition("@")
    if not sep:
        raise AddressError(f"expected node_id@host:port, got {text!r}")
    host, port = parse_hostport(rest)
    return PeerAddr(parse_node_id(node_hex), host, port)


def format_peer_addr(node_id: bytes, host: str, port: int) -> str:
    return f"{node_id.hex()}@{format_hostport(host, port)}"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified_host(host: str) -> bool:
    """0.0.0.0 / :: are bind-any addresses, not something a peer can dial."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclasses.dataclass
class BookEntry:
    """What the book knows about one peer. Times are wall-clock seconds (they survive restarts)."""

    addr: PeerAddr
    source: str = ""  # "config", "pex", "inbound", ...
    added_at: float = 0.0
    last_success: float = 0.0
    last_attempt: float = 0.0
    failures: int = 0  # consecutive failed dials

    def to_json(self) -> dict[str, object]:
        return {
            "addr": str(self.addr),
            "source": self.source,
            "added_at": self.added_at,
            "last_success": self.last_success,
            "last_attempt": self.last_attempt,
            "failures": self.failures,
        }

    @classmethod
    def from_json(cls, obj: object) -> BookEntry:
        if not isinstance(obj, dict):
            raise AddressError("book entry is not an object")
        try:
            return cls(
                addr=parse_peer_addr(str(obj["addr"])),
                source=str(obj.get("source", "")),
                added_at=float(obj.get("added_at", 0.0)),
                last_success=float(obj.get("last_success", 0.0)),
                last_attempt=float(obj.get("last_attempt", 0.0)),
                failures=int(obj.get("failures", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AddressError(f"bad book entry: {exc}") from exc


class AddressBook:
    """Known peer addresses by node id, optionally persisted to `path`.

    Dial retry pacing lives here (`retry_delay`) so a peer that keeps failing is tried less and less
    often, and an entry that failed `max_failures` times in a row without ever succeeding is forgotten.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        self_id: bytes | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_failures: int = 10,
        retry_base: float = 5.0,
        retry_max: float = 600.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.self_id = self_id
        self.max_entries = max_entries
        self.max_failures = max_failures
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._clock = clock
        self._rng = rng or random.Random()
        self._entries: dict[bytes, BookEntry] = {}
        self._dirty = False
        if self.path is not None:
            self._load()

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def get(self, node_id: bytes) -> BookEntry | None:
        return self._entries.get(node_id)

    def entries(self) -> list[BookEntry]:
        return list(self._entries.values())

    def addrs(self) -> list[PeerAddr]:
        return [e.addr for e in self._entries.values()]

    def retry_delay(self, entry: BookEntry) -> float:
        """Seconds to wait after the last attempt before trying again (exponential in failures)."""
        if entry.failures == 0:
            return 0.0
        return min(self.retry_max, self.retry_base * 2 ** min(entry.failures - 1, 30))

    def dial_candidates(self, n: int, exclude: Iterable[bytes] = ()) -> list[PeerAddr]:
        """Up to n random addresses whose retry delay has passed, preferring ones that worked before."""
        excluded = set(exclude)
        now = self._clock()
        ready = [
            e
            for e in self._entries.values()
            if e.addr.node_id not in excluded and now - e.last_attempt >= self.retry_delay(e)
        ]
        self._rng.shuffle(ready)
        ready.sort(key=lambda e: (e.last_success == 0.0, e.failures))
        return [e.addr for e in ready[:n]]

    def sample(self, n: int, exclude: Iterable[bytes] = ()) -> list[PeerAddr]:
        """Up to n random addresses to share with a peer (peer exchange)."""
        excluded = set(exclude)
        pool = [e.addr for e in self._entries.values() if e.addr.node_id not in excluded]
        return self._rng.sample(pool, min(n, len(pool)))

    # ------------------------------------------------------------------ updates

    def add(self, addr: PeerAddr, source: str = "") -> bool:
        """Add or refresh an address; returns True when the book changed. Our own id is never added."""
        if addr.node_id == self.self_id or is_unspecified_host(addr.host):
            return False
        entry = self._entries.get(addr.node_id)
        if entry is not None:
            if entry.addr == addr:
                return False
            # A known peer at a new address: only trust the move when the old one stopped working
            # or the new one comes from a connection the peer made itself.
            if entry.failures == 0 and entry.last_success and source not in ("inbound", "config"):
                return False
            entry.addr = addr
            entry.failures = 0
            entry.source = source or entry.source
            self._dirty = True
            return True
        if len(self._entries) >= self.max_entries and not self._evict_one():
            return False
        self._entries[addr.node_id] = BookEntry(addr=addr, source=source, added_at=self._clock())
        self._dirty = True
        return True

    def remove(self, node_id: bytes) -> None:
        if self._entries.pop(node_id, None) is not None:
            self._dirty = True

    def mark_attempt(self, node_id: bytes) -> None:
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.last_attempt = self._clock()
            self._dirty = True

    def mark_success(self, node_id: bytes) -> None:
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.last_success = self._clock()
            entry.failures = 0
            self._dirty = True

    def mark_failure(self, node_id: bytes, *, keep: bool = False) -> None:
        """Record a failed dial; forget a never-working entry after max_failures unless `keep`."""
        entry = self._entries.get(node_id)
        if entry is None:
            return
        entry.failures += 1
        entry.last_attempt = self._clock()
        self._dirty = True
        if not keep and entry.last_success == 0.0 and entry.failures >= self.max_failures:
            del self._entries[node_id]

    def _evict_one(self) -> bool:
        """Drop the worst entry (most failures, then never-connected, then oldest) to make room."""
        if not self._entries:
            return False
        worst = max(self._entries.values(), key=lambda e: (e.failures, e.last_success == 0.0, -e.added_at))
        del self._entries[worst.addr.node_id]
        return True

    # ------------------------------------------------------------------ persistence

    def save(self, *, force: bool = False) -> None:
        """Write the book atomically if it changed since the last save."""
        if self.path is None or not (self._dirty or force):
            return
        doc = {
            "version": BOOK_FORMAT_VERSION,
            "entries": [e.to_json() for e in self._entries.values()],
        }
        write_json_atomic(self.path, doc)
        self._dirty = False

    def _load(self) -> None:
        assert self.path is not None
        for raw in read_versioned_list(self.path, BOOK_FORMAT_VERSION, "entries", "address book")[
            : self.max_entries
        ]:
            try:
                entry = BookEntry.from_json(raw)
            except AddressError as exc:
                log.warning("address book: skipping bad entry: %s", exc)
                continue
            if entry.addr.node_id != self.self_id:
                self._entries[entry.addr.node_id] = entry
