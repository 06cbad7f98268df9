"""OCSF records for every agent event kind, the privacy filter, and the validator shared by agent and server.

This module is the one place where an :class:`~agent.report.stream.AgentEvent` becomes a record that may leave
the PC (SPEC.md, Events). The privacy filter is an allow-list: each kind names the data fields it may carry and
what each value may look like. Anything else is dropped and only the *name* of the dropped field is kept in
``unmapped.redacted``, so a producer bug shows up without leaking the value. Window titles never pass: a
``title`` value is dropped, or replaced by a keyed hash when the policy says ``window_titles = "hashed"``.
Matched windows are named by their rule name, and only names of rules in the current policy pass.

Pure: no I/O; ``uid`` and ``time`` come from the caller's clock and random source.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from core import __version__
from agent.report.stream import AgentEvent, Kind

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "Mamori", "vendor_name": "Mamori", "version": __version__}
MAX_EVENT_BYTES = 16 * 1024


class Priority(IntEnum):
    """Drop order in a full outbox: telemetry first, security findings last (SPEC.md, Events)."""

    TELEMETRY = 0
    INFO = 1
    SECURITY = 2


# class_uid -> (class_name, category_uid, category_name)
CLASSES: dict[int, tuple[str, int, str]] = {
    2003: ("Compliance Finding", 2, "Findings"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    4014: ("Tunnel Activity", 4, "Network Activity"),
    5019: ("Device Config State Change", 5, "Discovery"),
}

SEVERITIES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal"}

# --- value shapes of the allow-list -------------------------------------------------------------------------
# Codes are short machine words chosen by the producer (e.g. "away", "bad_signature"); a sentence, a path, a URL
# or a command line does not match and is redacted.
_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_CHECK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\[\]-]{0,63}$")
_IFACE = re.compile(r"^[\w.:-][\w .:-]{0,63}$")
_POLICY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# Share/recording apps the agent may name: the app names of the built-in share signatures (the one source of
# truth, agent/share/signatures.py) plus "other". A value outside this list (or the policy's own signature names)
# is reported as "other": a detector bug must not be able to ship a window title under the "app" key.
@functools.cache
def known_share_apps() -> frozenset[str]:
    """Casefolded share/recording app names the filter lets through without a policy signature."""
    # Imported here: agent.share pulls in the share guard and monitors, which the server does not need.
    from agent.share.signatures import builtin_app_names

    return frozenset(a.casefold() for a in (*builtin_app_names(), "other"))


@dataclass(frozen=True)
class Context:
    """What the filter needs to know about the current policy."""

    rule_names: frozenset[str] = frozenset()  # names of [[customer_apps]] rules
    share_apps: frozenset[str] = frozenset()  # names of [[screen_share.signatures]] (casefolded)
    window_titles: str = "none"  # "none" | "hashed" (policy [reporting])
    title_key: bytes | None = None  # per-device secret for the keyed title hash


# A field checker returns the value to keep, or raises _Reject to redact it.
class _Reject(Exception):
    pass


Checker = Callable[[Any, Context], Any]


def _code(value: Any, _ctx: Context) -> str:
    if isinstance(value, str) and _CODE.match(value):
        return value
    raise _Reject


def _one_of(*allowed: str) -> Checker:
    """A closed vocabulary (the values documented in agent/report/stream.py and SPEC.md)."""
    choices = frozenset(allowed)

    def check(value: Any, _ctx: Context) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise _Reject

    return check


_STATUS = _one_of("pass", "fail", "error", "skip")
_MODE = _one_of("off", "report", "warn", "block")
_ENFORCEMENT = _one_of("none", "warn", "block")
_PROTECT_REASON = _one_of(
    "away", "share", "posture", "ack", "step_away", "lock_failed", "selfcheck", "paused"
)
_STATE = _one_of("online", "away", "non_compliant")


def _opt(checker: Checker) -> Checker:
    return lambda value, ctx: None if value is None else checker(value, ctx)


def _opt_code(value: Any, ctx: Context) -> str | None:
    return None if value is None else _code(value, ctx)


def _check_id(value: Any, _ctx: Context) -> str:
    if isinstance(value, str) and _CHECK_ID.match(value):
        return value
    raise _Reject


def _check_ids(value: Any, ctx: Context) -> list[str]:
    if isinstance(value, list | tuple | frozenset | set) and len(value) <= 64:
        return sorted({_check_id(v, ctx) for v in value})
    raise _Reject


def _iface(value: Any, _ctx: Context) -> str:
    if isinstance(value, str) and _IFACE.match(value):
        return value
    raise _Reject


def _count(value: Any, _ctx: Context) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    raise _Reject


def _number(value: Any, _ctx: Context) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2**53:
        return round(value, 3) if isinstance(value, float) else value
    raise _Reject


def _policy_id(value: Any, _ctx: Context) -> str:
    if isinstance(value, str) and _POLICY_ID.match(value):
        return value
    raise _Reject


def _opt_policy_id(value: Any, ctx: Context) -> str | None:
    return None if value is None else _policy_id(value, ctx)


def _opt_count(value: Any, ctx: Context) -> int | None:
    return None if value is None else _count(value, ctx)


def _rules(value: Any, ctx: Context) -> list[str]:
    """Rule names of the current policy only; anything else (a title, a file name) is dropped."""
    if not isinstance(value, list | tuple | frozenset | set):
        raise _Reject
    # 64 characters: what the server accepts for a rule name (validate_record).
    kept = sorted({v for v in value if isinstance(v, str) and v in ctx.rule_names and len(v) <= 64})
    if len(kept) != len(set(value)):
        # Some names were not rule names: keep the known ones, flag the field as partly redacted.
        raise _PartialReject(kept)
    return kept


class _PartialReject(_Reject):
    def __init__(self, kept: Any) -> None:
        super().__init__()
        self.kept = kept


def _share_app(value: Any, ctx: Context) -> str:
    if isinstance(value, str) and (
        value.casefold() in known_share_apps() or value.casefold() in ctx.share_apps
    ):
        return value
    raise _PartialReject("other")


def _counts_by_key(value: Any, _ctx: Context) -> dict[str, int]:
    if not isinstance(value, Mapping) or len(value) > 64:
        raise _Reject
    out: dict[str, int] = {}
    for k, v in value.items():
        if not (isinstance(k, str) and _CODE.match(k)):
            raise _Reject
        out[k] = _count(v, _ctx)
    return out


def _uids(value: Any, _ctx: Context) -> list[str]:
    if (
        isinstance(value, list | tuple)
        and len(value) <= 100
        and all(isinstance(v, str) and _UUID.match(v) for v in value)
    ):
        return list(value)
    raise _Reject


def _bool(value: Any, _ctx: Context) -> bool:
    if isinstance(value, bool):
        return value
    raise _Reject


@dataclass(frozen=True)
class KindSpec:
    class_uid: int
    activity_id: int
    activity_name: str
    fields: Mapping[str, Checker]
    priority: Priority
    severity: Callable[[Mapping[str, Any]], int]
    title: str  # fixed English summary, never built from data


def _fixed(severity: int) -> Callable[[Mapping[str, Any]], int]:
    return lambda _data: severity


def _posture_severity(data: Mapping[str, Any]) -> int:
    if data.get("status") == "pass":
        return 1
    return {"block": 4, "warn": 3}.get(str(data.get("enforcement")), 2)


_REASON = {"reason": _code}
_RULES = {"rules": _rules, "count": _count}
_PROTECTION = {"reason": _PROTECT_REASON, **_RULES}

KINDS: dict[str, KindSpec] = {
    Kind.PRESENCE_STAGE: KindSpec(
        5019,
        99,
        "Presence Stage",
        {"stage": _code, "previous": _opt_code},
        Priority.INFO,
        _fixed(1),
        "Presence stage changed",
    ),
    Kind.PROTECTION_APPLIED: KindSpec(
        2003, 1, "Create", _PROTECTION, Priority.SECURITY, _fixed(3), "Customer data protected"
    ),
    Kind.PROTECTION_REMOVED: KindSpec(
        2003, 3, "Close", _PROTECTION, Priority.INFO, _fixed(1), "Customer data protection removed"
    ),
    Kind.SESSION_LOCKED: KindSpec(
        3002, 99, "Lock", {"method": _code}, Priority.SECURITY, _fixed(1), "Session locked"
    ),
    Kind.SESSION_UNLOCKED: KindSpec(3002, 99, "Unlock", {}, Priority.INFO, _fixed(1), "Session unlocked"),
    Kind.LOCK_FAILED: KindSpec(
        3002,
        99,
        "Lock Failed",
        {"method": _code, **_REASON},
        Priority.SECURITY,
        _fixed(4),
        "Session lock failed",
    ),
    Kind.POSTURE_FINDING: KindSpec(
        2003,
        2,
        "Update",
        {
            "check_id": _check_id,
            "status": _STATUS,
            "previous": _opt(_STATUS),
            "mode": _MODE,
            "enforcement": _ENFORCEMENT,
        },
        Priority.SECURITY,
        _posture_severity,
        "Posture check result",
    ),
    Kind.VPN_UP: KindSpec(4014, 1, "Open", {"interface": _iface}, Priority.INFO, _fixed(1), "VPN connected"),
    Kind.VPN_DOWN: KindSpec(
        4014, 2, "Close", {"interface": _iface}, Priority.SECURITY, _fixed(2), "VPN disconnected"
    ),
    Kind.SHARE_STARTED: KindSpec(
        2003,
        1,
        "Create",
        {"app": _share_app},
        Priority.SECURITY,
        _fixed(2),
        "Screen share or recording started",
    ),
    Kind.SHARE_ENDED: KindSpec(
        2003,
        3,
        "Close",
        {"app": _share_app, "duration_s": _number},
        Priority.INFO,
        _fixed(1),
        "Screen share or recording ended",
    ),
    Kind.SHARE_SELFCHECK_FAILED: KindSpec(
        2003, 1, "Create", dict(_RULES), Priority.SECURITY, _fixed(4), "Cover self-check failed during share"
    ),
    Kind.CAPABILITY_DEGRADED: KindSpec(
        5019,
        1,
        "Log",
        {"capability": _code, **_REASON},
        Priority.SECURITY,
        _fixed(3),
        "Agent capability degraded",
    ),
    Kind.PROTECTION_PAUSED: KindSpec(
        5019,
        1,
        "Log",
        {"reason_code": _code, "minutes": _number},
        Priority.SECURITY,
        _fixed(3),
        "Protection paused",
    ),
    Kind.PROTECTION_RESUMED: KindSpec(5019, 1, "Log", {}, Priority.INFO, _fixed(1), "Protection resumed"),
    Kind.AGENT_STARTED: KindSpec(5019, 1, "Log", {}, Priority.INFO, _fixed(1), "Agent started"),
    Kind.AGENT_STOPPED: KindSpec(5019, 1, "Log", {}, Priority.INFO, _fixed(1), "Agent stopped"),
    Kind.POLICY_APPLIED: KindSpec(
        5019,
        1,
        "Log",
        {"policy_id": _policy_id, "version": _count},
        Priority.INFO,
        _fixed(1),
        "Policy applied",
    ),
    Kind.POLICY_REJECTED: KindSpec(
        5019,
        1,
        "Log",
        {"policy_id": _opt_policy_id, "version": _opt_count, **_REASON},
        Priority.SECURITY,
        _fixed(3),
        "Policy rejected",
    ),
    Kind.POLICY_ACKNOWLEDGED: KindSpec(
        5019,
        1,
        "Log",
        {"policy_id": _policy_id, "version": _count},
        Priority.INFO,
        _fixed(1),
        "Policy acknowledged",
    ),
    Kind.HEARTBEAT: KindSpec(
        5019,
        99,
        "Heartbeat",
        {
            "state": _STATE,
            "stage": _opt_code,
            "failing": _check_ids,
            "policy_id": _opt_policy_id,
            "policy_version": _opt_count,
            "uptime_s": _number,
        },
        Priority.TELEMETRY,
        _fixed(1),
        "Heartbeat",
    ),
    Kind.REPORT_GAP: KindSpec(
        5019,
        99,
        "Events Dropped",
        {
            "dropped": _counts_by_key,
            "coalesced": _counts_by_key,
            "classes": _counts_by_key,
            "first_sequence": _opt_count,
            "last_sequence": _opt_count,
        },
        Priority.SECURITY,
        _fixed(3),
        "Events dropped by the agent's full outbox",
    ),
    Kind.REPORT_REJECTED: KindSpec(
        5019,
        99,
        "Events Rejected",
        {"count": _count, "uids": _uids, "reasons": _counts_by_key},
        Priority.SECURITY,
        _fixed(3),
        "Events rejected by the server",
    ),
}

# Keys that must never appear anywhere in a record (defence in depth on the server side too).
FORBIDDEN_KEYS = frozenset(
    {
        "title",
        "window_title",
        "titles",
        "text",
        "typed",
        "keys",
        "keystrokes",
        "key",
        "screenshot",
        "pixels",
        "image",
        "command_line",
        "cmd_line",
        "cmdline",
        "argv",
        "url",
        "clipboard",
    }
)

_missing_kinds = {k.value for k in Kind} - set(KINDS)
assert not _missing_kinds, f"unmapped event kinds: {_missing_kinds}"


def priority_of(kind: str) -> Priority:
    return KINDS[kind].priority if kind in KINDS else Priority.INFO


def record_priority(record: Mapping[str, Any]) -> Priority:
    """Priority of a built record: posture passes are plain information, failures are security findings."""
    kind = str(record.get("metadata", {}).get("event_code", ""))
    if kind == Kind.POSTURE_FINDING and record.get("unmapped", {}).get("status") == "pass":
        return Priority.INFO
    return priority_of(kind)


def uuid7(now: datetime, rand: Callable[[int], bytes] = os.urandom) -> str:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, then random bits (time-ordered, unique without coordination)."""
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    tail = int.from_bytes(rand(10), "big")
    rand_a = tail >> 68 & 0xFFF
    rand_b = tail & ((1 << 62) - 1)
    value = ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def title_hash(key: bytes, title: str) -> str:
    """Keyed hash of a matched window title (policy window_titles = "hashed"): equal titles on one device
    compare equal, but the server cannot recover or dictionary-check them without the device's key."""
    return hmac.new(key, title.encode("utf-8"), hashlib.sha256).hexdigest()


