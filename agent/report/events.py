"""OCSF records built from agent events, and the privacy filter that knows the device's policy.

This module is the one place where an :class:`~agent.report.stream.AgentEvent` becomes a record that may leave
the PC (SPEC.md, Events). The record contract (kinds, OCSF classes, value shapes, forbidden keys and the
validator the server runs too) is :mod:`core.records`. The privacy filter is an allow-list: each kind names the
data fields it may carry and what each value may look like. Anything else is dropped and only the *name* of the
dropped field is kept in ``unmapped.redacted``, so a producer bug shows up without leaking the value. Window
titles never pass: a ``title`` value is dropped, or replaced by a keyed hash when the policy says
``window_titles = "hashed"``. Matched windows are named by their rule name, and only names of rules in the
current policy pass.

Pure: no I/O; ``uid`` and ``time`` come from the caller's clock and random source. The one exception is
:func:`host_device_type`, read once (cached) when the uploader first stamps the device object.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.report.stream import AgentEvent, Kind
from core import records
from core.records import (
    CLASSES,
    CODE,
    COMPLIANCE_STATUS,
    KINDS,
    OCSF_VERSION,
    PRODUCT,
    PROFILES,
    SESSION_SERVICE,
    SEVERITIES,
    KindSpec,
    Priority,
    RejectedValueError,
    compliance_standards,
    user_pseudonym,
)


# Share/recording apps the agent may name: the app names of the built-in share signatures (the one source of
# truth, agent/share/signatures.py) plus "other". A value outside this list (or the policy's own signature names)
# is reported as "other": a detector bug must not be able to ship a window title under the "app" key.
@functools.cache
def known_share_apps() -> frozenset[str]:
    """Casefolded share/recording app names the filter lets through without a policy signature."""
    # Imported here: agent.share pulls in the share guard and monitors, which reporting does not otherwise need.
    from agent.share.signatures import builtin_app_names

    return frozenset(a.casefold() for a in (*builtin_app_names(), "other"))


@dataclass(frozen=True)
class Context:
    """What the filter needs to know about the current policy."""

    rule_names: frozenset[str] = frozenset()  # names of [[customer_apps]] rules
    share_apps: frozenset[str] = frozenset()  # names of [[screen_share.signatures]] (casefolded)
    window_titles: str = "none"  # "none" | "hashed" (policy [reporting])
    title_key: bytes | None = None  # per-device secret for the keyed title hash


class _PartialReject(RejectedValueError):
    """Keep ``kept`` in place of the value, and flag the field as redacted."""

    def __init__(self, kept: Any) -> None:
        super().__init__()
        self.kept = kept


def _rules(value: Any, ctx: Context) -> list[str]:
    """Rule names of the current policy only; anything else (a title, a file name) is dropped."""
    if not isinstance(value, list | tuple | frozenset | set):
        raise RejectedValueError
    # 64 characters: what the server accepts for a rule name (core.records.rule_names).
    kept = sorted({v for v in value if isinstance(v, str) and v in ctx.rule_names and len(v) <= 64})
    if len(kept) != len(set(value)):
        # Some names were not rule names: keep the known ones, flag the field as partly redacted.
        raise _PartialReject(kept)
    return kept


def _share_app(value: Any, ctx: Context) -> str:
    if isinstance(value, str) and (
        value.casefold() in known_share_apps() or value.casefold() in ctx.share_apps
    ):
        return value
    raise _PartialReject("other")


# The two fields whose contract is only a shape (core.records) but whose filter needs the device's policy.
_POLICY_CHECKERS: dict[records.Checker, Callable[[Any, Context], Any]] = {
    records.rule_names: _rules,
    records.share_app: _share_app,
}


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
            redacted.append(str(name)[:64] if CODE.match(str(name)[:64]) else "?")
            continue
        try:
            policy_checker = _POLICY_CHECKERS.get(checker)
            kept[name] = checker(value) if policy_checker is None else policy_checker(value, ctx)
        except _PartialReject as partial:
            kept[name] = partial.kept
            redacted.append(name)
        except RejectedValueError:
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
        status_id, status_caption = COMPLIANCE_STATUS[status]
        record["compliance"] = {
            "control": control,
            "standards": compliance_standards(control),
            "status_id": status_id,
            "status": status_caption,
        }
        record["finding_info"] = {"uid": uid, "title": spec.title}
    elif spec.class_uid == 3002:
        record["service"] = dict(SESSION_SERVICE)
    elif spec.class_uid == 4014:
        # Tunnel Activity needs one of its network attributes (class constraint); the interface name is it.
        record["tunnel_interface"] = {"name": str(data.get("interface") or "unknown")}
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


# SMBIOS chassis types (DMTF DSP0134, 7.4.1) -> OCSF device.type_id (2 Desktop, 3 Laptop, 4 Tablet, 1 Server).
_CHASSIS_TYPES = {
    **dict.fromkeys((3, 4, 5, 6, 7, 13, 15, 16, 24, 35, 36), 2),
    **dict.fromkeys((8, 9, 10, 12, 14, 31, 32), 3),
    **dict.fromkeys((11, 30), 4),
    **dict.fromkeys((17, 23, 25, 28, 29), 1),
}


def device_type_of_chassis(chassis_type: int | None) -> int:
    """OCSF device.type_id of an SMBIOS chassis type; 0 (Unknown) when there is none or it says nothing."""
    return _CHASSIS_TYPES.get(chassis_type, 0) if chassis_type is not None else 0


@functools.cache
def host_device_type(dmi: str = "/sys/class/dmi/id/chassis_type") -> int:
    """This PC's OCSF device.type_id from the firmware's chassis type (Linux sysfs); 0 where not readable."""
    try:
        with open(dmi, encoding="ascii") as f:
            return device_type_of_chassis(int(f.read().strip()))
    except (OSError, ValueError):
        return 0


def stamp_device(record: dict[str, Any], device_id: str, type_id: int | None = None) -> dict[str, Any]:
    """Complete a record at send time with what only the enrollment knows: the OCSF device object (the
    enrollment id and the device type, see docs/privacy.md, "device"), the host profile that ``device`` belongs
    to, and for Authentication 3002 the pseudonymous session user (``user``, required by OCSF)."""
    record["device"] = {"uid": device_id, "type_id": host_device_type() if type_id is None else type_id}
    record["metadata"]["profiles"] = list(PROFILES)
    if record.get("class_uid") == 3002:
        record["user"] = {"uid": user_pseudonym(device_id), "type_id": 1, "type": "User"}
    return record


def rule_context(
    rule_names: Collection[str] = (),
    share_apps: Collection[str] = (),
    window_titles: str = "none",
    title_key: bytes | None = None,
) -> Context:
    return Context(
        frozenset(rule_names), frozenset(a.casefold() for a in share_apps), window_titles, title_key
    )


__all__ = [
    "Context",
    "Priority",  # the outbox's drop order (core.records), used with record_priority
    "build_record",
    "device_type_of_chassis",
    "filter_data",
    "gap_record",
    "host_device_type",
    "known_share_apps",
    "priority_of",
    "record_priority",
    "rule_context",
    "stamp_device",
    "title_hash",
    "uuid7",
]
