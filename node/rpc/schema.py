"""OpenAPI 3.0 schemas generated from the RPC's response types (`types.py`: TypedDicts, lists, unions).

Each TypedDict becomes one named schema under `components/schemas` (its class name) with every key
listed, the keys that are always present required and no other keys allowed, so a response that drifts
from its type fails the schema test. `X | None` is `nullable`, `Any` is any JSON value.
"""

from __future__ import annotations

import types
import typing
from typing import Any, NotRequired, Required, Union, get_args, get_origin, get_type_hints, is_typeddict

REF_PREFIX = "#/components/schemas/"
NULL: dict[str, Any] = {"type": "object", "nullable": True, "enum": [None]}  # OpenAPI 3.0's `null`


class SchemaRegistry:
    """Collects the named schemas of the TypedDicts reached from the response types."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._types: dict[str, type] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        origin = get_origin(tp)
        if tp is Any:
            return {}
        if tp is None or tp is type(None):
            return {"nullable": True}
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            nullable = len(members) < len(get_args(tp))
            if len(members) == 1:
                inner = self.schema(members[0])
            else:
                inner = {"anyOf": [self.schema(m) for m in members]}
            if nullable:
                # OpenAPI 3.0: `nullable` only qualifies a `type` next to it, never a $ref or a combinator.
                inner = {"anyOf": [inner, NULL]} if "type" not in inner else {**inner, "nullable": True}
            return inner
        if origin in (list, tuple):
            args = get_args(tp)
            return {"type": "array", "items": self.schema(args[0]) if args else {}}
        if origin is dict or tp is dict:
            args = get_args(tp)
            return {"type": "object", "additionalProperties": self.schema(args[1]) if args else {}}
        if is_typeddict(tp):
            return self._named(tp)
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        raise TypeError(f"no OpenAPI schema for {tp!r}")

    def _named(self, td: type) -> dict[str, Any]:
        name = td.__name__
        known = self._types.get(name)
        if known is not None and known is not td:
            raise TypeError(f"two response types are named {name}")
        if known is None:
            self._types[name] = td
            self.schemas[name] = {}  # placeholder: recursive types end here
            hints = get_type_hints(td, include_extras=True)
            props = {}
            for key, hint in hints.items():
                while get_origin(hint) in (NotRequired, Required, typing.Annotated):
                    hint = get_args(hint)[0]
                props[key] = self.schema(hint)
            out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
            required = [k for k in hints if k in td.__required_keys__]  # type: ignore[attr-defined]
            if required:
                out["required"] = required
            doc = (td.__doc__ or "").strip()
            if doc and not doc.startswith(f"{name}("):
                out["description"] = " ".join(doc.split())
            self.schemas[name] = out
        return {"$ref": REF_PREFIX + name}