def filter_data(kind: str, data: Mapping[str, Any], ctx: Context) -> tuple[dict[str, Any], list[str]]:
    """Apply the allow-list of ``kind`` to ``data``. Returns (kept fields, names of redacted fields)."""
    spec = KINDS[kind]
    kept: dict[str, Any] = {}
    redacted: list[str] = []
    for name, value in data.items():
        if (
            name == "title"
            and ctx.window_titles == "hashed"
            and ctx.title_key
            and isinstance(value, str)
            and kind in (Kind.PROTECTION_APPLIED, Kind.PROTECTION_REMOVED, Kind.SHARE_SELFCHECK_FAILED)
        ):
            kept["title_hash"] = title_hash(ctx.title_key, value)
            continue
        checker = spec.fields.get(name)
        if checker is None:
            redacted.append(str(name)[:64] if _CODE.match(str(name)[:64]) else "?")
            continue
        try:
            kept[name] = checker(value, ctx)
        except _PartialReject as partial:
            kept[name] = partial.kept
            redacted.append(name)
        except _Reject:
            redacted.append(name)
    return kept, sorted(set(redacted))


def build_record(event: AgentEvent, ctx: Context, *, uid: str | None = None) -> dict[str, Any]:
    """AgentEvent -> OCSF record without ``metadata.sequence`` (the outbox assigns it) and without ``device``
    (the uploader stamps the enrolled device id). The one place events are built (privacy filter)."""
    kind = str(event.kind)
    spec = KINDS[kind]
    data, redacted = filter_data(kind, event.data, ctx)
    return _assemble(
        kind, spec=spec, data=data, redacted=redacted, when=event.time, uid=uid or uuid7(event.time)
    )


