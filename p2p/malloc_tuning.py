"""Keep freed multi-MiB buffers in the heap (glibc), for processes that move large P2P messages.

Every 1 MiB message leaves a few 1–2 MiB temporaries behind (its decrypted frame, the decoded byte
string). With glibc's defaults each is a fresh `mmap` (allocations ≥ 128 KiB) or re-trimmed heap, so
every message pays ~500 page faults, which costs more CPU than decrypting it (docs/benchmarks/p2p.md).
Raising the mmap and trim thresholds lets such buffers be reused; a process keeps at most
`trim_threshold` bytes of freed heap.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MIB = 1024 * 1024
DEFAULT_MMAP_THRESHOLD = 4 * MIB  # buffers below this come from the heap and are reused
DEFAULT_TRIM_THRESHOLD = 32 * MIB  # free heap kept for reuse before it is returned to the kernel
_ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers_in_heap(
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD, trim_threshold: int = DEFAULT_TRIM_THRESHOLD
) -> bool:
    """Apply the thresholds with `mallopt`; True if done. A no-op (False) where libc is not glibc or
    the operator already chose thresholds through glibc's environment variables."""
    if any(var in os.environ for var in _ENV_VARS):
        return False
    try:
        # The symbols already loaded into this process: no library search (find_library runs ldconfig).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
