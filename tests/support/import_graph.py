"""The import graph of the installed `pocl` package, read from source with `ast` (nothing is imported).

Every import statement counts: module level, function-local and under `if TYPE_CHECKING:`, because each
of them is a dependency a reader has to follow and a cycle waiting to bite at run time.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from tests.support.source_imports import PRODUCT_FOLDERS, imported_names, module_name, python_files

# The deterministic core: what every validator runs to reach the same state (docs/architecture.md).
CORE_PACKAGES = ("pocl.ledger", "pocl.consensus.bft", "pocl.consensus.pocl", "pocl.ml.model")
NOT_CORE = ("pocl.ledger.storage",)  # plyvel store, encrypted keystore, fsync'd files


def is_core(module: str) -> bool:
    in_core = any(module == p or module.startswith(p + ".") for p in CORE_PACKAGES)
    return in_core and not any(module == p or module.startswith(p + ".") for p in NOT_CORE)


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to an absolute dotted name."""

    importer: str
    target: str  # dotted module (or package) name
    line: int


def module_files(root: Path) -> dict[str, Path]:
    """`pocl.<dotted>` -> file, for every module of the installed package (folder `x/` is `pocl.x`)."""
    return {module_name(root, p): p for f in PRODUCT_FOLDERS for p in python_files(root, f)}


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """Imports in one file with their lines; `from a import b` targets `a.b` when that is a module, else
    `a` (the package whose `__init__` runs)."""
    out: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = set(imported_names(ast.unparse(node), name, path.name == "__init__.py"))
            targets = {n for n in names if n in known} or names
            if isinstance(node, ast.ImportFrom):  # a.b when b is a module; a itself only if nothing else
                specific = {n for n in targets if n.count(".") > (node.module or "").count(".") + node.level}
                targets = {n for n in specific if n in known} or targets
            out += [Import(name, t, node.lineno) for t in sorted(targets)]
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
