"""Turn policy TOML bytes into a :class:`policy.model.Policy`, collecting every problem.

Pure: bytes in, Policy out (or PolicyValidationError listing all problems).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from datetime import datetime
from typing import Any

from policy import model
from policy.errors import PolicyValidationError, Problem


def load_policy(data: bytes, source: str = "<policy>") -> model.Policy:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PolicyValidationError(
            source, [Problem("", f"not UTF-8 text ({err.reason}); save the file as UTF-8")]
        ) from err
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = getattr(err, "lineno", 0)
        col = getattr(err, "colno", 0)
        message = str(err).split(" (at line")[0]
        raise PolicyValidationError(
            source, [Problem("", f"TOML syntax error: {message}", line, col)]
        ) from err
    problems: list[Problem] = []
    policy = _build(model.Policy, raw, "", problems)
    if problems or policy is None:
        raise PolicyValidationError(source, problems)
    assert isinstance(policy, model.Policy)
    return policy


def _build(cls: type[Any], raw: object, path: str, problems: list[Problem]) -> Any:
    if not isinstance(raw, dict):
        problems.append(Problem(path, f"must be a table, not {_kind(raw)}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(Problem(_join(path, key), f"unknown key; expected one of: {known}"))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(Problem(sub, "is required"))
            continue
        values[name] = _convert(hints[name], f.metadata, raw[name], sub, problems)
    try:
        return cls(**values)
    except TypeError:
        return None


def _convert(
    tp: Any, meta: typing.Mapping[str, Any], value: object, path: str, problems: list[Problem]
) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], meta, value, path, problems)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, problems)  # type: ignore[arg-type]
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            problems.append(Problem(path, f"must be one of {choices}, not {value!r}"))
        return value
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(Problem(path, f"must be an array, not {_kind(value)}"))
            return ()
        item_tp = args[0]
        return tuple(_convert(item_tp, {}, v, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            problems.append(Problem(path, "must be a table of strings"))
            return {}
        return dict(value)
    if tp is float and meta.get("duration"):
        if not isinstance(value, str):
            problems.append(Problem(path, f'must be a duration string such as "5m", not {_kind(value)}'))
            return 0.0
        try:
            return model.parse_duration(value)
        except ValueError as err:
            problems.append(Problem(path, str(err)))
            return 0.0
    if tp is re.Pattern or origin is re.Pattern:
        if not isinstance(value, str):
            problems.append(Problem(path, f"must be a regular expression string, not {_kind(value)}"))
            return None
        try:
            return re.compile(value, re.IGNORECASE)
        except re.error as err:
            problems.append(Problem(path, f"invalid regular expression: {err}"))
            return None
    if tp is datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                problems.append(
                    Problem(path, "must be an RFC 3339 date-time such as 2027-03-31T00:00:00+09:00")
                )
                return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            problems.append(
                Problem(path, "must be a date-time with a UTC offset, e.g. 2027-03-31T00:00:00+09:00")
            )
            return None
        return value
    expected = {str: str, int: int, bool: bool, float: (int, float)}.get(tp)
    if expected is not None:
        if isinstance(value, bool) and tp is not bool:
            problems.append(Problem(path, f"must be {tp.__name__}, not a boolean"))
        elif not isinstance(value, expected):  # type: ignore[arg-type]
            problems.append(Problem(path, f"must be {tp.__name__}, not {_kind(value)}"))
        return value
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer"}.get(
        type(value), type(value).__name__
    )
