"""`/models/global/predict`: canonical labels of inputs over RPC (numpy only, exact fixed point), and
clear 4xx answers for bad inputs."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from pocl.ml.export import prepare_inputs
from pocl.ml.model.inference import predict
from pocl.node.node import Node
from pocl.node.rpc.pocl import MAX_PREDICT_BODY_BYTES, MAX_PREDICT_SAMPLES

from tests.support.rpc_node import Api


def npy_b64(x: np.ndarray, urlsafe: bool = False) -> str:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    raw = buf.getvalue()
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()


def canonical_labels(node: Node, x: np.ndarray) -> list[int]:
    assert node.chain is not None
    pocl = node.pocl
    spec = pocl.params.model_spec()
    weights = pocl.global_weights(node.chain.state, pocl.genesis_model()[0])
    return [int(v) for v in predict(spec, weights, prepare_inputs(spec, x))[0]]


def samples(n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(n, 8, 8), dtype=np.uint8)


async def test_predict_json_npy_get_and_post_give_the_canonical_labels(
    node: Node, api: Api, height_at_least
) -> None:
    await height_at_least(1)
    x = samples(12)
    want = canonical_labels(node, x)
    status, meta = await api.get("/models/global")
    assert status == 200 and meta["preprocessing"]["input_shape"] == [8, 8, 1]
    assert meta["preprocessing"]["class_names"] == [str(i) for i in range(10)]

    status, body = await api.post("/models/global/predict", json={"inputs": x.tolist()})
    assert status == 200, body
    assert body["labels"] == want and body["count"] == 12 and body["round"] == 0
    assert body["classes"] == [str(v) for v in want] and len(body["logits"]) == 12
    assert body["model"] == "cnn-digits" and body["model_hash"] == meta["model_hash"]
    # logits are exact multiples of 2**-12 and their argmax is the label
    z = np.array(body["logits"])
    assert np.array_equal(z * 4096, np.rint(z * 4096)) and np.argmax(z, axis=1).tolist() == want

    status, body = await api.post("/models/global/predict", json={"npy": npy_b64(x), "round": 0})
    assert status == 200 and body["labels"] == want
    # floats in [0, 1] are the same inputs as pixels / 255
    floats = (x.astype(np.float32) / np.float32(255)).astype(np.float32)
    status, body = await api.post("/models/global/predict", json={"npy": npy_b64(floats[..., None])})
    assert status == 200 and body["labels"] == want
    status, body = await api.get("/models/global/predict?npy=" + npy_b64(x[:2], urlsafe=True))
    assert status == 200 and body["labels"] == want[:2]
    status, body = await api.get("/models/global/predict?round=latest&inputs=" + json.dumps(x[0].tolist()))
    assert status == 200 and body["labels"] == want[:1] and body["count"] == 1


async def test_predict_bad_inputs_are_clear_4xx(node: Node, api: Api, height_at_least) -> None:
    await height_at_least(1)
    one = samples(1)[0].tolist()
    cases = [
        ({"inputs": [[1, 2], [3, 4]]}, 400, "bad_inputs", "takes inputs shaped"),
        ({"inputs": [[1, 2], [3]]}, 400, "bad_inputs", "rectangular"),
        ({"inputs": [["a"] * 8] * 8}, 400, "bad_inputs", "numbers"),
        ({"inputs": [[True] * 8] * 8}, 400, "bad_inputs", "numbers"),
        ({"inputs": [[300] * 8] * 8}, 400, "bad_inputs", "0..255"),
        ({"inputs": [[-1] * 8] * 8}, 400, "bad_inputs", "0..255"),
        ({"inputs": [[2.5] * 8] * 8}, 400, "bad_inputs", "[0, 1]"),
        ({"inputs": 3}, 400, "bad_inputs", "nested list"),
        ({"inputs": one, "npy": "AAAA"}, 400, "bad_inputs", "exactly one"),
        ({}, 400, "bad_inputs", "exactly one"),
        ({"npy": "not base64!"}, 400, "bad_inputs", "base64"),
        ({"npy": base64.b64encode(b"garbage").decode()}, 400, "bad_inputs", ".npy"),
        ({"npy": npy_b64(np.zeros((MAX_PREDICT_SAMPLES + 1, 8, 8), np.uint8))}, 400, "bad_inputs", "at most"),
        ({"inputs": one, "round": 999}, 404, "model_not_found", "not final"),
        ({"inputs": one, "round": "x"}, 400, "bad_round", "round"),
    ]
    for body, want_status, code, words in cases:
        status, got = await api.post("/models/global/predict", json=body)
        assert status == want_status, (body if len(str(body)) < 200 else code, got)
        assert got["error"]["code"] == code and words in got["error"]["message"], got
    status, got = await api.post(
        "/models/global/predict", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and got["error"]["code"] == "bad_json"
    status, got = await api.post("/models/global/predict", json=[1, 2])
    assert status == 400 and got["error"]["code"] == "bad_request"
    status, got = await api.get("/models/global/predict?inputs=[[1,2")
    assert status == 400 and got["error"]["code"] == "bad_inputs"
    status, got = await api.get("/models/global/predict")
    assert status == 400 and got["error"]["code"] == "bad_inputs"
    big = b'{"inputs": [' + b"0," * (MAX_PREDICT_BODY_BYTES // 2) + b"0]}"
    status, got = await api.post(
        "/models/global/predict", data=big, headers={"Content-Type": "application/json"}
    )
    assert status == 413 and got["error"]["code"] == "body_too_large"
