"""Every shell command that README.md and docs/*.md mark runnable works as written.

Convention (details in tests/support/doc_commands.py): a fenced ```bash block preceded by the line
`<!-- runnable -->` is run, block after block, with `bash -e` in a fresh working directory and a fresh
`HOME` (so `./net` and `~/.pocl` are temporary); `pocl-node` and `.venv/bin/pocl-node` run this
environment's console script; `pocl-node run` is started in the background until the block ends, and
`init` moves the new home to free ports. A document fails on the first block that exits non-zero or
prints a traceback. Mark only fast blocks: the README's first two commands (a devnet, the whole suite)
are what CI runs anyway and stay unmarked, as do synopses, placeholders (`0x…`) and long runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.doc_commands import (
    MARKER,
    ROOT,
    CodeBlock,
    code_blocks,
    command_of,
    home_of,
    prepare_workdir,
    run_block,
    run_document,
    runnable_blocks,
)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WITH_RUNNABLE = [d for d in DOCS if runnable_blocks(d)]


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.slow  # starts node processes (about 10 s in all)
@pytest.mark.parametrize("doc", WITH_RUNNABLE, ids=_id)
def test_runnable_commands_of_the_docs_run_as_written(doc: Path, tmp_path: Path) -> None:
    results = run_document(doc, tmp_path / "work")
    failed = [r for r in results if r.problems()]
    assert not failed, failed[0].report()
    assert len(results) == len(runnable_blocks(doc))


def test_the_readme_and_the_operator_guide_have_runnable_commands() -> None:
    assert {_id(d) for d in WITH_RUNNABLE} >= {"README.md", "docs/operators.md"}
    commands = " ".join(b.code for d in WITH_RUNNABLE for b in runnable_blocks(d))
    for needed in ("init ", "run ", "query status", "testnet ", "tx transfer", "unsafe-reset-all"):
        assert needed in commands, f"no runnable block runs `pocl-node {needed.strip()}`"


def test_every_marker_precedes_a_bash_block() -> None:
    for doc in DOCS:
        text = doc.read_text()
        blocks = code_blocks(text, _id(doc))  # raises on a marker with no block after it
        marked = [b for b in blocks if b.runnable]
        assert len(marked) == sum(line.strip() == MARKER for line in text.splitlines()), _id(doc)
        assert all(b.info == "bash" for b in marked), f"{_id(doc)}: runnable blocks must be ```bash"


# ------------------------------------------------------------------ the harness itself, on small inputs

SAMPLE = """# Title

<!-- runnable -->
```bash
echo one
```

```bash
not run
```
<!-- runnable -->

~~~bash
echo two
```still inside
~~~
"""


def test_code_blocks_finds_marked_and_unmarked_blocks() -> None:
    blocks = code_blocks(SAMPLE, "sample.md")
    assert [(b.line, b.info, b.runnable) for b in blocks] == [
        (4, "bash", True),
        (8, "bash", False),
        (13, "bash", True),
    ]
    assert blocks[0].code == "echo one\n"
    assert blocks[2].code == "echo two\n```still inside\n"


def test_a_marker_without_a_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="must be followed"):
        code_blocks("<!-- runnable -->\nsome text\n```bash\ntrue\n```\n")
    with pytest.raises(ValueError, match="no code block"):
        code_blocks("text\n<!-- runnable -->\n")


def test_command_and_home_of_a_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert command_of(["--home", "run", "init", "--x"]) == "init"
    assert command_of(["--log-level", "info", "run", "--home", "./n1"]) == "run"
    assert command_of(["--json"]) is None
    assert home_of(["run", "--home", "./n1"]) == Path("n1")
    assert home_of(["run", "--home=/a/b"]) == Path("/a/b")
    monkeypatch.setenv("POCL_HOME", "/env/home")
    assert home_of(["run"]) == Path("/env/home")


def _block(code: str) -> CodeBlock:
    return CodeBlock("sample.md", 1, "bash", code, True)


def test_a_failing_command_fails_the_block(tmp_path: Path) -> None:
    env = prepare_workdir(tmp_path / "work")
    result = run_block(_block("true\nfalse\necho not reached\n"), tmp_path / "work", env)
    assert result.returncode != 0 and "not reached" not in result.stdout
    assert result.problems() == [f"exit status {result.returncode}"]


def test_the_block_runs_in_a_temporary_home_with_the_shim(tmp_path: Path) -> None:
    env = prepare_workdir(tmp_path / "work")
    result = run_block(
        _block('test "$HOME" != ~root\necho "$HOME"\ncommand -v pocl-node\n.venv/bin/pocl-node version\n'),
        tmp_path / "work",
        env,
    )
    assert not result.problems(), result.report()
    home, shim = result.stdout.splitlines()[:2]
    assert home == str(tmp_path / "work-home")
    assert shim == str(tmp_path / "work" / ".venv" / "bin" / "pocl-node")


def test_a_traceback_fails_the_block_even_with_status_zero(tmp_path: Path) -> None:
    env = prepare_workdir(tmp_path / "work")
    result = run_block(_block("echo 'Traceback (most recent call last):' >&2\n"), tmp_path / "work", env)
    assert result.returncode == 0 and result.problems()


def test_a_node_that_cannot_start_fails_the_block_with_its_error(tmp_path: Path) -> None:
    env = prepare_workdir(tmp_path / "work")
    result = run_block(_block("pocl-node run --home ./missing\necho not reached\n"), tmp_path / "work", env)
    assert result.returncode != 0 and "not reached" not in result.stdout
    assert "the node exited with status" in result.stderr and "pocl-node init --home" in result.stderr
