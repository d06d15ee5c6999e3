"""Test helpers live in one package, `tests.support`: no conftest imports another conftest, and no test
module or conftest imports a test module (`test_*`) or a conftest. A conftest only defines fixtures and
hooks; what several files share is a plain module under `tests/support/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.source_imports import imported_names, module_name, python_files

ROOT = Path(__file__).resolve().parents[2]


def is_test_or_conftest(module: str) -> bool:
    """A module of the `tests` package that pytest owns: a conftest or a test module."""
    parts = module.split(".")
    return parts[0] == "tests" and any(p == "conftest" or p.startswith("test_") for p in parts[1:])


def forbidden_imports(source: str, importer: str) -> list[str]:
    return sorted({name for name in imported_names(source, importer) if is_test_or_conftest(name)})


def test_no_file_under_tests_imports_a_conftest_or_a_test_module() -> None:
    files = list(python_files(ROOT, "tests"))
    assert len([p for p in files if p.name == "conftest.py"]) >= 5  # the scan sees the tree
    offenders = {}
    for path in files:
        bad = forbidden_imports(path.read_text(), module_name(ROOT, path))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"move what they share into tests/support/: {offenders}"


@pytest.mark.parametrize(
    "source,importer,expected",
    [
        ("from tests.integration.conftest import stop_clusters", "tests.pocl_node.conftest", True),
        ("from .conftest import ALICE", "tests.ledger.test_state", True),
        ("from . import conftest", "tests.ledger.test_state", True),
        ("from tests.consensus.pocl.test_execution import Chain", "tests.golden.test_golden_rounds", True),
        ("def f():\n    import tests.rpc.conftest\n", "tests.rpc.test_rpc", True),
        ("from tests.support.pocl_chain import Chain", "tests.golden.test_golden_rounds", False),
        ("from aiohttp.test_utils import TestClient", "tests.rpc.test_cors", False),
        ("from . import crash_child", "tests.support.other", False),
    ],
)
def test_the_checker_catches_imports_of_conftests_and_test_modules(
    source: str, importer: str, expected: bool
) -> None:
    assert bool(forbidden_imports(source, importer)) is expected
