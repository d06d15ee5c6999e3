"""The devnet picks the model its dataset trains (or `--model`) and the chain limits that model needs; its
flags (`--home` refused, `--json`, `--report`, `--keep`); a node that fails is one line with its log path.
Fast: genesis building and argument parsing only, no node is started and no model is trained."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pocl.consensus.pocl.params import PoclParams
from pocl.genesis.models import MAX_FITTED_BLOCK_BYTES, ModelFitError, fit_model
from pocl.ledger.params import ChainParams
from pocl.ml.datasets import DEFAULT_MODELS, load_dataset
from pocl.ml.model.registry import get_model, model_names
from pocl.node.cluster import MAX_ERROR_LINE, NodeProcess, last_error_line
from pocl.node.config import load_config
from pocl.node.devnet.network import create_devnet, wait_until_up
from pocl.node.devnet.params import DevnetError, build_parser, parse_params
from pocl.node.devnet.runner import check_model, follow

from tests.support.cli_helpers import run_cli

SHIPPED = sorted(DEFAULT_MODELS)  # digits, mnist, fashion-mnist, cifar10 (npz:PATH picks by shape, tested below)


def parse(*argv: str) -> Any:
    return parse_params(build_parser().parse_args(list(argv)))


def build(tmp_path: Path, dataset: str, model: str | None = None) -> Any:
    return create_devnet(
        tmp_path / "net",
        2,
        dataset=dataset,
        data_dir=None,
        model=model,
        partition="iid",
        behaviours=["honest", "honest"],
        epochs=1,
        batch_size=32,
    )


@pytest.mark.parametrize("dataset", SHIPPED)
def test_devnet_genesis_carries_the_datasets_model_and_the_limits_it_needs(
    tmp_path: Path, dataset: str
) -> None:
    cluster = build(tmp_path, dataset)
    genesis = cluster.testnet.genesis
    spec = get_model(DEFAULT_MODELS[dataset])
    pocl = PoclParams.from_json(genesis.pocl)
    assert (pocl.model, pocl.input_shape, pocl.classes) == (spec.name, spec.input_shape, spec.num_classes)
    pocl.check_chain_params(genesis.params)  # what every node checks when it loads the genesis
    assert genesis.params.max_pocl_tx_bytes >= pocl.max_predict_tx_bytes()
    assert genesis.params.max_block_bytes >= pocl.max_predict_tx_bytes()
    for node in cluster.testnet.nodes:
        mining = load_config(node.home / "config.toml").mining
        assert mining.enabled and mining.dataset == dataset


def test_mnist_devnet_raises_the_tx_limit_beyond_the_default(tmp_path: Path) -> None:
    """cnn-mnist's ~4.8 MB predict txs do not fit the default 4 MiB `max_pocl_tx_bytes` (the old failure)."""
    genesis = build(tmp_path, "mnist").testnet.genesis
    need = PoclParams.from_json(genesis.pocl).max_predict_tx_bytes()
    assert need > ChainParams().max_pocl_tx_bytes
    assert genesis.params.max_pocl_tx_bytes == need


def test_model_option_overrides_the_datasets_model(tmp_path: Path) -> None:
    genesis = build(tmp_path, "npz:/nowhere.npz", model="cnn-mnist").testnet.genesis
    assert genesis.pocl["model"] == "cnn-mnist" and genesis.pocl["input_shape"] == [28, 28, 1]


def test_npz_dataset_picks_the_model_by_shape_and_a_wrong_model_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "d28.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8), y=np.arange(50) % 10)
    ds = load_dataset(f"npz:{path}")
    assert check_model(parse("--dataset", f"npz:{path}"), ds) == "cnn-mnist"
    with pytest.raises(
        DevnetError, match=r"model cnn-digits takes inputs \[8, 8, 1\] but dataset .* \[28, 28, 1\]"
    ):
        check_model(parse("--dataset", f"npz:{path}", "--model", "cnn-digits"), ds)


@pytest.mark.parametrize("model", model_names())
def test_fit_model_makes_every_registered_model_pass_the_chain_checks(model: str) -> None:
    for base in (
        ChainParams(),
        dataclasses.replace(ChainParams(), max_block_bytes=1 << 20, max_pocl_tx_bytes=1 << 20),
    ):
        pocl, params = fit_model(model, None, base)
        p = PoclParams.from_json(pocl)
        p.check_chain_params(params)
        assert p.model == model
        assert params.max_block_bytes <= max(MAX_FITTED_BLOCK_BYTES, base.max_block_bytes)
        # limits are only raised, never lowered
        for name in ("max_pocl_tx_bytes", "max_block_bytes", "unbonding_blocks"):
            assert getattr(params, name) >= getattr(base, name)


def test_fit_model_keeps_fixed_params_and_lengthens_windows_instead() -> None:
    base = dataclasses.replace(ChainParams(), max_block_bytes=8 * 1024 * 1024)
    pocl, params = fit_model("cnn-mnist", None, base, fixed={"max_block_bytes"})
    assert params.max_block_bytes == base.max_block_bytes
    p = PoclParams.from_json(pocl)
    assert p.predict_blocks > PoclParams().predict_blocks  # one 4.8 MB predict tx per block: 64 blocks
    p.check_chain_params(params)
    with pytest.raises(ModelFitError, match="unknown model 'nope'"):
        fit_model("nope")


# ----------------------------------------------------------------------------- flags


