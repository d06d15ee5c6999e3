"""PoCL payloads: canonical round trips, stateless checks, commitments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pocl.consensus.pocl.execution import PoclExecution, build_executor
from pocl.consensus.pocl.txs import (
    E_BAD_DTYPE,
    E_BAD_INPUT,
    E_BAD_LABEL,
    E_BAD_ROUND,
    E_BAD_SCORE,
    E_BAD_SHAPE,
    E_BAD_WEIGHTS,
    E_MALFORMED,
    E_TOO_LARGE,
    KIND_POCL_COMMIT,
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    KIND_POCL_VOTE,
    CommitPayload,
    NdArray,
    PayloadError,
    PredictPayload,
    ShardPayload,
    VotePayload,
    build_commit,
    build_shard,
    check_commit_payload,
    check_predict_payload,
    check_shard_payload,
    check_vote_payload,
    label_commitment,
    labels_array,
    model_commitment,
    shard_commitment,
    shard_digest,
    weights_digest,
)
from pocl.ledger import codec
from pocl.ledger import tx as ledger_tx
from pocl.ledger.codec import CodecError
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import encode_weights, initial_weights, weights_hash

from tests.support.pocl_scenario import make_params

P = make_params()
SPEC = get_model("cnn-digits")
H = b"\x01" * 32
SALT = b"\x02" * 32


def _x(n: int = 20, shape: tuple[int, ...] = (8, 8, 1), dtype: str = "<f4") -> NdArray:
    return NdArray.of(np.zeros((n, *shape), dtype=dtype))


def test_kind_names_match_the_ledger() -> None:
    pocl_kinds = (KIND_POCL_COMMIT, KIND_POCL_SHARD, KIND_POCL_PREDICT, KIND_POCL_VOTE)
    miner_kinds = (ledger_tx.KIND_MINER_REGISTER, ledger_tx.KIND_MINER_UNREGISTER)  # PoCL registers them too
    assert (*pocl_kinds, *miner_kinds) == ledger_tx.RESERVED_KINDS


def test_ndarray_is_the_ledger_plain_form() -> None:
    arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    from pocl.ledger.arrays import array_to_plain

    assert NdArray.of(arr).to_list() == array_to_plain(arr)
    assert np.array_equal(NdArray.of(arr).to_numpy(1024), arr)


def decode_payload(kind: str, plain: object) -> object:
    """Decode a payload exactly as the chain does: through the executor's kind registry."""
    tx_kind = build_executor(PoclExecution(P)).registry.get(kind)
    if tx_kind is None:
        raise CodecError(f"not a PoCL kind: {kind!r}")
    return tx_kind.payload_type.from_list(plain)


def test_payload_round_trips() -> None:
    w = encode_weights(initial_weights(SPEC, 1))
    payloads = {
        KIND_POCL_COMMIT: CommitPayload(3, H, H, H, 500),
        KIND_POCL_SHARD: ShardPayload(3, _x()),
        KIND_POCL_PREDICT: PredictPayload(3, w, [labels_array(np.zeros(20)), labels_array(np.ones(20))]),
        KIND_POCL_VOTE: VotePayload(3, labels_array(np.arange(20) % 10), SALT, [10_000, 0, 5_000]),
    }
    for kind, p in payloads.items():
        raw = p.encode()
        back = decode_payload(kind, codec.decode(raw))
        assert back == p and back.encode() == raw


@pytest.mark.parametrize(
    ("kind", "plain"),
    [
        (KIND_POCL_COMMIT, [1, H, H, H]),  # missing field
        (KIND_POCL_COMMIT, [1, H[:31], H, H, 0]),  # short hash
        (KIND_POCL_COMMIT, [1, H, H, H[:31], 0]),  # short shard commitment
        (KIND_POCL_COMMIT, [1, H, H, ["f4", [20, 8, 8, 1], b"\0" * 5120], 0]),  # inputs in the commit
        (KIND_POCL_SHARD, [1]),  # missing field
        (KIND_POCL_SHARD, [1, H]),  # not an array
        (KIND_POCL_VOTE, [1, ["i8", [1], b"\0" * 8], b"short", []]),  # short salt
        (KIND_POCL_VOTE, [1, ["i8", [1], b"\0" * 8], SALT, ["x"]]),  # non-int score
        (KIND_POCL_PREDICT, [1, "weights-as-text", []]),
        ("transfer", [1]),
    ],
)
def test_decode_rejects_malformed(kind: str, plain: list) -> None:
    with pytest.raises(CodecError):
        decode_payload(kind, plain)


