"""The newcomer's map in docs/architecture.md names files that exist, and names every core package."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.import_graph import CORE_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
TOP = ("consensus", "genesis", "ledger", "ml", "node", "p2p", "scripts", "tests")


def mentioned_paths(text: str) -> set[str]:
    """Repository paths in backticks (`node/miner.py`, `ledger/storage/`, `node/rpc/{a,b}.py`)."""
    out: set[str] = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        if not token.startswith(tuple(f"{t}/" for t in TOP)):
            continue
        brace = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", token)
        names = [brace.group(1) + part + brace.group(3) for part in brace.group(2).split(",")] if brace else [token]
        out.update(n.split(" ")[0].split("::")[0] for n in names)
    return out


def test_every_path_in_the_map_exists() -> None:
    paths = mentioned_paths(DOC.read_text())
    assert len(paths) >= 40, "the map should name the files that answer newcomers' questions"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_path_in_the_docs_exists() -> None:
    """README and docs/ are the source of truth for how the system works: the files they cite exist."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        missing = sorted(p for p in mentioned_paths(doc.read_text()) if not (ROOT / p).exists())
        assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_map_names_every_core_package() -> None:
    text = DOC.read_text()
    for package in CORE_PACKAGES:
        folder = package.removeprefix("pocl.").replace(".", "/") + "/"
        assert f"`{folder}" in text, f"core package {folder} missing from docs/architecture.md"


def test_path_reader_expands_braces() -> None:
    assert mentioned_paths("see `node/rpc/{a,b}.py` and `README.md`") == {"node/rpc/a.py", "node/rpc/b.py"}
