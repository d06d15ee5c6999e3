"""The commands of docs/join.md that the WAN join test runs (tests/multihost/test_join_wan.py).

A fenced ```bash block of docs/join.md preceded by the line `<!-- join-test -->` is run by that test, in
page order, on a machine of a live multi-host network. The marker is not tests/docs' `<!-- runnable -->`
on purpose: those blocks need a network (a node URL, a faucet) and tests/docs runs runnable blocks in a
temporary home with no network, so it never sees these. Within the blocks:

- `export NAME=VALUE` lines name what the reader fills in (the network's URL, its genesis hash, their own
  address); the test replaces each VALUE with its own (`JoinScript.env`), and every other line is run as
  written with those variables set;
- a trailing `\\` continues a command on the next line; `#` comments and blank lines are dropped;
- `pocl-node run …` starts the node, which keeps running while the later commands run (the page says to
  leave it running and use a second terminal).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

from tests.support.doc_commands import ROOT, code_blocks

JOIN_PAGE = ROOT / "docs" / "join.md"
JOIN_MARKER = "<!-- join-test -->"
_EXPORT = re.compile(r"^export\s+([A-Z_][A-Z0-9_]*)=(\S*)\s*(?:#.*)?$")


@dataclasses.dataclass(frozen=True)
class JoinScript:
    placeholders: dict[str, str]  # NAME -> the example value on the page
    commands: list[str]  # shell command lines, in page order

    def env(self, values: dict[str, str]) -> dict[str, str]:
        """The page's variables with the test's values; every variable the page exports must be given."""
        missing = set(self.placeholders) - set(values)
        if missing:
            raise AssertionError(f"{JOIN_PAGE.name} exports {sorted(missing)}: the join test has no value")
        return {name: values[name] for name in self.placeholders}


def is_node_start(command: str) -> bool:
    words = shlex.split(command, comments=True)
    return words[:2] == ["pocl-node", "run"]


def join_script(path: Path = JOIN_PAGE) -> JoinScript:
    text = path.read_text()
    lines = text.splitlines()
    placeholders: dict[str, str] = {}
    commands: list[str] = []
    for block in code_blocks(text, path.name):
        before = [ln.strip() for ln in lines[: block.line - 1] if ln.strip()]
        if not before or before[-1] != JOIN_MARKER:
            continue
        if block.info != "bash":
            raise AssertionError(f"{path.name}:{block.line}: {JOIN_MARKER} blocks must be ```bash")
        pending = ""
        for raw in block.code.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            if not line or line.startswith("#"):
                continue
            export = _EXPORT.match(line)
            if export:
                placeholders[export.group(1)] = export.group(2)
            else:
                commands.append(line)
    return JoinScript(placeholders, commands)