def test_commit_carries_commitments_only() -> None:
    """The commit reveals nothing of the shard: four fields besides n_train, all 32-byte hashes or ints."""
    assert [f.name for f in dataclasses.fields(CommitPayload)] == [
        "round",
        "model_commit",
        "label_commit",
        "shard_commit",
        "n_train",
    ]
    x = np.arange(20 * 64, dtype="<f4").reshape(20, 8, 8, 1) / 1280
    p = build_commit("c", 1, b"\xaa" * 20, b"w", x, np.zeros(20, np.int64), SALT, 7)
    assert p.shard_commit == shard_commitment("c", 1, b"\xaa" * 20, shard_digest(x))
    assert x.tobytes() not in p.encode() and x[0].tobytes() not in p.encode()
    assert len(p.encode()) < 200


def test_commit_checks() -> None:
    check_commit_payload(CommitPayload(1, H, H, H, 0), P)
    for payload, code in [
        (CommitPayload(0, H, H, H, 0), E_BAD_ROUND),
        (CommitPayload(1, H, H, H, -1), E_MALFORMED),
        (CommitPayload(1, H, H, H, 2**40 + 1), E_MALFORMED),
    ]:
        with pytest.raises(PayloadError) as exc:
            check_commit_payload(payload, P)
        assert exc.value.code == code, payload


def test_shard_checks_shape_and_dtype() -> None:
    assert check_shard_payload(ShardPayload(1, _x()), P).shape == (20, 8, 8, 1)
    bad = [
        (ShardPayload(0, _x()), E_BAD_ROUND),
        (ShardPayload(1, _x(n=19)), E_BAD_SHAPE),
        (ShardPayload(1, _x(shape=(28, 28, 1))), E_BAD_SHAPE),
        (ShardPayload(1, _x(dtype="<f8")), E_BAD_DTYPE),
        (ShardPayload(1, NdArray("f4", [20, 8, 8, 1], b"\0" * 7)), E_BAD_SHAPE),  # lying header
        (ShardPayload(1, NdArray.of(np.full((20, 8, 8, 1), np.nan, "<f4"))), E_BAD_SHAPE),
        (ShardPayload(1, NdArray.of(np.full((20, 8, 8, 1), 1e30, "<f4"))), E_BAD_INPUT),
    ]
    for payload, code in bad:
        with pytest.raises(PayloadError) as exc:
            check_shard_payload(payload, P)
        assert exc.value.code == code, payload


def test_shard_digest_ignores_row_order_and_zero_sign_only() -> None:
    x = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    x[3] = 0.0
    base = shard_digest(x)
    assert shard_digest(x[::-1]) == base  # rows permuted: the same shard
    neg = x.copy()
    neg[3] = -0.0
    assert neg.tobytes() != x.tobytes() and shard_digest(neg) == base  # -0.0 folded into 0.0
    assert shard_digest(x.astype(">f4")) == base  # byte order of the input does not matter
    changed = x.copy()
    changed[5, 0, 0, 0] = np.nextafter(changed[5, 0, 0, 0], np.float32(2))
    assert shard_digest(changed) != base  # one ulp in one value: another shard
    swapped = x.copy()
    swapped[5, 0, 0, 0], swapped[5, 1, 0, 0] = x[5, 1, 0, 0], x[5, 0, 0, 0]
    assert shard_digest(swapped) != base  # order WITHIN a row matters
    assert shard_digest(x.reshape(20, 64, 1, 1)) != base  # the shape is bound
    assert build_shard(4, x[::-1]) == ShardPayload(4, NdArray.of(np.ascontiguousarray(x[::-1], "<f4")))


