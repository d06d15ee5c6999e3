"""Checking a real RPC answer against the response schema `/openapi.json` documents for it."""

from __future__ import annotations

from typing import Any


def response_schema(doc: dict, path: str, method: str, status: int) -> dict[str, Any]:
    op = doc["paths"][path][method]
    resp = op["responses"][str(status)]
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
    return resp["content"]["application/json"]["schema"]


def check(doc: dict, path: str, method: str, status: int, body: Any) -> None:
    """Validate a response body against the documented schema of (path, method, status)."""
    import openapi_schema_validator  # the test extra; callers importorskip it

    schema = {**response_schema(doc, path, method, status), "components": doc["components"]}
    openapi_schema_validator.OAS30Validator(schema).validate(body)
