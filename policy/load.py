"""Turn policy TOML bytes into a :class:`policy.model.Policy`, collecting every problem.

Pure: bytes in, Policy out (or PolicyValidationError listing all problems, each located at LINE:COL).

Passes, all of which run so that one run reports everything:
1. the builder walks the dataclasses: types, unknown and required keys, enums, durations, regexes, date-times,
   and the constraints in the field metadata the JSON Schema is generated from (patterns, minimum/maximum,
   non-empty strings, allowed array items, message key names);
2. semantic checks that a schema cannot express: stage order, CIDRs, addresses, pins, duplicate rule names;
3. optionally (``schema=True``, the admin-side commands) the published JSON Schema itself via jsonschema; it
   should add nothing, and where it does the builder has drifted. The builder's wording wins on a shared path.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import ipaddress
import re
import tomllib
import types
import typing
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from policy import model
from policy.errors import PolicyValidationError, Problem
from policy.locate import locate

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_-]{1,63})*\.?$"
)


def load_policy(data: bytes, source: str = "<policy>", *, schema: bool = False) -> model.Policy:
    """Parse and validate policy TOML. Raises PolicyValidationError with every problem, located.

    ``schema=True`` also runs the published JSON Schema (jsonschema) over the document, as
    ``mamori policy validate`` and ``sign`` do; the agent leaves it off to stay small (the builder enforces the
    same field metadata the schema is generated from, and tests/policy/test_schema.py proves they agree).
    """
    policy, problems = check_policy(data, schema=schema)
    if problems or policy is None:
        raise PolicyValidationError(source, problems or [Problem("", "invalid policy", 1, 1)])
    return policy


def check_policy(data: bytes, *, schema: bool = False) -> tuple[model.Policy | None, list[Problem]]:
    """(policy, []) when valid, else (None, every problem located and sorted by position)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        return None, [Problem("", f"not UTF-8 text ({err.reason}); save the file as UTF-8", line, col)]
    if text.startswith("\ufeff"):
        text = text[1:]  # a BOM from Windows editors is harmless; tomllib rejects it
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        line, col = 1, 1
        match = _TOML_POSITION.search(message)
        if match:
            line, col = int(match.group(1)), int(match.group(2))
            message = message[: match.start()]
        return None, [Problem("", f"TOML syntax error: {message}", line, col)]
    problems: list[Problem] = []
    policy = _build(model.Policy, raw, "", problems)
    if isinstance(policy, model.Policy):
        problems.extend(_semantic_problems(policy, {p.path for p in problems}))
    if schema:
        reported = {p.path for p in problems}
        problems.extend(
            p for p in schema_problems(raw) if p.path not in reported and not _under(p.path, reported)
        )
    if not problems:
        assert isinstance(policy, model.Policy)
        return policy, []
    where = locate(text)
    located = [
        dataclasses.replace(p, line=where.find(p.path)[0], col=where.find(p.path)[1]) for p in problems
    ]
    unique = dict.fromkeys(located)  # keep order, drop exact duplicates
    return None, sorted(unique, key=lambda p: (p.line, p.col, p.path))


def _under(path: str, reported: set[str]) -> bool:
    """A schema complaint inside a value the builder already rejected adds nothing."""
    return any(path.startswith(r + ".") or path.startswith(r + "[") for r in reported if r)


# --- pass 1: the builder ---------------------------------------------------------------------------------------


