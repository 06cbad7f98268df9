"""The policy's JSON Schema, generated from the dataclasses in :mod:`policy.model` (their field metadata).

Generating it keeps the schema and the model from drifting apart (issue 2): a field exists in the schema iff
it exists in the model, with the same type, enum, default and description. ``mamori policy schema`` prints
it; docs/policy-reference.md is generated from it (:mod:`policy.reference`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from datetime import datetime
from functools import lru_cache
from typing import Any

from policy import model

SCHEMA_ID = "https://mamori.example.com/schemas/policy-1.json"

# metadata keys copied verbatim into the schema of the value
_COPIED = ("enum", "pattern", "minimum", "maximum", "minLength", "maxLength")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return True, inner[0]
    return False, tp


def _default_json(value: Any, meta: typing.Mapping[str, Any]) -> Any:
    if meta.get("duration") and isinstance(value, (int, float)):
        return model.format_duration(value)
    if isinstance(value, tuple):
        return [_default_json(v, {}) for v in value]
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, re.Pattern):
        return value.pattern
    return value


def _type_schema(tp: Any, meta: typing.Mapping[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    _, tp = _is_optional(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    out: dict[str, Any]
    if dataclasses.is_dataclass(tp):
        name = tp.__name__  # type: ignore[union-attr]
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = _dataclass_schema(tp, defs)  # type: ignore[arg-type]
        return {"$ref": f"#/$defs/{name}"}
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        out = {"enum": list(args)}
        if kinds == {str}:
            out["type"] = "string"
        elif kinds == {int}:
            out["type"] = "integer"
    elif origin is tuple:
        items = _type_schema(args[0], {}, defs)
        if meta.get("items_enum"):
            items = {**items, "enum": list(meta["items_enum"])}
        if "items_minimum" in meta:
            items = {**items, "minimum": meta["items_minimum"]}
        if "items_maximum" in meta:
            items = {**items, "maximum": meta["items_maximum"]}
        if meta.get("cidr"):
            items = {**items, "format": "cidr-or-host"}
        out = {"type": "array", "items": items}
    elif origin is dict:
        out = {"type": "object", "additionalProperties": {"type": "string"}}
        if meta.get("key_pattern"):
            out["propertyNames"] = {
                "pattern": meta["key_pattern"],
                "x-pattern-hint": "message keys are dotted lowercase names such as remedy.vpn",
            }
    elif tp is float and meta.get("duration"):
        out = {"type": "string", "pattern": model.DURATION_PATTERN, "format": "duration"}
    elif tp is re.Pattern or origin is re.Pattern:
        out = {"type": "string", "format": "regex"}
    elif tp is datetime:
        out = {"type": "string", "format": "date-time"}
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
    elif tp is float:
        out = {"type": "number"}
    elif tp is str:
        out = {"type": "string"}
    else:  # pragma: no cover - a new field type must be taught to the generator
        raise TypeError(f"no JSON Schema mapping for {tp!r}")
    for key in _COPIED:
        if key in meta and "$ref" not in out:
            out[key] = meta[key]
    return out


def _dataclass_schema(cls: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        prop = _type_schema(hints[f.name], meta, defs)
        # draft 2020-12: "$ref" may have sibling keywords such as "description"
        if meta.get("doc"):
            prop["description"] = meta["doc"]
        if f.default is not dataclasses.MISSING:
            if f.default is not None:
                prop["default"] = _default_json(f.default, meta)
        elif f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        if "example" in meta:
            prop["examples"] = [meta["example"]]
        if "pattern_hint" in meta:
            prop["x-pattern-hint"] = meta["pattern_hint"]
        if "min_seconds" in meta:
            prop["x-min-seconds"] = meta["min_seconds"]
        properties[f.name] = prop
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    return out


@lru_cache(maxsize=1)
def _schema_text() -> str:
    defs: dict[str, Any] = {}
    root = _dataclass_schema(model.Policy, defs)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Mamori policy",
        **root,
        "$defs": dict(sorted(defs.items())),
    }
    return json.dumps(schema, ensure_ascii=False, indent=2)


def policy_schema() -> dict[str, Any]:
    """A fresh copy of the JSON Schema (draft 2020-12) of a policy file."""
    result: dict[str, Any] = json.loads(_schema_text())
    return result


def schema_json() -> str:
    """The schema as printed by ``mamori policy schema`` (stable key order, UTF-8, 2-space indent)."""
    return _schema_text() + "\n"
