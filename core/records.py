"""The event-record contract shared by agent and server: event kinds, their OCSF mapping, and the validator.

A record is one OCSF event as it leaves the PC (SPEC.md, Events). This module says what a record may look like:
every event kind (:class:`Kind`), its OCSF class and activity, the data fields it may carry in ``unmapped`` and
the shape of each value, the keys that never appear anywhere (:data:`FORBIDDEN_KEYS`), and
:func:`validate_record`, which the agent runs before storing and the server on ingest. Building records from the
agent's events and the privacy filter that knows the device's policy are the agent's side
(``agent.report.events``).

Pure: no I/O, stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from core import __version__, ocsf

# The OCSF release every record claims and conforms to (core/ocsf.py checks it against the official schema).
OCSF_VERSION = ocsf.CLAIMED_VERSION
PRODUCT = {"name": "Mamori", "vendor_name": "Mamori", "version": __version__}
MAX_EVENT_BYTES = 16 * 1024


class Kind(StrEnum):
    """Every event kind the agent emits. Adding one means mapping it in :data:`KINDS` below."""

    # presence (Compliance Finding 2003 for protection actions, Authentication 3002 for lock/unlock)
    PRESENCE_STAGE = "presence.stage"  # data: stage, previous
    PROTECTION_APPLIED = "protection.applied"  # data: reason (away|share|posture|ack|step_away), rules, count
    PROTECTION_REMOVED = "protection.removed"  # data: reason, rules, count
    SESSION_LOCKED = "session.locked"  # data: method
    SESSION_UNLOCKED = "session.unlocked"
    LOCK_FAILED = "session.lock_failed"  # data: method, reason
    # posture (Compliance Finding 2003; Tunnel Activity 4014 for VPN up/down)
    POSTURE_FINDING = (
        "posture.finding"  # data: check_id, status, previous, mode, enforcement (none|warn|block)
    )
    VPN_UP = "vpn.up"  # data: interface
    VPN_DOWN = "vpn.down"  # data: interface
    # screen share (Compliance Finding 2003)
    SHARE_STARTED = "share.started"  # data: app
    SHARE_ENDED = "share.ended"  # data: app, duration_s
    SHARE_SELFCHECK_FAILED = "share.selfcheck_failed"  # data: rules, count
    # clipboard guard (Compliance Finding 2003): that it happened and which rule, never the content
    CLIPBOARD_CLEARED = "clipboard.cleared"  # data: selection (clipboard|primary), reason, rules, action
    # onlooker guard (Compliance Finding 2003; the camera in use: Device Config State Change 5019): counts only
    ONLOOKER_STARTED = "onlooker.started"  # data: mode, frame_rate
    ONLOOKER_DETECTED = "onlooker.detected"  # data: faces, allowed, mode
    ONLOOKER_CLEARED = "onlooker.cleared"  # data: faces (most seen), allowed, mode, duration_s
    # agent state (Device Config State Change 5019)
    CAPABILITY_DEGRADED = "agent.degraded"  # data: capability, reason
    PROTECTION_PAUSED = "agent.paused"  # data: reason_code, minutes
    PROTECTION_RESUMED = "agent.resumed"
    AGENT_STARTED = "agent.started"
    AGENT_STOPPED = "agent.stopped"  # clean stop notice
    POLICY_APPLIED = "policy.applied"  # data: policy_id, version
    POLICY_REJECTED = "policy.rejected"  # data: policy_id, version, reason
    POLICY_ACKNOWLEDGED = "policy.acknowledged"  # data: policy_id, version
    HEARTBEAT = "heartbeat"  # data: state, stage, failing, policy_id, policy_version, uptime_s
    # reporting itself (Device Config State Change 5019; built by agent/report, not published by producers)
    REPORT_GAP = (
        "report.gap"  # data: dropped/coalesced {kind: n}, classes {class_uid: n}, first/last_sequence
    )
    REPORT_REJECTED = "report.rejected"  # data: count, uids, reasons {code: n}


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

# --- value shapes ---------------------------------------------------------------------------------------------
# Codes are short machine words chosen by the producer (e.g. "away", "bad_signature"); a sentence, a path, a URL
# or a command line does not match and is redacted.
CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_CHECK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\[\]-]{0,63}$")
_IFACE = re.compile(r"^[\w.:-][\w .:-]{0,63}$")
_POLICY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class RejectedValueError(Exception):
    """Raised by a :data:`Checker` for a value the record may not carry (internal control flow, never shown)."""


# A field checker returns the value to keep (normalised: sorted ids, rounded numbers), or raises
# RejectedValueError.
Checker = Callable[[Any], Any]


def _code(value: Any) -> str:
    if isinstance(value, str) and CODE.match(value):
        return value
    raise RejectedValueError


def _one_of(*allowed: str) -> Checker:
    """A closed vocabulary (the values documented at :class:`Kind` and in SPEC.md)."""
    choices = frozenset(allowed)

    def check(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise RejectedValueError

    return check


_STATUS = _one_of("pass", "fail", "error", "skip")
_MODE = _one_of("off", "report", "warn", "block")
_ENFORCEMENT = _one_of("none", "warn", "block")
_PROTECT_REASON = _one_of(
    "away", "share", "posture", "ack", "step_away", "lock_failed", "selfcheck", "paused", "onlooker"
)
_STATE = _one_of("online", "away", "non_compliant")
_ONLOOKER_MODE = _one_of("report", "cover")


def _opt(checker: Checker) -> Checker:
    return lambda value: None if value is None else checker(value)


def _opt_code(value: Any) -> str | None:
    return None if value is None else _code(value)


def _check_id(value: Any) -> str:
    if isinstance(value, str) and _CHECK_ID.match(value):
        return value
    raise RejectedValueError


def _check_ids(value: Any) -> list[str]:
    if isinstance(value, list | tuple | frozenset | set) and len(value) <= 64:
        return sorted({_check_id(v) for v in value})
    raise RejectedValueError


def _iface(value: Any) -> str:
    if isinstance(value, str) and _IFACE.match(value):
        return value
    raise RejectedValueError


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    raise RejectedValueError


def _number(value: Any) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2**53:
        return round(value, 3) if isinstance(value, float) else value
    raise RejectedValueError


def _policy_id(value: Any) -> str:
    if isinstance(value, str) and _POLICY_ID.match(value):
        return value
    raise RejectedValueError


def _opt_policy_id(value: Any) -> str | None:
    return None if value is None else _policy_id(value)


def _opt_count(value: Any) -> int | None:
    return None if value is None else _count(value)


def rule_names(value: Any) -> Any:
    """Names of the device's [[customer_apps]] rules. Only the agent knows its policy (it keeps only names of
    the current policy's rules); here rule names must at least look like names."""
    if type(value) is list and len(value) <= 64 and all(type(v) is str and 0 < len(v) <= 64 for v in value):
        return value
    raise RejectedValueError


