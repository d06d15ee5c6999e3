"""What a Python source file imports, read with `ast` (nothing is imported): for tests that check the
repository's layout rules. Every import statement counts, at module level or inside a function."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PRODUCT_FOLDERS = ("consensus", "genesis", "ledger", "ml", "node", "p2p")  # installed as pocl.<folder>
SKIPPED_DIRS = frozenset({".venv", ".git", "build", "dist", "__pycache__", ".hypothesis", ".pytest_cache"})


def module_name(root: Path, path: Path) -> str:
    """Dotted name a repository file is imported by: `tests.cli.conftest`, `pocl.node.cli` for `node/cli.py`."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts and parts[0] in PRODUCT_FOLDERS:
        parts = ("pocl", *parts)
    return ".".join(parts)


def imported_names(source: str, importer: str, is_package: bool = False) -> Iterator[str]:
    """Absolute dotted names a file imports: `import a.b` gives `a.b`; `from a import b` gives `a` and
    `a.b` (b may be a module); relative imports are resolved against `importer`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = importer.split(".") if is_package else importer.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def python_files(root: Path, under: str = ".") -> Iterator[Path]:
    """Every `.py` file below `root/under`, skipping virtual environments, VCS and build output."""
    for path in sorted((root / under).rglob("*.py")):
        rel = path.relative_to(root).parts
        if not SKIPPED_DIRS.intersection(rel) and not any(p.endswith(".egg-info") for p in rel):
            yield path


def file_imports(root: Path, path: Path) -> set[str]:
    return set(imported_names(path.read_text(), module_name(root, path), path.name == "__init__.py"))
