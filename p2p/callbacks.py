"""Calling user callbacks from transport code without letting them break it."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pocl.p2p")


def call_back(fn: Callable[..., Any] | None, tasks: set[asyncio.Future[Any]], *args: Any) -> None:
    """Run `fn(*args)`, logging its failure; if it is async, run it as a task held in `tasks` (the
    event loop keeps only weak references to tasks)."""
    if fn is None:
        return
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(_log_task_error)
    except Exception:
        log.exception("p2p callback %r failed", fn)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("p2p callback task failed", exc_info=task.exception())
