"""`pocl-node faucet` end to end against a running faucet node, and its one-line errors; `pocl-node run`
refuses an enabled faucet whose key file is missing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.storage.keystore import save_key
from pocl.node.config import load_config, write_config
from pocl.node.home import NodeHome

from tests.support.cli_helpers import POCL_NODE, Runner, assert_ok, assert_user_error
from tests.support.faucet_node import AMOUNT, faucet_node, serving

JOINER = PrivateKey.from_seed_text("faucet-cmd-joiner")
CLI_TIMEOUT_S = 60


async def pocl_node(*args: object, home_dir: Path) -> subprocess.CompletedProcess:
    """The console script as a subprocess, while this event loop keeps serving the node."""
    env = {k: v for k, v in os.environ.items() if k not in ("POCL_PASSPHRASE", "POCL_HOME")}
    env["HOME"] = str(home_dir)
    proc = await asyncio.create_subprocess_exec(
        str(POCL_NODE),
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


async def test_faucet_command_funds_the_homes_account_and_waits_for_the_balance(tmp_path: Path) -> None:
    joiner_home = NodeHome.at(tmp_path / "joiner")
    save_key(joiner_home.account_key_path, JOINER, None, insecure_unencrypted=True)
    other = format_address(PrivateKey.from_seed_text("faucet-cmd-other").address)
    async with serving(faucet_node(tmp_path / "n", per_source_interval_s=0.0)) as api:
        res = assert_ok(
            await pocl_node(
                "faucet",
                "--node",
                api.base,
                "--home",
                joiner_home.root,
                "--wait",
                "--json",
                home_dir=tmp_path,
            )
        )
        out = json.loads(res.stdout)
        assert out["address"] == format_address(JOINER.address) and out["amount"] == AMOUNT
        assert out["status"] == "committed" and out["height"] >= 1 and out["balance"] == AMOUNT
        _, account = await api.get(f"/accounts/{out['address']}")
        assert account["balance"] == AMOUNT

        # an explicit address, human output: the tx hash is printed
        res = assert_ok(await pocl_node("faucet", other, "--node", api.base, home_dir=tmp_path))
        assert f"the faucet sent {AMOUNT} to {other}" in res.stdout
        tx_hash = res.stdout.split("tx hash: ")[1].split()[0]
        assert len(tx_hash) == 64
        status, _ = await api.get(f"/txs/{tx_hash}")
        assert status == 200

        # the same account again within the interval: one line saying when to come back
        res = await pocl_node("faucet", "--node", api.base, "--home", joiner_home.root, home_dir=tmp_path)
        line = assert_user_error(res, "faucet_rate_limited")
        assert "try again in" in line


def test_without_an_address_or_an_account_key_the_command_says_what_to_give(
    cli: Runner, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-home"
    res = cli("faucet", "--home", empty, "--node", "http://127.0.0.1:9")
    assert_user_error(res, "no account key at")
    res = cli("faucet", "0x12", "--node", "http://127.0.0.1:9")
    assert_user_error(res, "bad address")


def test_run_refuses_an_enabled_faucet_without_its_key_file(cli: Runner, tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert_ok(cli("init", "--home", home, "--insecure-unencrypted"))
    config = load_config(home / "config.toml")
    write_config(home / "config.toml", config.replace("faucet", enabled=True, key="tap"))
    res = cli("run", "--home", home)
    assert_user_error(res, "[faucet] enabled = true but its key")
    assert "tap.json does not exist" in res.stderr
