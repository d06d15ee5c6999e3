"""Raise the process's soft open-file limit (`RLIMIT_NOFILE`) to its hard limit when the node starts.

Every RPC and P2P connection, LevelDB table and the signing-state file take a file descriptor. The
common soft default is 1024, and with it a burst of clients left a validator unable to persist its
signing state (EMFILE), so it stopped signing. The hard limit is what the operator (or systemd's
`LimitNOFILE`) allows; raising the soft one up to it needs no privilege. If even the hard limit is low,
one WARNING says so and how to raise it.
"""

from __future__ import annotations

import dataclasses
import logging

try:
    import resource
except ImportError:  # not on POSIX
    resource = None  # type: ignore[assignment]

log = logging.getLogger("pocl.node")

RECOMMENDED_NOFILE = 4096
# a soft limit above the kernel's nr_open is refused; this is its usual value
MAX_SOFT_NOFILE = 1 << 20


@dataclasses.dataclass(frozen=True)
class FdLimit:
    before: int
    after: int
    hard: int

    @property
    def low(self) -> bool:
        return self.after < RECOMMENDED_NOFILE


def open_file_limit() -> int | None:
    """The soft `RLIMIT_NOFILE` now (None where there is none, or it is unlimited)."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def raise_nofile_limit(recommended: int = RECOMMENDED_NOFILE) -> FdLimit | None:
    """Soft `RLIMIT_NOFILE` := hard (capped at 2^20); a WARNING if the result is below `recommended`.
    None where the platform has no such limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_SOFT_NOFILE if hard == resource.RLIM_INFINITY else min(hard, MAX_SOFT_NOFILE)
    after = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            after = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    if after != resource.RLIM_INFINITY and after < recommended:
        log.warning(
            "open-file limit is %d (hard limit %s), below the recommended %d: a burst of RPC or P2P "
            "connections can leave the node unable to write its signing state. Raise it with "
            "`ulimit -n %d` (hard: /etc/security/limits.conf) or LimitNOFILE=%d in the systemd unit, "
            "and keep [rpc] max_connections well below it",
            after,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            recommended,
            recommended,
            recommended,
        )
    elif after != soft:
        log.info("raised the open-file limit from %d to %d", soft, after)
    return FdLimit(before=soft, after=after, hard=hard)
