"""PoCL views for the RPC and the event stream: rounds, global models, the local miner (DESIGN §7).

Routes (passed to `RpcServer(extra_routes=pocl_routes(node))`, so they appear in `/openapi.json`):

    GET /rounds/latest          the open round, else the last one
    GET /rounds/{n}             participants, phase and heights, score matrix, winners, rewards,
                                slashes with evidence, global_model_hash
    GET /models/global          metadata of the current global model (or `?round=N`: G_N);
                                `?format=npz` downloads its weights as a numpy .npz (no pickle)
    GET /miner                  this node's miner (behaviour, per-round training time, submissions)

`attach_round_events(node)` turns the PoCL executor events of each committed block into NodeEvents
"round" (opened, finalized, reward, slash) and "phase" on the WebSocket stream.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web
from pocl.consensus.pocl.execution import (
    EVENT_FINALIZED,
    EVENT_PHASE,
    EVENT_REWARD,
    EVENT_ROUND_OPENED,
    EVENT_SLASH,
)
from pocl.consensus.pocl.records import NO_SCORE, PHASE_NAMES, RoundRecord
from pocl.ledger import codec
from pocl.ledger.keys import format_address
from pocl.node.rpc import ApiError, Route

if TYPE_CHECKING:
    from pocl.node.node import Node, NodeEvent

NPZ_CONTENT_TYPE = "application/x-npz"
MAX_ROUND_TEXT = 19



# --------------------------------------------------------------------------- JSON views


def _addr(b: bytes) -> str:
    return format_address(b)


def _evidence_json(raw: bytes) -> Any:
    """Evidence is the canonical encoding of `[kind, round, ...]`: shown decoded (bytes as hex)."""
    try:
        value = codec.decode(raw)
    except codec.CodecError:
        return None

    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return "0x" + v.hex()
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return plain(value)


def round_json(rec: RoundRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "round": rec.round,
        "phase": rec.phase_name,
        "start_height": rec.start_height,
        "predict_start": rec.predict_start,
        "vote_start": rec.vote_start,
        "end_height": rec.end_height,
        "final": rec.outcome is not None,
        "prev_model_hash": rec.prev_model_hash.hex(),
        "global_model_hash": rec.prev_model_hash.hex(),
        "participants": {
            "eligible": [_addr(a) for a in rec.eligible],
            "committers": [_addr(a) for a in rec.committers],
            "predictors": [_addr(a) for a in rec.predictors],
            "revealed": [_addr(a) for a in rec.revealed],
            "voters": [_addr(a) for a in rec.voters],
        },
        "void": None,
        "reason": "",
        "scores": {},
        "score_matrix": None,
        "ranking": [],
        "winners": [],
        "rewards": [],
        "slashes": [],
    }
    o = rec.outcome
    if o is None:
        return out
    out.update(
        void=o.void,
        reason=o.reason,
        seed=o.seed.hex(),
        global_model_hash=o.model_hash.hex(),
        model_changed=o.model_hash != o.prev_model_hash,
        scores={
            _addr(p): (s if s != NO_SCORE else None) for p, s in zip(o.predictors, o.scores, strict=False)
        },
        score_matrix={
            "rows": [_addr(p) for p in o.predictors],
            "columns": [_addr(v) for v in o.voters],
            "accuracy_bps": [[(c if c != NO_SCORE else None) for c in row] for row in o.accuracy],
            "valid_voters": [_addr(v) for v in o.valid_voters],
        },
        ranking=[_addr(a) for a in o.ranking],
        winners=[_addr(a) for a in o.winners],
        rewards=[{"address": _addr(p.miner), "role": p.role, "amount": p.amount} for p in o.payouts],
        total_reward=o.total_paid(),
        slashes=[
            {
                "address": _addr(p.miner),
                "kind": p.kind,
                "slash_bps": p.slash_bps,
                "jail_rounds": p.jail_rounds,
                "evidence": _evidence_json(p.evidence),
                "evidence_hex": p.evidence.hex(),
            }
            for p in o.penalties
        ],
    )
    return out


def model_arrays(
    spec: Any, weights: list[np.ndarray], round_: int, model_hash: bytes
) -> dict[str, np.ndarray]:
    """The `.npz` layout: one array per parameter in Keras order, plus metadata as plain arrays."""
    out: dict[str, np.ndarray] = {}
    for i, (p, w) in enumerate(zip(spec.params(), weights, strict=True)):
        out[f"w{i:02d}_layer{p.layer_index}_{p.role}"] = np.asarray(w)
    out["meta_model"] = np.array(spec.name)
    out["meta_round"] = np.array(round_, dtype=np.int64)
    out["meta_model_hash"] = np.array(model_hash.hex())
    return out


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def weights_from_npz(raw: bytes | str | Any) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read our `.npz` layout back (never unpickles): (weights in order, metadata)."""
    src = io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw
    with np.load(src, allow_pickle=False) as data:
        names = sorted(k for k in data.files if k.startswith("w"))
        weights = [data[k] for k in names]
        meta = {
            "model": str(data["meta_model"]) if "meta_model" in data.files else None,
            "round": int(data["meta_round"]) if "meta_round" in data.files else None,
            "model_hash": str(data["meta_model_hash"]) if "meta_model_hash" in data.files else None,
        }
    return weights, meta


