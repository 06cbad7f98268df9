"""Property: validation never crashes on any TOML document, every problem is located inside the file, and the
published JSON Schema never finds a problem the builder did not (no drift between schema and model).

Documents are built from the real field names (so they reach deep into the builder and the semantic checks)
mixed with wrong types, unknown keys, tables, arrays of tables, dotted keys and inline tables.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import model
from policy.load import check_policy


def _field_names() -> list[str]:
    names: set[str] = set()
    todo: list[Any] = [model.Policy]
    while todo:
        cls = todo.pop()
        for f in dataclasses.fields(cls):
            names.add(f.name)
            hint = typing.get_type_hints(cls)[f.name]
            for candidate in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(candidate) and candidate not in todo:
                    todo.append(candidate)
    return sorted(names)


KEYS = st.sampled_from([*_field_names(), "x", "名前", "a b"])
SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.sampled_from(["5m", "90s", "", "block", "(", "10.0.0.0/8", "https://a.example/", "顧客台帳", "1.2"]),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)


def _key(name: str) -> str:
    return (
        name
        if name.replace("_", "").replace("-", "").isascii() and name.replace("_", "").isalnum()
        else json.dumps(name, ensure_ascii=False)
    )


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[\n  " + ",\n  ".join(_inline(v) for v in value) + "\n]" if value else "[]"
    return "{ " + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + " }"


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = ["schema = 1", 'id = "acme"', f"version = {draw(st.integers(-1, 5))}"]
    for name, value in draw(st.dictionaries(KEYS, VALUES, max_size=4)).items():
        if name in ("schema", "id", "version"):
            continue
        style = draw(st.sampled_from(["inline", "table", "array", "dotted"]))
        if style == "table" and isinstance(value, dict):
            lines.append(f"[{_key(name)}]")
            lines += [f"{_key(k)} = {_inline(v)}" for k, v in value.items()]
            lines.append("[worker]")  # leave the table so later keys are not nested in it
        elif (
            style == "array" and isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            for element in value:
                lines.append(f"[[{_key(name)}]]")
                lines += [f"{_key(k)} = {_inline(v)}" for k, v in element.items()]
            lines.append("[messages]")
        elif style == "dotted" and isinstance(value, dict):
            lines += [f"{_key(name)}.{_key(k)} = {_inline(v)}" for k, v in value.items()]
        else:
            lines.insert(3, f"{_key(name)} = {_inline(value)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_validation_never_crashes_and_locates_every_problem(text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # e.g. a key defined twice: not what this property is about
    policy, problems = check_policy(text.encode())
    assert (policy is None) == bool(problems)
    # The published JSON Schema finds nothing the builder missed: model and schema have not drifted.
    assert check_policy(text.encode(), schema=True)[1] == problems
    line_count = text.count("\n") + 1
    for problem in problems:
        assert 1 <= problem.line <= line_count, problem
        assert problem.col >= 1, problem
        assert problem.message and "\n" not in problem.message