def _assemble(
    kind: str, *, spec: KindSpec, data: dict[str, Any], redacted: list[str], when: datetime, uid: str
) -> dict[str, Any]:
    class_name, category_uid, category_name = CLASSES[spec.class_uid]
    severity_id = spec.severity(data)
    record: dict[str, Any] = {
        "class_uid": spec.class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": spec.activity_id,
        "activity_name": spec.activity_name,
        "type_uid": spec.class_uid * 100 + spec.activity_id,
        "severity_id": severity_id,
        "severity": SEVERITIES[severity_id],
        "time": int(when.timestamp() * 1000),
        "message": spec.title,
        "metadata": {"uid": uid, "event_code": kind, "product": dict(PRODUCT), "version": OCSF_VERSION},
    }
    if spec.class_uid == 2003:
        control = str(data.get("check_id") or kind)
        status = str(data.get("status") or ("fail" if spec.priority == Priority.SECURITY else "pass"))
        record["compliance"] = {"control": control, "status": status}
        record["finding_info"] = {"uid": uid, "title": spec.title}
    elif spec.class_uid == 4014 and "interface" in data:
        record["tunnel_interface"] = {"name": data["interface"]}
    unmapped: dict[str, Any] = dict(data)
    if redacted:
        unmapped["redacted"] = redacted
    record["unmapped"] = unmapped
    return record


