"""`pocl-node testnet` port plans: `--starting-ip` (a host per node, the same ports on each) and the
single-host plan (distinct ports, never `init`'s defaults)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from pocl.node.config import Config, parse_host_port
from pocl.node.testnet import PortPlanError, init_ports, port_plan

from tests.support.cli_helpers import run_cli


def config_of(home: Path) -> dict:
    return tomllib.loads((home / "config.toml").read_text())


def make_testnet(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> dict:
    code, _, err = run_cli(capsys, "testnet", "--out", out, "--insecure-unencrypted", *extra)
    assert code == 0, err
    return json.loads((out / "testnet.json").read_text())


def test_starting_ip_puts_node_i_on_its_own_ip_with_the_same_ports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = make_testnet(capsys, tmp_path / "net", "--validators", "4", "--starting-ip", "10.20.0.1")
    ips = ["10.20.0.1", "10.20.0.2", "10.20.0.3", "10.20.0.4"]
    ids = [n["node_id"] for n in manifest["nodes"]]
    assert [n["host"] for n in manifest["nodes"]] == ips
    for i, ip in enumerate(ips):
        cfg = config_of(tmp_path / "net" / f"node{i}")
        assert cfg["p2p"]["listen_addr"] == f"{ip}:26656"  # init's ports, on every host
        assert cfg["p2p"]["external_addr"] == f"{ip}:26656"
        assert cfg["p2p"]["persistent_peers"] == [f"{ids[j]}@{ips[j]}:26656" for j in range(4) if j != i]
        # RPC and metrics stay on loopback, as init writes them: never exposed without asking
        assert cfg["rpc"]["listen_addr"] == "127.0.0.1:26657"
        assert cfg["metrics"]["listen_addr"] == "127.0.0.1:26660"


def test_starting_ip_with_a_base_port_uses_it_on_every_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = make_testnet(
        capsys, tmp_path / "net", "-n", "2", "--starting-ip", "192.168.5.10", "--base-port", "30000"
    )
    assert {(n["p2p"], n["rpc"], n["metrics"]) for n in manifest["nodes"]} == {(30000, 30001, 30004)}
    assert config_of(tmp_path / "net" / "node1")["p2p"]["listen_addr"] == "192.168.5.11:30000"


def test_the_single_host_plan_never_collides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_testnet(capsys, tmp_path / "net", "--validators", "4", "--non-validators", "2")
    ports = [p for n in manifest["nodes"] for p in (n["p2p"], n["rpc"], n["metrics"])]
    assert len(set(ports)) == len(ports)  # nor between nodes
    defaults = Config()
    init = {
        parse_host_port(a)[1]
        for a in (defaults.p2p.listen_addr, defaults.rpc.listen_addr, defaults.metrics.listen_addr)
    }
    assert init == {26656, 26657, 26660} == set(init_ports().all())
    assert not init & set(ports)  # a testnet and an `init`ed node run side by side on one machine
    for i, node in enumerate(manifest["nodes"]):
        cfg = config_of(tmp_path / "net" / f"node{i}")
        assert node["host"] == "127.0.0.1" and cfg["p2p"]["external_addr"] == ""
        assert cfg["rpc"]["listen_addr"] == f"127.0.0.1:{node['rpc']}"


@pytest.mark.parametrize("total", [1, 4, 64])
@pytest.mark.parametrize("base", [26670, 1024, 40000])
def test_single_host_plans_are_distinct_and_avoid_init(total: int, base: int) -> None:
    ports = [p for n in port_plan(total, base, one_host=True) for p in n.all()]
    assert len(set(ports)) == len(ports) and not set(ports) & set(init_ports().all())


def test_a_base_port_that_hits_init_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(PortPlanError, match="init's default"):
        port_plan(4, 26650, one_host=True)
    out = tmp_path / "net"
    code, _, err = run_cli(capsys, "testnet", "--out", out, "--base-port", "26650", "--insecure-unencrypted")
    assert code == 2 and "26660" in err and "metrics" in err
    assert not out.exists()


@pytest.mark.parametrize("ip", ["10.0.0.300", "::1", "0.0.0.0", "255.255.255.254"])
def test_a_bad_starting_ip_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ip: str
) -> None:
    out = tmp_path / "net"
    code, _, err = run_cli(capsys, "testnet", "--out", out, "--starting-ip", ip, "--insecure-unencrypted")
    assert code == 2 and "starting IP" in err
    assert not out.exists()
