"""What every benchmark under scripts/bench/ shares: timing the best of N runs, printing a two-column
table, writing the JSON result."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of `repeats` calls, in seconds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def print_rows(rows: Iterable[tuple[str, str]], indent: str = "") -> None:
    """Print (name, value) rows with the values aligned."""
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"{indent}{name:<{width}}  {value}")


def write_json(path: str | os.PathLike[str] | None, doc: Any, *, sort_keys: bool = False) -> None:
    """Write the result document (nothing when no `--json` path was given)."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=sort_keys)
            f.write("\n")
