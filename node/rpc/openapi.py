"""The OpenAPI 3.0 document of the RPC, generated from the same `Route`s that build the router."""

from __future__ import annotations

from typing import Any

from pocl.node.rpc.routes import Route

API_VERSION = "1"


def openapi_document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """OpenAPI 3.0 document generated from the same `Route`s that build the router."""
    error = {"$ref": "#/components/responses/Error"}
    json_ok = {"content": {"application/json": {"schema": {"type": "object"}}}}
    paths: dict[str, Any] = {}
    for r in routes:
        responses: dict[str, Any] = {}
        if r.method == "POST":
            responses["200"] = {"description": "done", **json_ok}
            responses["202"] = {"description": "accepted (transactions: admitted to the mempool)", **json_ok}
            responses["413"] = error
        elif r.handler_name == "events":
            responses["101"] = {"description": "switching to the WebSocket protocol"}
        else:
            responses["200"] = {"description": "OK", **json_ok}
        responses.update({"400": error, "404": error, "405": error, "503": error})
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler_name, "responses": responses}
        parameters = [
            {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}
            for name, desc in r.params
        ] + [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": desc,
                "schema": {"type": "integer"},
            }
            for name, desc in r.query
        ]
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
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                            "required": ["code", "message"],
                        }
                    },
                    "required": ["error"],
                },
            },
            "responses": {
                "Error": {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
    }
