"""docs/join.md marks the newcomer's whole path for the WAN join test (tests/multihost/test_join_wan.py),
and only with its own marker: tests/docs runs `<!-- runnable -->` blocks without a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.multihost.join_page import JOIN_PAGE, is_node_start, join_script
from tests.support.doc_commands import runnable_blocks

STEPS = ("init --join", "faucet", "tx stake", "tx register-miner", "query miner")


def test_the_join_page_marks_every_step_of_a_new_miner() -> None:
    script = join_script()
    assert set(script.placeholders) == {"NODE", "GENESIS_HASH", "MY_IP"}
    text = " ".join(script.commands)
    for step in STEPS:
        assert f"pocl-node {step}" in text, f"docs/join.md runs no `pocl-node {step}` for the join test"
    starts = [c for c in script.commands if is_node_start(c)]
    assert len(starts) == 1 and "--mine" in starts[0]
    assert script.commands.index(starts[0]) < next(
        i for i, c in enumerate(script.commands) if "register-miner" in c
    ), "the node must run before the account is registered (missed rounds count towards a jail)"
    assert not runnable_blocks(JOIN_PAGE), "join.md's commands need a network: not for tests/docs"


def test_join_script_reads_exports_continuations_and_comments(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- join-test -->\n```bash\nexport A=1   # the a\n# a comment\npocl-node init \\\n"
        '  --join "$A"\n```\n\n```bash\nnot marked\n```\n<!-- join-test -->\n\n```bash\n'
        "pocl-node run --mine  # leave it running\n```\n"
    )
    script = join_script(page)
    assert script.placeholders == {"A": "1"}
    assert script.commands == ['pocl-node init --join "$A"', "pocl-node run --mine  # leave it running"]
    assert is_node_start(script.commands[1]) and not is_node_start(script.commands[0])
    assert script.env({"A": "x", "B": "y"}) == {"A": "x"}
    with pytest.raises(AssertionError, match="no value"):
        script.env({})