def gap_record(
    dropped: Mapping[str, int],
    coalesced: Mapping[str, int],
    first_sequence: int | None,
    last_sequence: int | None,
    when: datetime,
) -> dict[str, Any]:
    by_class: dict[str, int] = {}
    for kind, count in (*dropped.items(), *coalesced.items()):
        key = str(KINDS[kind].class_uid) if kind in KINDS else "0"
        by_class[key] = by_class.get(key, 0) + count
    data = {
        "dropped": dict(dropped),
        "coalesced": dict(coalesced),
        "classes": by_class,
        "first_sequence": first_sequence,
        "last_sequence": last_sequence,
    }
    event = AgentEvent(Kind.REPORT_GAP, when, data)
    return build_record(event, Context())


def stamp_device(record: dict[str, Any], device_id: str) -> dict[str, Any]:
    """Add the OCSF device object at send time: only the enrollment id (see docs/privacy.md, "device")."""
    record["device"] = {"uid": device_id, "type_id": 0}
    return record


# --- validation (agent before storing, server on ingest) ----------------------------------------------------

_TOP_KEYS = frozenset(
    {
        "class_uid",
        "class_name",
        "category_uid",
        "category_name",
        "activity_id",
        "activity_name",
        "type_uid",
        "severity_id",
        "severity",
        "time",
        "message",
        "metadata",
        "device",
        "compliance",
        "finding_info",
        "tunnel_interface",
        "unmapped",
    }
)
_META_KEYS = frozenset({"uid", "sequence", "event_code", "product", "version"})


