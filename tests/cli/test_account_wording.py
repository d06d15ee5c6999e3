"""`pocl-node query account` wording (issue 13, row 7): a zero jail bound is "not jailed that way",
never `jailed until height 0`."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from pocl.node.commands.query import _account, jail_text

ADDR = "0x" + "22" * 20


class FakeClient:
    def __init__(self, **jail: int) -> None:
        self.jail = jail

    def account(self, address: str) -> dict[str, Any]:
        return {
            "address": address,
            "exists": True,
            "balance": 10,
            "stake": 5,
            "nonce": 0,
            "pending_nonce": 0,
            "unbonding": [],
            "jailed_until_height": 0,
            "jailed_until_round": 0,
            "slashed_total": 0,
            **self.jail,
        }


def _human(**jail: int) -> str:
    _doc, human = _account(FakeClient(**jail), argparse.Namespace(address=ADDR))  # type: ignore[arg-type]
    return human


@pytest.mark.parametrize(
    ("jail", "expected"),
    [
        ({"jailed_until_round": 7}, "round 7"),
        ({"jailed_until_height": 120}, "height 120"),
        ({"jailed_until_height": 120, "jailed_until_round": 7}, "height 120, round 7"),
    ],
)
def test_jail_line_names_only_the_bounds_in_force(jail: dict[str, int], expected: str) -> None:
    (line,) = [ln for ln in _human(**jail).splitlines() if ln.startswith("jailed until")]
    assert line.split("  ", 1)[1].strip() == expected
    assert "height 0" not in line and "round 0" not in line
    assert jail_text(jail) == expected


def test_not_jailed_has_no_jail_line() -> None:
    assert "jailed" not in _human()
    assert jail_text({"jailed_until_height": 0, "jailed_until_round": 0}) == ""