def share_app(value: Any) -> Any:
    """A share/recording app name. Only the agent knows the built-in and policy signatures (it reports any other
    name as "other"); here the name must at least be short."""
    if type(value) is str and 0 < len(value) <= 64:
        return value
    raise RejectedValueError


def _counts_by_key(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping) or len(value) > 64:
        raise RejectedValueError
    out: dict[str, int] = {}
    for k, v in value.items():
        if not (isinstance(k, str) and CODE.match(k)):
            raise RejectedValueError
        out[k] = _count(v)
    return out


def _uids(value: Any) -> list[str]:
    if (
        isinstance(value, list | tuple)
        and len(value) <= 100
        and all(isinstance(v, str) and _UUID.match(v) for v in value)
    ):
        return list(value)
    raise RejectedValueError


def _redacted(value: Any) -> Any:
    if (
        type(value) is list
        and len(value) <= 64
        and all(type(v) is str and (v == "?" or CODE.match(v)) for v in value)
    ):
        return value
    raise RejectedValueError


def _hex64(value: Any) -> Any:
    if type(value) is str and _HEX64.match(value):
        return value
    raise RejectedValueError


# --- the kinds ------------------------------------------------------------------------------------------------


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
_RULES = {"rules": rule_names, "count": _count}
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
        {"app": share_app},
        Priority.SECURITY,
        _fixed(2),
        "Screen share or recording started",
    ),
    Kind.SHARE_ENDED: KindSpec(
        2003,
        3,
        "Close",
        {"app": share_app, "duration_s": _number},
        Priority.INFO,
        _fixed(1),
        "Screen share or recording ended",
    ),
    Kind.SHARE_SELFCHECK_FAILED: KindSpec(
        2003, 1, "Create", dict(_RULES), Priority.SECURITY, _fixed(4), "Cover self-check failed during share"
    ),
    Kind.CLIPBOARD_CLEARED: KindSpec(
        2003,
        1,
        "Create",
        {
            "selection": _one_of("clipboard", "primary"),
            "reason": _PROTECT_REASON,
            "rules": rule_names,
            "action": _one_of("notice", "clear"),
        },
        Priority.SECURITY,
        _fixed(3),
        "Customer data removed from the clipboard",
    ),
    Kind.ONLOOKER_STARTED: KindSpec(
        5019,
        1,
        "Log",
        {"mode": _ONLOOKER_MODE, "frame_rate": _count},
        Priority.INFO,
        _fixed(1),
        "Onlooker guard started using the camera",
    ),
    Kind.ONLOOKER_DETECTED: KindSpec(
        2003,
        1,
        "Create",
        {"faces": _count, "allowed": _count, "mode": _ONLOOKER_MODE},
        Priority.SECURITY,
        _fixed(3),
        "More faces than allowed in front of the screen",
    ),
    Kind.ONLOOKER_CLEARED: KindSpec(
        2003,
        3,
        "Close",
        {"faces": _count, "allowed": _count, "mode": _ONLOOKER_MODE, "duration_s": _number},
        Priority.INFO,
        _fixed(1),
        "No more faces than allowed in front of the screen",
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
        "user",
        "service",
        "unmapped",
    }
)
_META_KEYS = frozenset({"uid", "sequence", "event_code", "product", "version", "profiles"})


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