def _forbidden_paths(value: Any, path: str = "") -> Iterable[str]:
    # JSON objects are dicts and lists: exact type checks keep this cheap on the ingest path.
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is str and k.casefold() in FORBIDDEN_KEYS:
                sub = f"{path}.{k}" if path else k
                # OCSF's finding_info.title is a fixed summary from KINDS (checked below), not a window title.
                if sub != "finding_info.title":
                    yield sub
            if type(v) is dict or type(v) is list:
                yield from _forbidden_paths(v, f"{path}.{k}" if path else str(k))
    elif type(value) is list:
        for i, v in enumerate(value):
            if type(v) is dict or type(v) is list:
                yield from _forbidden_paths(v, f"{path}[{i}]")


def _holds_forbidden_key(record: dict[str, Any]) -> bool:
    """Fast yes/no over every key at every depth (the ingest hot path); paths are computed only on a hit.

    Keys the builder itself writes (``_SAFE_KEYS``, fixed at import) skip the casefold; any other key is
    casefolded and looked up in FORBIDDEN_KEYS, as ``_forbidden_paths`` does."""
    safe = _SAFE_KEYS
    forbidden = FORBIDDEN_KEYS
    stack: list[Any] = []
    for key, value in record.items():
        if key not in safe and (type(key) is not str or key.casefold() in forbidden):
            return True
        if type(value) is dict:
            if key == "finding_info":
                # OCSF's finding_info.title is a fixed summary from KINDS (checked in validate_record).
                for inner_key, inner in value.items():
                    if inner_key == "title":
                        continue
                    if inner_key not in safe and (
                        type(inner_key) is not str or inner_key.casefold() in forbidden
                    ):
                        return True
                    if type(inner) is dict or type(inner) is list:
                        stack.append(inner)
            else:
                stack.append(value)
        elif type(value) is list:
            stack.append(value)
    while stack:
        value = stack.pop()
        if type(value) is dict:
            for key, inner in value.items():
                if key not in safe and (type(key) is not str or key.casefold() in forbidden):
                    return True
                if type(inner) is dict or type(inner) is list:
                    stack.append(inner)
        else:
            stack.extend(v for v in value if type(v) is dict or type(v) is list)
    return False