def test_shard_commitment_binds_chain_round_sender_and_digest() -> None:
    a, b = b"\xaa" * 20, b"\xbb" * 20
    base = shard_commitment("c", 1, a, H)
    others = {
        shard_commitment("d", 1, a, H),
        shard_commitment("c", 2, a, H),
        shard_commitment("c", 1, b, H),
        shard_commitment("c", 1, a, b"\x03" * 32),
    }
    assert base not in others and len(others) == 4
    with pytest.raises(ValueError):
        shard_commitment("c", 1, b"short", H)
    with pytest.raises(ValueError):
        shard_commitment("c", 1, a, H[:31])


def test_predict_checks_weights_and_labels() -> None:
    w = encode_weights(initial_weights(SPEC, 1))
    ok = PredictPayload(1, w, [labels_array(np.zeros(20))])
    assert len(check_predict_payload(ok, P)) == len(SPEC.params())
    other_model = encode_weights(initial_weights(get_model("cnn-mnist"), 1))
    bad = [
        (PredictPayload(1, b"\x90", []), E_BAD_WEIGHTS),
        (PredictPayload(1, other_model, []), E_TOO_LARGE),
        (PredictPayload(1, w, [labels_array(np.zeros(19))]), E_BAD_SHAPE),
        (PredictPayload(1, w, [labels_array(np.full(20, 10))]), E_BAD_LABEL),
        (PredictPayload(1, w, [labels_array(np.full(20, -1))]), E_BAD_LABEL),
        (PredictPayload(1, w, [NdArray.of(np.zeros(20, dtype="<i4"))]), E_BAD_DTYPE),
    ]
    for payload, code in bad:
        with pytest.raises(PayloadError) as exc:
            check_predict_payload(payload, P)
        assert exc.value.code == code


def test_vote_checks_scores_and_labels() -> None:
    labels = labels_array(np.arange(20) % 10)
    check_vote_payload(VotePayload(1, labels, SALT, [0, 10_000]), P)
    for payload, code in [
        (VotePayload(1, labels, SALT, [10_001]), E_BAD_SCORE),
        (VotePayload(1, labels, SALT, [-1]), E_BAD_SCORE),
        (VotePayload(1, labels_array(np.zeros((20, 1))), SALT, []), E_BAD_SHAPE),
    ]:
        with pytest.raises(PayloadError) as exc:
            check_vote_payload(payload, P)
        assert exc.value.code == code


def test_model_commitment_binds_chain_round_sender_and_weights() -> None:
    a, b = b"\xaa" * 20, b"\xbb" * 20
    base = model_commitment("c", 1, a, H)
    assert base != model_commitment("d", 1, a, H)
    assert base != model_commitment("c", 2, a, H)
    assert base != model_commitment("c", 1, b, H)
    assert base != model_commitment("c", 1, a, b"\x03" * 32)
    w = initial_weights(SPEC, 1)
    assert weights_digest(encode_weights(w)) == weights_hash(w)


def test_label_commitment_binds_chain_round_sender_labels_and_salt() -> None:
    labels = labels_array(np.arange(20) % 10)
    a, b = b"\x01" * 20, b"\x02" * 20
    base = label_commitment("c", 1, a, labels, SALT)
    others = {
        label_commitment("d", 1, a, labels, SALT),  # another chain
        label_commitment("c", 2, a, labels, SALT),  # another round (replay)
        label_commitment("c", 1, b, labels, SALT),  # another sender (copy)
        label_commitment("c", 1, a, labels, b"\x03" * 32),
        label_commitment("c", 1, a, labels_array((np.arange(20) + 1) % 10), SALT),
    }
    assert base not in others and len(others) == 5
    with pytest.raises(ValueError):
        label_commitment("c", 1, a, labels, b"short")
    with pytest.raises(ValueError):
        label_commitment("c", 1, b"short", labels, SALT)


