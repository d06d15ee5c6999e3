"""Small JSON state files of the network layer (address book, bans): written atomically, read leniently.

A crash never leaves half a file (temp file + fsync + rename). A file that cannot be parsed is kept
aside (renamed `NAME.corrupt-UNIXTIME`) rather than overwritten, and its owner starts empty: losing the
address book or the ban list costs a node some time, never its ability to start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from pocl.ledger.storage.durable_file import replace_durably

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, doc: object) -> None:
    """Write JSON so readers see either the old file or the whole new one, never a torn write."""
    replace_durably(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_versioned_list(path: Path, version: int, key: str, what: str) -> list[Any]:
    """`doc[key]` of the JSON object at `path` whose "version" is `version`; [] if the file is missing,
    unreadable or corrupt (a corrupt one is kept aside)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("%s %s unreadable (%s); starting empty", what, path, exc)
        return []
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != version:
            raise ValueError(f"unknown {what} format")
        items = doc.get(key)
        if not isinstance(items, list):
            raise ValueError(f"{key} must be a list")
    except ValueError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.warning("%s %s is corrupt (%s); kept as %s, starting empty", what, path, exc, aside)
        try:
            os.replace(path, aside)
        except OSError:
            pass
        return []
    return items
