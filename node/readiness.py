"""Readiness: may this node be sent traffic and trusted to be current (`GET /ready`, `/status`)?

`/health` is liveness only: the process answers. Readiness says what an operator or a load balancer
needs on top, with a stable reason code for each thing that is wrong:

- `catching_up`: block sync is still running at start, or a peer is more than `MAX_LAG_BLOCKS` ahead
  (the lag is reported);
- `consensus_stalled`: no new height for `stall_after_blocks` × the expected block time (a round that
  runs into every timeout: propose + prevote + precommit + commit);
- `disk_low`: the filesystem holding the database has less than `node.min_free_disk_mb` free (a full
  disk stops the node: see `node.fatal`; this warns before it does);
- `store_failed`: a storage or signing-state fault stopped the node (`node.fatal`), seen in the moment
  before it exits.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from pocl.ledger.params import ChainParams

CATCHING_UP = "catching_up"
CONSENSUS_STALLED = "consensus_stalled"
DISK_LOW = "disk_low"
STORE_FAILED = "store_failed"
MAX_LAG_BLOCKS = 2  # a validator in step is at most a block behind what a peer last reported
MIB = 1024 * 1024


def expected_block_s(params: ChainParams) -> float:
    """How long a height takes when round 0 runs into every timeout (a generous expected block time)."""
    total_ms = (
        params.timeout_propose_ms
        + params.timeout_prevote_ms
        + params.timeout_precommit_ms
        + params.timeout_commit_ms
    )
    return total_ms / 1000.0


def free_bytes(path: Path) -> int | None:
    """Free bytes for an unprivileged writer on the filesystem holding `path` (its nearest existing
    ancestor); None if that cannot be read."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


@dataclasses.dataclass(frozen=True)
class ReadinessInputs:
    syncing: bool  # the start-up block sync has not finished
    height: int
    best_peer_height: int  # highest height a peer reported to block sync (0: none known)
    seconds_since_block: float  # since the last new height (or since consensus started)
    expected_block_s: float
    stall_after_blocks: int
    disk_free_bytes: int | None
    min_free_bytes: int  # 0: no disk check
    fault: str | None  # the fatal fault's line, if one stopped the node


@dataclasses.dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]  # stable codes, see the module docstring
    detail: tuple[str, ...]  # one readable sentence per reason
    lag_blocks: int
    best_peer_height: int
    seconds_since_block: float
    disk_free_bytes: int | None


def assess(i: ReadinessInputs) -> Readiness:
    reasons: list[str] = []
    detail: list[str] = []
    lag = max(0, i.best_peer_height - i.height)
    if i.fault is not None:
        reasons.append(STORE_FAILED)
        detail.append(i.fault)
    if i.syncing or lag > MAX_LAG_BLOCKS:
        reasons.append(CATCHING_UP)
        detail.append(f"block sync: height {i.height}, peers at {i.best_peer_height} ({lag} behind)")
    stall_s = i.stall_after_blocks * i.expected_block_s
    if not i.syncing and i.seconds_since_block > stall_s:
        reasons.append(CONSENSUS_STALLED)
        detail.append(f"no new height for {i.seconds_since_block:.0f} s (limit {stall_s:.0f} s)")
    if i.min_free_bytes > 0 and i.disk_free_bytes is not None and i.disk_free_bytes < i.min_free_bytes:
        reasons.append(DISK_LOW)
        detail.append(
            f"{i.disk_free_bytes // MIB} MiB free on the database's filesystem "
            f"(node.min_free_disk_mb = {i.min_free_bytes // MIB})"
        )
    return Readiness(
        ready=not reasons,
        reasons=tuple(reasons),
        detail=tuple(detail),
        lag_blocks=lag,
        best_peer_height=i.best_peer_height,
        seconds_since_block=round(i.seconds_since_block, 1),
        disk_free_bytes=i.disk_free_bytes,
    )