def test_builders_match_what_the_chain_checks() -> None:
    from pocl.consensus.pocl.records import RoundRecord
    from pocl.consensus.pocl.schedule import advance
    from pocl.consensus.pocl.txs import (
        build_commit,
        build_predict,
        build_shard,
        build_vote,
        shards_to_predict,
        vote_scores,
    )
    from pocl.consensus.pocl.validate import accept_commit, accept_predict, accept_shard, accept_vote
    from pocl.ml.model.inference import predict

    from tests.support.pocl_scenario import CHAIN_ID, HONEST, make_scenario

    s = make_scenario([HONEST, HONEST, HONEST], trained=False)
    rec = RoundRecord.open(1, 10, [m.address for m in s.miners], weights_hash(s.global_weights))
    commits, shards, preds = {}, {}, {}
    for m in s.miners:
        w = encode_weights(m.weights)
        p = build_commit(CHAIN_ID, 1, m.address, w, m.shard_x, m.shard_y, m.salt, 7)
        rec, commits[m.address] = accept_commit(rec, m.address, p, s.params, 10, b"")
    rec = advance(rec, 10)
    seen: set[bytes] = set()
    for m in s.miners:
        sp = build_shard(1, m.shard_x)
        rec, shards[m.address] = accept_shard(
            rec, m.address, sp, commits[m.address], s.params, CHAIN_ID, 11, b"", seen.__contains__
        )
        seen.add(shards[m.address].digest)
        assert shards[m.address].digest == shard_digest(m.shard_x)
    assert rec.shard_owners == sorted(commits)
    rec = advance(rec, 11)
    opened = {a: e.test_x for a, e in shards.items()}
    by_address = s.by_address()
    for m in s.miners:
        xs = shards_to_predict(m.address, opened)
        others = [by_address[a] for a in sorted(opened) if a != m.address]
        assert [x.tobytes() for x in xs] == [o.shard_x.tobytes() for o in others]
        p = build_predict(1, encode_weights(m.weights), [predict(SPEC, m.weights, x)[0] for x in xs])
        rec, preds[m.address] = accept_predict(
            rec, m.address, p, commits[m.address], s.params, CHAIN_ID, 12, b""
        )
        assert preds[m.address].reveal_ok
    rec = advance(rec, 12)
    revealed = {a: e.predictions for a, e in preds.items()}
    for m in s.miners:
        scores = vote_scores(m.address, m.shard_y, rec.shard_owners, revealed)
        others = [a for a in rec.revealed if a != m.address]
        assert len(scores) == len(others) and all(0 <= v <= 10_000 for v in scores)
        v = build_vote(1, m.shard_y, m.salt, scores)
        rec, e = accept_vote(rec, m.address, v, commits[m.address], s.params, CHAIN_ID, 13, b"")
        assert e.labels_ok and e.scores == scores


def test_vote_scores_index_predictions_by_shard_owners() -> None:
    """A committer without a shard is not predicted on: predictions (and the scores recomputed from them)
    are indexed by the shard owners, not the committers."""
    from pocl.consensus.pocl.txs import vote_scores

    a, b, c = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20  # b committed but opened no shard
    mine = np.arange(20) % 10
    right, wrong = labels_array(mine), labels_array((mine + 1) % 10)
    # c predicted on the OTHER shard owners [a]; a predicted on [c]
    revealed = {a: [right], c: [right]}
    assert vote_scores(a, mine, [a, c], revealed) == [10_000]  # c's one prediction is for a's shard
    assert vote_scores(c, mine, [a, c], revealed) == [10_000]
    revealed = {a: [wrong], c: [right, wrong]}  # indexed as if b had a shard: [a, b]
    assert vote_scores(a, mine, [a, b, c], revealed) == [10_000]  # c's predictions[0] is for a
    with pytest.raises(ValueError):
        vote_scores(b, mine, [a, c], revealed)  # b owns no shard: nothing was predicted for it
