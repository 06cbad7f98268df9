"""The minimal server-rendered dashboard (ja/en): devices, their state, recent events. Jinja2, autoescaped."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Mamori — devices",
        "login": "Sign in with an admin token",
        "token": "Admin token",
        "submit": "Sign in",
        "failed": "That token is not an admin token.",
        "devices": "Devices",
        "events": "Recent events",
        "device": "Device",
        "hostname": "Host name",
        "group": "Group",
        "status": "Status",
        "last_seen": "Last seen",
        "policy": "Policy",
        "failing": "Failing checks",
        "gaps": "Missing events",
        "time": "Time",
        "class": "Class",
        "message": "Event",
        "severity": "Severity",
        "none": "No devices enrolled yet: run `mamori server enroll-secret create`, then `mamori agent enroll`.",
        "online": "online",
        "away": "away",
        "non_compliant": "non-compliant",
        "silent": "silent",
        "stopped": "stopped",
        "never_seen": "never seen",
    },
    "ja": {
        "title": "Mamori — 端末一覧",
        "login": "管理者トークンでサインイン",
        "token": "管理者トークン",
        "submit": "サインイン",
        "failed": "このトークンは管理者トークンではありません。",
        "devices": "端末",
        "events": "最近のイベント",
        "device": "端末",
        "hostname": "ホスト名",
        "group": "グループ",
        "status": "状態",
        "last_seen": "最終接続",
        "policy": "ポリシー",
        "failing": "不適合のチェック",
        "gaps": "欠落イベント",
        "time": "時刻",
        "class": "種別",
        "message": "イベント",
        "severity": "重要度",
        "none": "登録済みの端末はまだありません。`mamori server enroll-secret create` の後 `mamori agent enroll` を実行してください。",
        "online": "オンライン",
        "away": "離席中",
        "non_compliant": "不適合",
        "silent": "応答なし",
        "stopped": "停止",
        "never_seen": "未接続",
    },
}


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["ms_time"] = _ms_time
    return env


def _ms_time(value: Any) -> str:
    if not isinstance(value, int):
        return "—"
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_login(language: str, *, failed: bool) -> str:
    return _env().get_template("login.html").render(t=TEXT[language], lang=language, failed=failed)


def render_dashboard(
    language: str, devices: list[dict[str, Any]], events: list[dict[str, Any]], now: datetime
) -> str:
    return (
        _env()
        .get_template("dashboard.html")
        .render(
            t=TEXT[language],
            lang=language,
            devices=devices,
            events=events,
            now=now.strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
