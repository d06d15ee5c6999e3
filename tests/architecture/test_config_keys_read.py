"""Every config key does something: each `[section] key` of the typed config is read somewhere in the
code as an attribute (`.key`: `self.config.p2p.max_inbound`, `section.epochs`, ...), or is listed here
with where it is read another way. A key parsed and never read is a promise to an operator that nothing
keeps (issue 16 row 8: five such keys were documented and did nothing). A textual check: it cannot tell
a config read from an attribute of the same name elsewhere, so key names should say what they are."""

from __future__ import annotations

import re
from pathlib import Path

from pocl.node.config import Config

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("node", "p2p", "consensus", "ml", "ledger")

# keys read other than as `section.key`, with where
READ_OTHERWISE = {
    ("consensus", "timeout_*"): "ConsensusSection.timeout_overrides() reads every timeout_* field by name",
}


def _code() -> str:
    parts = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "config.py" and path.parent.name == "node":
                continue  # the declarations themselves
            parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def test_every_config_key_is_read() -> None:
    code = _code()
    unread = []
    for section, field in Config.model_fields.items():
        model = field.annotation
        for key in model.model_fields:  # type: ignore[union-attr]
            if (section, "timeout_*") in READ_OTHERWISE and key.startswith("timeout_"):
                continue
            if (section, key) in READ_OTHERWISE:
                continue
            if not re.search(rf"\.{re.escape(key)}\b", code):
                unread.append(f"{section}.{key}")
    assert unread == [], f"config keys parsed but never read: {unread}"
