"""Give freed heap memory back to the kernel (glibc `malloc_trim`): after a burst of large request bodies,
and every minute while the node runs.

The node keeps freed multi-MiB buffers in its heap for reuse (`p2p.malloc_tuning`: 4 MiB mmap and 32 MiB
trim thresholds), so glibc itself returns almost nothing:

- After a burst of 8 MiB bodies the heap stayed fragmented, RSS hundreds of MB above its level before the
  burst. Once enough body bytes were freed and no body is in flight, one `gc.collect()` (aiohttp's request
  objects sit in reference cycles, so their buffers are otherwise freed only by a later collection) and
  one `malloc_trim(0)` run shortly after. Measured on a node: 40 clients × 8 MiB for 5 s, RSS 81 → 178 MB
  peak → 83 MB one second later (115 MB without the collect, as the trim alone cannot release what is
  still referenced).
- In steady running, blocks, txs and P2P frames of 100-200 KB (a cnn-digits predict tx) are freed into
  the heap at different places, and the free pages between live ones are never returned: the soak's RSS
  rose 1-2 MB per 1,000 blocks, and one `malloc_trim(0)` on a node at height 2,300 gave back 6.9 MB at
  once (issue 16). `trim_periodically` runs a plain trim (no collection: it must not pause consensus; a
  trim of a ~30 MB heap takes about a millisecond) every `PERIODIC_TRIM_S`.

A no-op where libc is not glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from collections.abc import Callable

MIB = 1024 * 1024
TRIM_AFTER_BYTES = 64 * MIB  # body bytes freed since the last trim that make one worthwhile
TRIM_DELAY_S = 0.5  # after the last large body: its request, response and parse results are gone by then
FOLLOW_UP_S = (
    2.0  # one more trim after a burst's: on a loaded machine aiohttp lets go of the last requests later
)
PERIODIC_TRIM_S = 60.0  # steady running: free heap pages go back at most a minute after they were freed


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # symbols already in the process: no library search
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    def __init__(self, trim_after_bytes: int = TRIM_AFTER_BYTES, delay_s: float = TRIM_DELAY_S) -> None:
        self.trim_after_bytes = trim_after_bytes
        self.delay_s = delay_s
        self.freed_since_trim = 0
        self.trims = 0
        self._malloc_trim = _load_malloc_trim()
        self._pending: asyncio.TimerHandle | None = None

    def freed(self, size: int, *, idle: bool) -> None:
        """`size` bytes of body were released; `idle`: no body is in flight any more."""
        self.freed_since_trim += size
        if self._malloc_trim is None or not idle or self.freed_since_trim < self.trim_after_bytes:
            return
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self.delay_s, self._trim)

    def _trim(self, *, follow_up: bool = True) -> None:
        self._pending = None
        self.freed_since_trim = 0
        if self._malloc_trim is not None:
            gc.collect()
            self._malloc_trim(0)
            self.trims += 1
            if follow_up:  # what was still referenced a moment ago (seen under CI load: 30 MB kept)
                self._pending = asyncio.get_running_loop().call_later(
                    FOLLOW_UP_S, lambda: self._trim(follow_up=False)
                )


async def trim_periodically(
    period_s: float = PERIODIC_TRIM_S, malloc_trim: Callable[[int], int] | None = None
) -> None:
    """Every `period_s`, return the heap's free pages to the kernel (runs until cancelled)."""
    trim = malloc_trim if malloc_trim is not None else _load_malloc_trim()
    if trim is None:
        return
    while True:
        await asyncio.sleep(period_s)
        trim(0)