def _server_rules(value: Any, _ctx: Context) -> Any:
    # The server does not know the device's policy: rule names must at least look like names.
    if type(value) is list and len(value) <= 64 and all(type(v) is str and 0 < len(v) <= 64 for v in value):
        return value
    raise _Reject


def _server_app(value: Any, _ctx: Context) -> Any:
    if type(value) is str and 0 < len(value) <= 64:
        return value
    raise _Reject


def _redacted(value: Any, _ctx: Context) -> Any:
    if (
        type(value) is list
        and len(value) <= 64
        and all(type(v) is str and (v == "?" or _CODE.match(v)) for v in value)
    ):
        return value
    raise _Reject


def _hex64(value: Any, _ctx: Context) -> Any:
    if type(value) is str and _HEX64.match(value):
        return value
    raise _Reject


_SERVER_SHAPES: dict[Checker, Checker] = {_rules: _server_rules, _share_app: _server_app}
# What the validator accepts in ``unmapped`` per kind: the builder's checkers, with the two that need the
# device's policy (rule names, share-app names) replaced by shape checks.
_UNMAPPED: dict[str, dict[str, Checker]] = {
    kind: {
        **{name: _SERVER_SHAPES.get(checker, checker) for name, checker in spec.fields.items()},
        "redacted": _redacted,
        "title_hash": _hex64,
    }
    for kind, spec in KINDS.items()
}
_NO_CONTEXT = Context()
# Every key the builder writes, none of them forbidden (checked below): the forbidden-key scan skips their
# casefold. Fixed at import, never grown from received data.
_SAFE_KEYS: frozenset[str] = frozenset(
    {
        *_TOP_KEYS,
        *_META_KEYS,
        *PRODUCT,
        "type_id",
        "control",
        "status",
        "name",
        *(name for checkers in _UNMAPPED.values() for name in checkers),
        *KINDS,
    }
)
assert not {k.casefold() for k in _SAFE_KEYS} & FORBIDDEN_KEYS, "a safe key is forbidden"
_DEVICE_KEYS = frozenset({"uid", "type_id"})
_FINDING_KEYS = frozenset({"uid", "title"})