def _build(cls: type[Any], raw: object, path: str, problems: list[Problem]) -> Any:
    if not isinstance(raw, dict):
        problems.append(Problem(path, f"must be a table, not {_kind(raw)}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            problems.append(Problem(_join(path, key), _unknown_key_message(key, fields)))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(Problem(sub, f"is required (add `{name} = ...`)"))
            continue
        values[name] = _convert(hints[name], f.metadata, raw[name], sub, problems)
    try:
        return cls(**values)
    except TypeError:
        return None


def _unknown_key_message(key: str, fields: typing.Iterable[str]) -> str:
    names = sorted(fields)
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of: {', '.join(names)}"


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
        if isinstance(value, bool) or value not in args:
            choices = ", ".join(_literal(a) for a in args)
            problems.append(Problem(path, f"must be one of {choices}, not {_literal(value)}"))
        return value
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(Problem(path, f"must be an array, not {_kind(value)}"))
            return ()
        item_tp = args[0]
        item_meta = _item_meta(meta)
        return tuple(_convert(item_tp, item_meta, v, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(Problem(path, f"must be a table of texts, not {_kind(value)}"))
            return {}
        for key, text in value.items():
            if "key_pattern" in meta and re.search(meta["key_pattern"], key) is None:
                hint = "message keys are dotted lowercase names such as remedy.vpn"
                problems.append(Problem(_join(path, key), _pattern_message(key, meta["key_pattern"], hint)))
            elif not isinstance(text, str):
                problems.append(Problem(_join(path, key), f"must be a string, not {_kind(text)}"))
        return dict(value)
    if tp is float and meta.get("duration"):
        if not isinstance(value, str):
            problems.append(Problem(path, f'must be a duration string such as "5m", not {_kind(value)}'))
            return 0.0
        try:
            seconds = model.parse_duration(value)
        except ValueError as err:
            problems.append(Problem(path, str(err)))
            return 0.0
        minimum = meta.get("min_seconds")
        if minimum is not None and seconds < minimum:
            problems.append(
                Problem(path, f"{value!r} is too short; use at least {model.format_duration(minimum)}")
            )
        return seconds
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
    names = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}
    expected = {str: str, int: int, bool: bool, float: (int, float)}.get(tp)
    if expected is not None:
        if isinstance(value, bool) and tp is not bool:
            problems.append(Problem(path, f"must be {names[tp]}, not a boolean"))
        elif not isinstance(value, expected):  # type: ignore[arg-type]
            problems.append(Problem(path, f"must be {names[tp]}, not {_kind(value)}"))
        else:
            _check_constraints(meta, value, path, problems)
        return value
    return value


_EMPTY_MESSAGE = "must not be empty"


def _pattern_message(instance: object, pattern: str, hint: str | None) -> str:
    return f"{instance!r} is not allowed here; {hint or f'it must match the regular expression {pattern}'}"


def _minimum_message(instance: object, minimum: object) -> str:
    return f"must be at least {minimum}, not {instance}"


def _maximum_message(instance: object, maximum: object) -> str:
    return f"must be at most {maximum}, not {instance}"


def _enum_message(instance: object, choices: typing.Iterable[object]) -> str:
    return f"must be one of {', '.join(_literal(v) for v in choices)}, not {_literal(instance)}"


def _check_constraints(
    meta: typing.Mapping[str, Any], value: object, path: str, problems: list[Problem]
) -> None:
    """The schema keywords written as field metadata (policy.schema copies the same keys into the schema)."""
    if isinstance(value, str):
        if "minLength" in meta and len(value) < meta["minLength"]:
            problems.append(Problem(path, _EMPTY_MESSAGE))
        elif "pattern" in meta and re.search(meta["pattern"], value) is None:
            problems.append(Problem(path, _pattern_message(value, meta["pattern"], meta.get("pattern_hint"))))
        if "enum" in meta and value not in meta["enum"]:
            problems.append(Problem(path, _enum_message(value, meta["enum"])))
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in meta and value < meta["minimum"]:
            problems.append(Problem(path, _minimum_message(value, meta["minimum"])))
        elif "maximum" in meta and value > meta["maximum"]:
            problems.append(Problem(path, _maximum_message(value, meta["maximum"])))


def _item_meta(meta: typing.Mapping[str, Any]) -> dict[str, Any]:
    """Array item constraints: ``items_enum`` -> ``enum`` etc."""
    return {key[len("items_") :]: value for key, value in meta.items() if key.startswith("items_")}


def _literal(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    kinds = {
        dict: "a table",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        datetime: "a date-time",
        date: "a date",
        time: "a time",
    }
    return kinds.get(type(value), type(value).__name__)


# --- pass 2: the JSON Schema ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def schema_validator() -> Any:
    import jsonschema

    from policy.schema import policy_schema

    return jsonschema.Draft202012Validator(policy_schema())


def as_json_data(value: object) -> object:
    """TOML data -> JSON data (date-times as RFC 3339 strings), the form the JSON Schema describes."""
    if isinstance(value, dict):
        return {k: as_json_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json_data(v) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def schema_problems(raw: dict[str, Any]) -> list[Problem]:
    """Problems the published JSON Schema finds in parsed TOML data (unlocated)."""
    out: list[Problem] = []
    for error in schema_validator().iter_errors(as_json_data(raw)):
        path = ""
        for part in error.absolute_path:
            path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    out.append(Problem(_join(path, key), _unknown_key_message(key, known)))
        elif error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    out.append(Problem(_join(path, name), f"is required (add `{name} = ...`)"))
        elif "propertyNames" in error.schema_path and isinstance(error.instance, str):
            out.append(Problem(_join(path, error.instance), _schema_message(error)))
        else:
            out.append(Problem(path, _schema_message(error)))
    return out


def _schema_message(error: Any) -> str:
    validator = error.validator
    value = error.validator_value
    instance = error.instance
    if validator == "pattern":
        if value == model.DURATION_PATTERN:
            return f'{instance!r} is not a duration; write e.g. "90s", "5m" or "1h30m"'
        return _pattern_message(instance, value, error.schema.get("x-pattern-hint"))
    if validator == "minimum":
        return _minimum_message(instance, value)
    if validator == "maximum":
        return _maximum_message(instance, value)
    if validator == "minLength":
        return _EMPTY_MESSAGE
    if validator == "enum":
        return _enum_message(instance, value)
    if validator == "type":
        return f"must be of type {value}, not {_kind(instance)}"
    return str(error.message)


# --- pass 3: semantic checks ---------------------------------------------------------------------------------


def _semantic_problems(policy: model.Policy, reported: set[str]) -> list[Problem]:
    out: list[Problem] = []
    for check, depends in _SEMANTIC_CHECKS:
        if any(_touches(d, reported) for d in depends):
            continue
        try:
            found = check(policy)
        except (AttributeError, TypeError):
            continue  # its inputs are already broken and reported; it would add nothing
        out.extend(p for p in found if not _touches(p.path, reported))
    return out


def _touches(path: str, reported: set[str]) -> bool:
    return any(
        path == r or path.startswith((r + ".", r + "[")) or r.startswith((path + ".", path + "["))
        for r in reported
    )


def _check_stages(policy: model.Policy) -> list[Problem]:
    presence = policy.presence
    out: list[Problem] = []
    if not presence.warn_after < presence.protect_after:
        out.append(
            Problem(
                "presence.warn_after",
                f"must be shorter than protect_after ({model.format_duration(presence.protect_after)}): "
                "the countdown warns before protection",
            )
        )
    if not presence.protect_after < presence.lock_after:
        out.append(
            Problem(
                "presence.lock_after",
                f"must be longer than protect_after ({model.format_duration(presence.protect_after)}): "
                "windows are covered before the session locks",
            )
        )
    return out


def _check_customer_apps(policy: model.Policy) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for index, app in enumerate(policy.customer_apps):
        if not isinstance(app, model.CustomerApp):
            continue
        path = f"customer_apps[{index}]"
        if app.name in seen:
            out.append(
                Problem(
                    f"{path}.name", f"duplicate rule name {app.name!r} (also customer_apps[{seen[app.name]}])"
                )
            )
        seen.setdefault(app.name, index)
        if not app.processes and not app.families and app.title is None:
            out.append(
                Problem(path, "needs processes or title; otherwise every window would count as customer data")
            )
        out.extend(_glob_problems(app.processes, f"{path}.processes"))
    return out


def _check_share_signatures(policy: model.Policy) -> list[Problem]:
    out: list[Problem] = []
    for index, signature in enumerate(policy.screen_share.signatures):
        if not isinstance(signature, model.ShareSignature):
            continue
        path = f"screen_share.signatures[{index}]"
        if not signature.processes and signature.title is None and signature.wm_class is None:
            out.append(Problem(path, "needs processes, title or wm_class to detect anything"))
        out.extend(_glob_problems(signature.processes, f"{path}.processes"))
    return out


def _check_vpn(policy: model.Policy) -> list[Problem]:
    out: list[Problem] = []
    vpn = policy.network.vpn
    for index, route in enumerate(vpn.routes):
        message = _route_problem(route)
        if message:
            out.append(Problem(f"network.vpn.routes[{index}]", message))
    out.extend(_glob_problems(vpn.interfaces, "network.vpn.interfaces"))
    canary = vpn.dns_canary
    if isinstance(canary, model.DnsCanary):
        if not _HOSTNAME.match(canary.name):
            out.append(Problem("network.vpn.dns_canary.name", f"{canary.name!r} is not a host name"))
        for index, address in enumerate(canary.expect):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                out.append(
                    Problem(f"network.vpn.dns_canary.expect[{index}]", f"{address!r} is not an IP address")
                )
    return out


def _check_tls(policy: model.Policy) -> list[Problem]:
    out: list[Problem] = []
    urls: dict[str, int] = {}
    for index, endpoint in enumerate(policy.network.tls):
        if not isinstance(endpoint, model.TlsEndpoint):
            continue
        path = f"network.tls[{index}]"
        parts = urlsplit(endpoint.url)
        if parts.scheme != "https" or not parts.hostname:
            out.append(Problem(f"{path}.url", f"{endpoint.url!r} must be an https:// URL with a host name"))
        elif endpoint.url in urls:
            out.append(Problem(f"{path}.url", f"duplicate URL (also network.tls[{urls[endpoint.url]}])"))
        urls.setdefault(endpoint.url, index)
        for pin_index, pin in enumerate(endpoint.pins):
            if not _is_sha256_b64(pin):
                out.append(
                    Problem(
                        f"{path}.pins[{pin_index}]",
                        "must be the base64 SHA-256 of a SubjectPublicKeyInfo (44 characters ending in '=')",
                    )
                )
    return out


def _check_acknowledgement(policy: model.Policy) -> list[Problem]:
    ack = policy.acknowledgement
    out: list[Problem] = []
    if ack.required:
        for language in ("ja", "en"):
            if not getattr(ack.text, language).strip():
                out.append(
                    Problem(
                        f"acknowledgement.text.{language}", "is required when acknowledgement.required = true"
                    )
                )
    return out


# (check, paths whose problems make the check meaningless)
_SEMANTIC_CHECKS: tuple[tuple[typing.Callable[[model.Policy], list[Problem]], tuple[str, ...]], ...] = (
    (_check_stages, ("presence.warn_after", "presence.protect_after", "presence.lock_after")),
    (_check_customer_apps, ()),
    (_check_share_signatures, ()),
    (_check_vpn, ()),
    (_check_tls, ()),
    (_check_acknowledgement, ("acknowledgement.required",)),
)


def _glob_problems(globs: tuple[str, ...], path: str) -> list[Problem]:
    return [Problem(f"{path}[{i}]", "must not be empty") for i, g in enumerate(globs) if not g.strip()]


def _route_problem(route: str) -> str | None:
    if "/" in route:
        try:
            ipaddress.ip_network(route, strict=True)
        except ValueError as err:
            if "host bits set" in str(err):
                fixed = ipaddress.ip_network(route, strict=False)
                return f"{route!r} has host bits set; did you mean {str(fixed)!r}?"
            return f"{route!r} is not a valid CIDR (e.g. 10.0.0.0/8 or fd00::/8)"
        return None
    try:
        ipaddress.ip_address(route)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", route) or not _HOSTNAME.match(route):
        return f"{route!r} is neither a CIDR, an IP address nor a host name"
    return None


def _is_sha256_b64(pin: str) -> bool:
    try:
        return len(base64.b64decode(pin, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
