"""Notifications: per-OS command construction over a recording runner, rate limits, event mapping."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from agent.i18n import Translator
from agent.platform import create_notifications
from agent.platform.notifications import (
    LinuxNotifySend,
    MacOsNotification,
    Notification,
    NotifyError,
    NullNotifications,
    WindowsToast,
)
from agent.report.stream import AgentEvent, EventStream, Kind
from agent.ui.notify import NotificationBridge, Notifier, RateLimiter, notification_for
from core.clock import FakeClock

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
TRICKY = Notification("k", 'He said "hi" \\ $(rm -rf /) `x`', "-n 'quoted' <b>&amp;</b> 顧客")


class Recorder:
    """A fake OS command runner: records argv, answers with a scripted exit status."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode
        self.stderr = stderr

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), self.returncode, "", self.stderr)


def test_linux_passes_texts_as_arguments_after_double_dash() -> None:
    rec = Recorder()
    LinuxNotifySend(rec, {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}).send(TRICKY)
    argv = rec.calls[0]
    assert argv[0] == "notify-send"
    assert argv[-3:] == ["--", TRICKY.title, TRICKY.body]
    assert "--app-name=Mamori" in argv


def test_linux_without_session_bus_is_unavailable(tmp_path: object) -> None:
    backend = LinuxNotifySend(Recorder(), {"XDG_RUNTIME_DIR": "/nonexistent"})
    reason = backend.unavailable_reason()
    assert reason is not None and ("D-Bus" in reason or "notify-send" in reason)


def test_linux_failure_is_an_error_with_the_reason() -> None:
    rec = Recorder(1, "GDBus.Error:org.freedesktop.DBus.Error.ServiceUnknown: no daemon\n")
    with pytest.raises(NotifyError, match="ServiceUnknown"):
        LinuxNotifySend(rec, {"DBUS_SESSION_BUS_ADDRESS": "x"}).send(TRICKY)


def test_windows_texts_travel_base64_and_never_raw() -> None:
    rec = Recorder()
    WindowsToast(rec).send(TRICKY)
    argv = rec.calls[0]
    assert argv[:2] == ["powershell", "-NoProfile"]
    script = argv[-1]
    assert TRICKY.title not in script and "rm -rf" not in script and "顧客" not in script
    for text in (TRICKY.title, TRICKY.body):
        assert base64.b64encode(text.encode()).decode() in script
    assert "SecurityElement]::Escape" in script  # XML-escaped inside PowerShell
    assert "{title}" not in script and "{body}" not in script and "$d={param($s)" in script


def test_windows_critical_is_urgent() -> None:
    rec = Recorder()
    WindowsToast(rec).send(Notification("k", "t", "b", urgency="critical"))
    assert "scenario='urgent'" in rec.calls[0][-1]


def test_macos_texts_are_argv_not_script() -> None:
    rec = Recorder()
    MacOsNotification(rec).send(TRICKY)
    argv = rec.calls[0]
    assert argv[0] == "osascript"
    assert argv[-2:] == [TRICKY.title, TRICKY.body]
    script = " ".join(argv[1:-2])
    assert "rm -rf" not in script and "on run argv" in script


def test_backend_selection() -> None:
    assert isinstance(create_notifications(platform="linux", environ={}), LinuxNotifySend)
    assert isinstance(create_notifications(platform="win32", environ={}), WindowsToast)
    assert isinstance(create_notifications(platform="darwin", environ={}), MacOsNotification)
    assert isinstance(
        create_notifications(platform="linux", environ={"MAMORI_NOTIFY_BACKEND": "none"}), NullNotifications
    )
    assert isinstance(
        create_notifications(platform="linux", environ={"MAMORI_NOTIFY_BACKEND": "macos-osascript"}),
        MacOsNotification,
    )
    assert isinstance(create_notifications(platform="sunos5", environ={}), NullNotifications)


def test_rate_limiter_per_key_and_burst() -> None:
    clock = FakeClock()
    lim = RateLimiter(clock, per_key=60, burst=3, window=60)
    assert lim.allow("a")
    assert not lim.allow("a")  # same key within a minute
    assert lim.allow("b") and lim.allow("c")
    assert not lim.allow("d")  # burst of 3 per minute used up
    clock.advance(61)
    assert lim.allow("a") and lim.allow("d")
    lim.forget("a")
    assert lim.allow("a")


class FakeBackend:
    name = "fake"

    def __init__(self, fail: str | None = None, unavailable: str | None = None) -> None:
        self.sent: list[Notification] = []
        self.fail = fail
        self.unavailable = unavailable

    def unavailable_reason(self) -> str | None:
        return self.unavailable

    def send(self, n: Notification) -> None:
        if self.fail:
            raise NotifyError(self.name, self.fail)
        self.sent.append(n)


def test_notifier_degrades_once_and_says_why() -> None:
    reasons: list[str] = []
    n = Notifier(FakeBackend(fail="no daemon"), FakeClock(), on_degraded=reasons.append)
    assert n.notify(Notification("a", "t", "b")) is False
    assert n.notify(Notification("b", "t", "b")) is False
    assert reasons == ["no daemon"] and n.degraded_reason == "no daemon"
    unavailable = Notifier(FakeBackend(unavailable="no bus"), FakeClock(), on_degraded=reasons.append)
    assert unavailable.degraded_reason == "no bus" and reasons[-1] == "no bus"