def validate_record(record: Any, *, require_device: bool = True, require_sequence: bool = True) -> list[str]:
    """Every problem of one record as "dotted.path: message" strings; empty when valid.

    Used by the agent before storing and by the server on ingest (the hot path: keep it cheap)."""
    if type(record) is not dict:
        return ["(top): must be a JSON object"]
    problems: list[str] = []
    if not record.keys() <= _TOP_KEYS:  # a subset test builds no set in the common case
        problems.extend(f"{key}: unknown field" for key in sorted(record.keys() - _TOP_KEYS))
    if _holds_forbidden_key(record):
        problems.extend(f"{p}: field not allowed (privacy)" for p in _forbidden_paths(record))
    class_uid = record.get("class_uid")
    activity_id = record.get("activity_id")
    if type(class_uid) is not int or class_uid not in CLASSES:
        problems.append(f"class_uid: must be one of {sorted(CLASSES)}")
    elif record.get("category_uid") != CLASSES[class_uid][1]:
        problems.append(f"category_uid: must be {CLASSES[class_uid][1]} for class {class_uid}")
    if type(activity_id) is not int or not (0 <= activity_id <= 99):
        problems.append("activity_id: must be an integer 0..99")
    elif type(class_uid) is int and record.get("type_uid") != class_uid * 100 + activity_id:
        problems.append("type_uid: must be class_uid*100+activity_id")
    severity = record.get("severity_id")
    if type(severity) is not int or severity not in SEVERITIES:
        problems.append("severity_id: must be 0..6")
    when = record.get("time")
    if type(when) is not int or not (0 < when < 2**53):
        problems.append("time: must be epoch milliseconds")
    meta = record.get("metadata")
    kind = ""
    if type(meta) is not dict:
        problems.append("metadata: must be an object")
    else:
        if not meta.keys() <= _META_KEYS:
            problems.extend(f"metadata.{key}: unknown field" for key in sorted(meta.keys() - _META_KEYS))
        uid = meta.get("uid")
        if type(uid) is not str or not _UUID7.match(uid):
            problems.append("metadata.uid: must be a lowercase UUIDv7")
        seq = meta.get("sequence")
        if require_sequence and not (type(seq) is int and 1 <= seq < 2**63):
            problems.append("metadata.sequence: must be a positive integer")
        code = meta.get("event_code")
        kind = code if type(code) is str else ""
        if kind not in KINDS:
            problems.append("metadata.event_code: unknown event kind")
        product = meta.get("product")
        if not (type(product) is dict and type(product.get("name")) is str):
            problems.append("metadata.product: must be an object with a name")
        if type(meta.get("version")) is not str:
            problems.append("metadata.version: must be the OCSF version string")
    device = record.get("device")
    if require_device or device is not None:
        device_uid = device.get("uid") if type(device) is dict else None
        if type(device_uid) is not str or not _DEVICE_ID.match(device_uid):
            problems.append("device.uid: must be the enrolled device id")
        elif not device.keys() <= _DEVICE_KEYS:  # type: ignore[union-attr]
            problems.append("device: only uid and type_id are reported")
    if kind in KINDS:
        spec = KINDS[kind]
        if class_uid != spec.class_uid or activity_id != spec.activity_id:
            problems.append(f"class_uid/activity_id: do not match event kind {kind}")
        finding = record.get("finding_info")
        if finding is not None and not (
            type(finding) is dict
            and finding.keys() <= _FINDING_KEYS
            and finding.get("title") in (spec.title, None)
        ):
            problems.append("finding_info: only uid and the fixed title of the event kind")
        unmapped = record.get("unmapped", {})
        if type(unmapped) is not dict:
            problems.append("unmapped: must be an object")
        else:
            checkers = _UNMAPPED[kind]
            for key, value in unmapped.items():
                checker = checkers.get(key)
                if checker is None:
                    problems.append(f"unmapped.{str(key)[:64]}: not reported for {kind}")
                    continue
                try:
                    checker(value, _NO_CONTEXT)
                except _Reject:
                    problems.append(f"unmapped.{key}: value not allowed for {kind}")
    return problems


def rule_context(
    rule_names: Collection[str] = (),
    share_apps: Collection[str] = (),
    window_titles: str = "none",
    title_key: bytes | None = None,
) -> Context:
    return Context(
        frozenset(rule_names), frozenset(a.casefold() for a in share_apps), window_titles, title_key
    )
