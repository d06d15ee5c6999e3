"""The node's signature verifier: checks a big block's tx signatures on all cores before it executes.

Ed25519 verification dominates block cost and PyNaCl releases the GIL, so the signatures of a block
synced from peers (or not seen by our mempool) are checked about `workers` times faster on threads.
The deterministic core stays single-threaded: the executor takes this as a plain callable
(`ledger.executor.SignatureVerifier`), and a signature it does not vouch for is simply checked again
in-line, so the verdicts are the same with or without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence, Set
from concurrent.futures import ThreadPoolExecutor

from pocl.ledger.tx import SignedTx

PARALLEL_VERIFY_MIN = 64  # below this many unverified txs, threads cost more than they save
MAX_VERIFY_WORKERS = 8


def verified_hashes(stxs: Sequence[SignedTx]) -> list[bytes]:
    return [stx.hash for stx in stxs if stx.verify_signature()]


class ParallelSignatureVerifier:
    """A `SignatureVerifier` on a lazily started thread pool (one per node)."""

    def __init__(self, workers: int | None = None, min_batch: int = PARALLEL_VERIFY_MIN) -> None:
        self.workers = workers if workers is not None else min(os.cpu_count() or 1, MAX_VERIFY_WORKERS)
        self.min_batch = min_batch
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, stxs: Sequence[SignedTx]) -> Set[bytes]:
        if len(stxs) < self.min_batch or self.workers < 2:
            return frozenset()  # in-line verification is cheaper
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sigverify")
        chunk = -(-len(stxs) // self.workers)
        futures = [self._pool.submit(verified_hashes, stxs[i:i + chunk]) for i in range(0, len(stxs), chunk)]
        return frozenset(h for future in futures for h in future.result())