def _event(kind: Kind, **data: object) -> AgentEvent:
    return AgentEvent(kind, NOW, data)


@pytest.mark.parametrize(
    ("lang", "event", "title", "body_part"),
    [
        (
            "en",
            _event(Kind.PRESENCE_STAGE, stage="warn", seconds_left=30),
            "Protection starts soon",
            "in 30 s",
        ),
        (
            "ja",
            _event(Kind.PRESENCE_STAGE, stage="warn", seconds_left=30),
            "まもなく画面を保護します",
            "30 秒後",
        ),
        (
            "ja",
            _event(Kind.SHARE_STARTED, app="Zoom"),
            "顧客データの画面を隠しました",
            "画面共有または録画を検出しました（Zoom）",
        ),
        ("en", _event(Kind.PROTECTION_APPLIED, reason="away"), "Customer-data windows covered", "reappear"),
        ("en", _event(Kind.SHARE_SELFCHECK_FAILED), "Screen locked", "Stop sharing before you unlock"),
        (
            "ja",
            _event(Kind.POSTURE_FINDING, check_id="vpn", status="fail", enforcement="block"),
            "対処が必要です: VPN",
            "VPN に接続",
        ),
        (
            "en",
            _event(Kind.POSTURE_FINDING, check_id="vpn", status="fail", enforcement="block"),
            "Action needed: VPN",
            "Connect to the company VPN",
        ),
        (
            "en",
            _event(Kind.POLICY_APPLIED, policy_id="std", version=4, ack_required=True),
            "Policy updated",
            "acknowledge",
        ),
    ],
)
def test_events_become_notifications_in_the_worker_language(
    lang: str, event: AgentEvent, title: str, body_part: str
) -> None:
    n = notification_for(event, Translator(lang))
    assert n is not None
    assert n.title == title and body_part in n.body


def test_uninteresting_events_are_silent() -> None:
    t = Translator("en")
    assert notification_for(_event(Kind.HEARTBEAT), t) is None
    # a share or a posture block is told by its own notice, not a second "covered" one
    assert notification_for(_event(Kind.PROTECTION_APPLIED, reason="share"), t) is None
    assert notification_for(_event(Kind.PROTECTION_APPLIED, reason="posture"), t) is None
    assert (
        notification_for(_event(Kind.POSTURE_FINDING, check_id="vpn", status="fail", enforcement="warn"), t)
        is None
    )
    assert notification_for(_event(Kind.PRESENCE_STAGE, stage="protect"), t) is None


def test_bridge_resets_countdown_on_return() -> None:
    backend = FakeBackend()
    bridge = NotificationBridge(EventStream(), Notifier(backend, FakeClock()), Translator("en"))
    warn = _event(Kind.PRESENCE_STAGE, stage="warn", seconds_left=30)
    assert bridge.handle(warn)
    assert not bridge.handle(warn)  # rate-limited within the same away period
    bridge.handle(_event(Kind.PRESENCE_STAGE, stage="active"))
    assert bridge.handle(warn)  # a new away period gets its own countdown
    assert [n.key for n in backend.sent] == ["countdown", "countdown"]


def test_a_multi_line_failure_is_one_reason_line() -> None:
    # PowerShell errors span several lines; before the fix the Windows and macOS reasons kept the newlines.
    rec = Recorder(1, 'Exception calling "Show"\n  + CategoryInfo : NotSpecified\n')
    with pytest.raises(NotifyError) as info:
        WindowsToast(rec).send(TRICKY)
    assert info.value.reason == 'Exception calling "Show" + CategoryInfo : NotSpecified'
    with pytest.raises(NotifyError) as info:
        MacOsNotification(Recorder(1, "")).send(TRICKY)
    assert info.value.reason == "exit status 1"


def test_the_bridge_thread_notifies_and_stops_at_once() -> None:
    import time

    # The thread blocks on its queue (no 0.5 s polling); stop() must still end it promptly.
    backend = FakeBackend()
    stream = EventStream()
    bridge = NotificationBridge(stream, Notifier(backend, FakeClock()), Translator("en")).start()
    stream.publish(_event(Kind.PRESENCE_STAGE, stage="warn", seconds_left=30))
    deadline = time.monotonic() + 5
    while not backend.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [n.key for n in backend.sent] == ["countdown"]
    started = time.monotonic()
    bridge.stop()
    assert time.monotonic() - started < 1.0
    assert bridge._thread is not None and not bridge._thread.is_alive()


def test_the_acknowledgement_cover_says_how_to_lift_it() -> None:
    # Before the fix it said "They reappear when you return", which never happens for this cover.
    for lang, needle in (("en", "acknowledge"), ("ja", "同意")):
        n = notification_for(_event(Kind.PROTECTION_APPLIED, reason="ack"), Translator(lang))
        assert n is not None and needle in n.body and "return" not in n.body


def test_a_policy_text_with_hard_line_breaks_is_reflowed_before_it_is_shown() -> None:
    backend = FakeBackend()
    notifier = Notifier(backend, FakeClock())  # type: ignore[arg-type]
    body = "会社の VPN に\n接続してください。\n\nわからない場合は\nIT に連絡してください。"
    assert notifier.notify(Notification("blocked.vpn", "VPN", body))
    assert backend.sent[0].body == "会社の VPN に接続してください。\nわからない場合は IT に連絡してください。"
