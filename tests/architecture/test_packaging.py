"""Installed, the project claims one import name, `pocl`: each top-level product folder is `pocl.<folder>`,
`scripts/` and `tests/` are not installed, and nothing imports the folders by their bare names (they are
generic words that collide with other code). A non-editable install into a fresh virtual environment,
outside the repository, runs `pocl-node devnet`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.support.source_imports import PRODUCT_FOLDERS, file_imports, python_files

ROOT = Path(__file__).resolve().parents[2]
NOT_INSTALLED = ("scripts", "tests")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_folders() -> set[str]:
    """`pocl.<dotted>` for every folder with an `__init__.py` under the product folders."""
    out = set()
    for folder in PRODUCT_FOLDERS:
        for init in (ROOT / folder).rglob("__init__.py"):
            out.add(".".join(("pocl", *init.parent.relative_to(ROOT).parts)))
    return out


def test_packages_list_is_exactly_the_package_folders() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    assert set(setuptools["packages"]) == package_folders()
    assert len(setuptools["packages"]) == len(set(setuptools["packages"]))
    assert setuptools["package-dir"] == {f"pocl.{f}": f for f in PRODUCT_FOLDERS}


def test_scripts_and_tests_are_not_installed() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    names = [*setuptools["packages"], *setuptools["package-dir"], *setuptools.get("package-data", {})]
    assert all(n == "pocl" or n.startswith("pocl.") for n in names), names
    for entry in pyproject()["project"]["scripts"].values():
        assert entry.startswith("pocl."), entry


def _offenders(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in paths:
        bad = sorted(n for n in file_imports(ROOT, path) if n.split(".")[0] in forbidden)
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_product_code_never_imports_scripts_or_tests() -> None:
    product = [p for f in PRODUCT_FOLDERS for p in python_files(ROOT, f)]
    assert len(product) > 50  # the scan sees the tree
    assert not _offenders(product, NOT_INSTALLED)


def test_no_module_imports_a_product_folder_by_its_bare_name() -> None:
    everything = list(python_files(ROOT))
    assert not _offenders(everything, PRODUCT_FOLDERS), "import them as pocl.<folder>"


# ---------------------------------------------------------------- a real install, away from the repo

COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "out"
)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_non_editable_install_in_a_fresh_venv_runs_devnet(tmp_path: Path) -> None:
    """`pip install .` of a copy of the checkout into a new venv (offline: the dependencies and the build
    backend come from this repository's venv through a `.pth` line appended after the fresh site-packages,
    so `pocl` itself can only come from the fresh install), then `pocl-node devnet` from elsewhere."""
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=COPY_IGNORE)
    venv = tmp_path / "venv"
    _ok(
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, 120)
    )  # pip, setuptools: the .pth below
    python = venv / "bin" / "python"
    fresh_site = Path(
        _ok(
            _run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, 60
            )
        ).strip()
    )
    (fresh_site / "repo_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheels = tmp_path / "wheels"
    build = _run(
        [
            str(python),
            "-m",
            "pip",
            "wheel",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        tmp_path,
        300,
    )
    _ok(build)
    # the build is clean: no setuptools warning (a licence table, a data folder taken for a package, ...)
    assert "check.warn" not in build.stderr and "Deprecat" not in build.stderr, build.stderr
    (wheel,) = wheels.glob("pocl-*.whl")
    _ok(
        _run(
            [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], tmp_path, 300
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = json.loads(
        _ok(
            _run(
                [
                    str(python),
                    "-c",
                    "import json, pocl, pocl.node; print(json.dumps([list(pocl.__path__), pocl.node.__file__]))",
                ],
                elsewhere,
                60,
            )
        )
    )
    assert where[0] == [str(fresh_site / "pocl")] and where[1].startswith(str(fresh_site / "pocl" / "node"))
    assets = _ok(
        _run(
            [
                str(python),
                "-c",
                "from pocl.node.explorer.web import load_assets; print(sorted(load_assets()))",
            ],
            elsewhere,
            60,
        )
    )
    assert assets.strip() == "['app.js', 'favicon.svg', 'index.html', 'style.css']"  # the explorer ships
    for bare in ("ledger", "node", "ml", "p2p", "consensus", "genesis", "scripts", "tests"):
        proc = _run([str(python), "-c", f"import {bare}"], elsewhere, 60)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, f"import {bare} works: {proc}"

    out = tmp_path / "devnet"
    proc = _run(
        [
            str(venv / "bin" / "pocl-node"),
            "devnet",
            "--miners",
            "2",
            "--rounds",
            "1",
            "--epochs",
            "1",
            "--plain",
            "--out",
            str(out),
        ],
        elsewhere,
        400,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopped (rounds)" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    (learned,) = report["rounds"]
    assert not learned["void"] and learned["winners"] and learned["accuracy"] is not None
    assert learned["model_hash"] != "" and report["final_accuracy"] == learned["accuracy"]
