"""Rendering the console's pages: one Jinja2 environment (autoescaped, strict), the viewer (language and time
zone) and the helpers every template uses to name things in the viewer's language."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from server.console import charts, text

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Without a time zone from the browser (the tz cookie set by static/console.js): Japan's for a Japanese page,
# UTC for an English one.
DEFAULT_TZ = {"ja": "Asia/Tokyo", "en": "UTC"}


def zone(name: str | None, language: str) -> ZoneInfo:
    """The browser's IANA time zone if it names a real one (the cookie holds it URL-encoded), else the
    language's default."""
    name = unquote(name) if name else name
    if name and len(name) <= 64 and all(c.isalnum() or c in "/_+-" for c in name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(DEFAULT_TZ[language])


@dataclass(frozen=True)
class Viewer:
    language: str
    tz: ZoneInfo

    @property
    def t(self) -> dict[str, str]:
        return text.TEXT[self.language]

    def time(self, value: Any, seconds: bool = True) -> str:
        if not isinstance(value, int):
            return "—"
        local = datetime.fromtimestamp(value / 1000, UTC).astimezone(self.tz)
        return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def tz_label(self) -> str:
        return f"{self.tz.key} ({datetime.now(self.tz).strftime('%Z')})"

    def event(self, code: str) -> str:
        return text.event_name(code, self.language)

    def cls(self, class_uid: int) -> str:
        return text.class_name(class_uid, self.language)

    def severity(self, severity_id: int) -> str:
        return text.severity_name(severity_id, self.language)

    def check(self, check_id: str) -> str:
        return text.check_name(check_id, self.language)

    def fix(self, check_id: str) -> str:
        return text.check_fix(check_id, self.language)

    def detail(self, record: dict[str, Any]) -> str:
        """A short description of an event's data in the viewer's words (never raw ids where a name exists)."""
        code = record.get("metadata", {}).get("event_code", "")
        data = record.get("unmapped") or {}
        t = self.t
        if code == "posture.finding" and "check_id" in data:
            result = t.get(f"r_{data.get('status')}", str(data.get("status")))
            return f"{self.check(str(data['check_id']))}: {result}"
        if code in ("policy.applied", "policy.acknowledged", "policy.rejected") and data.get("policy_id"):
            return f"{data['policy_id']} v{data.get('version', '?')}"
        return ""


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals["bar_chart"] = charts.bar_chart
    return env


def render(template: str, viewer: Viewer, **values: Any) -> str:
    return environment().get_template(template).render(v=viewer, t=viewer.t, lang=viewer.language, **values)


def render_login(language: str, *, failed: bool) -> str:
    return (
        environment().get_template("login.html").render(t=text.TEXT[language], lang=language, failed=failed)
    )
