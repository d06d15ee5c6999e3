"""The import graph of the installed `pocl` package, read from source with `ast` (nothing is imported).

Every import statement counts: module level, function-local and under `if TYPE_CHECKING:`, because each
of them is a dependency a reader has to follow and a cycle waiting to bite at run time.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

PACKAGE = "pocl"
TOP_FOLDERS = ("consensus", "genesis", "ledger", "ml", "node", "p2p")


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported name as written, resolved to the module it loads."""

    importer: str
    target: str  # dotted module (or package) name
    line: int


def module_files(root: Path, folders: tuple[str, ...] = TOP_FOLDERS) -> dict[str, Path]:
    """`pocl.<dotted>` -> file, for every module of the installed package (folder `x/` is `pocl.x`)."""
    out: dict[str, Path] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((PACKAGE, *parts))] = path
    return out


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """Imports in one file; `from a import b` targets `a.b` when that is a module, else `a`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(name, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(Import(name, sub if sub in known else base, node.lineno))
    return out


def build_graph(root: Path) -> tuple[dict[str, set[str]], list[Import]]:
    """Edges between pocl modules, and every import (for boundary checks)."""
    files = module_files(root)
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    every: list[Import] = []
    for name, path in files.items():
        for imp in imports_of(name, path, known):
            every.append(imp)
            if imp.target in known and imp.target != name:
                graph[name].add(imp.target)
    return graph, every


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found
