"""PoCL routes of the RPC: rounds, global models, the local miner (DESIGN §7).

Routes (passed to `RpcServer(extra_routes=pocl_routes(node))`, so they appear in `/openapi.json`):

    GET /rounds/latest          the open round, else the last one
    GET /rounds/{n}             participants, phase and heights, score matrix, winners, rewards,
                                slashes with evidence, global_model_hash
    GET /models/global          metadata of the current global model (or `?round=N`: G_N);
                                `?format=npz` downloads its weights as a numpy .npz (no pickle)
    GET /miner                  this node's miner (behaviour, per-round training time, submissions)

Round and phase events reach the WebSocket stream as node events (`node.events.pocl_events`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiohttp import web
from pocl.ledger.state import State
from pocl.ml.model.weights import weight_shapes
from pocl.node.interfaces import PoclReader
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.model_npz import model_arrays, npz_bytes
from pocl.node.rpc.pocl_views import round_json
from pocl.node.rpc.request import parse_uint, require_chain
from pocl.node.rpc.routes import Route

NPZ_CONTENT_TYPE = "application/x-npz"


class PoclApi:
    def __init__(self, node: PoclReader) -> None:
        self.node = node

    def _state(self) -> State:
        return require_chain(self.node).state

    def latest_round_number(self, state: State) -> int:
        head = self.node.pocl.head(state)
        if head is None:
            raise ApiError(404, "round_not_found", "no PoCL round yet")
        if self.node.pocl.record(state, head.round) is not None:
            return head.round
        if head.round > 1:
            return head.round - 1
        raise ApiError(404, "round_not_found", f"round 1 opens at height {head.next_start}")

    def _round(self, state: State, n: int) -> dict[str, Any]:
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
        n = parse_uint(request.match_info["n"], "bad_round", "round")
        return web.json_response(self._round(self._state(), n))

    def model_at(self, state: State, round_text: str | None) -> tuple[int, bytes]:
        """(round, hash) of the current global model, or of G_N for `?round=N`."""
        pocl = self.node.pocl
        head = pocl.head(state)
        if round_text is None or round_text == "latest":
            if head is None:
                return 0, pocl.genesis_model()[0]
            return head.model_round, head.model_hash
        n = parse_uint(round_text, "bad_round", "round")
        if n == 0:
            return 0, pocl.genesis_model()[0]
        rec = pocl.record(state, n)
        if rec is None or rec.outcome is None:
            raise ApiError(404, "model_not_found", f"round {n} is not final (no G_{n} yet)")
        return n, rec.outcome.model_hash

    async def model_global(self, request: web.Request) -> web.StreamResponse:
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
        miner = self.node.miner
        if miner is None:
            raise ApiError(404, "not_mining", "this node is not mining ([mining] enabled = false)")
        return web.json_response(miner.status_json())


def pocl_routes(node: PoclReader) -> tuple[Route, ...]:
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
