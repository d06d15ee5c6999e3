"""Stopping a node without walking away from a PoCL round it committed to (a drain with a deadline).

A miner that committed to round r and stops before its shard, reveal and vote are in is penalised as
a withholder (slashed and jailed, docs/pocl-protocol.md §6). So the first stop request (SIGTERM,
SIGINT, `pocl-node stop`) on a node whose miner owes the open round does not stop it: the node keeps
running (consensus, P2P, the miner) until the miner's duties for that round are in a block or
`[mining] drain_timeout_s` passes, commits to no new round meanwhile, then stops. Without such a duty
it stops at once, as before. A second request, or a forced one (`pocl-node stop --force`, SIGQUIT),
stops at once and logs what leaving the round costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Protocol

from pocl.node.events import BlockCommitted, NodeEvent, NodeEventListener
from pocl.node.miner_duty import OpenDuty, WithholdCost

log = logging.getLogger("pocl.node")

DEFAULT_DRAIN_TIMEOUT_S = 60.0
DRAIN_SIGNAL = signal.SIGTERM  # finish a committed PoCL round first (SIGINT too); a second one: stop now
FORCE_SIGNAL = signal.SIGQUIT  # stop now (`pocl-node stop --force`)
POLL_S = 1.0  # re-check the duty this often even without a new block (a stalled chain)


class DrainableMiner(Protocol):
    def open_duty(self) -> OpenDuty | None: ...

    def withhold_cost(self, round_: int) -> WithholdCost: ...

    def pause(self) -> None: ...


class DrainableNode(Protocol):
    miner: DrainableMiner | None

    def subscribe(self, listener: NodeEventListener) -> Callable[[], None]: ...


def force_hint() -> str:
    return "send the signal again or run `pocl-node stop --force` to stop now"


class ShutdownController:
    """Turns stop requests into a stop now or a drain-then-stop; `stopping` is set when the node
    should stop (the caller then runs `Node.stop`)."""

    def __init__(self, node: DrainableNode, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> None:
        self.node = node
        self.drain_timeout_s = drain_timeout_s
        self.stopping = asyncio.Event()
        self.draining: OpenDuty | None = None  # the duty being finished, while draining
        self._drain_task: asyncio.Task[None] | None = None
        self._block = asyncio.Event()

    def is_stopping(self) -> bool:
        """A stop was requested (the node is draining or stopping)."""
        return self.draining is not None or self.stopping.is_set()

    def _duty(self) -> OpenDuty | None:
        miner = self.node.miner
        if miner is None:
            return None
        try:
            return miner.open_duty()
        except Exception:  # never let a miner bug keep a node from stopping
            log.exception("cannot tell whether the miner owes the open round; stopping")
            return None

    def _cost(self, duty: OpenDuty) -> str:
        assert self.node.miner is not None
        return self.node.miner.withhold_cost(duty.round).describe()

    def request_stop(self, reason: str, *, force: bool = False) -> None:
        """A stop request (`reason`: e.g. "SIGTERM"). Safe to call any number of times."""
        if self.stopping.is_set():
            return
        duty = self._duty()
        if force or self._drain_task is not None:
            if duty is not None:
                log.warning(
                    "%s: stopping now with round %d (phase %s) unfinished, %s still due: this costs %s",
                    reason,
                    duty.round,
                    duty.phase,
                    duty.due,
                    self._cost(duty),
                )
            else:
                log.info("%s: stopping now", reason)
            self._finish()
            return
        if duty is None:
            log.info("shutdown requested (%s)", reason)
            self._finish()
            return
        log.warning(
            "draining: finishing round %d (phase %s) before stopping; %s (costs: %s)",
            duty.round,
            duty.phase,
            force_hint(),
            self._cost(duty),
        )
        assert self.node.miner is not None
        self.node.miner.pause()
        self.draining = duty
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(duty), name="drain")

    def _finish(self) -> None:
        if self._drain_task is not None and self._drain_task is not asyncio.current_task():
            self._drain_task.cancel()
        self.stopping.set()

    def _on_event(self, event: NodeEvent) -> None:
        if isinstance(event, BlockCommitted):
            self._block.set()

    async def _drain(self, first: OpenDuty) -> None:
        unsubscribe = self.node.subscribe(self._on_event)
        t0 = time.monotonic()
        deadline = t0 + self.drain_timeout_s
        duty: OpenDuty | None = first
        try:
            while duty is not None and time.monotonic() < deadline:
                self._block.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._block.wait(), min(POLL_S, max(0.0, deadline - time.monotonic()))
                    )
                duty = self._duty()
                if duty is not None and duty != self.draining:
                    log.info("draining: round %d phase %s, %s due", duty.round, duty.phase, duty.due)
                    self.draining = duty
        finally:
            unsubscribe()
        if duty is None:
            log.info("drained: round %d duties done in %.1fs; stopping", first.round, time.monotonic() - t0)
        else:
            log.warning(
                "drain timeout after %.0fs ([mining] drain_timeout_s) with round %d %s still due; "
                "stopping: this costs %s",
                self.drain_timeout_s,
                duty.round,
                duty.due,
                self._cost(duty),
            )
        self.stopping.set()
