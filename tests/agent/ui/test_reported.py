""" "What is reported": a readable ja/en table (time, what, details), newest first, the JSON as sent one click
away (issue 12, item 1). Before: raw JSON, oldest first, under a "latest events" title."""

from __future__ import annotations

import json

from agent.i18n import Translator
from agent.ui.tray import reported_json, reported_rows, reported_text

RECORDS = [
    {
        "time": 1_775_000_000_000,
        "metadata": {"event_code": "vpn.down", "uid": "a"},
        "unmapped": {"interface": "wg0"},
    },
    {
        "time": 1_775_000_060_000,
        "metadata": {"event_code": "protection.applied", "uid": "b"},
        "unmapped": {"reason": "posture", "rules": ["crm", "ledger"], "count": 2},
    },
    {"time": 1_775_000_030_000, "metadata": {"event_code": "custom.kind", "uid": "c"}, "unmapped": {}},
]


def test_newest_first_with_names_in_the_workers_language() -> None:
    rows = reported_rows(Translator("ja"), RECORDS)
    assert [what for _, what, _ in rows] == ["画面を隠した", "custom.kind", "VPN 切断"]
    assert rows[0][2] == "reason=posture  rules=crm, ledger  count=2"
    en = reported_text(Translator("en"), RECORDS)
    assert en.index("Windows covered") < en.index("VPN disconnected")
    assert "Time" in en and "What" in en and "Details" in en
    assert "{" not in en  # a table, not JSON
    assert en.startswith("Keystrokes, screen content and window titles are never sent.")
    assert Translator("ja")("status.reported.title") == "送信している内容 (新しい順)"


def test_the_json_as_sent_is_one_click_away_newest_first() -> None:
    lines = reported_json(RECORDS).splitlines()
    assert [json.loads(line)["metadata"]["uid"] for line in lines] == ["b", "c", "a"]
    assert json.loads(lines[0]) == RECORDS[1]


def test_the_tray_adds_the_policy_title_to_the_status_it_shows() -> None:
    import queue

    from agent.ui.tray import Tray
    from policy.load import load_policy

    text = 'schema = 1\nid = "acme-crm"\nversion = 4\ntitle = { ja = "基本方針", en = "Basics" }\n'
    policy = load_policy(text.encode("utf-8"))
    tray = Tray(
        Translator("ja"),
        lambda: {"policy": {"id": "acme-crm", "version": 4}},
        queue.Queue(),
        policy_provider=lambda: policy,
    )
    assert "ポリシー: 基本方針 (第 4 版)" in tray.view().lines
