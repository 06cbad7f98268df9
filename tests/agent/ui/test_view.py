"""The tray's pure status view: which state the icon shows and which lines/actions the worker gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.i18n import Translator
from agent.ui.icons import TrayState
from agent.ui.view import build_view, check_name, permissions, remedy, tray_state

EN = Translator("en")
JA = Translator("ja")

VPN_BLOCK = {"id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"}
WIFI_WARN = {"id": "wifi", "status": "fail", "mode": "warn", "enforcement": "warn"}


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({"presence": {"stage": "active"}}, TrayState.PROTECTED),
        ({"presence": {"stage": "warn", "seconds_left": 12}}, TrayState.WARNING),
        ({"presence": {"stage": "protect"}}, TrayState.COVERED),
        ({"presence": {"stage": "lock"}}, TrayState.COVERED),
        ({"presence": "active", "cover_reasons": ["share"]}, TrayState.COVERED),
        ({"presence": "active", "checks": [WIFI_WARN]}, TrayState.WARNING),
        ({"presence": "active", "checks": [VPN_BLOCK]}, TrayState.BLOCKED),
        ({"presence": "protect", "checks": [VPN_BLOCK]}, TrayState.BLOCKED),
        ({"presence": "active", "capabilities": {"window_list": False, "idle": True}}, TrayState.DEGRADED),
        ({"presence": "active", "degraded": ["cover"]}, TrayState.DEGRADED),
        ({"presence": "protect", "checks": [VPN_BLOCK], "paused": True}, TrayState.PAUSED),
        ({}, TrayState.PROTECTED),
        # what the screen shows, not what the stage says (agent/protection.py honest_cover_state)
        (
            {"presence": {"stage": "protect"}, "cover_state": {"state": "covered", "drawn": True}},
            TrayState.COVERED,
        ),
        ({"presence": {"stage": "protect"}, "cover_state": {"state": "not_drawn"}}, TrayState.DEGRADED),
        (
            {"presence": {"stage": "protect"}, "cover_state": {"state": "nothing_to_cover"}},
            TrayState.PROTECTED,
        ),
        (
            {"presence": "active", "cover_reasons": ["share"], "cover_state": {"state": "no_rules"}},
            TrayState.PROTECTED,
        ),
        ({"presence": {"stage": "lock"}, "cover_state": {"state": "locked"}}, TrayState.COVERED),
        ({"presence": {"stage": "protect"}, "cover_state": {"state": "lock_instead"}}, TrayState.DEGRADED),
        # the first posture run has not finished: nothing is checked yet, so not "protected"
        ({"presence": "active", "posture": {"pending": True, "checks": []}}, TrayState.WARNING),
        ({"presence": "protect", "posture": {"pending": True, "checks": []}}, TrayState.COVERED),
        ({"presence": "active", "posture": {"pending": False, "checks": []}}, TrayState.PROTECTED),
    ],
)
def test_state_priority(status: dict[str, object], state: TrayState) -> None:
    assert tray_state(status) is state


def test_passing_block_check_does_not_block() -> None:
    ok = {**VPN_BLOCK, "status": "pass"}
    assert tray_state({"presence": "active", "checks": [ok]}) is TrayState.PROTECTED


def test_pause_expires_with_time() -> None:
    status = {"presence": "active", "paused_until": "2026-04-01T09:15:00+00:00"}
    assert tray_state(status, datetime(2026, 4, 1, 9, 10, tzinfo=UTC)) is TrayState.PAUSED
    assert tray_state(status, datetime(2026, 4, 1, 9, 16, tzinfo=UTC)) is TrayState.PROTECTED


def test_permissions_follow_policy_worker_section() -> None:
    assert permissions({}).allow_pause is False
    assert permissions({}).allow_quit is False
    p = permissions({"worker": {"allow_pause": True, "pause_max": 900.0, "allow_quit": True}})
    assert (p.allow_pause, p.pause_max_minutes, p.allow_quit) == (True, 15, True)
    # A zero maximum means no pause, whatever allow_pause says.
    assert permissions({"worker": {"allow_pause": True, "pause_max": 0}}).allow_pause is False


def test_lines_in_each_language() -> None:
    status = {
        "presence": {"stage": "warn", "seconds_left": 29.6},
        "checks": [VPN_BLOCK, {"id": "tls.0", "status": "pass"}],
        "policy": {"id": "standard", "version": 3, "ack_required": True, "acknowledged": False},
    }
    en = build_view(EN, status)
    assert "Away protection: covering in 30 s" in en.lines
    assert "VPN: not compliant" in en.lines
    assert "Encrypted connections (TLS): OK" in en.lines
    assert "Please acknowledge the policy" in en.lines
    assert en.ack_needed and en.policy_id == "standard" and en.policy_version == 3
    assert en.tooltip == "Mamori: Blocked: action needed"
    ja = build_view(JA, status)
    assert "VPN: 不適合" in ja.lines
    assert "離席保護: あと 30 秒で画面を保護します" in ja.lines
    assert ja.tooltip.startswith("守り (Mamori): ブロック中")


def test_unknown_check_and_reason_fall_back_to_ids() -> None:
    view = build_view(EN, {"checks": [{"id": "custom_x", "status": "weird"}], "cover_reasons": ["zzz"]})
    assert "custom_x: could not check" in view.lines
    assert "Covered because: zzz" in view.lines
    assert check_name(EN, "wifi") == "Wi-Fi security"
    assert remedy(EN, "vpn.routes") == "Connect to the company VPN."
    assert remedy(JA, "nonexistent") == "IT 管理者に連絡してください。"


def test_policy_overrides_win() -> None:
    t = Translator("en", {"en": {"tray.state.blocked": "Stop! Call the help desk"}})
    assert build_view(t, {"checks": [VPN_BLOCK]}).tooltip == "Mamori: Stop! Call the help desk"


def test_runtime_status_shape() -> None:
    """The dict agent.runtime.Runtime.status() returns, with the ack and posture providers registered."""
    status = {
        "presence": {"stage": "active", "seconds_left": None, "idle": 1.0},
        "cover_reasons": [],
        "capabilities": {"backend": "x11", "idle": True, "window_list": True, "lock": True, "cover": True},
        "degraded": ["cover"],
        "policy": {"id": "standard", "version": 2},
        "worker": {"allow_pause": False, "pause_max": 900.0, "allow_quit": False},
        "ack": {"policy_id": "standard", "version": 2, "pending": True},
        "posture": {"checks": [VPN_BLOCK]},
    }
    view = build_view(EN, status)
    assert view.state is TrayState.BLOCKED
    assert view.ack_needed
    assert "Cover windows: unavailable" in view.lines
    assert not view.permissions.allow_pause


def test_step_away_reason_is_not_doubled() -> None:
    view = build_view(EN, {"presence": "protect", "cover_reasons": ["away", "step_away"]})
    assert "Covered because: stepped away" in view.lines


def test_pause_end_is_shown_in_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    # Before the fix the tray cut HH:MM out of the runtime's UTC timestamp: a worker in Tokyo read 00:15
    # for a pause ending at 09:15 their time.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        status = {"presence": "active", "paused_until": "2026-04-01T00:15:00+00:00"}
        assert "一時停止中 (09:15 まで)" in build_view(JA, status).lines
        assert "Paused until 09:15" in build_view(EN, status).lines
    finally:
        monkeypatch.undo()
        time.tzset()


def test_every_reason_and_degraded_capability_the_agent_reports_has_a_japanese_name() -> None:
    # Before the fix "lock_failed", "hotkey", "lock_before_sleep" and "status" (the tray's own) reached the
    # Japanese tray and notifications as raw English identifiers.
    from agent.decide.cover import REASON_ORDER
    from agent.report.stream import AgentEvent, Kind
    from agent.ui.notify import notification_for

    status = {
        "presence": "active",
        "cover_reasons": list(REASON_ORDER),
        "degraded": ["cover", "idle", "lock_before_sleep", "hotkey", "share_detection", "status"],
    }
    for line in build_view(JA, status).lines:
        assert not any(word in line for word in ("lock_failed", "hotkey", "lock_before_sleep", "status")), (
            line
        )
    event = AgentEvent(Kind.PROTECTION_APPLIED, datetime(2026, 4, 1, tzinfo=UTC), {"reason": "lock_failed"})
    n = notification_for(event, JA)
    assert n is not None and "lock_failed" not in n.body


def test_status_lines_name_endpoints_use_names_not_ids_and_give_the_fix() -> None:
    """Before: "TLS: could not check" twice without the endpoint, "device.disk_encryption" raw, no fix."""
    status = {
        "checks": [
            {"id": "tls:crm.example.co.jp:443", "status": "error", "mode": "block"},
            {"id": "tls:mail.example.co.jp:443", "status": "error", "mode": "block"},
            {"id": "device.disk_encryption", "status": "fail", "mode": "warn"},
            {"id": "vpn", "status": "fail", "mode": "block"},
            {"id": "vpn", "status": "fail", "mode": "block"},
        ]
    }
    en = build_view(EN, status).lines
    assert "Encrypted connections (TLS) crm.example.co.jp:443: could not check" in en
    assert "Encrypted connections (TLS) mail.example.co.jp:443: could not check" in en
    assert "Disk encryption: not compliant" in en and not any("device.disk_encryption" in ln for ln in en)
    assert en.count("VPN: not compliant") == 1
    assert en[en.index("VPN: not compliant") + 1] == "  → Connect to the company VPN."
    ja = build_view(JA, status).lines
    assert "ディスク暗号化: 不適合" in ja
    assert ja[ja.index("ディスク暗号化: 不適合") + 1].startswith("  → ディスク暗号化 (BitLocker")


def test_a_grace_period_says_the_vpn_is_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "まもなく画面を保護します" during a VPN grace period, without the cause."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    import time

    time.tzset()
    status = {
        "posture": {
            "block": False,
            "warnings": ["vpn"],
            "block_at": "2026-04-01T01:10:00+00:00",
            "checks": [{"id": "vpn", "status": "fail", "mode": "block", "enforcement": "warn"}],
        }
    }
    ja = build_view(JA, status)
    assert "VPN が不適合のため、10:10 に顧客データの画面を隠します" in ja.lines
    assert "VPN not compliant: customer-data windows are covered at 10:10" in build_view(EN, status).lines
    monkeypatch.undo()
    time.tzset()


def test_the_policy_line_shows_the_title_when_the_tray_knows_it() -> None:
    status = {"policy": {"id": "acme-crm", "version": 4, "title": "リモートワーク基本方針"}}
    assert "ポリシー: リモートワーク基本方針 (第 4 版)" in build_view(JA, status).lines
    assert (
        "Policy: acme-crm (version 4)" in build_view(EN, {"policy": {"id": "acme-crm", "version": 4}}).lines
    )
