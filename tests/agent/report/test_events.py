"""OCSF mapping of every kind, the privacy filter and the shared validator."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.report.events import build_record, record_priority, rule_context, stamp_device, uuid7
from agent.report.stream import AgentEvent, Kind
from core.records import FORBIDDEN_KEYS, KINDS, Priority, validate_record

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CTX = rule_context(["crm", "顧客台帳"], ["Zoom Custom"])


def full(kind: Kind, data: dict[str, object] | None = None) -> dict[str, object]:
    record = build_record(AgentEvent(kind, NOW, data or {}), CTX)
    record["metadata"]["sequence"] = 1  # type: ignore[index]
    return stamp_device(record, "dabc123")


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_builds_a_valid_ocsf_record(kind: Kind) -> None:
    record = full(kind)
    assert validate_record(record) == []
    spec = KINDS[kind]
    assert record["class_uid"] == spec.class_uid
    assert record["type_uid"] == spec.class_uid * 100 + spec.activity_id
    assert record["category_uid"] == spec.class_uid // 1000
    assert record["time"] == int(NOW.timestamp() * 1000)
    meta = record["metadata"]
    assert isinstance(meta, dict) and UUID7.match(meta["uid"]) and meta["event_code"] == kind.value
    assert meta["product"]["name"] == "Mamori"


def test_classes_follow_the_spec() -> None:
    assert {
        KINDS[k].class_uid for k in (Kind.POSTURE_FINDING, Kind.PROTECTION_APPLIED, Kind.SHARE_STARTED)
    } == {2003}
    assert {KINDS[k].class_uid for k in (Kind.SESSION_LOCKED, Kind.SESSION_UNLOCKED, Kind.LOCK_FAILED)} == {
        3002
    }
    assert {KINDS[k].class_uid for k in (Kind.VPN_UP, Kind.VPN_DOWN)} == {4014}
    assert {
        KINDS[k].class_uid for k in (Kind.CAPABILITY_DEGRADED, Kind.PROTECTION_PAUSED, Kind.HEARTBEAT)
    } == {5019}


def test_uuid7_is_time_ordered_and_unique() -> None:
    uids = [uuid7(NOW + timedelta(milliseconds=i)) for i in range(200)]
    assert all(UUID7.match(u) for u in uids)
    assert uids == sorted(uids) and len(set(uids)) == 200


def test_security_findings_have_priority_over_telemetry() -> None:
    failing = full(
        Kind.POSTURE_FINDING, {"check_id": "network.vpn", "status": "fail", "enforcement": "block"}
    )
    passing = full(Kind.POSTURE_FINDING, {"check_id": "network.vpn", "status": "pass"})
    assert record_priority(failing) == Priority.SECURITY and failing["severity_id"] == 4
    assert record_priority(passing) == Priority.INFO and passing["severity_id"] == 1
    assert record_priority(full(Kind.HEARTBEAT)) == Priority.TELEMETRY
    assert record_priority(full(Kind.REPORT_GAP)) == Priority.SECURITY


def test_window_titles_typed_text_and_command_lines_never_pass() -> None:
    data = {
        "reason": "away",
        "rules": ["crm", "顧客 山田太郎 様 090-1234-5678"],
        "count": 2,
        "title": "顧客 山田太郎 様 090-1234-5678",
        "typed": "hunter2",
        "command_line": "crm.exe --customer 4711",
    }
    record = full(Kind.PROTECTION_APPLIED, data)
    text = json.dumps(record, ensure_ascii=False)
    for secret in ("山田", "090-1234", "hunter2", "--customer", "4711"):
        assert secret not in text
    assert record["unmapped"]["rules"] == ["crm"]
    assert record["unmapped"]["redacted"] == ["command_line", "rules", "title", "typed"]
    assert validate_record(record) == []


def test_free_text_in_code_fields_is_redacted() -> None:
    record = full(
        Kind.LOCK_FAILED, {"method": "loginctl lock-session --force", "reason": "Failed: /home/taro/x"}
    )
    assert "method" not in record["unmapped"] and "reason" not in record["unmapped"]
    assert record["unmapped"]["redacted"] == ["method", "reason"]
    share = full(Kind.SHARE_STARTED, {"app": "顧客台帳 - Chrome"})
    assert share["unmapped"]["app"] == "other"
    assert full(Kind.SHARE_STARTED, {"app": "zoom custom"})["unmapped"]["app"] == "zoom custom"


def test_every_builtin_share_app_name_is_reported_by_name() -> None:
    from agent.report.events import known_share_apps
    from agent.share.signatures import builtin_app_names

    names = builtin_app_names()
    assert {
        "Peek",
        "recordMyDesktop",
        "macOS Screen Sharing",
        "macOS capture indicator",
        "Screencast",
    } <= names
    for name in sorted(names):
        share = build_record(AgentEvent(Kind.SHARE_STARTED, NOW, {"app": name}), rule_context())
        assert share["unmapped"]["app"] == name and "redacted" not in share["unmapped"]
    # One source of truth: nothing beyond the built-in signatures and "other" passes without a policy signature.
    assert known_share_apps() == {n.casefold() for n in names} | {"other"}
    assert full(Kind.SHARE_STARTED, {"app": "Slack"})["unmapped"]["app"] == "other"


def test_hashed_titles_use_a_device_key() -> None:
    key = b"k" * 32
    ctx = rule_context(["crm"], window_titles="hashed", title_key=key)
    title = "顧客 山田太郎"
    record = build_record(AgentEvent(Kind.PROTECTION_APPLIED, NOW, {"rules": ["crm"], "title": title}), ctx)
    assert record["unmapped"]["title_hash"] == hmac.new(key, title.encode(), hashlib.sha256).hexdigest()
    assert title not in json.dumps(record, ensure_ascii=False)
    # "none" (the default) drops it entirely
    plain = build_record(AgentEvent(Kind.PROTECTION_APPLIED, NOW, {"rules": ["crm"], "title": title}), CTX)
    assert "title_hash" not in plain["unmapped"] and plain["unmapped"]["redacted"] == ["title"]


def test_validator_names_each_problem() -> None:
    record = full(Kind.VPN_DOWN, {"interface": "tun0"})
    record["type_uid"] = 401401
    record["metadata"]["uid"] = "not-a-uuid"  # type: ignore[index]
    record["screenshot"] = "base64..."
    record["unmapped"]["url"] = "https://crm/customer/4711"  # type: ignore[index]
    problems = validate_record(record)
    assert any(p.startswith("type_uid") for p in problems)
    assert any(p.startswith("metadata.uid") for p in problems)
    assert any(p.startswith("screenshot") for p in problems)
    assert any("unmapped.url" in p for p in problems)
    assert validate_record([1, 2]) == ["(top): must be a JSON object"]
    device_less = build_record(AgentEvent(Kind.VPN_UP, NOW, {}), CTX)
    assert validate_record(device_less, require_device=False, require_sequence=False) == []
    assert any(p.startswith("device.uid") for p in validate_record(device_less, require_sequence=False))


SECRET = st.text(min_size=1, max_size=30).map(lambda s: f"<{s} 山田 {s}>")
FIELD = st.sampled_from(sorted({n for spec in KINDS.values() for n in spec.fields} | FORBIDDEN_KEYS))
VALUE = st.one_of(SECRET, st.lists(SECRET, max_size=3), st.dictionaries(SECRET, SECRET, max_size=2))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(Kind)), data=st.dictionaries(FIELD, VALUE, max_size=6))
def test_no_free_text_survives_the_filter(kind: Kind, data: dict[str, object]) -> None:
    """Whatever a buggy producer puts into an event, text that could be a title or typed text never passes."""
    record = build_record(AgentEvent(kind, NOW, data), CTX)
    text = json.dumps(record, ensure_ascii=False)
    assert "山田" not in text and "<" not in text
    assert validate_record(record, require_device=False, require_sequence=False) == []


def test_escaped_keys_are_caught() -> None:
    record = full(Kind.VPN_UP, {"interface": "tun0"})
    raw = json.dumps(record).encode().replace(b'"interface"', b'"ti\\u0074le"')
    parsed = json.loads(raw)
    assert "title" in parsed["unmapped"]
    assert any("privacy" in p for p in validate_record(parsed))


NESTED = st.recursive(
    st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "Title", "URL", "x", "cmdline", "ok"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["unmapped", "finding_info", "metadata", "title", "x"]), NESTED, max_size=4
    )
)
def test_the_fast_key_check_agrees_with_the_path_scan(record: dict[str, object]) -> None:
    from core.records import _forbidden_paths, _holds_forbidden_key

    assert _holds_forbidden_key(record) == bool(list(_forbidden_paths(record)))


def test_the_validator_checks_values_not_only_names() -> None:
    record = full(Kind.LOCK_FAILED, {"method": "loginctl", "reason": "timeout"})
    assert validate_record(record) == []
    record["unmapped"]["reason"] = "Could not lock: 顧客 山田太郎"  # type: ignore[index]
    record["unmapped"]["redacted"] = ["Mr Yamada"]  # type: ignore[index]
    problems = validate_record(record)
    assert "unmapped.reason: value not allowed for session.lock_failed" in problems
    assert "unmapped.redacted: value not allowed for session.lock_failed" in problems
    share = full(Kind.SHARE_STARTED, {"app": "Zoom"})
    share["unmapped"]["app"] = "x" * 65  # type: ignore[index]
    assert validate_record(share) == ["unmapped.app: value not allowed for share.started"]