# What the validator accepts in ``unmapped`` per kind: the kind's fields, plus the names the agent's privacy
# filter dropped and the keyed hash of a matched window title (policy window_titles = "hashed").
_UNMAPPED: dict[str, dict[str, Checker]] = {
    kind: {**spec.fields, "redacted": _redacted, "title_hash": _hex64} for kind, spec in KINDS.items()
}
# Every key the builder writes, none of them forbidden (checked below): the forbidden-key scan skips their
# casefold. Fixed at import, never grown from received data.
_SAFE_KEYS: frozenset[str] = frozenset(
    {
        *_TOP_KEYS,
        *_META_KEYS,
        *PRODUCT,
        "type_id",
        "type",
        "control",
        "status",
        "status_id",
        "standards",
        "name",
        *(name for checkers in _UNMAPPED.values() for name in checkers),
        *KINDS,
    }
)
assert not {k.casefold() for k in _SAFE_KEYS} & FORBIDDEN_KEYS, "a safe key is forbidden"
_DEVICE_KEYS = frozenset({"uid", "type_id"})
_FINDING_KEYS = frozenset({"uid", "title"})
_COMPLIANCE_KEYS = frozenset({"control", "status", "status_id", "standards"})
_USER_KEYS = frozenset({"uid", "type_id", "type"})
_PSEUDONYM = re.compile(r"^u-[0-9a-f]{32}$")

# --- OCSF attributes the builder fills from fixed vocabularies (never from event data) ------------------------