# --------------------------------------------------------------------------- handlers


class PoclApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    def _state(self) -> Any:
        if self.node.chain is None:
            raise ApiError(503, "not_ready", "node is starting")
        return self.node.chain.state

    @staticmethod
    def _int(text: str, what: str) -> int:
        if not text.isdigit() or len(text) > MAX_ROUND_TEXT:
            raise ApiError(400, f"bad_{what}", f"{what} must be a non-negative integer, got {text!r}")
        return int(text)

    def latest_round_number(self, state: Any) -> int:
        head = self.node.pocl.head(state)
        if head is None:
            raise ApiError(404, "round_not_found", "no PoCL round yet")
        if self.node.pocl.record(state, head.round) is not None:
            return head.round
        if head.round > 1:
            return head.round - 1
        raise ApiError(404, "round_not_found", f"round 1 opens at height {head.next_start}")

    def _round(self, state: Any, n: int) -> dict[str, Any]:
        rec = self.node.pocl.record(state, n)
        if rec is None:
            raise ApiError(404, "round_not_found", f"no round {n}")
        out = round_json(rec)
        head = self.node.pocl.head(state)
        out["height"] = self.node.chain.height if self.node.chain else 0
        if head is not None:
            out["next_round_start"] = head.next_start if head.round == n + 1 else 0
        return out

    async def rounds_latest(self, _request: web.Request) -> web.Response:
        state = self._state()
        return web.json_response(self._round(state, self.latest_round_number(state)))

    async def round(self, request: web.Request) -> web.Response:
        n = self._int(request.match_info["n"], "round")
        return web.json_response(self._round(self._state(), n))

    def model_at(self, state: Any, round_text: str | None) -> tuple[int, bytes]:
        """(round, hash) of the current global model, or of G_N for `?round=N`."""
        pocl = self.node.pocl
        head = pocl.head(state)
        if round_text is None or round_text == "latest":
            if head is None:
                return 0, pocl.genesis_model()[0]
            return head.model_round, head.model_hash
        n = self._int(round_text, "round")
        if n == 0:
            return 0, pocl.genesis_model()[0]
        rec = pocl.record(state, n)
        if rec is None or rec.outcome is None:
            raise ApiError(404, "model_not_found", f"round {n} is not final (no G_{n} yet)")
        return n, rec.outcome.model_hash

    async def model_global(self, request: web.Request) -> web.StreamResponse:
        from pocl.ml.model.weights import weight_shapes

        state = self._state()
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "npz"):
            raise ApiError(400, "bad_format", "format must be json or npz")
        round_, model_hash = self.model_at(state, request.query.get("round"))
        pocl = self.node.pocl
        spec = pocl.params.model_spec()
        try:
            weights = pocl.global_weights(state, model_hash)
        except RuntimeError as exc:
            raise ApiError(404, "model_not_found", str(exc)) from None
        if fmt == "npz":
            body = npz_bytes(model_arrays(spec, weights, round_, model_hash))
            return web.Response(
                body=body,
                content_type=NPZ_CONTENT_TYPE,
                headers={"Content-Disposition": f'attachment; filename="global-model-r{round_}.npz"'},
            )
        raw = state.get_model(model_hash)
        size = len(raw) if raw is not None else len(pocl.genesis_model()[1])
        return web.json_response(
            {
                "round": round_,
                "model_hash": model_hash.hex(),
                "model": spec.name,
                "input_shape": list(spec.input_shape),
                "classes": spec.num_classes,
                "shapes": [list(s) for s in weight_shapes(spec)],
                "params": int(sum(int(np.prod(s)) for s in weight_shapes(spec))),
                "bytes": size,
                "height": self.node.chain.height if self.node.chain else 0,
                "download": f"/models/global?round={round_}&format=npz",
            }
        )

    async def miner(self, _request: web.Request) -> web.Response:
        miner = getattr(self.node, "miner", None)
        if miner is None:
            raise ApiError(404, "not_mining", "this node is not mining ([mining] enabled = false)")
        return web.json_response(miner.status_json())


