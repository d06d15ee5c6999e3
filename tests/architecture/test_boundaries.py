"""The deterministic core is an enforced boundary, and no pocl module takes part in an import cycle.

The core is what every validator runs to reach the same state: the state transition (`pocl.ledger`
without its storage), the BFT machine (`pocl.consensus.bft`), the PoCL rules and finalization
(`pocl.consensus.pocl`) and the model math (`pocl.ml.model`). It must be a pure function of the chain,
so it may not touch files, sockets, clocks, randomness, threads, the event loop, LevelDB, HTTP,
TensorFlow, or the node and network code that does. Each checker is also run on a small synthetic tree
with a violation, so a checker that silently passes everything fails here.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.support.import_graph import CORE_PACKAGES, Import, build_graph, cycles, is_core, module_files

ROOT = Path(__file__).resolve().parents[2]

# Standard-library modules whose use means I/O, clocks, randomness or concurrency.
FORBIDDEN_STDLIB = frozenset(
    {
        "os", "io", "sys", "pathlib", "shutil", "tempfile", "glob", "fcntl", "mmap", "stat",
        "socket", "ssl", "select", "selectors", "signal", "subprocess", "http", "urllib", "ftplib",
        "time", "datetime", "zoneinfo", "calendar",
        "random", "secrets", "uuid",
        "asyncio", "threading", "concurrent", "multiprocessing", "queue", "sched",
        "pickle", "shelve", "marshal", "dbm", "sqlite3",
    }
)  # fmt: skip
# The only third-party libraries the core may use: arrays, the canonical codec, and signatures.
# threadpoolctl only caps BLAS threads around canonical inference (speed, never values).
ALLOWED_THIRD_PARTY = frozenset({"numpy", "msgpack", "nacl", "cryptography", "threadpoolctl"})
FORBIDDEN_BUILTINS = frozenset({"open", "input", "print", "breakpoint", "exec", "eval", "__import__"})


def boundary_violations(root: Path) -> list[str]:
    """Every import or builtin call in a core module that breaks the boundary, as readable lines."""
    _, every = build_graph(root)
    files = module_files(root)
    out: list[str] = []
    for imp in every:
        if is_core(imp.importer):
            problem = _import_problem(imp)
            if problem:
                out.append(f"{files[imp.importer]}:{imp.line}: {imp.importer} imports {imp.target} ({problem})")
    for name, path in files.items():
        if not is_core(name):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            called = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
            if called in FORBIDDEN_BUILTINS:
                out.append(f"{path}:{node.lineno}: {name} calls {node.func.id}()")
    return out


def _import_problem(imp: Import) -> str | None:
    top = imp.target.split(".")[0]
    if top == "__future__":
        return None
    if top == "pocl":
        return None if is_core(imp.target) else "non-core pocl module"
    if top in FORBIDDEN_STDLIB:
        return "I/O, clock, randomness or concurrency"
    if top in sys.stdlib_module_names:
        return None
    return None if top in ALLOWED_THIRD_PARTY else "third-party library outside the core's allow-list"


def test_core_imports_no_io_clock_randomness_or_node_code() -> None:
    violations = boundary_violations(ROOT)
    assert not violations, "the deterministic core crosses its boundary:\n" + "\n".join(violations)


def test_core_packages_exist() -> None:
    files = module_files(ROOT)
    for package in CORE_PACKAGES:
        assert package in files, f"core package {package} is missing"
    assert sum(is_core(m) for m in files) >= 20  # the boundary guards real code, not an empty set


def test_no_import_cycles() -> None:
    graph, _ = build_graph(ROOT)
    found = cycles(graph)
    assert not found, "import cycles (TYPE_CHECKING and function-local imports count):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


# ------------------------------------------------------------------- the checkers catch violations


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in ("ledger", "consensus/bft", "consensus/pocl", "ml/model", "node", "p2p", "genesis"):
        init = tmp_path / folder / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")
    return tmp_path


def test_boundary_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ledger/clock.py": "import time\n",
            "ledger/storage/__init__.py": "",
            "ledger/storage/db.py": "import plyvel\nimport os\n",  # not core: allowed
            "consensus/bft/net.py": "from pocl.p2p.host import Host\n",
            "consensus/pocl/late.py": "def f():\n    from asyncio import sleep\n",
            "ml/model/typed.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pocl.node.node import Node\n"
            ),
            "ml/model/tf.py": "import tensorflow as tf\n",
            "ledger/files.py": "def f(p):\n    return open(p).read()\n",
            "ledger/store_user.py": "from pocl.ledger.storage import db\n",
            "ledger/fine.py": "import hashlib\nimport numpy as np\nfrom pocl.ledger import clock\n",
            "p2p/host.py": "import socket\n",
        },
    )
    found = "\n".join(boundary_violations(root))
    for expected in (
        "pocl.ledger.clock imports time",
        "pocl.consensus.bft.net imports pocl.p2p.host",
        "pocl.consensus.pocl.late imports asyncio",
        "pocl.ml.model.typed imports pocl.node.node",
        "pocl.ml.model.tf imports tensorflow",
        "pocl.ledger.files calls open()",
        "pocl.ledger.store_user imports pocl.ledger.storage.db",
    ):
        assert expected in found, f"missed: {expected}\n{found}"
    assert "storage.db imports" not in found and "pocl.ledger.fine" not in found and "p2p.host" not in found.split(
        "imports pocl.p2p.host"
    )[-1]


def test_cycle_checker_sees_type_checking_and_local_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "node/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pocl.node.b import B\n",
            "node/b.py": "def f():\n    from pocl.node import c\n",
            "node/c.py": "from pocl.node.a import A\n",
            "node/d.py": "from . import e\n",
            "node/e.py": "from .d import x\n",
            "p2p/x.py": "from pocl.node import a\n",  # into the cycle, not part of it
        },
    )
    graph, _ = build_graph(root)
    assert sorted(cycles(graph)) == [
        ["pocl.node.a", "pocl.node.b", "pocl.node.c"],
        ["pocl.node.d", "pocl.node.e"],
    ]
