"""One place where a fault the node cannot work around stops it loudly (issue 16, deliverable 1).

A ledger write that fails (ENOSPC, EIO, EROFS, EACCES, EMFILE: LevelDB refuses every later write once
one failed), a signing-state file that cannot be persisted, or any exception escaping an event-loop
callback (a consensus timer that raised leaves the height half done and nothing would ever finish it)
must not be swallowed by a callback while `/health` says ok. `FatalStop.trigger` logs ONE CRITICAL line
naming what failed, the path and the errno, records the fault and asks the node to stop now;
`pocl-node run` then exits with `EXIT_FATAL`, so a supervisor (systemd `Restart=on-failure`) sees it.
If the orderly stop itself hangs (a disk that blocks), the watchdog ends the process after `watchdog_s`.

The known write sites call `trigger` explicitly (the consensus driver's commit and seen-commit writes
and its signer, block sync's commit); `install` adds an asyncio loop exception handler for everything
else, chaining to the handler that was there before for the exceptions that are not fatal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno as errnos
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from pocl.consensus.signing_state import SigningStateError, SigningStateWriteError
from pocl.ledger.storage.store import FATAL_ERRNOS, StoreError

log = logging.getLogger("pocl.node")

EXIT_FATAL = 4  # `pocl-node run` stopped on a fault it cannot work around (see docs/operators.md)
WATCHDOG_S = 20.0  # an orderly stop that takes longer than this after a fatal fault is cut short

LoopHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


@dataclasses.dataclass(frozen=True)
class Fault:
    """What stopped the node: `what` failed at `path` with `errno` (None when no OS error is known)."""

    what: str
    path: str
    errno: int | None
    detail: str

    def line(self) -> str:
        code = errnos.errorcode.get(self.errno, str(self.errno)) if self.errno is not None else "-"
        reason = f" ({os.strerror(self.errno)})" if self.errno is not None else ""
        return (
            f"FATAL: {self.what} failed: path={self.path or '-'} errno={code}{reason}: {self.detail}; "
            f"stopping the node (exit status {EXIT_FATAL})"
        )


def classify(exc: BaseException, where: str) -> Fault | None:
    """The fault `exc` is, if it is a storage or signing-state failure (else None)."""
    if isinstance(exc, StoreError):
        return Fault(f"ledger database ({where})", exc.path, exc.errno, str(exc))
    if isinstance(exc, SigningStateWriteError):
        return Fault(f"signing state write ({where})", str(exc.path), exc.errno, str(exc))
    if isinstance(exc, SigningStateError):
        return Fault(f"signing state ({where})", "", None, str(exc))
    if isinstance(exc, OSError) and exc.errno in FATAL_ERRNOS:
        return Fault(f"I/O ({where})", str(exc.filename or ""), exc.errno, str(exc))
    return None


class FatalStop:
    """Turns the first fatal fault into one CRITICAL line and a stop request (`stop`)."""

    def __init__(self, stop: Callable[[], None], watchdog_s: float | None = None) -> None:
        self._stop = stop
        self.watchdog_s = watchdog_s  # `pocl-node run` sets it: a real process must end
        self.fault: Fault | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: LoopHandler | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_FATAL if self.fault is not None else 0

    def check(self, exc: BaseException, where: str) -> bool:
        """Stop the node if `exc` is fatal; True if it was (the caller then gives up quietly)."""
        fault = classify(exc, where)
        if fault is None:
            return False
        self._record(fault)
        return True

    def trigger(self, exc: BaseException, where: str) -> None:
        """Stop the node for `exc`, fatal by kind or because of where it escaped to."""
        fault = classify(exc, where) or Fault(where, "", None, f"{type(exc).__name__}: {exc}")
        self._record(fault)

    def _record(self, fault: Fault) -> None:
        if self.fault is not None:
            log.debug("after the fatal fault, also: %s", fault.line())
            return
        self.fault = fault
        log.critical(fault.line())
        if self.watchdog_s is not None:
            timer = threading.Timer(self.watchdog_s, _hard_exit)
            timer.daemon = True
            timer.start()
        self._stop()

    # ------------------------------------------------------------------ the event loop's handler

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Catch what escapes callbacks and tasks on `loop` (until `uninstall`)."""
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)

    def uninstall(self) -> None:
        loop = self._loop
        if loop is not None and loop.get_exception_handler() == self._on_loop_exception:
            loop.set_exception_handler(self._previous)
        self._loop = None

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if _accept_retried(context):
            # one line, no traceback (the logging setup rate-limits it: a client can cause it at will)
            logging.getLogger("asyncio").warning(
                "socket.accept() out of system resource: %s; accepting again shortly", exc
            )
            return
        if isinstance(exc, Exception):
            if self.check(exc, "event loop"):
                return
            if context.get("handle") is not None:  # a callback or timer raised: its work is half done
                self.trigger(exc, f"event loop callback {context['handle']!r}")
                log.error("the callback's traceback", exc_info=exc)
                return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


def _accept_retried(context: dict[str, Any]) -> bool:
    """asyncio's server ran out of descriptors in `accept()` (a client flood): it stops accepting for a
    moment and retries by itself, so this is the RPC's or P2P's load to shed (rate-limited in the log),
    not a fault of the node's own writes."""
    return "socket" in context and context.get("message") == "socket.accept() out of system resource"


def _hard_exit() -> None:
    log.critical("FATAL: the node did not stop within %.0f s; exiting now", WATCHDOG_S)
    logging.shutdown()
    os._exit(EXIT_FATAL)