def pocl_routes(node: Node) -> tuple[Route, ...]:
    api = PoclApi(node)
    return (
        Route(
            "GET",
            "/rounds/latest",
            "rounds_latest",
            "The open PoCL round, else the last one",
            handler=api.rounds_latest,
        ),
        Route(
            "GET",
            "/rounds/{n}",
            "round",
            "A PoCL round: phase, heights, participants, score matrix, winners, rewards, slashes",
            (("n", "round number"),),
            handler=api.round,
        ),
        Route(
            "GET",
            "/models/global",
            "model_global",
            "Global model metadata; ?round=N for G_N, ?format=npz downloads the weights (.npz)",
            handler=api.model_global,
        ),
        Route(
            "GET",
            "/miner",
            "miner",
            "This node's miner: behaviour, per-round training and submissions",
            handler=api.miner,
        ),
    )


# --------------------------------------------------------------------------- events


def round_events(block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """NodeEvents ("round"/"phase", data) for the PoCL executor events of one block event."""
    out: list[tuple[str, dict[str, Any]]] = []
    height = block.get("height")
    for ev in block.get("events", []):
        kind, data = ev.get("kind"), dict(ev.get("data", {}))
        if kind == EVENT_ROUND_OPENED:
            out.append(("round", {"event": "opened", "height": height, **data}))
            out.append(("phase", {"round": data.get("round"), "phase": "commit", "height": height}))
        elif kind == EVENT_PHASE:
            out.append(("phase", {"height": height, **data}))
        elif kind == EVENT_FINALIZED:
            out.append(("round", {"event": "finalized", "height": height, **data}))
            out.append(("phase", {"round": data.get("round"), "phase": "done", "height": height}))
        elif kind == EVENT_REWARD:
            out.append(("round", {"event": "reward", "height": height, **data}))
        elif kind == EVENT_SLASH:
            out.append(("round", {"event": "slash", "height": height, **data}))
    return out


def attach_round_events(node: Node) -> Any:
    """Re-emit each block's PoCL events as "round"/"phase" NodeEvents; returns the unsubscribe call."""

    def listener(event: NodeEvent) -> None:
        if event.kind == "block":
            for kind, data in round_events(event.data):
                node.emit(kind, data)

    return node.subscribe(listener)


def phase_name(phase: int) -> str:
    return PHASE_NAMES.get(phase, "unknown")
