"""Debug aid for finding memory growth (issue 16's soak): with `POCL_MEMTRACE=PATH` in its environment,
a node runs `tracemalloc` and every `POCL_MEMTRACE_S` seconds (default 60) rewrites PATH with the
allocation sites that grew most since the first dump, by source line, with their tracebacks.

Off by default: tracemalloc slows Python several times and costs memory itself, so this is for a soak
run on one node (`scripts/bench/soak.py --trace-node I`), never for production.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import tracemalloc
from pathlib import Path

ENV_PATH = "POCL_MEMTRACE"
ENV_PERIOD = "POCL_MEMTRACE_S"
DEFAULT_PERIOD_S = 60.0
FRAMES = 8  # traceback depth kept per allocation (enough to reach the owning module)
TOP = 40  # growing sites written per dump


@dataclasses.dataclass
class MemoryTrace:
    path: Path
    period_s: float = DEFAULT_PERIOD_S
    _base: tracemalloc.Snapshot | None = None
    _started: float = dataclasses.field(default_factory=time.monotonic)

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> MemoryTrace | None:
        path = env.get(ENV_PATH)
        if not path:
            return None
        return cls(Path(path), float(env.get(ENV_PERIOD) or DEFAULT_PERIOD_S))

    def start(self) -> None:
        tracemalloc.start(FRAMES)

    def dump(self) -> None:
        """Compare with the first snapshot (taken at the first dump, after start-up) and rewrite the file."""
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
        )
        if self._base is None:
            self._base = snap
            return
        current, peak = tracemalloc.get_traced_memory()
        lines = [
            f"elapsed {time.monotonic() - self._started:.0f}s traced {current / 1e6:.1f} MB (peak {peak / 1e6:.1f})",
            "",
            "== by line ==",
        ]
        lines += [str(s) for s in snap.compare_to(self._base, "lineno")[:TOP]]
        lines += ["", "== by traceback (top 15) =="]
        for stat in snap.compare_to(self._base, "traceback")[:15]:
            lines.append(f"{stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks")
            lines += [f"    {frame}" for frame in stat.traceback.format()]
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.path)

    async def run(self) -> None:
        self.start()
        try:
            while True:
                await asyncio.sleep(self.period_s)
                with contextlib.suppress(OSError):
                    self.dump()
        finally:
            tracemalloc.stop()
