"""`pocl-node devnet` says where node0's web explorer is, right after where it writes (start output)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pocl.node.cluster import LocalCluster
from pocl.node.devnet.params import build_parser, parse_params
from pocl.node.devnet.runner import run_devnet


def test_devnet_prints_the_explorer_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(_self: LocalCluster, *_a: object, **_k: object) -> None:
        raise KeyboardInterrupt  # stop at "starting nodes": only the start output is under test

    monkeypatch.setattr(LocalCluster, "start", interrupted)
    out = tmp_path / "dn"
    rc = run_devnet(parse_params(build_parser().parse_args(["--out", str(out), "--plain"])))
    lines = capsys.readouterr().out.splitlines()
    assert rc == 130
    assert lines[0].startswith(f"devnet: output in {out} ")
    (line,) = [x for x in lines if x.startswith("devnet: explorer ")]
    url = line.split()[2]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/explorer")
    assert lines.index(line) < lines.index("devnet: starting nodes")
