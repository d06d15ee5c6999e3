"""Training in a long-lived worker process, driven from asyncio (DESIGN §8: the event loop never stalls).

The worker is a `spawn`ed process that imports TensorFlow once and then serves jobs over a pipe, so a
node pays the ~5 s import only when it starts mining and its event loop keeps running (consensus
timeouts, gossip, RPC) while a model trains. The child runs at lower CPU priority with capped TF threads.

Pipe traffic is pickled, which is acceptable here and nowhere else: both ends are this program, on one
machine, connected by an anonymous pipe (nothing from the network is ever unpickled).

Cancellation: a shared event is checked after every training batch; the worker then answers
"cancelled" and stays usable. If it does not answer within `cancel_grace_s` (stuck inside TF) it is
killed and restarted on the next job. A worker that dies (OOM, crash) is likewise restarted.

Quiet start: the child inherits the node's stderr (a devnet node's `node.log`). TensorFlow's native
libraries write their start-up notices (oneDNN, CPU features, "All log messages before
absl::InitializeLog()") straight to file descriptor 2 while being imported, before
`TF_CPP_MIN_LOG_LEVEL` takes effect, so the child captures fd 2 during the import and passes on only
the lines that are not such notices (`drop_tf_noise`). `TF_ENABLE_ONEDNN_OPTS` is left alone: it would
silence the oneDNN line but also change training speed and numerics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import multiprocessing as mp
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from pocl.ml.training import DEFAULT_THREADS, TrainingError, TrainJob, TrainResult

_MSG_READY = "ready"
_MSG_JOB = "job"
_MSG_STOP = "stop"
_MSG_RESULT = "result"
_MSG_ERROR = "error"
_MSG_CANCELLED = "cancelled"

DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_CANCEL_GRACE_S = 10.0
DEFAULT_NICENESS = 5


# Native TensorFlow start-up notices: absl-style INFO/WARNING lines ("I0000 00:00:1700000000.123456 42
# port.cc:153] oneDNN custom operations are on...") and the lines that go with them. ERROR/FATAL lines
# (E..., F...) and anything else, Python warnings and tracebacks included, are kept.
_TF_NOISE = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+\S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)"
)


def drop_tf_noise(text: str) -> str:
    """``text`` without TensorFlow's native start-up notices (see the module docstring)."""
    return "".join(line for line in text.splitlines(keepends=True) if not _TF_NOISE.match(line))


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Capture file descriptor 2 for the block, then write back what `drop_tf_noise` keeps."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = drop_tf_noise(tmp.read().decode("utf-8", errors="replace"))
            if kept:
                with contextlib.suppress(OSError):
                    os.write(2, kept.encode("utf-8", errors="replace"))


class TrainingCancelled(TrainingError):
    """The job was interrupted by `TrainingWorker.cancel()`."""


class WorkerDied(TrainingError):
    """The worker process exited during a job; the next job starts a fresh one."""