def test_devnet_refuses_home_and_unknown_models(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in (("devnet", "--home", tmp_path), ("--home", tmp_path, "devnet")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == ""
        assert err.strip().splitlines() == [
            "error: devnet does not use --home: it creates its own node homes under --out DIR (kept with --keep)"
        ]
    code, _, err = run_cli(capsys, "devnet", "--model", "nope")
    assert code == 2 and "unknown model" in err and "cnn-mnist" in err


def test_devnet_json_is_a_flag_and_report_takes_the_path(tmp_path: Path) -> None:
    from pocl.node.cli import build_parser as cli_parser

    parser, _ = cli_parser("devnet")
    args = parser.parse_args(["devnet", "--json", "--report", str(tmp_path / "r.json"), "--keep"])
    params = parse_params(args)
    assert params.json and params.keep and params.report_path == tmp_path / "r.json"
    args = parser.parse_args(["--json", "devnet"])  # the shared flag before the command works too
    assert parse_params(args).json
    defaults = parse_params(parser.parse_args(["devnet"]))
    assert not defaults.json and not defaults.keep and defaults.report_path is None and defaults.model is None
    # standalone `python -m pocl.node.devnet.runner` has the same flag
    assert parse("--json").json


# ----------------------------------------------------------------------------- a failed node: one line

ASYNCIO_LOG = (
    """\
===== start #1 =====
2026-01-01T00:00:00.000Z INFO node: old start, not this one
error: an older failure
===== start #2 =====
2026-01-01T00:00:01.000Z WARNING keystore: INSECURE: loading UNENCRYPTED private key /x/keys/node_key.json
2026-01-01T00:00:01.100Z INFO rpc: rpc listening on http://127.0.0.1:1
2026-01-01T00:00:02.000Z ERROR asyncio: Task exception was never retrieved
future: <Task finished name='miner' coro=<Miner._run() done> exception=ValueError('bad shard')>
Traceback (most recent call last):
  File "/x/node/miner.py", line 300, in _run
    await self._step()
  File "/x/node/miner.py", line 400, in _step
    raise ValueError("bad shard")
ValueError: bad shard
"""
    + '  File "/x/y.py", line 1, in f\n' * 200
)


def test_last_error_line_prefers_the_cli_error_then_the_error_record_with_its_exception() -> None:
    assert last_error_line(ASYNCIO_LOG) == (
        "2026-01-01T00:00:02.000Z ERROR asyncio: Task exception was never retrieved: ValueError: bad shard"
    )
    with_cli = (
        ASYNCIO_LOG + "error: dataset mnist has inputs [28, 28, 1] but the chain's model expects [8, 8, 1]\n"
    )
    assert last_error_line(with_cli).startswith("error: dataset mnist has inputs")
    assert (
        last_error_line("Traceback (most recent call last):\n  File 'x'\nKeyError: 'k'\n") == "KeyError: 'k'"
    )
    assert last_error_line("") == "<empty log>"
    long = last_error_line("error: " + "x" * 5000)
    assert len(long) == MAX_ERROR_LINE and long.endswith("…")


@dataclasses.dataclass
class DeadNode:
    """A node process that has exited, as `NodeProcess` shows it (only what the devnet reads)."""

    index: int
    log_path: Path
    running: bool = False
    proc: Any = None

    def status(self) -> None:
        return None

    failure = NodeProcess.failure


def test_a_node_that_dies_at_start_is_one_line_with_its_log_path(tmp_path: Path) -> None:
    log = tmp_path / "node2.log"
    log.write_text(ASYNCIO_LOG)
    cluster = argparse.Namespace(nodes=[DeadNode(2, log)])
    with pytest.raises(DevnetError) as info:
        wait_until_up(cluster)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 500
    assert message == (
        "node2 exited at start: 2026-01-01T00:00:02.000Z ERROR asyncio: Task exception was never retrieved: "
        f"ValueError: bad shard (log: {log})"
    )


def test_a_node_that_dies_while_followed_is_one_line_with_its_log_path(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text(ASYNCIO_LOG)
    cluster = argparse.Namespace(nodes=[DeadNode(1, log)])
    told: list[str] = []
    reason = follow(parse(), cluster, None, False, lambda *a, **k: None, lambda *a, **k: told.append(a[0]))  # type: ignore[arg-type]
    assert reason == "node_died"
    assert told == [f"devnet: node1 exited: {last_error_line(ASYNCIO_LOG)} (log: {log})"]


def test_devnet_without_the_miner_extra_is_one_line_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every devnet node mines: without the miner extra the devnet says so once, before creating homes or
    starting a node (it used to die on sklearn, or at the very end on matplotlib)."""
    import pocl.node.miner as miner
    from pocl.node.devnet.runner import run_devnet

    monkeypatch.setattr(miner, "_module_missing", lambda name: name in ("sklearn", "tensorflow"))
    out = tmp_path / "out"
    params = parse_params(build_parser().parse_args(["--out", str(out), "--rounds", "1"]))
    with pytest.raises(DevnetError, match=r"pip install 'pocl\[miner\]' \(missing module: .*sklearn"):
        run_devnet(params)
    assert not out.exists() or not any(out.iterdir())


def test_the_plot_is_skipped_with_a_note_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from pocl.node.devnet.follower import Progress
    from pocl.node.devnet.report import write_plot

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert write_plot(tmp_path / "accuracy.png", Progress()) is False
    assert not (tmp_path / "accuracy.png").exists()
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert write_plot(tmp_path / "accuracy.png", Progress()) is True and (tmp_path / "accuracy.png").stat().st_size
