"""What the onlooker guard says: its events carry counts and pass the record contract (the full OCSF check over a
real server is tests/server/test_ocsf_agent.py), anything else is redacted; and the worker is told in ja/en."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.i18n import Translator
from agent.report.events import build_record, rule_context
from agent.report.stream import AgentEvent, Kind
from agent.ui.notify import notification_for
from agent.ui.view import build_view
from core.records import validate_record

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EVENTS = [
    (Kind.ONLOOKER_STARTED, {"mode": "cover", "frame_rate": 2}),
    (Kind.ONLOOKER_DETECTED, {"faces": 2, "allowed": 1, "mode": "cover"}),
    (Kind.ONLOOKER_CLEARED, {"faces": 3, "allowed": 1, "mode": "report", "duration_s": 4.5}),
    (Kind.PROTECTION_APPLIED, {"reason": "onlooker", "rules": ["crm"], "count": 1}),
]


@pytest.mark.parametrize(("kind", "data"), EVENTS)
def test_onlooker_events_keep_their_counts_and_pass_the_record_contract(
    kind: Kind, data: dict[str, object]
) -> None:
    record = build_record(AgentEvent(kind, NOW, data), rule_context(["crm"]))
    assert record["unmapped"] == data
    assert validate_record(record, require_device=False, require_sequence=False) == []


def test_a_picture_or_a_position_never_survives_the_filter() -> None:
    data = {"faces": 2, "allowed": 1, "mode": "cover", "image": "iVBORw0KGgo=", "boxes": [[10, 20, 30, 30]]}
    record = build_record(AgentEvent(Kind.ONLOOKER_DETECTED, NOW, data), rule_context())
    assert record["unmapped"] == {"faces": 2, "allowed": 1, "mode": "cover", "redacted": ["boxes", "image"]}
    bad_mode = build_record(
        AgentEvent(Kind.ONLOOKER_DETECTED, NOW, {"faces": 2, "mode": "off"}), rule_context()
    )
    assert "mode" not in bad_mode["unmapped"]


@pytest.mark.parametrize("language", ["ja", "en"])
def test_the_worker_is_told_the_camera_is_on_and_why(language: str) -> None:
    t = Translator(language)
    started = notification_for(AgentEvent(Kind.ONLOOKER_STARTED, NOW, {"mode": "cover", "frame_rate": 2}), t)
    assert started is not None
    assert started.title == t("onlooker.notice.title") and started.body == t("onlooker.notice.body_cover")
    report = notification_for(AgentEvent(Kind.ONLOOKER_STARTED, NOW, {"mode": "report", "frame_rate": 2}), t)
    assert report is not None and report.body == t("onlooker.notice.body_report")
    covered = notification_for(
        AgentEvent(Kind.PROTECTION_APPLIED, NOW, {"reason": "onlooker", "rules": ["crm"], "count": 1}), t
    )
    assert covered is not None and covered.body == t("onlooker.covered.body")
    # The status window says so while the guard runs, and not when it does not.
    running = build_view(t, {"onlooker": {"running": True, "mode": "cover"}})
    assert t("status.onlooker.cover") in running.lines
    idle = build_view(t, {"onlooker": {"running": False, "mode": "cover"}})
    assert t("status.onlooker.cover") not in idle.lines


def test_the_texts_say_what_is_done_in_both_languages() -> None:
    ja, en = Translator("ja"), Translator("en")
    assert "保存も送信もしません" in ja("onlooker.notice.body_cover")
    assert "No picture is stored or sent" in en("onlooker.notice.body_cover")
    assert "カメラ" in ja("onlooker.notice.title") and "camera" in en("onlooker.notice.title")
    assert ja("cover.onlooker") != en("cover.onlooker")
