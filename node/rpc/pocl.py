"""PoCL routes of the RPC: rounds, global models, the local miner (DESIGN §7).

Routes (passed to `RpcServer(extra_routes=pocl_routes(node))`, so they appear in `/openapi.json`):

    GET /rounds/latest          the open round, else the last one
    GET /rounds/{n}             participants, phase and heights, score matrix, winners, rewards,
                                slashes with evidence, global_model_hash
    GET /models/global          metadata of the current global model (or `?round=N`: G_N);
                                `?format=npz` downloads its weights as a numpy .npz (no pickle)
    GET|POST /models/global/predict
                                canonical labels and logits of inputs (`?round=N` for G_N): a JSON
                                nested list (`inputs`) or a base64 `.npy` (`npy`), in the query (GET) or
                                a JSON body (POST); numpy only, exact fixed point (`pocl.ml.export`)
    GET /miner                  this node's miner (behaviour, per-round training time, submissions)
    GET|POST /miner/mining      mining on or off at run time (`pocl-node miner on|off|status`): POST
                                `{"mining": false}` finishes a committed round, then unregisters;
                                POST only from this machine (`node.rpc.local_only`)
    GET /miners/{address}       any account as a miner: registration, eligibility (open and next
                                round), stake, jail, missed rounds, last reward and penalty
    GET /rounds                 the newest rounds in a line each (winners, paid, slashed, accuracies)
    GET /miners                 leaderboard over the newest final rounds: wins, rewards, slashes, scores
    GET /accounts/{address}/rounds
                                an account's wins, rewards and slashes in the newest final rounds

The last three read at most `MAX_LIST_ROUNDS` round records per request (what the explorer shows).

Round and phase events reach the WebSocket stream as node events (`node.events.pocl_events`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

import numpy as np
from aiohttp import web
from pocl.consensus.pocl.records import RoundRecord
from pocl.ledger.keys import KeyFormatError, format_address, parse_address
from pocl.ledger.state import State
from pocl.ledger.storage.store import PRUNED_MODEL
from pocl.ml.export import InputError, decode_npy, predict, preprocessing
from pocl.ml.model.weights import weight_shapes
from pocl.node.interfaces import PoclReader
from pocl.node.mining_switch import MiningSwitchError
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.local_only import require_local
from pocl.node.rpc.miner_status import miner_status
from pocl.node.rpc.model_npz import model_arrays, npz_bytes
from pocl.node.rpc.pocl_views import account_rounds, leaderboard, round_json, round_summary
from pocl.node.rpc.request import parse_uint, require_chain
from pocl.node.rpc.routes import ADDRESS, ROUND_REF, UINT, Route
from pocl.node.rpc.types import (
    AccountRoundsView,
    LeaderboardView,
    MinerView,
    MiningStateView,
    ModelView,
    PredictView,
    RoundsView,
    RoundView,
)

NPZ_CONTENT_TYPE = "application/x-npz"
# A prediction request: at most this many samples and body bytes (the RPC's own body limit applies too);
# one prediction runs at a time, in a worker thread (the event loop keeps serving).
MAX_PREDICT_SAMPLES = 1024
MAX_PREDICT_BODY_BYTES = 4 * 1024 * 1024
# `/rounds`, `/miners`, `/accounts/{address}/rounds`: round records read per request (default, at most).
DEFAULT_LIST_ROUNDS = 50
MAX_LIST_ROUNDS = 256


def require_stored(state: State, round_: int, model_hash: bytes) -> None:
    """410 `model_pruned` for a global model whose bytes this node has pruned (`[pruning] model_history`)."""
    if state.get_model(model_hash) == PRUNED_MODEL:
        raise ApiError(
            410,
            "model_pruned",
            f"G_{round_} ({model_hash.hex()[:16]}…) is pruned on this node, which keeps only the recent global "
            "models ([pruning] model_history); ask an archive node",
        )


class PoclApi:
    def __init__(self, node: PoclReader) -> None:
        self.node = node
        self._predict_lock = asyncio.Lock()
        self._weights: tuple[bytes, list[np.ndarray]] | None = None  # the last model predicted with

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

    def _round(self, state: State, n: int) -> RoundView:
        rec = self.node.pocl.record(state, n)
        if rec is None:
            raise ApiError(404, "round_not_found", f"no round {n}")
        out: RoundView = round_json(rec)  # type: ignore[assignment]
        head = self.node.pocl.head(state)
        out["height"] = self.node.chain.height if self.node.chain else 0
        if head is not None:
            out["next_round_start"] = head.next_start if head.round == n + 1 else 0
        return out

    def _recent(self, state: State, request: web.Request, name: str) -> list[RoundRecord]:
        """The newest `?{name}=K` round records this node keeps (bounded by MAX_LIST_ROUNDS), newest first;
        empty before round 1."""
        k = DEFAULT_LIST_ROUNDS
        if name in request.query:
            k = parse_uint(request.query[name], f"bad_{name}", name)
            if not 1 <= k <= MAX_LIST_ROUNDS:
                raise ApiError(400, f"bad_{name}", f"{name} must be 1..{MAX_LIST_ROUNDS}")
        try:
            latest = self.latest_round_number(state)
        except ApiError:
            return []
        records = (self.node.pocl.record(state, r) for r in range(latest, max(0, latest - k), -1))
        return [rec for rec in records if rec is not None]

    async def rounds_list(self, request: web.Request) -> web.Response:
        state = self._state()
        records = self._recent(state, request, "limit")
        head = self.node.pocl.head(state)
        open_rec = records[0] if records and records[0].outcome is None else None
        model_round, model_hash = self.model_at(state, None)
        view: RoundsView = {
            "height": state.height,
            "open_round": open_rec.round if open_rec is not None else 0,
            "phase": open_rec.phase_name if open_rec is not None else "",
            "next_round_start": head.next_start
            if head is not None
            else self.node.pocl.params.first_round_height,
            "model_round": model_round,
            "model_hash": model_hash.hex(),
            "rounds": [round_summary(rec) for rec in records],
        }
        return web.json_response(view)

    async def miners_board(self, request: web.Request) -> web.Response:
        records = [rec for rec in self._recent(self._state(), request, "rounds") if rec.outcome is not None]
        view: LeaderboardView = {
            "from_round": records[-1].round if records else 0,
            "to_round": records[0].round if records else 0,
            "rounds": len(records),
            "miners": leaderboard(records),
        }
        return web.json_response(view)

    async def account_rounds(self, request: web.Request) -> web.Response:
        try:
            address = parse_address(request.match_info["address"])
        except KeyFormatError as exc:
            raise ApiError(400, "bad_address", str(exc)) from None
        records = [rec for rec in self._recent(self._state(), request, "rounds") if rec.outcome is not None]
        wins, rewards, slashes = account_rounds(records, address)
        view: AccountRoundsView = {
            "address": format_address(address),
            "from_round": records[-1].round if records else 0,
            "to_round": records[0].round if records else 0,
            "wins": wins,
            "rewards": rewards,
            "slashes": slashes,
        }
        return web.json_response(view)

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
        require_stored(state, round_, model_hash)
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
        view: ModelView = {
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
            "preprocessing": preprocessing(spec),  # type: ignore[typeddict-item]
        }
        return web.json_response(view)

    def _model_weights(self, state: State, model_hash: bytes) -> list[np.ndarray]:
        if self._weights is None or self._weights[0] != model_hash:
            try:
                self._weights = (model_hash, self.node.pocl.global_weights(state, model_hash))
            except RuntimeError as exc:
                raise ApiError(404, "model_not_found", str(exc)) from None
        return self._weights[1]

    async def model_predict(self, request: web.Request) -> web.Response:
        state = self._state()
        if request.method == "POST":
            if request.content_length is not None and request.content_length > MAX_PREDICT_BODY_BYTES:
                raise ApiError(
                    413, "body_too_large", f"prediction bodies are limited to {MAX_PREDICT_BODY_BYTES} bytes"
                )
            raw = await request.content.read(MAX_PREDICT_BODY_BYTES + 1)
            if len(raw) > MAX_PREDICT_BODY_BYTES:
                raise ApiError(
                    413, "body_too_large", f"prediction bodies are limited to {MAX_PREDICT_BODY_BYTES} bytes"
                )
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(
                    400, "bad_json", 'body must be JSON {"inputs": [...]} or {"npy": "<base64>"}'
                ) from None
            if not isinstance(body, dict):
                raise ApiError(
                    400, "bad_request", 'body must be a JSON object {"inputs": [...]} or {"npy": "<base64>"}'
                )
            round_text = body.get("round", request.query.get("round"))
            round_text = str(round_text) if round_text is not None else None
        else:
            body = {}
            for key in ("inputs", "npy"):
                if key in request.query:
                    body[key] = request.query[key]
            if "inputs" in body:
                try:
                    body["inputs"] = json.loads(body["inputs"])
                except json.JSONDecodeError:
                    raise ApiError(
                        400, "bad_inputs", "inputs must be a JSON nested list of numbers"
                    ) from None
            round_text = request.query.get("round")
        round_, model_hash = self.model_at(state, round_text)
        spec = self.node.pocl.params.model_spec()
        x = _inputs_of(body)
        require_stored(state, round_, model_hash)
        weights = self._model_weights(state, model_hash)
        async with self._predict_lock:
            try:
                out = await asyncio.to_thread(predict, spec, weights, x, MAX_PREDICT_SAMPLES)
            except InputError as exc:
                raise ApiError(400, "bad_inputs", str(exc)) from None
        view: PredictView = {"round": round_, "model_hash": model_hash.hex(), "model": spec.name, **out}  # type: ignore[typeddict-item]
        return web.json_response(view)

    async def miner_by_address(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        try:
            address = parse_address(text)
        except KeyFormatError as exc:
            raise ApiError(400, "bad_address", str(exc)) from None
        state = self._state()
        view = miner_status(self.node.pocl, state, address)
        if not view["exists"] and not view["registered"]:
            raise ApiError(
                404,
                "miner_not_found",
                f"{format_address(address)} has no account on this chain (never funded, never registered)",
            )
        return web.json_response(view)

    async def mining_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.node.mining_switch.state())

    async def set_mining(self, request: web.Request) -> web.Response:
        require_local(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("mining"), bool):
            raise ApiError(400, "bad_request", 'body must be {"mining": true} or {"mining": false}')
        switch = self.node.mining_switch
        try:
            view = await (switch.turn_on() if body["mining"] else switch.turn_off())
        except MiningSwitchError as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        return web.json_response(view)

    async def miner(self, _request: web.Request) -> web.Response:
        miner = self.node.miner
        if miner is None:
            raise ApiError(404, "not_mining", "this node is not mining ([mining] enabled = false)")
        return web.json_response(miner.status_json())


def _inputs_of(body: dict[str, Any]) -> np.ndarray:
    """The input array of a request: exactly one of `inputs` (nested JSON list) or `npy` (base64)."""
    if ("inputs" in body) == ("npy" in body):
        raise ApiError(400, "bad_inputs", 'give exactly one of "inputs" (nested list) or "npy" (base64 .npy)')
    if "npy" in body:
        text = body["npy"]
        if not isinstance(text, str):
            raise ApiError(400, "bad_inputs", "npy must be a base64 string of a .npy file")
        try:
            raw = base64.b64decode(
                text, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True
            )
        except (binascii.Error, ValueError):
            raise ApiError(400, "bad_inputs", "npy must be base64 (standard or URL-safe)") from None
        try:
            return decode_npy(raw, "npy")
        except InputError as exc:
            raise ApiError(400, "bad_inputs", str(exc)) from None
    value = body["inputs"]
    if not isinstance(value, list):
        raise ApiError(400, "bad_inputs", "inputs must be a nested list of numbers")
    try:
        x = np.array(value)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "bad_inputs", "inputs must be a rectangular nested list of numbers") from None
    if x.dtype.kind not in "iuf":
        raise ApiError(400, "bad_inputs", "inputs must be a rectangular nested list of numbers")
    return x


PREDICT_QUERY = (
    ("round", "the model of round N (G_N; 0 = genesis) or latest (default)", ROUND_REF),
    ("inputs", "JSON nested list of numbers: (N, H, W, C) or one sample (H, W, C)", {"type": "string"}),
    ("npy", "base64 (standard or URL-safe) of a .npy file holding the inputs", {"type": "string"}),
)


def pocl_routes(node: PoclReader) -> tuple[Route, ...]:
    api = PoclApi(node)
    return (
        Route(
            "GET",
            "/rounds/latest",
            "rounds_latest",
            "The open PoCL round, else the last one",
            handler=api.rounds_latest,
            response=RoundView,
        ),
        Route(
            "GET",
            "/rounds",
            "rounds_list",
            "The newest PoCL rounds, newest first, one line each: counts, winners, reward paid, slashes and "
            "accuracies (G_{r-1}'s median baseline, the candidates' scores)",
            handler=api.rounds_list,
            query=(
                ("limit", f"at most this many rounds (default {DEFAULT_LIST_ROUNDS}, max {MAX_LIST_ROUNDS})"),
            ),
            response=RoundsView,
        ),
        Route(
            "GET",
            "/rounds/{n}",
            "round",
            "A PoCL round: phase, heights, participants, score matrix, winners, rewards, slashes",
            (("n", "round number", UINT),),
            handler=api.round,
            response=RoundView,
        ),
        Route(
            "GET",
            "/models/global",
            "model_global",
            "Global model metadata; ?round=N for G_N, ?format=npz downloads the weights (.npz)",
            handler=api.model_global,
            query=(
                ("round", "round N (G_N; 0 = genesis) or latest (default)", ROUND_REF),
                (
                    "format",
                    "json (metadata, default) or npz (the weights)",
                    {"type": "string", "enum": ["json", "npz"]},
                ),
            ),
            response=ModelView,
            binary=(
                NPZ_CONTENT_TYPE,
                "with ?format=npz: one array per parameter plus meta_* arrays (no pickle)",
            ),
            errors=(410,),
        ),
        Route(
            "GET",
            "/models/global/predict",
            "model_predict_get",
            "Canonical labels of inputs given in the query: ?inputs=<JSON nested list> or ?npy=<base64 .npy>",
            handler=api.model_predict,
            query=PREDICT_QUERY,
            response=PredictView,
            errors=(410,),
        ),
        Route(
            "POST",
            "/models/global/predict",
            "model_predict",
            "Canonical labels and logits of inputs (exact fixed-point inference: every node computes the same)",
            handler=api.model_predict,
            body='{"inputs": <nested list, (N, H, W, C) or one sample>} or {"npy": "<base64 .npy>"}; '
            'optional "round"',
            query=PREDICT_QUERY[:1],
            response=PredictView,
            errors=(410,),
        ),
        Route(
            "GET",
            "/miner",
            "miner",
            "This node's miner: behaviour, per-round training and submissions",
            handler=api.miner,
            response=dict[str, Any],
        ),
        Route(
            "GET",
            "/miner/mining",
            "mining_state",
            "Mining on this node: switched on or off, registration, the open commitment and what leaving it costs",
            handler=api.mining_state,
            response=MiningStateView,
        ),
        Route(
            "POST",
            "/miner/mining",
            "set_mining",
            "Switch mining on (register if needed, mine from the next round) or off (finish the committed "
            "round, then unregister); only from this machine",
            handler=api.set_mining,
            body='{"mining": true} or {"mining": false}',
            response=MiningStateView,
            errors=(403, 409, 415),
        ),
        Route(
            "GET",
            "/miners/{address}",
            "miner_by_address",
            "An account as a PoCL miner: registration, eligibility now and next round, stake, jail, "
            "missed rounds, last reward and penalty",
            (("address", "0x address", ADDRESS),),
            handler=api.miner_by_address,
            response=MinerView,
        ),
        Route(
            "GET",
            "/miners",
            "miners_board",
            "Leaderboard of the miners over the newest final rounds: eligibility, commits, wins, rewards, "
            "slashes and scores, most rewarded first",
            handler=api.miners_board,
            query=(
                (
                    "rounds",
                    f"count the newest this many rounds (default {DEFAULT_LIST_ROUNDS}, max {MAX_LIST_ROUNDS})",
                ),
            ),
            response=LeaderboardView,
        ),
        Route(
            "GET",
            "/accounts/{address}/rounds",
            "account_rounds",
            "An account's PoCL wins, rewards and slashes (with evidence) in the newest final rounds",
            (("address", "0x address", ADDRESS),),
            handler=api.account_rounds,
            query=(
                (
                    "rounds",
                    f"look back this many rounds (default {DEFAULT_LIST_ROUNDS}, max {MAX_LIST_ROUNDS})",
                ),
            ),
            response=AccountRoundsView,
        ),
    )
