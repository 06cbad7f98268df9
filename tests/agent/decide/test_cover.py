"""The pure cover plan (agent.decide.cover): which windows, blur or opaque, which label, whole screen on lock_failed."""

from __future__ import annotations

from agent.decide.cover import AWAY, LOCK_FAILED, Reason, plan_covers, title_strip
from agent.platform.base import Monitor, Rect
from policy.model import Presence
from tests.harness.fakes import policy, window

CRM = window(1, "Acme | Salesforce", "chrome", Rect(100, 100, 800, 600))
NOTES = window(2, "notes.txt", "gedit", Rect(950, 100, 400, 300))
FRAMED = window(3, "顧客台帳.xlsx", "excel", Rect(10, 40, 300, 200), frame=Rect(10, 10, 300, 230))
RULES = policy().customer_apps
SCREEN = [Monitor(Rect(0, 0, 1920, 1080)), Monitor(Rect(1920, 0, 1280, 1024))]


def label(key: str) -> str:
    return f"<{key}>"


def test_no_reason_no_cover() -> None:
    plan = plan_covers({}, RULES, [CRM, NOTES], SCREEN, presence=Presence(), label=label)
    assert plan.covers == [] and plan.matches == [] and plan.count == 0 and plan.rules == []


def test_away_alone_uses_the_policy_style_and_covers_only_customer_windows() -> None:
    reasons = {AWAY: Reason("cover.away", "away")}
    plan = plan_covers(reasons, RULES, [CRM, NOTES], SCREEN, presence=Presence(cover="blur"), label=label)
    assert [(c.key, c.rect, c.style, c.label, c.clickable) for c in plan.covers] == [
        ("w:1", CRM.rect, "blur", "<cover.away>", False)
    ]
    assert plan.rules == ["crm"] and plan.count == 1


def test_click_to_reveal_only_when_away_is_the_only_reason() -> None:
    presence = Presence(cover="blur", reveal="click")
    away = {AWAY: Reason("cover.away", "away")}
    assert plan_covers(away, RULES, [CRM], SCREEN, presence=presence, label=label).covers[0].clickable
    both = {**away, "share": Reason("cover.share", "share")}
    cover = plan_covers(both, RULES, [CRM], SCREEN, presence=presence, label=label).covers[0]
    assert not cover.clickable and cover.style == "opaque" and cover.label == "<cover.share>"


def test_the_label_follows_the_reason_order() -> None:
    reasons = {
        AWAY: Reason("cover.away", "away"),
        "ack": Reason("cover.ack", "ack"),
        "posture": Reason("posture.blocked.vpn", "posture"),
    }
    plan = plan_covers(reasons, RULES, [CRM], SCREEN, presence=Presence(), label=label)
    assert {c.label for c in plan.covers} == {"<posture.blocked.vpn>"}


def test_an_unknown_reason_still_covers_opaquely_with_its_own_label() -> None:
    plan = plan_covers(
        {"call": Reason("cover.call", "call")}, RULES, [CRM], SCREEN, presence=Presence(), label=label
    )
    assert [(c.style, c.label) for c in plan.covers] == [("opaque", "<cover.call>")]


def test_lock_failed_covers_every_monitor_whatever_the_windows() -> None:
    reasons = {LOCK_FAILED: Reason("cover.lock_failed", LOCK_FAILED), AWAY: Reason("cover.away", "away")}
    plan = plan_covers(reasons, RULES, [CRM, NOTES], SCREEN, presence=Presence(), label=label)
    assert [(c.key, c.rect, c.style) for c in plan.covers] == [
        ("screen:0", SCREEN[0].rect, "opaque"),
        ("screen:1", SCREEN[1].rect, "opaque"),
    ]
    assert plan.matches == [] and plan.count == 2


def test_the_title_bar_gets_its_own_opaque_strip() -> None:
    assert title_strip(FRAMED) == Rect(10, 10, 300, 30)
    assert title_strip(CRM) is None
    reasons = {AWAY: Reason("cover.away", "away")}
    plan = plan_covers(reasons, RULES, [FRAMED], SCREEN, presence=Presence(cover="blur"), label=label)
    assert [(c.key, c.style, c.label) for c in plan.covers] == [
        ("w:3", "blur", "<cover.away>"),
        ("w:3:title", "opaque", ""),
    ]
    assert plan.count == 1