# The OCSF profile every record declares: ``device`` (the enrolled PC) belongs to the host profile in 3002.
PROFILES = ("host",)
# Authentication 3002 needs ``service`` or ``dst_endpoint`` (a class constraint in every release up to 1.8.0):
# the service authenticated to is the worker's desktop session on this PC.
SESSION_SERVICE = {"name": "desktop-session"}
# compliance.status_id -> compliance.status (captions of the OCSF enum; 99 "Other" carries Mamori's word).
COMPLIANCE_STATUS = {
    "pass": (1, "Pass"),
    "fail": (3, "Fail"),
    "error": (99, "Error"),
    "skip": (99, "Skipped"),
}
MAMORI_STANDARD = "Mamori endpoint policy"
# The 総務省「テレワークセキュリティガイドライン（第5版）」 category each control belongs to
# (docs/posture-checks.md, the mapping table); a control with no category names the Mamori policy only.
TELEWORK_GUIDELINE = "MIC Telework Security Guideline 5th ed."
_GUIDELINE_CATEGORIES = {
    "vpn": "Communications protection and encryption",
    "wifi": "Communications protection and encryption",
    "tls": "Communications protection and encryption",
    "plaintext": "Communications protection and encryption",
    "device.disk_encryption": "Data protection",
    "device.firewall": "Malware protection and vulnerability management",
    "device.screen_lock": "Physical security",
    "protection": "Physical security",
    "share": "Physical security",
    "onlooker": "Physical security",
}


def compliance_standards(control: str) -> list[str]:
    """``compliance.standards`` of a finding on ``control`` (a posture check id or an event kind)."""
    family = control.split(":", 1)[0]
    category = _GUIDELINE_CATEGORIES.get(family) or _GUIDELINE_CATEGORIES.get(family.split(".", 1)[0])
    standards = [MAMORI_STANDARD]
    if category is not None:
        standards.append(f"{TELEWORK_GUIDELINE}: {category}")
    return standards


def user_pseudonym(device_id: str) -> str:
    """The pseudonymous OCSF ``user.uid`` of the worker whose session the agent guards: the agent runs in one
    user's desktop session with its own enrollment, so the enrollment id names that user already; this hash
    of it adds no knowledge and never a name (docs/privacy.md, "user")."""
    import hashlib

    return "u-" + hashlib.sha256(f"mamori-user:{device_id}".encode()).hexdigest()[:32]


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
        event_code = meta.get("event_code")
        kind = event_code if type(event_code) is str else ""
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
        compliance = record.get("compliance")
        if compliance is not None and not (
            type(compliance) is dict
            and compliance.keys() <= _COMPLIANCE_KEYS
            and compliance.get("standards") == compliance_standards(str(compliance.get("control")))
            and (compliance.get("status_id"), compliance.get("status")) in COMPLIANCE_STATUS.values()
            and _check_id_or_none(compliance.get("control"))
        ):
            problems.append("compliance: only control, the fixed standards and status of the finding")
        user = record.get("user")
        if user is not None and not (
            type(user) is dict
            and user.keys() <= _USER_KEYS
            and type(user.get("uid")) is str
            and _PSEUDONYM.match(user["uid"])
        ):
            problems.append("user: only the pseudonymous uid of the session user")
        if record.get("service", SESSION_SERVICE) != SESSION_SERVICE:
            problems.append("service: only the desktop session")
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
                    checker(value)
                except RejectedValueError:
                    problems.append(f"unmapped.{key}: value not allowed for {kind}")
    if require_device and not problems:
        # A complete record (as the server receives it) is also valid OCSF of the release it claims.
        problems.extend(ocsf.conformance(record))
    return problems


def _check_id_or_none(value: Any) -> bool:
    return type(value) is str and (_CHECK_ID.match(value) is not None or value in KINDS)


__all__ = [
    "CLASSES",
    "CODE",
    "COMPLIANCE_STATUS",
    "FORBIDDEN_KEYS",
    "KINDS",
    "MAX_EVENT_BYTES",
    "OCSF_VERSION",
    "PRODUCT",
    "PROFILES",
    "SESSION_SERVICE",
    "SEVERITIES",
    "Checker",
    "Kind",
    "KindSpec",
    "Priority",
    "RejectedValueError",
    "compliance_standards",
    "rule_names",
    "share_app",
    "user_pseudonym",
    "validate_record",
]
