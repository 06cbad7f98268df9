"""The JSON Schema and the model agree (issue 2: "keep the schema and the model from drifting apart")."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from typing import Any

import jsonschema
import pytest

from policy import model
from policy.load import as_json_data, check_policy, load_policy
from policy.render import policy_as_data
from policy.schema import policy_schema, schema_json
from tests.policy.conftest import EXAMPLES
from tests.policy.test_validate import CASES

# Cases only the semantic pass (or a format the schema does not check) can catch.
SEMANTIC_ONLY = {
    "stage order",
    "warn after protect",
    "bad regex in the second app",
    "CIDR with host bits inside an inline table",
    "not a CIDR",
    "app that matches everything",
    "expires without offset",
    "acknowledgement without English text",
    "pin that is not a SHA-256",
    "heartbeat too short",
    "TOML syntax error",
    "https URL without a host",
}


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(policy_schema())


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(policy_schema())
    assert json.loads(schema_json()) == policy_schema()


def _walk(cls: type[Any], node: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    """Compare a dataclass with its schema object; return the differences."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    diffs: list[str] = []
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if set(fields) != set(node["properties"]):
        diffs.append(f"{path}: fields {sorted(fields)} != schema {sorted(node['properties'])}")
    required = {
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if required != set(node.get("required", [])):
        diffs.append(f"{path}: required {required} != schema {node.get('required')}")
    if node.get("additionalProperties") is not False:
        diffs.append(f"{path}: unknown keys must be refused")
    hints = typing.get_type_hints(cls)
    for name in fields:
        tp = hints[name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        target = inner[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
        sub = node["properties"].get(name, {})
        if dataclasses.is_dataclass(target):
            diffs += _walk(target, sub, schema, f"{path}.{name}")  # type: ignore[arg-type]
        elif typing.get_origin(target) is tuple and dataclasses.is_dataclass(typing.get_args(target)[0]):
            diffs += _walk(typing.get_args(target)[0], sub["items"], schema, f"{path}.{name}[]")
        elif typing.get_origin(target) is typing.Literal and sub.get("enum") != list(typing.get_args(target)):
            diffs.append(f"{path}.{name}: enum {sub.get('enum')} != {typing.get_args(target)}")
    return diffs


def test_every_model_field_is_in_the_schema_and_nothing_else() -> None:
    schema = policy_schema()
    assert _walk(model.Policy, schema, schema, "") == []


def test_schema_defaults_are_what_the_loader_fills_in() -> None:
    # Load an empty policy, render it back, and compare every default with the schema's "default".
    rendered = policy_as_data(load_policy(b'schema = 1\nid = "x"\nversion = 1\n'))
    schema = policy_schema()
    checked = 0

    def compare(node: dict[str, Any], data: dict[str, Any], path: str) -> None:
        nonlocal checked
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        for name, prop in node["properties"].items():
            if "default" in prop:
                assert data[name] == prop["default"], f"{path}{name}"
                checked += 1
            elif "$ref" in prop and isinstance(data.get(name), dict):
                compare(prop, data[name], f"{path}{name}.")

    compare(schema, rendered, "")
    assert checked >= 40


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_validate_against_the_published_schema(example: Any) -> None:
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    assert list(_validator().iter_errors(as_json_data(raw))) == []


@pytest.mark.parametrize(
    ("name", "text"), [(c[0], c[1]) for c in CASES if c[0] not in SEMANTIC_ONLY], ids=lambda v: str(v)[:40]
)
def test_schema_alone_rejects_what_the_loader_rejects(name: str, text: str) -> None:
    raw = tomllib.loads(text)
    assert list(_validator().iter_errors(as_json_data(raw))), name
    problems = check_policy(text.encode())[1]
    assert problems, name
    # and running the schema as well adds nothing the builder did not already say
    assert check_policy(text.encode(), schema=True)[1] == problems


def test_semantic_cases_pass_the_schema_but_not_the_loader() -> None:
    # Documents what the schema cannot express, so nobody mistakes schema-valid for valid.
    for name, text, _ in CASES:
        if name in SEMANTIC_ONLY and name != "TOML syntax error":
            assert check_policy(text.encode())[1], name
            if name != "expires without offset":  # jsonschema does not check "date-time" without extras
                assert not list(_validator().iter_errors(as_json_data(tomllib.loads(text)))), name