def _worker_main(conn: Connection, cancel: Any, threads: int, niceness: int) -> None:
    """Child process: import TF once, then serve jobs until told to stop or the pipe closes."""
    with contextlib.suppress(OSError):
        os.nice(niceness)
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(threads)
    from pocl.ml.training import Trainer, configure_threads, quiet_tensorflow_env

    quiet_tensorflow_env()  # TF_CPP_MIN_LOG_LEVEL before the import: later native notices stay quiet
    try:
        with _quiet_native_stderr():
            configure_threads(threads)
            import keras  # noqa: F401 - the expensive import, paid once here

        trainer = Trainer()
    except Exception:
        conn.send((_MSG_ERROR, 0, traceback.format_exc()))
        return
    conn.send((_MSG_READY, os.getpid(), None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == _MSG_STOP:
            return
        _, job_id, job = msg
        if cancel.is_set():
            conn.send((_MSG_CANCELLED, job_id, None))
            continue
        try:
            result = trainer.fit(job, should_stop=cancel.is_set)
        except Exception as exc:
            conn.send((_MSG_ERROR, job_id, f"{type(exc).__name__}: {exc}"))
            continue
        if cancel.is_set():
            conn.send((_MSG_CANCELLED, job_id, None))
        else:
            conn.send((_MSG_RESULT, job_id, result))


class TrainingWorker:
    """Asyncio client of one training worker process; one job at a time (others queue on a lock).

    ``await worker.train(job)`` returns a `TrainResult`; cancelling the awaiting task, or calling
    ``cancel()``, interrupts the job within one training batch. Use ``async with TrainingWorker() as w``
    or call ``close()``.
    """

    def __init__(
        self,
        *,
        threads: int = DEFAULT_THREADS,
        niceness: int = DEFAULT_NICENESS,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S,
    ) -> None:
        self.threads = threads
        self.niceness = niceness
        self.start_timeout_s = start_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self._ctx = mp.get_context("spawn")
        self._cancel = self._ctx.Event()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        # Dedicated threads for blocking pipe I/O, so the event loop only awaits futures.
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-worker-io")
        self._closed = False
        self._spawned = 0
        self._ready = False
        self._start_task: asyncio.Task[None] | None = None
        self.restarts = 0  # processes started after the first (crash, kill after a stuck cancel)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    async def __aenter__(self) -> TrainingWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the process (if not running) and wait until TensorFlow is loaded."""
        async with self._lock:
            await self._ensure_started()

    async def _ensure_started(self) -> None:
        """Wait for a ready worker, spawning one if needed.

        The spawn runs as its own task: a caller cancelled while TensorFlow is still importing leaves
        the start going (the next job reuses it) instead of killing a half-started worker.
        """
        if self._closed:
            raise TrainingError("training worker is closed")
        if self._ready and self._proc is not None and self._proc.is_alive():
            return
        task = self._start_task
        if task is None or task.done():
            task = self._start_task = asyncio.get_running_loop().create_task(
                self._spawn(), name="train-worker-start"
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "unretrieved"
        await asyncio.shield(task)

    async def _spawn(self) -> None:
        if self._proc is not None:
            await self._discard_async()
        if self._spawned:
            self.restarts += 1
        self._spawned += 1
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self._cancel, self.threads, self.niceness),
            name="pocl-train-worker",
            daemon=True,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, proc.start)
        child.close()  # so recv() sees EOF if the child dies
        self._proc, self._conn = proc, parent
        try:
            kind, _pid, detail = await asyncio.wait_for(
                asyncio.shield(loop.run_in_executor(self._io, parent.recv)), self.start_timeout_s
            )
        except (TimeoutError, EOFError, OSError) as exc:
            await self._discard_async()
            raise TrainingError(f"training worker failed to start: {exc!r}") from exc
        except asyncio.CancelledError:  # only close() cancels the start
            await self._discard_async()
            raise
        if kind != _MSG_READY:
            await self._discard_async()
            raise TrainingError(f"training worker failed to start:\n{detail}")
        self._ready = True

    def _discard(self) -> None:
        """Kill the process (if any) and drop the pipe; the next job starts a fresh worker."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._ready = None, None, False
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)  # the child's end closes, so a blocked recv() sees EOF
        if conn is not None:
            conn.close()

    async def _discard_async(self) -> None:
        await asyncio.to_thread(self._discard)  # kill + join may take a moment: not on the loop

    def cancel(self) -> None:
        """Interrupt the running job (it raises `TrainingCancelled`); queued jobs still run."""
        if self._lock.locked():
            self._cancel.set()

    async def train(self, job: TrainJob) -> TrainResult:
        async with self._lock:
            self._cancel.clear()
            await self._ensure_started()
            job_id = next(self._ids)
            if self._cancel.is_set():  # cancel() while the worker was starting
                raise TrainingCancelled(f"training job {job_id} was cancelled before it started")
            return await self._run(job_id, job)

    async def _run(self, job_id: int, job: TrainJob) -> TrainResult:
        loop = asyncio.get_running_loop()
        conn = self._conn
        assert conn is not None
        exchange = loop.run_in_executor(self._io, self._exchange, conn, job_id, job)
        try:
            kind, detail = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            self._cancel.set()
            await self._settle(exchange)
            raise
        except (EOFError, OSError) as exc:
            await self._discard_async()
            raise WorkerDied(f"training worker died during job {job_id}: {exc!r}") from exc
        except Exception as exc:  # e.g. a job that cannot be pickled: the pipe state is unknown
            await self._discard_async()
            raise TrainingError(f"training job {job_id} could not be sent: {exc!r}") from exc
        if kind == _MSG_RESULT:
            return detail
        if kind == _MSG_CANCELLED:
            raise TrainingCancelled(f"training job {job_id} was cancelled")
        raise TrainingError(f"training job {job_id} failed: {detail}")

    async def _settle(self, exchange: asyncio.Future[Any]) -> None:
        """After a task cancellation: wait briefly for the worker to acknowledge, else kill it."""
        try:
            await asyncio.wait_for(asyncio.shield(exchange), self.cancel_grace_s)
        except (Exception, asyncio.CancelledError):
            await self._discard_async()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(exchange), 5)

    @staticmethod
    def _exchange(conn: Connection, job_id: int, job: TrainJob) -> tuple[str, Any]:
        """Blocking (runs in the I/O thread): send one job, wait for its answer, skip stale answers."""
        conn.send((_MSG_JOB, job_id, job))
        while True:
            kind, answered, detail = conn.recv()
            if answered == job_id:
                return kind, detail

    async def close(self) -> None:
        """Stop the worker (politely, then by force) and release the I/O thread."""
        if self._closed:
            return
        self._closed = True
        self._cancel.set()
        start = self._start_task
        if start is not None and not start.done():
            start.cancel()
            with contextlib.suppress(BaseException):
                await start
        async with self._lock:
            proc, conn = self._proc, self._conn
            if proc is not None and conn is not None and proc.is_alive():
                with contextlib.suppress(OSError, BrokenPipeError):
                    conn.send((_MSG_STOP, 0, None))
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._io, proc.join, 5)
            await self._discard_async()
        self._io.shutdown(wait=False)
