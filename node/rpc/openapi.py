"""The OpenAPI 3.0 document of the RPC, generated from the same `Route`s that build the router; response
schemas are generated from the handlers' response types (`types.py`, via `schema.py`)."""

from __future__ import annotations

from typing import Any

from pocl.node.rpc.routes import Param, Route
from pocl.node.rpc.schema import SchemaRegistry

API_VERSION = "1"
ERROR_DESCRIPTIONS = {
    400: "bad request (error code says which input)",
    403: "forbidden (e.g. faucet_disabled, local_only)",
    404: "not found",
    405: "method not allowed",
    409: "conflicts with the node's state (e.g. cannot_mine, stopping, or a tx the chain refuses)",
    410: "pruned on this node (block_pruned, model_pruned): the message names what it still keeps",
    413: "request body too large",
    415: "unsupported media type (the body must be JSON)",
    429: "rate limited: retry after error.retry_after_s seconds",
    503: "node starting, or busy",
    504: "timed out (the request may still take effect)",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "retry_after_s": {"type": "number", "minimum": 0},  # with 429
            },
            "required": ["code", "message"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}


def _parameter(p: Param, where: str) -> dict[str, Any]:
    name, desc = p[0], p[1]
    schema = p[2] if len(p) > 2 else {"type": "string" if where == "path" else "integer", "minimum": 0}
    if where == "path" and len(p) == 2:
        schema = {"type": "string"}
    return {"name": name, "in": where, "required": where == "path", "description": desc, "schema": schema}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """OpenAPI 3.0 document generated from the same `Route`s that build the router."""
    registry = SchemaRegistry()

    def schema_of(tp: Any) -> dict[str, Any]:
        return registry.schema(tp) if tp is not None else {"type": "object"}

    paths: dict[str, Any] = {}
    for r in routes:
        responses: dict[str, Any] = {}
        if r.handler_name == "events":
            responses["101"] = {"description": "switching to the WebSocket protocol"}
        else:
            ok = _json("accepted" if r.status == 202 else "OK", schema_of(r.response))
            if r.binary is not None:
                ok["content"][r.binary[0]] = {
                    "schema": {"type": "string", "format": "binary", "description": r.binary[1]}
                }
            responses[str(r.status)] = ok
            for status, desc, tp in r.other_responses:
                responses[str(status)] = _json(desc, schema_of(tp))
        errors = {400, 404, 405, 503, *r.errors} | ({413} if r.method == "POST" else set())
        for status in sorted(errors - {s for s, _, _ in r.other_responses}):
            responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler_name, "responses": responses}
        parameters = [_parameter(p, "path") for p in r.params] + [_parameter(p, "query") for p in r.query]
        if parameters:
            op["parameters"] = parameters
        if r.method == "POST":
            op["requestBody"] = {
                "required": True,
                "description": r.body or "",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pocl-node RPC",
            "version": API_VERSION,
            "description": "JSON RPC of a Proof-of-Collaborative-Learning node. Errors are "
            '{"error": {"code", "message"}} with stable codes.',
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **dict(sorted(registry.schemas.items()))},
            "responses": {
                f"Error{status}": _json(desc, {"$ref": "#/components/schemas/Error"})
                for status, desc in ERROR_DESCRIPTIONS.items()
            },
        },
    }
