"""`testnet --model` and `genesis new --model`: a chain for 28×28 (or 32×32×3) data with no hand edits; the
genesis carries the model and the tx/block limits it needs, and passes `genesis validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pocl.consensus.pocl.params import PoclParams
from pocl.genesis.schema import load_genesis
from pocl.ledger.params import ChainParams
from pocl.node.config import load_config

from tests.support.cli_helpers import run_cli, run_json

PUBKEY = "ab" * 32
CONSENSUS_PUBKEY = "cd" * 32  # a validator signs votes with a key of its own


@pytest.mark.parametrize("model,dataset", [("cnn-mnist", "mnist"), ("pocl-cifar10", "cifar10")])
def test_testnet_model_writes_a_genesis_every_node_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, dataset: str
) -> None:
    out = tmp_path / "net"
    data = run_json(
        capsys,
        "testnet",
        "-n",
        "2",
        "--out",
        out,
        "--base-port",
        "0",
        "--model",
        model,
        "--insecure-unencrypted",
    )
    assert data["model"] == model
    genesis = load_genesis(out / "node0" / "genesis.json")
    p = PoclParams.from_json(genesis.pocl)
    assert p.model == model
    p.check_chain_params(genesis.params)
    assert load_config(out / "node1" / "config.toml").mining.dataset == dataset
    validated = run_json(capsys, "genesis", "validate", out / "node0" / "genesis.json")
    assert validated["pocl"]["model"] == model


def test_testnet_without_model_keeps_the_default_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    data = run_json(capsys, "testnet", "-n", "1", "--out", out, "--base-port", "0", "--insecure-unencrypted")
    assert data["model"] == "cnn-digits"
    genesis = load_genesis(out / "node0" / "genesis.json")
    assert genesis.pocl == {} and genesis.params == ChainParams()


def test_testnet_unknown_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "testnet", "--out", tmp_path / "n", "--model", "nope", "--insecure-unencrypted"
    )
    assert code == 2 and "unknown model 'nope'" in err and not (tmp_path / "n").exists()


def test_genesis_new_model_raises_the_limits_and_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "genesis.json"
    data = run_json(
        capsys,
        "genesis",
        "new",
        "--chain-id",
        "m",
        "--validator",
        f"{PUBKEY}:{CONSENSUS_PUBKEY}:5000",
        "--model",
        "cnn-mnist",
        "--out",
        path,
    )
    assert data["model"] == "cnn-mnist"
    genesis = load_genesis(path)
    p = PoclParams.from_json(genesis.pocl)
    assert genesis.params.max_pocl_tx_bytes >= p.max_predict_tx_bytes() > ChainParams().max_pocl_tx_bytes
    p.check_chain_params(genesis.params)
    run_json(capsys, "genesis", "validate", path)


def test_genesis_new_keeps_an_explicit_param_and_refuses_what_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = (
        "genesis",
        "new",
        "--chain-id",
        "m",
        "--validator",
        f"{PUBKEY}:{CONSENSUS_PUBKEY}:5000",
        "--model",
        "cnn-mnist",
    )
    code, out, _ = run_cli(capsys, *base, "--param", "unbonding_blocks=500")
    assert code == 0
    assert json.loads(out)["params"]["unbonding_blocks"] == 500
    code, out, err = run_cli(capsys, *base, "--param", "max_pocl_tx_bytes=1000")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "error: invalid genesis (stdout): pocl.model: a cnn-mnist predict tx needs up to "
        f"{PoclParams.from_json({'model': 'cnn-mnist', 'input_shape': [28, 28, 1]}).max_predict_tx_bytes()} "
        "bytes; raise params.max_pocl_tx_bytes (now 1000)"
    ]
