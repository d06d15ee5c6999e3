"""Fast unit tests: miner secrets store, model .npz layout, round events, CLI/devnet argument checks."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from pocl.consensus.pocl.events import Jailed, PhaseStarted, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.ledger.events import Unbonded
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import initial_weights, weights_hash
from pocl.node.commands.run import _mining_overrides, parse_shard
from pocl.node.config import Config
from pocl.node.errors import UserError
from pocl.node.events import BlockCommitted, pocl_events
from pocl.node.miner_store import KEEP_ROUNDS, MinerStore, MinerStoreError, RoundSecrets
from pocl.node.rpc.json_view import stream_messages
from pocl.node.rpc.model_npz import model_arrays, npz_bytes, weights_from_npz


def secrets(round_: int) -> RoundSecrets:
    rng = np.random.default_rng(round_)
    return RoundSecrets(
        round=round_,
        prev_model_hash=bytes(range(32)),
        weights=b"\x01\x02weights" * 10,
        labels=rng.integers(0, 10, 20),
        salt=bytes(32 - i for i in range(32)),
        test_x=rng.random((20, 8, 8, 1), dtype=np.float32),
        shard_indices=np.arange(20),
        n_train=287,
        train_s=1.25,
    )


def test_secrets_round_trip_atomic(tmp_path: Path) -> None:
    store = MinerStore(tmp_path / "miner")
    s = secrets(3)
    path = store.save(s)
    assert path.name == "round-3.npz"
    assert [p.name for p in path.parent.iterdir()] == ["round-3.npz"]  # no temp file left behind
    back = store.load(3)
    assert back is not None
    assert back.round == 3 and back.prev_model_hash == s.prev_model_hash and back.weights == s.weights
    assert back.salt == s.salt and back.n_train == 287 and back.train_s == 1.25
    np.testing.assert_array_equal(back.labels, s.labels)
    np.testing.assert_array_equal(back.test_x, s.test_x)
    assert store.load(4) is None


def test_secrets_prune_keeps_recent_rounds(tmp_path: Path) -> None:
    store = MinerStore(tmp_path)
    for r in range(1, 9):
        store.save(secrets(r))
    assert store.rounds() == list(range(9 - KEEP_ROUNDS, 9))


def test_corrupt_or_misplaced_secrets_are_reported(tmp_path: Path) -> None:
    store = MinerStore(tmp_path)
    store.path(2).write_bytes(b"not an npz file")
    with pytest.raises(MinerStoreError, match="corrupt"):
        store.load(2)
    store.save(secrets(5))
    store.path(5).rename(store.path(6))
    with pytest.raises(MinerStoreError, match="holds round 5"):
        store.load(6)


def test_secrets_file_never_unpickles(tmp_path: Path) -> None:
    store = MinerStore(tmp_path)
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(store.path(1), "w") as zf:
        zf.write(tmp_path / "x.npy", "round.npy")
    with pytest.raises(MinerStoreError):
        store.load(1)


def test_model_npz_round_trip() -> None:
    spec = get_model("cnn-digits")
    w = initial_weights(spec, 7)
    raw = npz_bytes(model_arrays(spec, w, 4, weights_hash(w)))
    back, meta = weights_from_npz(raw)
    assert meta == {"model": "cnn-digits", "round": 4, "model_hash": weights_hash(w).hex()}
    assert len(back) == len(w)
    for a, b in zip(back, w, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert weights_hash(back) == weights_hash(w)


A, B = bytes([0xAA]) * 20, bytes([0xBB]) * 20


def test_pocl_node_events_from_a_blocks_executor_events() -> None:
    events = (
        RoundOpened(2, 12, (A,)),
        PhaseStarted(2, "predict", 13),
        RewardPaid(1, A, "winner", 5),
        Slashed(1, B, "withhold", 3, 4),
        Jailed(1, B, 3, 4),
        RoundFinalized(2, False, (A,), bytes(32), 20),
        Unbonded(A, 7),
    )
    block = BlockCommitted(12, bytes(32), 0, 0, 0, 0.0, False, (), events)
    out = pocl_events(block)
    assert [(type(e).__name__, getattr(e, "phase", None)) for e in out] == [
        ("PoclRoundEvent", None),
        ("PoclPhaseEvent", "commit"),
        ("PoclPhaseEvent", "predict"),
        ("PoclRoundEvent", None),
        ("PoclRoundEvent", None),
        ("PoclRoundEvent", None),
        ("PoclRoundEvent", None),
        ("PoclPhaseEvent", "done"),
    ]
    assert all(e.height == 12 for e in out)
    assert out[5].step == Jailed(1, B, 3, 4)
    messages = [m for e in out for m in stream_messages(e)]
    assert [(m["type"], m.get("event", m.get("phase"))) for m in messages] == [
        ("round", "opened"),
        ("phase", "commit"),
        ("phase", "predict"),
        ("round", "reward"),
        ("round", "slash"),
        ("round", "jail"),
        ("round", "finalized"),
        ("phase", "done"),
    ]
    assert messages[0] == {"type": "round", "event": "opened", "height": 12, "round": 2, "eligible": ["0x" + "aa" * 20]}
    assert messages[2] == {"type": "phase", "height": 12, "round": 2, "phase": "predict", "start_height": 13}
    assert messages[4]["address"] == "0x" + "bb" * 20 and messages[4]["kind"] == "withhold"
    assert messages[5] == {"type": "round", "event": "jail", "height": 12, "round": 1, "address": "0x" + "bb" * 20, "missed_rounds": 3, "jailed_until_round": 4}
    assert messages[6]["model_hash"] == "00" * 32  # bytes render as on /blocks: plain hex
    assert "start_height" not in messages[1]


def test_block_committed_renders_like_the_websocket_always_did() -> None:
    block = BlockCommitted(5, bytes([1]) * 32, 1_000, 1, 0, 0.5, False, (bytes([2]) * 32,), (Unbonded(A, 7),))
    head, tx = stream_messages(block)
    assert head == {
        "type": "block", "height": 5, "hash": "01" * 32, "time_ms": 1_000, "txs": 1, "round": 0,
        "interval_s": 0.5, "synced": False, "tx_hashes": ["02" * 32],
        "events": [{"kind": "unbonded", "data": {"address": "0x" + "aa" * 20, "amount": 7}}],
    }  # fmt: skip
    assert tx == {"type": "tx", "hash": "02" * 32, "height": 5}


@pytest.mark.parametrize("text,expected", [("0/4", (0, 4)), ("3/4", (3, 4)), ("0/1", (0, 1))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "1", "a/4", "-1/4", "1/0", ""])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(UserError):
        parse_shard(text)


def test_mining_overrides() -> None:
    args = argparse.Namespace(
        mine=True,
        dataset="digits",
        data_dir=None,
        partition="dirichlet:0.5",
        behavior="knn",
        epochs=3,
        batch_size=None,
        shard="2/5",
    )
    m = _mining_overrides(Config(), args).mining
    assert (m.enabled, m.dataset, m.partition, m.behavior, m.epochs, m.shard, m.num_shards) == (
        True,
        "digits",
        "dirichlet:0.5",
        "knn",
        3,
        2,
        5,
    )
    assert _mining_overrides(Config(), argparse.Namespace()).mining == Config().mining


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--miners", "1"], "at least 2"),
        (["--adversary", "bogus:1"], "unknown adversary"),
        (["--adversary", "knn:5"], "5 adversaries but only 4 miners"),
        (["--partition", "weird"], "unknown partition"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_devnet_rejects_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pocl.node.devnet.runner import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_devnet_refuses_non_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pocl.node.devnet.runner import main

    (tmp_path / "keep.txt").write_text("x")
    assert main(["--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").exists()
